"""The training-curves PNG of a run: losses per epoch and validation R1 / mAP.

Reads the records the trainer appends to ``metrics.jsonl`` (one JSON object per epoch, see
:mod:`reid.engine.trainer`) and draws, with matplotlib's Agg backend (no display needed):

* left: every loss per epoch (total, triplet_global, triplet_local, id, obc);
* middle: OBC accuracy and the fraction of margin-violating triplets (the OBC curves only
  where the head trains: alpha < 1);
* right: validation R1 and mAP per query set, at the epochs that were validated.

The file is written to a temporary name and renamed, so a reader never sees half a PNG.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Sequence

from common.atomic import atomic_write_bytes

LOSS_KEYS: tuple[str, ...] = ("total", "triplet_global", "triplet_local", "id", "obc")
RATE_KEYS: tuple[str, ...] = ("obc_acc", "violation_fraction")


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The JSON records of a metrics.jsonl file (blank or damaged lines are skipped)."""
    records = []
    path = Path(path)
    if not path.is_file():
        return records
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a crash must not stop the plot
        if isinstance(record, dict):
            records.append(record)
    return records


def _series(records: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for record in records:
        value = record.get(key)
        if isinstance(value, (int, float)) and "epoch" in record:
            xs.append(int(record["epoch"]))
            ys.append(float(value))
    return xs, ys


def _val_series(records: Iterable[dict[str, Any]]) -> dict[str, tuple[list[int], list[float]]]:
    """{"clean R1": (epochs, values), "clean mAP": ..., ...} from the records' "val" entries."""
    out: dict[str, tuple[list[int], list[float]]] = {}
    for record in records:
        val = record.get("val")
        if not isinstance(val, dict) or "epoch" not in record:
            continue
        for name, scores in val.get("queries", {}).items():
            for measure in ("R1", "mAP"):
                if isinstance(scores, dict) and isinstance(scores.get(measure), (int, float)):
                    xs, ys = out.setdefault(f"{name} {measure}", ([], []))
                    xs.append(int(record["epoch"]))
                    ys.append(100.0 * float(scores[measure]))
    return out


def plot_curves(records: Sequence[dict[str, Any]], out_path: str | Path, title: str = "", obc: bool = True) -> Path:
    """Draw the curves of ``records`` (metrics.jsonl objects) into ``out_path`` (PNG), atomically;
    ``obc`` False (alpha = 1: the OBC head never trains) leaves its loss and accuracy out."""
    import io

    # A bare Figure draws with Agg (no display needed) without touching pyplot's global backend.
    from matplotlib.figure import Figure

    out_path = Path(out_path)
    fig = Figure(figsize=(15, 4.2))
    axes = fig.subplots(1, 3)
    ax_loss, ax_rate, ax_val = axes
    skipped = () if obc else ("obc", "obc_acc")
    for key in (k for k in LOSS_KEYS if k not in skipped):
        xs, ys = _series(records, key)
        if xs:
            ax_loss.plot(xs, ys, marker="o", markersize=3, label=key)
    ax_loss.set_title("losses")
    for key in (k for k in RATE_KEYS if k not in skipped):
        xs, ys = _series(records, key)
        if xs:
            ax_rate.plot(xs, ys, marker="o", markersize=3, label=key)
    ax_rate.set_title("OBC accuracy / violating triplets" if obc else "violating triplets")
    ax_rate.set_ylim(-0.02, 1.02)
    val = _val_series(records)
    for name, (xs, ys) in val.items():
        ax_val.plot(xs, ys, marker="o", markersize=3, linestyle="--" if name.endswith("mAP") else "-", label=name)
    ax_val.set_title("validation (%)" if val else "validation (none yet)")
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=100, format="png")
    atomic_write_bytes(out_path, buffer.getvalue(), "training curves")
    return out_path


def plot_run_curves(metrics_path: str | Path, out_path: str | Path, title: str = "", obc: bool = True) -> Path:
    """Read ``metrics_path`` (metrics.jsonl) and draw ``out_path`` (curves.png); see :func:`plot_curves`."""
    return plot_curves(read_metrics(metrics_path), out_path, title, obc)


#: Cores of the reference machine: "minutes of 2-core training" = CPU seconds / 2 / 60.
REFERENCE_CORES = 2
#: What a learning curve draws (``reid curves --measure``): keys of a validated epoch's query-set scores.
MEASURES: tuple[str, ...] = ("mAP", "R1")


def budget_minutes(records: Sequence[dict[str, Any]], cores: int = REFERENCE_CORES) -> list[float]:
    """Cumulative training cost after each record, in minutes of ``cores``-core training.

    Uses the records' ``cpu_seconds`` (the trainer's CPU time over the training steps, which a
    busy machine hardly changes) and falls back to wall-clock ``seconds`` x ``cores`` for
    records written before ``cpu_seconds`` existed. Validation time is not counted.
    """
    total, out = 0.0, []
    for record in records:
        cpu = record.get("cpu_seconds")
        if not isinstance(cpu, (int, float)):
            cpu = float(record.get("seconds", 0.0)) * cores
        total += float(cpu)
        out.append(total / cores / 60.0)
    return out


def learning_curve(records: Sequence[dict[str, Any]], query: str = "clean", measure: str = MEASURES[0],
                   cores: int = REFERENCE_CORES) -> tuple[list[float], list[float]]:
    """(budget minutes, ``measure`` in %) at every validated epoch of one run."""
    minutes = budget_minutes(records, cores)
    xs, ys = [], []
    for record, x in zip(records, minutes):
        scores = record.get("val", {}).get("queries", {}).get(query) if isinstance(record.get("val"), dict) else None
        if isinstance(scores, dict) and isinstance(scores.get(measure), (int, float)):
            xs.append(x)
            ys.append(100.0 * float(scores[measure]))
    return xs, ys


def plot_learning_curves(runs: dict[str, Sequence[dict[str, Any]]], out_path: str | Path,
                         queries: Sequence[str] = ("clean",), measure: str = MEASURES[0], title: str = "",
                         overwrite: bool = True) -> Path:
    """Validation ``measure`` against minutes of 2-core training, one line per run and query set.

    Args:
        runs: label -> the run's metrics.jsonl records.
        queries: query sets to draw (solid for the first, dashed for the others).
        overwrite: replace an existing ``out_path`` (else refused, :func:`common.atomic.commit_file`).
    """
    import io

    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for index, (label, records) in enumerate(runs.items()):
        for q_index, query in enumerate(queries):
            xs, ys = learning_curve(records, query, measure)
            if xs:
                ax.plot(xs, ys, "-" if q_index == 0 else "--", marker="o", markersize=3, color=f"C{index}",
                        label=f"{label} — {query}")
    ax.set(xlabel=f"minutes of {REFERENCE_CORES}-core training (CPU time / {REFERENCE_CORES})",
           ylabel=f"validation {measure} (%)", title=title or f"{measure} against training budget")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=110, format="png")
    atomic_write_bytes(Path(out_path), buffer.getvalue(), "learning curve", overwrite=overwrite)
    return Path(out_path)


def run_metrics_path(run: str | Path) -> Path:
    """The metrics.jsonl of a run folder (a metrics.jsonl path is itself)."""
    run = Path(run)
    return run if run.suffix == ".jsonl" else run / "metrics.jsonl"


def load_run_records(run: str | Path) -> list[dict[str, Any]]:
    """The metrics.jsonl records of a run folder (or of a metrics.jsonl path).

    Raises:
        BadInputError: no metrics.jsonl, or one without any validated epoch.
    """
    from common.errors import BadInputError

    path = run_metrics_path(run)
    if not path.is_file():
        raise BadInputError(f"{path}: no such file; give a run folder written by `reid train`")
    records = read_metrics(path)
    if not any(isinstance(r.get("val"), dict) for r in records):
        raise BadInputError(f"{path}: no validated epoch; train with --eval-every N to draw a learning curve")
    return records
