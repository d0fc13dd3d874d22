"""The trainer (reid.engine.trainer): schedule, optimisation, alpha = 1, resume, Ctrl-C, NaN, run folder.

Every training run here is tiny: resnet18 at 64x32, P=2 x K=2 pairs (8 images), 2 steps per
epoch, random init, no workers, no validation.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from common.errors import BadInputError
from reid.data.loaders import build_train_loader
from reid.data.transforms import TransformConfig
from reid.engine import step as S
from reid.engine import trainer as T
from reid.engine.trainer import (
    InterruptGuard,
    TrainConfig,
    TrainingDiverged,
    apply_gradients,
    config_differences,
    forward_losses,
    learning_rate,
    prepare_run_dir,
    rng_state,
    seed_everything,
    set_rng_state,
    train,
    validation_score,
)
from reid.losses import LossConfig
from reid.models import ModelConfig, build_model, load_checkpoint

TINY = dict(
    arch="resnet18", pretrained=None, batch_p=2, batch_k=2, input_size=(64, 32), workers=0, eval_every=0,
    epochs=2, max_steps_per_epoch=2, seed=3,
    # Warm-up makes the two epochs' learning rates differ, so a resume must restore the schedule.
    warmup_epochs=1, warmup_factor=0.5,
)


def _config(store: Path, out: Path, **overrides) -> TrainConfig:
    return TrainConfig(data=str(store), out=str(out), **{**TINY, **overrides})


def _assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k].cpu(), b[k].cpu())]
    assert not different, f"tensors differ: {different[:5]}"


@pytest.fixture(scope="module")
def uninterrupted(tiny_store: Path, tmp_path_factory: pytest.TempPathFactory) -> T.TrainResult:
    """2 epochs x 2 steps in one go: the reference for resume and Ctrl-C."""
    return train(_config(tiny_store, tmp_path_factory.mktemp("runs") / "full"))


# ----------------------------------------------------------------------- pure parts


def test_learning_rate_warmup_then_steps() -> None:
    cfg = TrainConfig(lr=1.0, warmup_epochs=2, warmup_factor=0.1, schedule="step", milestones=(3, 5), gamma=0.1)
    got = [learning_rate(cfg, e) for e in range(7)]
    # warm-up: 0.1 + 0.9 * e / 2; then 1; x0.1 from epoch 3; x0.01 from epoch 5
    assert got == pytest.approx([0.1, 0.55, 1.0, 0.1, 0.1, 0.01, 0.01])


def test_learning_rate_cosine() -> None:
    cfg = TrainConfig(lr=2.0, epochs=5, warmup_epochs=1, warmup_factor=0.5, schedule="cosine")
    got = [learning_rate(cfg, e) for e in range(5)]
    expected = [1.0] + [2.0 * 0.5 * (1 + math.cos(math.pi * t / 4)) for t in range(4)]
    assert got == pytest.approx(expected)


def test_config_round_trip_and_differences() -> None:
    cfg = TrainConfig(data="a.h5", out="runs/x", input_size=(64, 32), milestones=[4, 8], eval_queries=["clean"],
                      train_on="both")
    data = json.loads(json.dumps(cfg.to_dict()))
    assert TrainConfig.from_dict(data) == cfg
    changed = dataclasses.replace(cfg, lr=1e-3, epochs=7, workers=0, device="cpu", alpha=0.5, out="elsewhere")
    # epochs / workers / device / out may change on resume; lr and alpha may not.
    assert [d.split(":")[0] for d in config_differences(changed, data)] == ["alpha", "lr"]
    with pytest.raises(BadInputError, match="unknown keys"):
        TrainConfig.from_dict({**data, "bogus": 1})
    # A key missing from an older record counts as its default value.
    older = {k: v for k, v in data.items() if k != "train_occluders"}
    assert config_differences(cfg, older) == []
    assert config_differences(dataclasses.replace(cfg, train_occluders=("mean",)), older) == [
        "train_occluders: [] -> ['mean']"
    ]


def test_config_differences_compares_weight_files_by_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--pretrained / --init-from spelled relative or absolute name one file: not a difference;
    another file, or a path against "imagenet", is."""
    (tmp_path / "w.pt").write_bytes(b"x")
    (tmp_path / "v.pt").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    recorded = TrainConfig(pretrained=str(tmp_path / "w.pt"), init_from=str(tmp_path / "w.pt")).to_dict()
    assert config_differences(TrainConfig(pretrained="w.pt", init_from="./w.pt"), recorded) == []
    assert [d.split(":")[0] for d in config_differences(TrainConfig(pretrained="v.pt", init_from="w.pt"), recorded)] == [
        "pretrained"]
    assert config_differences(TrainConfig(pretrained="imagenet"), TrainConfig(pretrained="imagenet").to_dict()) == []
    assert [d.split(":")[0] for d in config_differences(TrainConfig(), recorded)] == ["init_from", "pretrained"]


@pytest.mark.parametrize(
    "overrides, needle",
    [({"batch_p": 1}, "--batch-p 1"), ({"alpha": 1.5}, "--alpha 1.5"), ({"resume": True, "force": True}, "not both"),
     ({"train_on": "half"}, "--train-on"), ({"train_on": "clean", "train_occluders": ("mean",)}, "--train-occluders"),
     ({"train_on": "clean", "visibility_weight": 1.0}, "--visibility-weight 1: its targets")],
)
def test_config_rejects_bad_values(overrides: dict, needle: str) -> None:
    with pytest.raises(BadInputError, match=needle):
        TrainConfig(**overrides)


def test_validation_score_weighs_clean_and_occluded_equally() -> None:
    queries = {"clean": {"mAP": 0.8}, "occluded:mean": {"mAP": 0.2}, "occluded:black": {"mAP": 0.4}}
    assert validation_score(queries) == pytest.approx((0.8 + (0.2 + 0.4) / 2) / 2)
    assert validation_score({"clean": {"mAP": 0.5}}) == pytest.approx(0.5)


def test_rng_state_survives_weights_only_checkpoint() -> None:
    seed_everything(11)
    buffer = io.BytesIO()
    torch.save(rng_state(), buffer)
    expected = (torch.rand(3), np.random.rand(3), __import__("random").random())
    buffer.seek(0)
    set_rng_state(torch.load(buffer, weights_only=True))
    got = (torch.rand(3), np.random.rand(3), __import__("random").random())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1]) and got[2] == expected[2]


def test_interrupt_guard_defers_sigint_until_the_step_is_done() -> None:
    reached_end_of_step = False
    with InterruptGuard() as guard:
        with pytest.raises(KeyboardInterrupt):
            with guard.critical():
                os.kill(os.getpid(), signal.SIGINT)
                reached_end_of_step = True  # the signal must not cut the step short
        assert reached_end_of_step
        with pytest.raises(KeyboardInterrupt):  # outside a step it interrupts at once
            os.kill(os.getpid(), signal.SIGINT)


def test_run_folder_rules(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "last.pt").write_bytes(b"x")
    with pytest.raises(BadInputError, match=r"already holds a run; pass --resume to continue it or --force to start over"):
        prepare_run_dir(TrainConfig(out=str(run)))
    prepare_run_dir(TrainConfig(out=str(run), force=True))
    assert not (run / "config.json").exists() and not (run / "last.pt").exists()
    with pytest.raises(BadInputError, match="nothing to resume"):
        prepare_run_dir(TrainConfig(out=str(run), resume=True))
    (tmp_path / "file").write_text("")
    with pytest.raises(BadInputError, match="is a file"):
        prepare_run_dir(TrainConfig(out=str(tmp_path / "file")))


# ------------------------------------------------------------------------ training


def test_steps_on_a_fixed_batch_lower_the_loss(tiny_store: Path) -> None:
    loader = build_train_loader(tiny_store, "both", 3, 2, TransformConfig(size=(64, 32)), workers=0, seed=0)
    batch = next(iter(loader)).to("cpu")
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=6, arch="resnet18"), pretrained=None).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    config = LossConfig()
    first = float(forward_losses(model, batch.images, batch.labels, batch.occluded, config).total.detach())
    for _ in range(6):
        apply_gradients(forward_losses(model, batch.images, batch.labels, batch.occluded, config).total, optimizer)
    last = float(forward_losses(model, batch.images, batch.labels, batch.occluded, config).total.detach())
    assert last < 0.9 * first


def test_alpha_one_leaves_the_obc_head_untouched(tiny_store: Path, tmp_path: Path) -> None:
    config = _config(tiny_store, tmp_path / "a1", alpha=1.0, epochs=1)
    result = train(config)
    seed_everything(config.seed)  # the trainer initialises the network right after this seeding
    initial = build_model(ModelConfig(num_classes=6, arch="resnet18"), pretrained=None).state_dict()
    trained = result.model.state_dict()
    for key in ("obc_head.weight", "obc_head.bias"):
        assert torch.equal(trained[key], initial[key]), key
    for key in ("backbone.conv1.weight", "classifier.weight", "local_conv.weight"):
        assert not torch.equal(trained[key], initial[key]), key
    record = json.loads((tmp_path / "a1" / "metrics.jsonl").read_text().splitlines()[0])
    assert math.isfinite(record["obc"])  # still measured, only not trained


def test_resume_equals_uninterrupted(tiny_store: Path, tmp_path: Path, uninterrupted: T.TrainResult) -> None:
    out = tmp_path / "split"
    first = train(_config(tiny_store, out, epochs=1))
    assert first.epochs_completed == 1
    resumed = train(_config(tiny_store, out, epochs=2, resume=True))
    assert resumed.epochs_completed == 2 and resumed.global_step == uninterrupted.global_step == 4
    _assert_same_state(resumed.model.state_dict(), uninterrupted.model.state_dict())
    _assert_same_state(load_checkpoint(out / "last.pt").state_dict, load_checkpoint(uninterrupted.last_checkpoint).state_dict)
    epochs = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]


def test_ctrl_c_saves_mid_epoch_and_resume_matches(tiny_store: Path, tmp_path: Path, uninterrupted: T.TrainResult) -> None:
    out = tmp_path / "cc"

    def interrupt_after_step_3(global_step: int, epoch: int, step_in_epoch: int) -> None:
        if global_step == 3:
            raise KeyboardInterrupt

    stopped = train(_config(tiny_store, out), step_hook=interrupt_after_step_3)
    assert stopped.interrupted and "--resume" in stopped.message and str(out) in stopped.message
    extra = load_checkpoint(out / "last.pt").extra
    assert (extra["epoch"], extra["step_in_epoch"], extra["global_step"]) == (1, 1, 3)
    resumed = train(_config(tiny_store, out, resume=True))
    assert not resumed.interrupted and resumed.global_step == 4
    _assert_same_state(resumed.model.state_dict(), uninterrupted.model.state_dict())
    # The interrupted epoch's log covers both of its steps, the one before Ctrl-C included.
    losses = ("total", "triplet_global", "triplet_local", "id", "obc", "obc_acc", "violation_fraction")
    got = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    want = [json.loads(line) for line in (uninterrupted.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [[r[k] for k in losses] for r in got] == [[r[k] for k in losses] for r in want]


def test_nan_loss_stops_naming_the_step(tiny_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = S.compute_losses
    calls = []

    def poisoned(output, pids, occluded, config, **kwargs):
        losses = real(output, pids, occluded, config, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            return dataclasses.replace(losses, total=losses.total * float("nan"), obc=torch.tensor(float("inf")))
        return losses

    monkeypatch.setattr(S, "compute_losses", poisoned)
    with pytest.raises(TrainingDiverged, match=r"diverged at step 2 \(epoch 1, batch 2\): total=nan.*obc=inf"):
        train(_config(tiny_store, tmp_path / "nan", epochs=1))
    assert not (tmp_path / "nan" / "last.pt").exists()


def test_run_folder_contents(uninterrupted: T.TrainResult) -> None:
    run = uninterrupted.run_dir
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["epochs"] == 2 and config["model"]["num_classes"] == 6
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    for key in ("total", "triplet_global", "triplet_local", "id", "obc", "obc_acc", "violation_fraction", "lr", "images_per_s"):
        assert all(math.isfinite(r[key]) for r in lines), key
    assert [r["lr"] for r in lines] == pytest.approx([0.5 * 3.5e-4, 3.5e-4])
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    checkpoint = torch.load(run / "last.pt", weights_only=True)
    assert checkpoint["extra"]["input_size"] == [64, 32] and checkpoint["optimizer_state"] is not None
    assert uninterrupted.best_checkpoint is None  # no validation ran
