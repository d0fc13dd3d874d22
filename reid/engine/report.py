"""Presenting an :class:`reid.engine.evaluator.EvalReport`: a text table, JSON, a CMC plot."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from common.atomic import atomic_write_bytes, check_output
from common.errors import BadInputError

if TYPE_CHECKING:  # evaluator imports torch; presenting a report does not need it
    from reid.engine.evaluator import EvalReport

COLUMNS: tuple[str, ...] = ("query set", "R1", "R5", "R10", "mAP", "mINP", "queries", "P(occ)")
#: The table's footnote for a checkpoint whose OBC head was not trained.
OBC_UNTRAINED_NOTE = "P(occ): not reported, the checkpoint's OBC head was not trained (alpha = 1)"


def _pct(value: float) -> str:
    return f"{100.0 * value:.2f}"


def format_table(report: "EvalReport") -> str:
    """One line per query set, columns aligned: query set, R1, R5, R10, mAP, mINP, queries, P(occ).

    Rates are percentages with two decimals; ``queries`` is the number of queries evaluated
    (those with at least one valid match); ``P(occ)`` the mean over the set's queries of the
    OBC head's occlusion probability, in percent ("-" when not extracted, or when the head was
    not trained: then a footnote, :data:`OBC_UNTRAINED_NOTE`, says so). A footnote lists query
    sets with skipped queries.
    """
    body = [
        (row.name, _pct(row.r1), _pct(row.r5), _pct(row.r10), _pct(row.mAP), _pct(row.mINP), str(row.num_queries),
         "-" if row.occ_prob_mean is None else _pct(row.occ_prob_mean))
        for row in report.rows
    ]
    widths = [max(len(COLUMNS[i]), *(len(line[i]) for line in body)) if body else len(COLUMNS[i]) for i in range(len(COLUMNS))]

    def fmt(cells: tuple[str, ...]) -> str:
        # The name column is left-aligned, numbers right-aligned so that decimals line up.
        parts = [cells[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(cells[1:], widths[1:])]
        return "  ".join(parts).rstrip()

    lines = [fmt(COLUMNS), "  ".join("-" * w for w in widths)]
    lines += [fmt(cells) for cells in body]
    skipped = [f"{row.name}: {row.num_skipped}" for row in report.rows if row.num_skipped]
    if skipped:
        lines.append("queries without a match in the gallery (skipped): " + ", ".join(skipped))
    if getattr(report, "obc_head_trained", None) is False:
        lines.append(OBC_UNTRAINED_NOTE)
    return "\n".join(lines)


def format_header(report: "EvalReport") -> str:
    """One line saying what was evaluated against what."""
    distance = report.distance if report.distance == "local" else f"{report.distance} ({report.metric})"
    weighting = {"on": ["visibility-weighted"], "both": ["with and without visibility weighting"]}
    extras = list(weighting.get(report.visibility, []))
    extras += [name for name, on in (("re-ranked", report.rerank), ("flip-averaged", report.flip)) if on]
    extra = f", {', '.join(extras)}" if extras else ""
    source = f"checkpoint: {report.checkpoint}; " if report.checkpoint else ""
    cross = (f"cross-dataset (trained on {(report.checkpoint_fingerprint or '(none)')[:12]}, "
             f"tested on {report.data_fingerprint[:12]}); " if getattr(report, "cross_dataset", False) else "")
    return f"{source}{cross}gallery: {report.gallery}; distance: {distance}{extra}"


def write_json(report: "EvalReport", path: str | os.PathLike, overwrite: bool = True) -> Path:
    """Write ``report.to_json()`` to ``path`` (atomically; without ``overwrite`` not over an
    existing file). Returns the path."""
    path = Path(path)
    if path.is_dir():
        raise BadInputError(f"{path}: is a folder; give a file name such as {path / 'eval.json'} to --out")
    atomic_write_bytes(path, (report.to_json() + "\n").encode(), "results", overwrite=overwrite)
    return path


def plot_cmc(report: "EvalReport", png_path: str | os.PathLike, overwrite: bool = True) -> Path:
    """CMC curves, one per query set, ranks 1..max_rank, saved as a PNG (matplotlib Agg)."""
    import io

    # A bare Figure draws with Agg without pyplot's global backend: the caller's stays as it is.
    from matplotlib.figure import Figure

    png_path = Path(png_path)
    fig = Figure(figsize=(6.4, 4.4), dpi=120)
    ax = fig.subplots()
    for row in report.rows:
        ranks = list(range(1, len(row.cmc) + 1))
        # Markers keep short curves (tiny galleries) and curves on the 100% line visible.
        ax.plot(ranks, [100.0 * v for v in row.cmc], label=f"{row.name} (R1 {_pct(row.r1)}%)",
                linewidth=1.5, marker="o" if len(ranks) <= 20 else None, markersize=3)
    ax.set_xlabel("rank")
    ax.set_ylabel("matching rate (%)")
    ax.set_ylim(0, 102)
    ax.set_xlim(1, max([len(r.cmc) for r in report.rows] + [2]))
    ax.set_title(f"CMC, {format_header(report)}", fontsize=8)
    ax.grid(True, alpha=0.3)
    if report.rows:
        ax.legend(loc="lower right", fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    atomic_write_bytes(png_path, buffer.getvalue(), "CMC plot", overwrite=overwrite)
    return png_path


def output_paths(json_path: str | os.PathLike) -> tuple[Path, Path]:
    """The JSON at ``json_path`` and the CMC plot next to it (``<stem>_cmc.png``)."""
    json_path = Path(json_path)
    return json_path, json_path.with_name(f"{json_path.stem}_cmc.png")


def check_outputs(json_path: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = (),
                  force: bool = False) -> tuple[Path, Path]:
    """Refuse, before any work, outputs that could not be written (a folder of either name, a
    folder that cannot be written), that exist (without ``force``) or that are one of the
    ``inputs`` (the data file, the checkpoint); see :func:`common.atomic.check_output`."""
    json_out, png_out = output_paths(json_path)
    inputs = tuple(inputs)
    return check_output(json_out, inputs, force, "results"), check_output(png_out, inputs, force, "CMC plot")


def write_outputs(report: "EvalReport", json_path: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = (),
                  force: bool = False) -> tuple[Path, Path]:
    """Write the JSON at ``json_path`` and the CMC plot next to it (``<stem>_cmc.png``); both are
    checked first (:func:`check_outputs`), so that a failure leaves neither half of the report.
    Without ``force`` neither is written over a file (another run's) that appeared meanwhile;
    the JSON is removed again when the plot cannot be written."""
    json_path, png_path = check_outputs(json_path, inputs, force)
    written = write_json(report, json_path, overwrite=force)
    try:
        return written, plot_cmc(report, png_path, overwrite=force)
    except BaseException:
        if not force:  # the JSON is this run's own: keep nothing half-written
            written.unlink(missing_ok=True)
        raise
