"""The run folder as the trainer writes it: checks before a run starts, and metrics.jsonl.

The layout (file names) is :mod:`reid.engine.runs`, shared with the evaluator.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from common.atomic import atomic_write_bytes, check_not_input
from common.errors import BadInputError
from common.folder_lock import FolderLock
from reid.engine.config import TrainConfig
from reid.engine.curves import read_metrics
from reid.engine.runs import (
    BEST_CHECKPOINT,
    CONFIG_FILE,
    CURVES_FILE,
    EVAL_CMC_PNG,
    EVAL_JSON,
    LAST_CHECKPOINT,
    METRICS_FILE,
)

logger = logging.getLogger(__name__)

#: Files of a run folder that ``force`` removes before starting over.
RUN_FILES: tuple[str, ...] = (
    CONFIG_FILE, METRICS_FILE, LAST_CHECKPOINT, BEST_CHECKPOINT, CURVES_FILE, EVAL_JSON, EVAL_CMC_PNG,
)


def holds_run(run_dir: Path) -> bool:
    return any((run_dir / name).exists() for name in (CONFIG_FILE, LAST_CHECKPOINT, METRICS_FILE))


def run_folder_lock(run_dir: str | Path) -> FolderLock:
    """The lock a training holds on its run folder (taken by :func:`prepare_run_dir`)."""
    return FolderLock(run_dir, "training into this run folder", "wait for it to finish or choose another --out")


def prepare_run_dir(config: TrainConfig, lock: FolderLock | None = None) -> None:
    """Check (and with ``force`` clear) the run folder. Writes nothing else.

    Args:
        lock: the run folder's lock (:func:`run_folder_lock`), taken before any check (so that
            ``force`` never clears the files of a run in progress) and kept by the caller.

    Raises:
        BadInputError: ``out`` is a file; it holds a run and neither --resume nor --force was
            given; --resume without a last.pt to resume from; one of the run's files (which
            --force removes and the run writes) is one of its inputs (--data, --pretrained,
            --init-from), with or without --force.
        FolderBusy: another process trains into the folder (holds ``lock``).
    """
    run_dir = Path(config.out)
    if run_dir.exists() and not run_dir.is_dir():
        raise BadInputError(f"{run_dir}: is a file, not a run folder; choose another --out")
    if lock is not None:
        lock.acquire()
    inputs = (config.data, config.pretrained, config.init_from)
    for name in RUN_FILES:
        check_not_input(run_dir / name, inputs, "run's files", "--out")
    if config.resume:
        if not (run_dir / LAST_CHECKPOINT).is_file():
            raise BadInputError(
                f"{run_dir}: nothing to resume (no {LAST_CHECKPOINT}); drop --resume to start a new run"
                + (" (add --force to replace what is there)" if holds_run(run_dir) else "")
            )
        return
    if holds_run(run_dir):
        if not config.force:
            raise BadInputError(f"{run_dir} already holds a run; pass --resume to continue it or --force to start over")
        for name in RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
        logger.info("--force: removed the previous run's files from %s", run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInputError(f"{run_dir}: cannot create the run folder ({exc.strerror or exc}); choose another --out") from exc
    if not os.access(run_dir, os.W_OK):
        raise BadInputError(f"{run_dir}: the run folder is not writable; choose another --out")
    if lock is not None:
        lock.acquire()  # a folder made just now


def rewrite_metrics(path: Path, keep_epochs: int) -> None:
    """Keep only the records of the first ``keep_epochs`` epochs (a resumed run redoes the rest)."""
    records = [r for r in read_metrics(path) if int(r.get("epoch", 0)) <= keep_epochs]
    atomic_write_bytes(path, "".join(json.dumps(record) + "\n" for record in records).encode(), "metrics")


def append_metrics(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
