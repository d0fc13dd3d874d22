"""The report of a study (:func:`reid.study.run_study`): the Markdown tables of each grid,
the paragraph read off the recipe grid's numbers, the figures (CMC curves, the alpha sweep,
Table 1's Grad-CAM sheets) and the report.md / results.json that hold them.

Everything here reads the cells' result dicts (one per cell and seed, as ``result.json``
holds them: ``evaluations[role][query set][measure]``) and writes nothing but the report.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from common.atomic import atomic_write_bytes, atomic_write_json
from occsim.store import StoreInfo
from reid.engine.trainer import validation_score as trainer_validation_score
from reid.study_config import SALIENCY_SHEET_ROWS, Cell, StudyConfig

# The paper's Table 1, CMC@10 in percent: (Market-1501, Occluded Market-1501).
PAPER_TABLE1: dict[str, tuple[float, float]] = {"aligned-clean": (95.61, 18.20), "aligned-obc": (77.40, 30.94)}
#: A study's cell results: cell name -> one result dict per seed.
Results = dict[str, list[dict[str, Any]]]


# --------------------------------------------------------------------------- numbers


def aggregate(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample std) of ``values``; std is 0 for a single value."""
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def fmt(values: Sequence[float]) -> str:
    """Percentages: "87.50" for one seed, "87.50 ± 1.20" for several."""
    mean, std = aggregate([100.0 * v for v in values])
    return f"{mean:.2f}" if len(values) == 1 else f"{mean:.2f} ± {std:.2f}"


def metric_values(results: list[dict[str, Any]], role: str, query: str, metric: str) -> list[float]:
    return [r["evaluations"][role][query][metric] for r in results]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- tables


def table1_markdown(cells: list[Cell], results: Results, focus: str) -> str:
    header = ["model", "train on", "α", "clean R1", "clean R10", "clean mAP",
              f"{focus} R1", f"{focus} R10", f"{focus} mAP", "paper CMC10 clean / occluded"]
    rows = []
    for cell in cells:
        runs = results[cell.name]
        paper = PAPER_TABLE1.get(cell.name)
        rows.append([
            cell.label, cell.train_on, f"{cell.alpha:g}",
            *(fmt(metric_values(runs, "test", "clean", m)) for m in ("r1", "r10", "mAP")),
            *(fmt(metric_values(runs, "test", focus, m)) for m in ("r1", "r10", "mAP")),
            f"{paper[0]:.2f} / {paper[1]:.2f}" if paper else "—",
        ])
    return markdown_table(header, rows)


def validation_score(result: dict[str, Any]) -> float:
    """Mean of clean and occluded mAP on the validation file: what the alpha grid selects on."""
    return trainer_validation_score(result["evaluations"]["validation"])


def alpha_markdown(cells: list[Cell], results: Results, focus: str) -> tuple[str, Cell]:
    scores = {c.name: aggregate([validation_score(r) for r in results[c.name]])[0] for c in cells}
    best = max(cells, key=lambda c: scores[c.name])
    header = ["α", "val score", "val clean mAP", f"val {focus} mAP", "test clean R1", "test clean mAP",
              f"test {focus} R1", f"test {focus} mAP", "selected"]
    rows = []
    for cell in cells:
        runs = results[cell.name]
        rows.append([
            f"{cell.alpha:g}", f"{100 * scores[cell.name]:.2f}",
            fmt(metric_values(runs, "validation", "clean", "mAP")), fmt(metric_values(runs, "validation", focus, "mAP")),
            fmt(metric_values(runs, "test", "clean", "r1")), fmt(metric_values(runs, "test", "clean", "mAP")),
            fmt(metric_values(runs, "test", focus, "r1")), fmt(metric_values(runs, "test", focus, "mAP")),
            "**yes**" if cell is best else "",
        ])
    return markdown_table(header, rows), best


def occluders_markdown(cells: list[Cell], results: Results, queries: list[str]) -> str:
    header = ["trained on \\ query", *queries]
    rows = []
    for cell in cells:
        runs = results[cell.name]
        rows.append([cell.train_occluders[0],
                     *(f"{fmt(metric_values(runs, 'test', q, 'r1'))} / {fmt(metric_values(runs, 'test', q, 'mAP'))}"
                       for q in queries)])
    return markdown_table(header, rows) + "\n\nEach entry: R1 / mAP (%)."


def recipe_markdown(cells: list[Cell], results: Results, queries: Sequence[str]) -> str:
    """One row per recipe cell: R1 / mAP / mINP on every query set (mean ± std over seeds)."""
    header = ["row", "train on", "α", "epochs"]
    for query in queries:
        header += [f"{query} R1", f"{query} mAP", f"{query} mINP"]
    rows = []
    for cell in cells:
        runs = results[cell.name]
        epochs = sorted({int(r.get("epochs", 0)) for r in runs})
        row = [cell.label, cell.train_on, f"{cell.alpha:g}", "/".join(map(str, epochs))]
        for query in queries:
            row += [fmt(metric_values(runs, "test", query, m)) for m in ("r1", "mAP", "mINP")]
        rows.append(row)
    return markdown_table(header, rows)


def other_tests_markdown(cells: list[Cell], results: Results,
                         roles: dict[str, tuple[Path, StoreInfo]]) -> str:
    """One row per cell, one column per (other file, query set): R1 / mAP (%)."""
    columns = [(role, query) for role in roles for query in results[cells[0].name][0]["evaluations"][role]]
    header = ["model", *(f"{role.split(':', 1)[1]} {query}" for role, query in columns)]
    rows = [[cell.label, *(f"{fmt(metric_values(results[cell.name], role, q, 'r1'))} / "
                           f"{fmt(metric_values(results[cell.name], role, q, 'mAP'))}" for role, q in columns)]
            for cell in cells]
    sources = "; ".join(f"`{role.split(':', 1)[1]}` = `{path}` (source {store.source}, fingerprint "
                        f"`{store.fingerprint[:12]}`{', test only' if not len(store.split('train')) else ''})"
                        for role, (path, store) in roles.items())
    return markdown_table(header, rows) + f"\n\nEach entry: R1 / mAP (%) against that file's clean gallery. {sources}."


def _mean_map(runs: list[dict[str, Any]], queries: Sequence[str]) -> float:
    """Mean over seeds of the mean mAP over ``queries``."""
    return aggregate([float(np.mean([r["evaluations"]["test"][q]["mAP"] for q in queries])) for r in runs])[0]


def recipe_reading(cells: list[Cell], results: Results, queries: Sequence[str],
                   focus: str) -> str:
    """A paragraph read off the numbers: each row against the clean-only baseline, the bars.

    The bars (the recipe issues' acceptance): clean mAP at least the baseline's minus one
    point, ``focus`` mAP at least twice the baseline's, and the mAP of every other occluded
    query set (black, random, the held-out pedestrian, ...) at least the baseline's.
    """
    by_name = {c.name: c for c in cells}
    if "baseline" not in by_name:
        return "No clean-only baseline in this grid, so no row is compared with it."
    occluded = [q for q in queries if q != "clean"]
    rest = [q for q in occluded if q != focus]  # the other occluded sets: each must hold the baseline
    base = results["baseline"]
    base_clean = _mean_map(base, ["clean"])
    base_focus = _mean_map(base, [focus])
    sentences = [f"The clean-only baseline reaches clean mAP {100 * base_clean:.2f} and {focus} mAP "
                 f"{100 * base_focus:.2f} (mean over {len(base)} seed(s))."]
    others = [c for c in cells if c.name != "baseline"]
    if not others:
        return " ".join(sentences)
    score = {c.name: 0.5 * (_mean_map(results[c.name], ["clean"]) + _mean_map(results[c.name], occluded or ["clean"]))
             for c in others}
    best = max(others, key=lambda c: score[c.name])
    passing = []
    for cell in others:
        clean = _mean_map(results[cell.name], ["clean"])
        occ = _mean_map(results[cell.name], [focus])
        others_hold = all(_mean_map(results[cell.name], [q]) >= _mean_map(base, [q]) for q in rest)
        if clean >= base_clean - 0.01 and occ >= 2 * base_focus and others_hold:
            passing.append(cell.label)
    clean_best = _mean_map(results[best.name], ["clean"])
    focus_best = _mean_map(results[best.name], [focus])
    ratio = f"{focus_best / base_focus:.2f}x" if base_focus > 0 else "n/a"
    sentences.append(
        f"Of the other rows, the best by the mean of clean and occluded mAP is **{best.label}**: clean mAP {100 * clean_best:.2f} "
        f"({100 * (clean_best - base_clean):+.2f} points against the baseline), {focus} mAP {100 * focus_best:.2f} "
        f"({ratio} the baseline's).")
    costs = [c.label for c in others if _mean_map(results[c.name], ["clean"]) < base_clean - 0.01]
    if costs:
        sentences.append(f"Rows that cost more than one point of clean mAP: {'; '.join(costs)}.")
    sentences.append(
        "Rows meeting every bar (clean mAP ≥ baseline − 1 point, " + focus + " mAP ≥ 2× baseline"
        + (f", {', '.join(rest)} mAP each ≥ baseline" if rest else "") + "): "
        + ("; ".join(passing) if passing else "none") + ".")
    if len(base) < 2:
        sentences.append("One seed: differences of a few points are within what another seed could move.")
    return " ".join(sentences)


# --------------------------------------------------------------------------- figures


def _save_png(fig: Any, png: Path) -> None:
    """Save a matplotlib Figure as PNG atomically."""
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=120, format="png")
    atomic_write_bytes(png, buffer.getvalue(), "figure")


def plot_cmc_curves(cells: list[Cell], results: Results, focus: str, png: Path) -> Path:
    """CMC curves of every cell (first seed): clean queries solid, occluded dashed."""
    from matplotlib.figure import Figure  # Agg, without touching pyplot's global backend

    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for index, cell in enumerate(cells):
        evaluation = results[cell.name][0]["evaluations"]["test"]
        colour = f"C{index}"
        for query, style in (("clean", "-"), (focus, "--")):
            cmc = 100 * np.asarray(evaluation[query]["cmc"])
            ax.plot(np.arange(1, len(cmc) + 1), cmc, style, color=colour, label=f"{cell.label} — {query}")
    ax.set(xlabel="rank", ylabel="matching rate (%)", title="CMC, test split, clean gallery", xlim=(1, 20), ylim=(0, 100))
    ax.set_xticks([1, 5, 10, 15, 20])  # ranks are whole numbers
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    _save_png(fig, png)
    return png


def plot_alpha_curve(cells: list[Cell], results: Results, focus: str, png: Path) -> Path:
    """mAP against alpha: validation score (selection) and test clean / occluded mAP (reference)."""
    from matplotlib.figure import Figure  # Agg, without touching pyplot's global backend

    ordered = sorted(cells, key=lambda c: c.alpha)
    alphas = [c.alpha for c in ordered]
    series = {
        "validation score": [aggregate([validation_score(r) for r in results[c.name]])[0] for c in ordered],
        "test clean mAP": [aggregate(metric_values(results[c.name], "test", "clean", "mAP"))[0] for c in ordered],
        f"test {focus} mAP": [aggregate(metric_values(results[c.name], "test", focus, "mAP"))[0] for c in ordered],
    }
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for name, values in series.items():
        ax.plot(alphas, [100 * v for v in values], "o-", label=name)
    ax.set(xlabel="α (1 = no OBC loss)", ylabel="mAP (%)", title="α sweep")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save_png(fig, png)
    return png


def draw_table1_saliency(config: StudyConfig, cells: list[Cell], results: Results,
                         focus: str, drawn: int = SALIENCY_SHEET_ROWS) -> tuple[list[Path], str]:
    """Grad-CAM of every Table-1 model (first seed) on the same ``config.saliency_queries``
    occluded queries: the share inside the box over all of them, the sheet of the first ``drawn``.

    Returns:
        (the contact sheet PNG in a list, the box-mass table as Markdown).
    """
    from reid.saliency import run_saliency

    checkpoints = [results[c.name][0]["checkpoint"] for c in cells]
    report = run_saliency(config.data, checkpoints, config.out / "saliency", names=[c.name for c in cells],
                          n=config.saliency_queries, seed=config.base.seed, occ_type=focus.split(":", 1)[1],
                          device=config.device, max_figures=drawn)
    chance = float(np.mean([image["area_share"] for image in report.summary["per_image"]]))
    rows = [[m["name"], "n/a" if m["mean_box_mass"] is None else f"{100 * m['mean_box_mass']:.1f}",
             "n/a" if m["lift"] is None else f"{m['lift']:.2f}"] for m in report.summary["models"]]
    table = markdown_table(["model", "saliency mass inside the box (%)", "lift over the box's area share"], rows)
    table += f"\n\nChance level (the box's share of the image): {100 * chance:.1f} %, over {len(report.summary['per_image'])} occluded queries."
    return [report.figures[-1]], table


# --------------------------------------------------------------------------- the report


def reused_note(results: Results) -> str:
    """"Cells reused from other reports: `a-seed0` ← `x/cells/b-seed0`." for the cells taken from
    another report (``--reuse-from``); "" when none was."""
    pairs = [f"`{r['cell']}-seed{r['seed']}` ← `{Path(r['reused_from']).parent}`"
             for runs in results.values() for r in runs if r.get("reused_from")]
    return f"Cells reused from other reports: {'; '.join(pairs)}." if pairs else ""


def write_report(config: StudyConfig, store: StoreInfo, focus: str, cells: list[Cell], results: Results,
                 others: dict[str, tuple[Path, StoreInfo]]) -> tuple[Path, Path, str, list[Path]]:
    """Write report.md, results.json and the figures of a finished grid into ``config.out``.

    Args:
        store: the study's ``--data`` file; focus: the occluded query set Table 1 reports.
        results: every cell's results; others: the ``--test-data`` files by role.

    Returns:
        (report.md, results.json, the grid's table as Markdown, the figures).
    """
    figures = [plot_cmc_curves(cells, results, focus, config.out / "cmc.png")]
    sections = [f"# Study `{config.grid}`", "",
                f"Data: `{config.data}` (fingerprint `{store.fingerprint[:12]}`), seeds {list(config.seeds)}, "
                f"arch {config.base.arch}, input {config.base.input_size[0]}x{config.base.input_size[1]}, "
                f"{config.base.epochs} epochs, P×K = {config.base.batch_p}×{config.base.batch_k}. "
                f"Queries against the clean gallery, retrieval distance {config.distance} ({config.metric})"
                f"{', features averaged with the mirrored image' if config.flip else ''}; values in %.", ""]
    note = reused_note(results)
    if note:
        sections += [note, ""]
    if config.grid == "table1":
        table = table1_markdown(cells, results, focus)
        sections += ["## Table 1", "", table, "",
                     "The paper reports CMC@10 only (its Table 1); our R10 columns are the same measure.", ""]
    elif config.grid == "alpha":
        table, best = alpha_markdown(cells, results, focus)
        figures.append(plot_alpha_curve(cells, results, focus, config.out / "alpha.png"))
        sections += ["## α sweep", "", table, "",
                     f"Selected on the validation file carved from the training identities: **α = {best.alpha:g}**. "
                     "Test-split columns are for reference only.", ""]
    elif config.grid == "recipe":
        queries = ["clean", *(f"occluded:{t}" for t in store.split("query").occ_types_present())]
        table = recipe_markdown(cells, results, queries)
        sections += ["## Recipes", "", table, "",
                     "Every row gets the same compute: rows that train on clean + occluded pairs see two images "
                     "per sampled item and train half the epochs.", "",
                     "## Reading", "", recipe_reading(cells, results, queries, focus), ""]
    else:
        queries = ["clean", *(f"occluded:{t}" for t in store.split("query").occ_types_present())]
        table = occluders_markdown(cells, results, queries)
        sections += ["## Train × test occluder types", "", table, ""]
    if others:
        sections += ["## Other test files (cross-dataset)", "", other_tests_markdown(cells, results, others), ""]
    if config.grid == "table1" and config.saliency:
        sheets, mass_table = draw_table1_saliency(config, cells, results, focus)
        figures += sheets
        sections += ["## Where the models look (Grad-CAM on occluded queries)", "", mass_table, ""]
    sections += ["## Figures", ""] + [f"![{p.stem}]({p.relative_to(config.out)})" for p in figures] + [""]
    report_md = config.out / "report.md"
    results_json = config.out / "results.json"
    atomic_write_json(results_json, {"grid": config.grid, "data": str(config.data), "fingerprint": store.fingerprint,
                                      "focus": focus, "seeds": list(config.seeds), "base": config.base.to_dict(),
                                      "test_data": {role: {"path": str(path), "source": st.source,
                                                           "fingerprint": st.fingerprint}
                                                    for role, (path, st) in others.items()},
                                      "cells": results})
    atomic_write_bytes(report_md, "\n".join(sections).encode(), "study report")
    return report_md, results_json, table, figures
