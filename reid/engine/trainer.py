"""``reid train``: AlignedReID + OBC multi-task training on the frozen splits of an HDF5 file.

One call of :func:`train` = one run folder (layout in :mod:`reid.engine.runs`)::

    runs/<name>/config.json    written at the start: {"train": TrainConfig, "model": ModelConfig,
                               "dataset_fingerprint", "world_size", "package_version", "started"}
    runs/<name>/metrics.jsonl  one JSON object per epoch (see "Metrics" below)
    runs/<name>/last.pt        every epoch (and on Ctrl-C), atomically, with optimizer state
    runs/<name>/best.pt        the best validated weights (only when validation ran)
    runs/<name>/curves.png     redrawn every epoch

Decisions (documented for review):

* **Epoch**: one pass of the P x K sampler (:mod:`reid.data.sampler`), optionally cut to
  ``max_steps_per_epoch`` steps. The learning rate is a pure function of the epoch index
  (:func:`learning_rate`): linear warm-up from ``warmup_factor * lr`` over ``warmup_epochs``,
  then step decay (x ``gamma`` at each milestone) or cosine to 0.
* **Determinism / resume**: augmentation draws are keyed by (seed, epoch, slot) in the data
  pipeline, the sampler's permutation by (seed, epoch), and at the start of every epoch the
  torch / numpy / python generators are reseeded from (seed, epoch, rank). So an epoch's
  randomness never depends on what ran before it, and ``--resume`` (from an epoch end, or
  from a Ctrl-C in mid-epoch, where the already-trained batches of that epoch are skipped)
  reproduces an uninterrupted run exactly on the CPU. The checkpoint also stores the RNG
  states (torch, CUDA, numpy, python as tensors / plain values), restored on resume.
* **AMP**: see :func:`reid.engine.optim.resolve_amp` (bf16, or fp16 with a GradScaler, on
  CUDA; bf16 on a CPU only where it is native). Losses run in float32 whatever the autocast.
  The network runs channels-last on every device; on CUDA cuDNN autotunes (not bit-reproducible;
  CPU runs are, with any number of threads).
* **Best checkpoint**: the validation score is the mean of the clean mAP and the mean mAP over
  the occluded query sets, so clean and occluded weigh equally (the project's goal). Validation
  runs every ``eval_every`` epochs and after the last (0: never; no best.pt then).
* **alpha = 1** (plain AlignedReID): the OBC head is frozen (``requires_grad=False``), so no
  optimiser touches it (not even weight decay) and DDP does not see it as unused. Its loss and
  accuracy are still measured (metrics.jsonl) but not logged, and every checkpoint records
  ``extra["obc_head_trained"]``: True for alpha < 1 or when ``--init-from`` brought a trained
  head (:func:`reid.models.checkpoint.obc_head_trained`), so that no command reports the
  occlusion probability of an untrained head.
* **Divergence**: the loss values (averaged over DDP ranks, so every rank agrees) are checked
  before the backward pass; a NaN or infinity raises :class:`TrainingDiverged` naming the step
  and the values, and the weights are not updated with it.
* **Ctrl-C**: the optimiser step is shielded (a SIGINT during backward/step is deferred until
  the step is complete), then last.pt is written with the position inside the epoch and
  :func:`train` returns a result with ``interrupted=True`` and a message saying how to resume.

Metrics (one JSON line per epoch): see :mod:`reid.engine.step`.

The rooms around the loop (this module keeps the epoch loop and checkpoints):
:mod:`reid.engine.step` (the step, the logged losses, the epoch tally and log line),
:mod:`reid.engine.config` (TrainConfig, torch-free), :mod:`reid.engine.optim` (optimiser,
learning-rate schedule, AMP), :mod:`reid.engine.rng` (per-epoch seeds, RNG state),
:mod:`reid.engine.interrupt` (Ctrl-C guard), :mod:`reid.engine.run_folder` (run-folder checks,
metrics.jsonl); their public names are importable from here too.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from common.atomic import atomic_write_json
from common.device import resolve_device
from common.errors import BadInputError
from common.folder_lock import FolderLock
from occsim.store import StoreInfo, read_store
from reid import __version__
from reid.data.loaders import build_train_loader
from reid.engine import distributed as D
from reid.engine.config import TrainConfig, config_differences  # noqa: F401 (config_differences: public name)
from reid.engine.curves import plot_run_curves, read_metrics
from reid.engine.interrupt import InterruptGuard
from reid.engine.optim import AmpSettings, build_optimizer, learning_rate, resolve_amp, set_lr  # noqa: F401
from reid.engine.rng import epoch_seed, rng_state, seed_everything, set_rng_state
from reid.engine.run_folder import append_metrics, prepare_run_dir, rewrite_metrics, run_folder_lock  # noqa: F401
from reid.engine.runs import BEST_CHECKPOINT, CONFIG_FILE, CURVES_FILE, LAST_CHECKPOINT, METRICS_FILE
from reid.engine.step import (
    LOGGED_LOSSES,
    EpochTally,
    TrainingDiverged,
    apply_gradients,
    fmt_losses,
    forward_losses,
    log_epoch,
    loss_vector,
)
from reid.models.aligned import ModelConfig, build_model
from reid.models.transfer import init_from_checkpoint, read_init_checkpoint
from reid.models.checkpoint import Checkpoint, load_checkpoint, obc_head_trained, save_checkpoint, unwrap_model

logger = logging.getLogger(__name__)

@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        run_dir: the run folder.
        last_checkpoint: runs/<name>/last.pt.
        best_checkpoint: runs/<name>/best.pt, or None when no validation ran.
        epochs_completed: epochs finished (those of earlier sessions of a resumed run included).
        global_step: optimiser steps taken in all.
        final_metrics: the last epoch's metrics.jsonl record (empty when no epoch finished).
        best_score: the best validation score (mean of clean and occluded mAP), or None.
        interrupted: stopped by Ctrl-C (last.pt holds the position inside the epoch).
        message: for an interrupted run, what happened and how to resume.
        model: the trained network (unwrapped from DDP, on the training device); on every
            rank identical parameters and buffers after a distributed run.
    """

    run_dir: Path
    last_checkpoint: Path
    best_checkpoint: Path | None
    epochs_completed: int
    global_step: int
    final_metrics: dict[str, Any] = field(default_factory=dict)
    best_score: float | None = None
    interrupted: bool = False
    message: str = ""
    model: nn.Module | None = field(default=None, repr=False, compare=False)


def validation_score(queries: dict[str, dict[str, float]]) -> float:
    """Mean of the clean mAP and of the mean mAP over occluded query sets (whichever exist).

    Args:
        queries: {"clean": {"mAP": ..}, "occluded:mean": {"mAP": ..}, ...}.
    """
    clean = [v["mAP"] for k, v in queries.items() if k == "clean"]
    occluded = [v["mAP"] for k, v in queries.items() if k.startswith("occluded")]
    parts = [float(np.mean(group)) for group in (clean, occluded) if group]
    return float(np.mean(parts)) if parts else float("nan")


def _validate(model: nn.Module, config: TrainConfig, store: StoreInfo, device: torch.device, amp: AmpSettings) -> dict[str, Any]:
    from reid.engine.evaluator import evaluate_model

    report = evaluate_model(
        unwrap_model(model), config.data, queries=config.eval_queries, device=device,
        input_size=config.input_size, amp=amp.enabled, workers=config.workers, store=store,
    )
    queries = {row.name: {"R1": row.r1, "mAP": row.mAP} for row in report.rows}
    return {"queries": queries, "score": validation_score(queries)}


# ------------------------------------------------------------------------ train


StepHook = Callable[[int, int, int], None]


def _prepare_on_main(config: TrainConfig, info: D.DistInfo, lock: FolderLock) -> None:
    """Run-folder checks (and its lock) on rank 0, the verdict shared so every rank fails the same way."""
    error: BadInputError | None = None
    if info.is_main:
        try:
            prepare_run_dir(config, lock)
        except BadInputError as exc:
            error = exc
    shared = D.broadcast_object(error, info)  # the error itself: a FolderBusy stays one (reid study waits on it)
    if isinstance(shared, BadInputError):
        raise shared


def _load_resume(config: TrainConfig, model_config: ModelConfig, store: StoreInfo) -> Checkpoint:
    path = Path(config.out) / LAST_CHECKPOINT
    checkpoint = load_checkpoint(path, map_location="cpu")
    recorded = checkpoint.extra.get("config")
    if not isinstance(recorded, dict):
        raise BadInputError(f"{path}: records no training configuration; start a new run with --force")
    diffs = config_differences(config, recorded)
    if checkpoint.config != model_config:
        diffs.append(f"model: {checkpoint.config.to_dict()} -> {model_config.to_dict()}")
    if diffs:
        raise BadInputError(
            f"{config.out}: --resume with a different configuration ({'; '.join(diffs)}); "
            "use the options of the original run (only --epochs, --eval-every, --eval-queries, --workers, --device "
            "and the data file's path may change) "
            "or start a new run with --force or another --out"
        )
    if checkpoint.dataset_fingerprint != store.fingerprint:
        raise BadInputError(
            f"{config.data}: fingerprint {store.fingerprint[:12]} differs from the {checkpoint.dataset_fingerprint[:12]} "
            f"the run in {config.out} was trained on; resume with the original data file"
        )
    if checkpoint.optimizer_state is None:
        raise BadInputError(f"{path}: holds no optimizer state, so it cannot be resumed; start over with --force")
    return checkpoint


def _resume_hint(config: TrainConfig) -> str:
    return f"reid train --resume --out {config.out} (with the same options)"


def train(config: TrainConfig, step_hook: StepHook | None = None) -> TrainResult:
    """Train (or resume) one run; see the module docstring for the behaviour.

    Works unchanged under ``torchrun`` (DistributedDataParallel; only rank 0 writes).

    Args:
        config: the run.
        step_hook: called after every optimiser step as ``hook(global_step, epoch,
            step_in_epoch)`` (0-based epoch, 1-based steps); tests use it to simulate Ctrl-C.

    Raises:
        BadInputError: data file not ours or without a train split, P larger than the number
            of identities, a run folder holding another run, a resume with another config.
        TrainingDiverged: a NaN or infinite loss (a BadInputError subclass).
    """
    device = resolve_device(config.device)
    info = D.init_distributed(device)
    try:
        return _train(config, D.process_device(device, info), info, step_hook)
    finally:
        D.cleanup_distributed(info)


def _train(config: TrainConfig, device: torch.device, info: D.DistInfo, step_hook: StepHook | None) -> TrainResult:
    # Rank 0 writes the run folder, so it alone locks it (from its checks to the run's end).
    lock = run_folder_lock(config.out)
    try:
        return _Run(config, device, info, step_hook, lock).run()
    finally:
        lock.release()


class _Run:
    """One training session of one process: set-up, the epoch loop, checkpoints, Ctrl-C.

    Position bookkeeping: ``epoch`` is the 0-based epoch in progress (or the next one) and
    ``step_in_epoch`` the number of its steps already applied to the weights; a checkpoint
    records both, and a resume skips those steps of that epoch.
    """

    def __init__(self, config: TrainConfig, device: torch.device, info: D.DistInfo, step_hook: StepHook | None,
                 lock: FolderLock) -> None:
        self.config, self.device, self.info, self.step_hook = config, device, info, step_hook
        self.run_dir = Path(config.out)
        self.last_path = self.run_dir / LAST_CHECKPOINT
        self.best_path = self.run_dir / BEST_CHECKPOINT

        self.store = read_store(config.data)  # BadInputError: missing, not ours, no train split, damaged
        labels = self.store.splits["train"].label
        if labels is None or len(labels) == 0:
            raise BadInputError(f"{config.data}: has no train split (a test-only benchmark such as Occluded-REID, "
                                f"source {self.store.source}); train on another file (e.g. Market-1501) and "
                                f"evaluate here with `reid eval --data {config.data} --checkpoint RUN/last.pt`")
        if config.eval_every > 0:
            from reid.engine.queries import expand_queries

            try:  # a bad query set fails before training, not after the first epochs
                expand_queries(config.eval_queries, self.store)
            except BadInputError as exc:
                raise BadInputError(f"--eval-queries {','.join(config.eval_queries)}: {exc}") from exc
        # The loader checks the batch shape against the data (P identities, occluder types) and
        # writes nothing: build it first so that a bad option leaves no run folder behind.
        self.loader = build_train_loader(
            config.data, config.train_on, config.batch_p, config.batch_k, config.transform_config,
            workers=config.workers, seed=config.seed, rank=info.rank, world_size=info.world_size,
            occluder_types=config.train_occluders,
            occlusion_p=config.occlusion_p, occlusion_ramp_epochs=config.occlusion_ramp_epochs,
        )
        self.model_config = ModelConfig(num_classes=int(labels.max()) + 1, arch=config.arch, last_stride=config.last_stride,
                                        retrieval_feature=config.retrieval_feature, num_stripes=config.num_stripes,
                                        visibility_head=config.visibility_weight > 0)
        # A checkpoint to start from is read and checked before the run folder is touched.
        start = read_init_checkpoint(self.model_config, config.init_from) if config.init_from and not config.resume \
            else None
        _prepare_on_main(config, info, lock)
        self.steps_per_epoch = len(self.loader)
        if config.max_steps_per_epoch is not None:
            self.steps_per_epoch = min(self.steps_per_epoch, config.max_steps_per_epoch)
        self.loss_config = config.loss_config
        self.amp = resolve_amp(config.amp, device)
        checkpoint = _load_resume(config, self.model_config, self.store) if config.resume else None

        seed_everything(config.seed)  # the model initialisation
        from_file = checkpoint is not None or start is not None  # the backbone comes from a checkpoint
        model = build_model(self.model_config, pretrained=None if from_file else config.pretrained)
        if checkpoint is not None:
            model.load_state_dict(checkpoint.state_dict, strict=True)
        elif start is not None:
            init_from_checkpoint(model, start)
        if config.alpha == 1.0:
            model.obc_head.requires_grad_(False)
        # A frozen head is as trained as the checkpoint it came from (resumed or --init-from).
        source = checkpoint if checkpoint is not None else start
        self.obc_trained = config.alpha < 1 or (obc_head_trained(source.extra) if source is not None else False)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        # channels_last on the CPU too: oneDNN's fast layout, 1.59x a MobileNetV2 step at 256x128
        # and 1.21x a resnet18 step at 128x64 on one thread (benchmarks/bench_cpu_channels_last.py).
        model = model.to(device, memory_format=torch.channels_last)
        self.model = model
        self.optimizer = build_optimizer(model, config)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp.needs_scaler) if device.type == "cuda" else None
        self.ddp_model = D.wrap_model(model, device, info, find_unused_parameters=config.alpha == 0.0)

        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.best_score: float | None = None
        self.last_record: dict[str, Any] = {}
        self.pending_record: dict[str, Any] | None = None  # a finished epoch not yet in metrics.jsonl
        self.tally: EpochTally | None = None  # the epoch in progress (restored when resuming mid-epoch)
        if checkpoint is not None:
            self.optimizer.load_state_dict(checkpoint.optimizer_state)
            if self.scaler is not None and checkpoint.scaler_state:
                self.scaler.load_state_dict(checkpoint.scaler_state)
            if checkpoint.rng_state:
                set_rng_state(checkpoint.rng_state)
            extra = checkpoint.extra
            self.epoch, self.step_in_epoch = int(extra["epoch"]), int(extra.get("step_in_epoch", 0))
            self.global_step = int(extra.get("global_step", 0))
            if self.step_in_epoch > 0 and isinstance(extra.get("epoch_tally"), dict):
                self.tally = EpochTally.from_dict(extra["epoch_tally"])
            best = extra.get("best_score")
            self.best_score = float(best) if isinstance(best, (int, float)) else None
            recorded_world = int(extra.get("world_size", 1))
            if recorded_world != info.world_size and info.is_main:
                logger.warning("resuming a %d-process run with %d processes: the global batch changes",
                               recorded_world, info.world_size)
        self._write_start()

    # -------------------------------------------------------------------- files

    def _write_start(self) -> None:
        config, info = self.config, self.info
        if info.is_main:
            atomic_write_json(self.run_dir / CONFIG_FILE, {
                "train": config.to_dict(), "model": self.model_config.to_dict(),
                "dataset_fingerprint": self.store.fingerprint, "world_size": info.world_size,
                "package_version": __version__, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            })
            if config.resume:
                rewrite_metrics(self.run_dir / METRICS_FILE, self.epoch)
                self.last_record = next(iter(read_metrics(self.run_dir / METRICS_FILE)[-1:]), {})
                logger.info("resuming %s at epoch %d, step %d", self.run_dir, self.epoch + 1, self.step_in_epoch)
            per_process = config.batch_p * config.batch_k * (2 if config.train_on == "both" else 1)
            logger.info(
                "training %s on %s (train-on %s, %d classes): %d epochs x %d steps, %d images per step and process, "
                "%d process(es), device %s, amp %s -> %s",
                config.arch, config.data, config.train_on, self.model_config.num_classes, config.epochs,
                self.steps_per_epoch, per_process, info.world_size, self.device, self.amp.name, self.run_dir,
            )
        D.barrier(info)

    def _save(self, path: Path, with_optimizer: bool = True) -> None:
        """Checkpoint at the current position (rank 0 only)."""
        config = self.config
        extra = {
            "config": config.to_dict(), "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step, "input_size": list(config.input_size), "best_score": self.best_score,
            "world_size": self.info.world_size, "obc_head_trained": self.obc_trained,
            "metrics": {k: v for k, v in self.last_record.items() if isinstance(v, (int, float))},
        }
        if self.step_in_epoch > 0 and self.tally is not None:
            extra["epoch_tally"] = self.tally.to_dict()
        scaler_state = None
        if with_optimizer and self.scaler is not None and self.scaler.is_enabled():
            scaler_state = self.scaler.state_dict()
        save_checkpoint(
            path, self.model, self.model_config, self.store.fingerprint, extra=extra,
            optimizer_state=self.optimizer.state_dict() if with_optimizer else None,
            scheduler_state={"epoch": self.epoch, "lr": learning_rate(config, min(self.epoch, config.epochs - 1))},
            scaler_state=scaler_state, rng_state=rng_state(),
        )

    def _log_record(self, record: dict[str, Any]) -> None:
        append_metrics(self.run_dir / METRICS_FILE, record)
        plot_run_curves(self.run_dir / METRICS_FILE, self.run_dir / CURVES_FILE, title=self.run_dir.name,
                        obc=self.config.alpha < 1)

    # --------------------------------------------------------------------- loop

    def run(self) -> TrainResult:
        config, info = self.config, self.info
        if self.epoch >= config.epochs and info.is_main:
            logger.info("%s already trained %d epochs; raise --epochs to train further", self.run_dir, self.epoch)
        with InterruptGuard() as guard:
            try:
                while self.epoch < config.epochs:
                    record = self._run_epoch(guard)
                    self.epoch, self.step_in_epoch = self.epoch + 1, 0
                    self.pending_record = record
                    self._end_epoch(record)
                    self.pending_record = None
            except KeyboardInterrupt:
                return self._interrupted()
        D.broadcast_buffers(self.model, info)
        return self._result()

    def _result(self, interrupted: bool = False, message: str = "") -> TrainResult:
        return TrainResult(
            run_dir=self.run_dir, last_checkpoint=self.last_path,
            best_checkpoint=self.best_path if self.best_path.is_file() else None,
            epochs_completed=self.epoch, global_step=self.global_step, final_metrics=self.last_record,
            best_score=self.best_score, interrupted=interrupted, message=message, model=self.model,
        )

    def _end_epoch(self, record: dict[str, Any]) -> None:
        config, info = self.config, self.info
        if config.eval_every > 0 and (self.epoch % config.eval_every == 0 or self.epoch == config.epochs):
            # Plain BN under gloo keeps per-rank statistics: validate with rank 0's, as saved.
            D.broadcast_buffers(self.model, info)
            if info.is_main:
                record["val"] = _validate(self.model, config, self.store, self.device, self.amp)
            D.barrier(info)
        self.last_record = record
        if info.is_main:
            score = record.get("val", {}).get("score")
            improved = score is not None and math.isfinite(score) and (self.best_score is None or score > self.best_score)
            if improved:
                self.best_score = float(score)
            self._save(self.last_path)
            if improved:
                self._save(self.best_path, with_optimizer=False)
            self._log_record(record)
            self.pending_record = None
            log_epoch(record, config.epochs, improved, obc=config.alpha < 1, twin=config.twin_weight > 0)
        D.barrier(info)

    def _run_epoch(self, guard: InterruptGuard) -> dict[str, Any]:
        """Train epoch ``self.epoch`` from step ``self.step_in_epoch``; returns its metrics record."""
        from tqdm.auto import tqdm

        config, info, device = self.config, self.info, self.device
        epoch, skip = self.epoch, self.step_in_epoch
        self.loader.batch_sampler.set_epoch(epoch)
        seed_everything(epoch_seed(config.seed, epoch, info.rank))
        lr = learning_rate(config, epoch)
        set_lr(self.optimizer, lr)
        self.ddp_model.train()
        if skip == 0 or self.tally is None:
            self.tally = EpochTally.empty()
        tally = self.tally
        bar = tqdm(total=self.steps_per_epoch, initial=skip, desc=f"epoch {epoch + 1}/{config.epochs}",
                   disable=None if info.is_main else True, leave=False, dynamic_ncols=True)
        last, last_cpu = time.perf_counter(), time.process_time()
        batches = iter(self.loader)
        try:
            for index, batch in enumerate(itertools.islice(batches, self.steps_per_epoch)):
                if index < skip:  # a resumed epoch: these steps are already in the weights
                    last, last_cpu = time.perf_counter(), time.process_time()
                    continue
                batch = batch.to(device, non_blocking=True)
                inputs = batch.images.contiguous(memory_format=torch.channels_last)
                losses = forward_losses(self.ddp_model, inputs, batch.labels, batch.occluded, self.loss_config, self.amp,
                                        clean_index=batch.clean_index, boxes=batch.boxes, occ_type=batch.occ_type)
                # One small all-reduce: every rank logs the same means and stops on the same step.
                values = D.all_reduce_mean(loss_vector(losses), info).tolist()
                step = self.global_step + 1
                if not all(math.isfinite(v) for v in values):
                    raise TrainingDiverged(
                        f"{config.out}: training diverged at step {step} (epoch {epoch + 1}, batch {index + 1}): "
                        f"{fmt_losses(dict(zip(LOGGED_LOSSES, values)))}; lower --lr (now {lr:g}) or check the data "
                        f"({config.data}); "
                        + (f"the last good checkpoint is {self.last_path}" if self.last_path.is_file()
                           else "no checkpoint was written")
                    )
                with guard.critical():
                    apply_gradients(losses.total, self.optimizer, self.scaler)
                    self.global_step, self.step_in_epoch = step, index + 1
                    now, now_cpu = time.perf_counter(), time.process_time()
                    tally.add(values, len(batch) * info.world_size, now - last, now_cpu - last_cpu)
                    last, last_cpu = now, now_cpu
                bar.update(1)
                means = tally.means()
                bar.set_postfix_str(
                    f"loss {means[0]:.3f} tri {means[1]:.3f}/{means[2]:.3f} id {means[3]:.3f}"
                    + (f" obc {means[4]:.3f}" if config.alpha < 1 else ""),
                    refresh=False,
                )
                if self.step_hook is not None:
                    self.step_hook(self.global_step, epoch, self.step_in_epoch)
        finally:
            bar.close()
            del batches
        self.tally = None
        record: dict[str, Any] = {"epoch": epoch + 1, "step": self.global_step, "lr": lr,
                                  "images_per_s": tally.images / tally.seconds if tally.seconds > 0 else 0.0,
                                  "seconds": tally.seconds, "cpu_seconds": tally.cpu_seconds}
        if tally.steps:
            record.update({name: float(v) for name, v in zip(LOGGED_LOSSES, tally.means())})
        return record

    def _interrupted(self) -> TrainResult:
        message = ""
        if self.info.is_main:
            if self.pending_record is not None:
                self._log_record(self.pending_record)  # the epoch finished; keep its losses
                self.pending_record = None
            self._save(self.last_path)
            where = (f"after epoch {self.epoch}" if self.step_in_epoch == 0
                     else f"in epoch {self.epoch + 1}/{self.config.epochs} after {self.step_in_epoch} step(s)")
            message = f"interrupted {where}; saved {self.last_path}; continue with: {_resume_hint(self.config)}"
            logger.warning(message)
        return self._result(interrupted=True, message=message)
