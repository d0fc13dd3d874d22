"""The run-folder layout that ``reid train`` writes and ``reid eval`` reads.

One run = one folder ``runs/<name>/``::

    runs/<name>/config.json     the training configuration (JSON)
    runs/<name>/metrics.jsonl   one JSON object per epoch (with its validation, when it ran)
    runs/<name>/last.pt         the latest checkpoint (written atomically)
    runs/<name>/best.pt         the checkpoint with the best validation score
    runs/<name>/curves.png      training curves
    runs/<name>/eval.json       what ``reid eval`` writes by default (plus eval_cmc.png)

Both the trainer and the evaluator import these names, so the two cannot drift apart.
"""

from __future__ import annotations

import logging
from pathlib import Path

from common.errors import BadInputError

logger = logging.getLogger(__name__)

DEFAULT_RUNS_DIR = Path("runs")
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
CURVES_FILE = "curves.png"
EVAL_JSON = "eval.json"
EVAL_CMC_PNG = "eval_cmc.png"

# Preference order inside one run: the best validated weights, else the latest ones.
CHECKPOINT_PREFERENCE: tuple[str, ...] = (BEST_CHECKPOINT, LAST_CHECKPOINT)


def run_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint to evaluate in ``run_dir``: best.pt, else last.pt, else None."""
    for name in CHECKPOINT_PREFERENCE:
        candidate = run_dir / name
        if candidate.is_file():
            return candidate
    return None


def _run_mtime(run_dir: Path) -> float:
    """When the run last changed: the newest of its checkpoints (the folder's own mtime is
    not reliable, an atomic rename into it updates it but so does writing an eval.json)."""
    return max((run_dir / name).stat().st_mtime for name in CHECKPOINT_PREFERENCE if (run_dir / name).is_file())


def find_latest_checkpoint(runs_dir: Path = DEFAULT_RUNS_DIR) -> Path:
    """The checkpoint of the newest run under ``runs_dir`` (by checkpoint modification time).

    Within that run best.pt is preferred over last.pt.

    Raises:
        BadInputError: no run folder under ``runs_dir`` holds a checkpoint.
    """
    runs_dir = Path(runs_dir)
    runs = []
    if runs_dir.is_dir():
        runs = [d for d in runs_dir.iterdir() if d.is_dir() and run_checkpoint(d) is not None]
    if not runs:
        raise BadInputError(
            f"no checkpoint under {runs_dir}/: train one with `reid train` or pass --checkpoint"
        )
    # Ties on mtime (coarse file systems) fall back to the name, so the choice is deterministic.
    newest = max(runs, key=lambda d: (_run_mtime(d), d.name))
    checkpoint = run_checkpoint(newest)
    assert checkpoint is not None
    return checkpoint


def resolve_checkpoint(path: str | Path | None, runs_dir: Path = DEFAULT_RUNS_DIR) -> Path:
    """The checkpoint file a ``--checkpoint`` value names, for every command that takes one.

    * None: the newest run's under ``runs_dir`` (:func:`find_latest_checkpoint`);
    * a run folder: its best.pt, else its last.pt (:func:`run_checkpoint`);
    * anything else: itself (the loader says when it is missing or not a checkpoint).

    When it chose (None or a folder), says in one log line which file it uses.

    Raises:
        BadInputError: no run under ``runs_dir``, or a folder without best.pt or last.pt.
    """
    if path is None:
        chosen = find_latest_checkpoint(runs_dir)
        logger.info("checkpoint: %s (the newest run under %s)", chosen, runs_dir)
        return chosen
    path = Path(path)
    if not path.is_dir():
        return path
    chosen = run_checkpoint(path)
    if chosen is None:
        raise BadInputError(f"{path}: a folder without {BEST_CHECKPOINT} or {LAST_CHECKPOINT}; give a run folder "
                            f"that `reid train` wrote, or the checkpoint file itself")
    logger.info("checkpoint: %s (%s of the run folder %s)", chosen, chosen.name, path)
    return chosen
