"""`reid study`: the paper's experiments as named grids of training runs, into one report.

Grids (each cell = one training run, evaluated on clean and occluded queries against the
clean gallery with the one evaluation protocol in :mod:`reid.metrics.protocol`):

- ``table1``: the paper's Table 1 plus the row it leaves open --
  AlignedReID trained on clean images (alpha = 1, the paper's baseline),
  AlignedReID trained on clean + occluded images without OBC (alpha = 1, ``both``), and
  AlignedReID + OBC (alpha = 0.8, ``both``). The middle row separates the gain of the OBC
  loss from the gain of simply seeing occluded images. A fourth row, "this project", is
  the default recipe of ``reid train`` (the recipe grid's winner,
  :data:`reid.study_config.DEFAULT_RECIPE`).
- ``alpha``: a sweep over alpha (paper section 6.5). Selection happens on a validation file
  carved from the *training* identities (:func:`occsim.validation.carve_validation`); the
  test split is reported beside it for reference, never used to choose.
- ``occluders``: train on one occluder type, test on every type (paper section 6.4).

Every cell evaluates the *last* checkpoint of its run (training runs with ``eval_every=0``):
the trainer's best.pt is chosen on the query/gallery split, which is the test split here.

Runs resume: a cell whose ``result.json`` exists is not trained again, and a cell whose run
was interrupted continues from its last.pt.

Other test files (``--test-data``, repeatable): every cell's last checkpoint is also
evaluated on the query/gallery splits of each, e.g. a real occluded benchmark made with
``occsim generate --src Occluded_REID`` for the standard train-on-Market, test-on-Occluded-
REID protocol; the report adds their query sets as extra columns. A finished cell is
evaluated on a test file it has not seen yet without being trained again.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from common.atomic import atomic_write_bytes, atomic_write_json
from common.errors import BadInputError
from occsim.store import StoreInfo, read_store
from occsim.validation import carve_validation
from reid.engine.config import RESUME_MUTABLE, config_differences
from reid.engine.runs import LAST_CHECKPOINT
from reid.study_config import (  # noqa: F401 (public names)
    DEFAULT_ALPHAS,
    GRIDS,
    RECIPE_CELLS,
    Cell,
    StudyConfig,
    this_project_cell,
    without_held_out,
)
from reid.engine.trainer import validation_score as trainer_validation_score

logger = logging.getLogger(__name__)

# The paper's Table 1, CMC@10 in percent: (Market-1501, Occluded Market-1501).
PAPER_TABLE1: dict[str, tuple[float, float]] = {"aligned-clean": (95.61, 18.20), "aligned-obc": (77.40, 30.94)}
RESULT_FILE = "result.json"
METRICS: tuple[str, ...] = ("r1", "r5", "r10", "mAP", "mINP")


@dataclass
class StudyReport:
    """What :func:`run_study` returns: where the report is and the tables it printed."""

    out: Path
    report_md: Path
    results_json: Path
    tables: str
    figures: list[Path] = field(default_factory=list)
    trained: int = 0
    reused: int = 0


# --------------------------------------------------------------------------- the grids


def grid_cells(config: StudyConfig, store: StoreInfo) -> list[Cell]:
    """The cells of ``config.grid`` for the occluder types present in ``store`` (the table1,
    alpha and recipe grids never train on a held-out type: see :func:`without_held_out`)."""
    train_types = tuple(store.split("train").occ_types_present())
    if config.grid == "table1":
        cells = [
            Cell("aligned-clean", "AlignedReID (clean)", 1.0, "clean"),
            Cell("aligned-both", "AlignedReID + occluded data", 1.0, "both"),
            Cell("aligned-obc", "AlignedReID + OBC", 0.8, "both"),
            this_project_cell(),
        ]
        return [without_held_out(c, train_types) for c in cells]
    if config.grid == "alpha":
        return [without_held_out(Cell(f"alpha-{alpha:g}", f"alpha = {alpha:g}", alpha, "both", on_validation=True),
                                 train_types) for alpha in config.alphas]
    if config.grid == "recipe":
        return [without_held_out(c, train_types) for c in RECIPE_CELLS if not config.cells or c.name in config.cells]
    types = store.split("train").occ_types_present()
    if len(types) < 2:
        raise BadInputError(f"{store.path}: the occluders grid needs several occluder types in the train split, "
                            f"found {types or 'none'}; regenerate with `occsim generate --type mean,black,random`")
    return [Cell(f"train-{t}", f"trained on {t}", config.base.alpha, "both", train_occluders=(t,)) for t in types]


def occluded_focus(store: StoreInfo) -> str:
    """The occluded query set Table 1 reports: mean-colour (the paper's) when present."""
    types = store.split("query").occ_types_present()
    if not types:
        raise BadInputError(f"{store.path}: the query split has no occluded rows; regenerate with `occsim generate` "
                            "(its default occludes train and query)")
    return "occluded:mean" if "mean" in types else f"occluded:{types[0]}"


# --------------------------------------------------------------------------- running a cell


def cell_dir(out: Path, cell: Cell, seed: int) -> Path:
    return out / "cells" / f"{cell.name}-seed{seed}"


def run_cell(cell: Cell, seed: int, config: StudyConfig, train_data: Path, eval_files: dict[str, Path]) -> tuple[dict[str, Any], bool]:
    """Train one cell (or reuse its finished result) and evaluate its last checkpoint.

    Args:
        train_data: the file the run trains on.
        eval_files: role ("test", "validation") -> file whose query/gallery splits it is evaluated on.

    Returns:
        (result dict as written to result.json, True when it was trained now).
    """
    from reid.engine.trainer import train

    folder = cell_dir(config.out, cell, seed)
    result_path = folder / RESULT_FILE
    run_dir = folder / "run"
    resume = (run_dir / LAST_CHECKPOINT).is_file()
    train_config = cell.train_config(
        config.base, data=str(train_data), out=str(run_dir), seed=seed, eval_every=0, resume=resume, force=not resume,
    )
    if result_path.is_file():
        result = json.loads(result_path.read_text())
        # What a resume may change, except the epochs: a finished cell's length is its recipe.
        changed = config_differences(train_config, result.get("train_config", {}), ignore=RESUME_MUTABLE - {"epochs"})
        if changed:  # reusing it would put another recipe's numbers in this report
            raise BadInputError(f"{folder}: this cell was trained with other options ({'; '.join(changed)}); "
                                f"pass a new --out, or delete {folder} to train it again")
        logger.info("%s (seed %d): finished earlier, reusing %s", cell.label, seed, result_path)
        if (result.get("distance", "global"), result.get("flip", False)) != (config.distance, config.flip):
            # asked for another distance or flip setting: evaluate again
            result["evaluations"], result["distance"], result["flip"] = {}, config.distance, config.flip
        missing = {role: path for role, path in eval_files.items() if role not in result["evaluations"]}
        if missing:  # a --test-data file added since (or other evaluation settings): evaluate, do not train
            logger.info("%s (seed %d): evaluating on %s", cell.label, seed, ", ".join(map(str, missing.values())))
            result["evaluations"].update(
                evaluate_checkpoint(Path(result["checkpoint"]), missing, config.device, config.distance,
                                    config.flip))
            atomic_write_json(result_path, result)
        return result, False
    folder.mkdir(parents=True, exist_ok=True)
    logger.info("%s (seed %d): %s", cell.label, seed, "resuming" if resume else "training")
    trained = train(train_config)
    if trained.interrupted:
        raise KeyboardInterrupt(trained.message)
    evaluations = evaluate_checkpoint(trained.last_checkpoint, eval_files, config.device, config.distance,
                                      config.flip)
    result = {
        "cell": cell.name, "label": cell.label, "seed": seed, "alpha": cell.alpha, "train_on": cell.train_on,
        "train_occluders": list(cell.train_occluders), "train_data": str(train_data),
        "checkpoint": str(trained.last_checkpoint), "epochs": trained.epochs_completed,
        "train_config": train_config.to_dict(), "distance": config.distance, "flip": config.flip,
        "train_metrics": trained.final_metrics, "evaluations": evaluations,
    }
    atomic_write_json(result_path, result)
    return result, True


def evaluate_checkpoint(checkpoint: Path, eval_files: dict[str, Path], device: str,
                        distance: str = "global", flip: bool = False) -> dict[str, dict[str, Any]]:
    """Scores of ``checkpoint`` on each file's query sets ("all") against its clean gallery,
    at the checkpoint's input size, with ``distance`` (and mirror-averaged features with
    ``flip``): role -> query set -> metrics,
    ``num_queries`` and ``cmc``."""
    from reid.engine.evaluator import evaluate_model
    from reid.models.inference import load_inference_model

    model, spec = load_inference_model(checkpoint, device="cpu")
    evaluations = {}
    for role, path in eval_files.items():
        report = evaluate_model(model, path, queries=("all",), gallery="clean", device=device,
                                input_size=spec.input_size, distance=distance, flip=flip,
                                normalization=(spec.mean, spec.std))
        evaluations[role] = {row.name: {**{m: float(getattr(row, m)) for m in METRICS}, "num_queries": row.num_queries,
                                        "cmc": [float(v) for v in row.cmc]}
                             for row in report.rows}
    return evaluations


def other_test_files(paths: Sequence[Path], main: Path) -> dict[str, tuple[Path, StoreInfo]]:
    """Role name -> (file, its validated store) of each ``--test-data`` file.

    Roles are "test:<file stem>" ("test:occluded-reid"), numbered when two stems collide.

    Raises:
        BadInputError: a file that is missing or not a valid occluded-reid file, or given twice
            (or equal to ``--data``).
    """
    roles: dict[str, tuple[Path, StoreInfo]] = {}
    seen = {Path(main).resolve()}
    for path in paths:
        path = Path(path)
        if path.resolve() in seen:
            raise BadInputError(f"--test-data {path}: given twice or equal to --data; list each other file once")
        seen.add(path.resolve())
        store = read_store(path)
        role, n = f"test:{path.stem}", 2
        while role in roles:
            role, n = f"test:{path.stem}-{n}", n + 1
        roles[role] = (path, store)
    return roles


def other_tests_markdown(cells: list[Cell], results: dict[str, list[dict[str, Any]]],
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


# --------------------------------------------------------------------------- aggregation


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


def table1_markdown(cells: list[Cell], results: dict[str, list[dict[str, Any]]], focus: str) -> str:
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


def alpha_markdown(cells: list[Cell], results: dict[str, list[dict[str, Any]]], focus: str) -> tuple[str, Cell]:
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


def occluders_markdown(cells: list[Cell], results: dict[str, list[dict[str, Any]]], queries: list[str]) -> str:
    header = ["trained on \\ query", *queries]
    rows = []
    for cell in cells:
        runs = results[cell.name]
        rows.append([cell.train_occluders[0],
                     *(f"{fmt(metric_values(runs, 'test', q, 'r1'))} / {fmt(metric_values(runs, 'test', q, 'mAP'))}"
                       for q in queries)])
    return markdown_table(header, rows) + "\n\nEach entry: R1 / mAP (%)."


def recipe_markdown(cells: list[Cell], results: dict[str, list[dict[str, Any]]], queries: Sequence[str]) -> str:
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


def _mean_map(runs: list[dict[str, Any]], queries: Sequence[str]) -> float:
    """Mean over seeds of the mean mAP over ``queries``."""
    return aggregate([float(np.mean([r["evaluations"]["test"][q]["mAP"] for q in queries])) for r in runs])[0]


def recipe_reading(cells: list[Cell], results: dict[str, list[dict[str, Any]]], queries: Sequence[str],
                   focus: str) -> str:
    """A paragraph read off the numbers: each row against the clean-only baseline, the bars.

    The bars (the recipe issue's acceptance): clean mAP at least the baseline's minus one
    point, and ``focus`` mAP at least twice the baseline's.
    """
    by_name = {c.name: c for c in cells}
    if "baseline" not in by_name:
        return "No clean-only baseline in this grid, so no row is compared with it."
    occluded = [q for q in queries if q != "clean"]
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
        if clean >= base_clean - 0.01 and occ >= 2 * base_focus:
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
        "Rows meeting both bars (clean mAP ≥ baseline − 1 point and " + focus + " mAP ≥ 2× baseline): "
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


def plot_cmc_curves(cells: list[Cell], results: dict[str, list[dict[str, Any]]], focus: str, png: Path) -> Path:
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


def plot_alpha_curve(cells: list[Cell], results: dict[str, list[dict[str, Any]]], focus: str, png: Path) -> Path:
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


# --------------------------------------------------------------------------- the study


def run_study(config: StudyConfig) -> StudyReport:
    """Run (or resume) every cell of the grid and write report.md, results.json and figures."""
    store = read_store(config.data)
    focus = occluded_focus(store)
    cells = grid_cells(config, store)
    others = other_test_files(config.test_data, config.data)
    config.out.mkdir(parents=True, exist_ok=True)
    eval_files: dict[str, Path] = {"test": config.data, **{role: path for role, (path, _) in others.items()}}
    validation_file = None
    if any(c.on_validation for c in cells):
        validation_file = config.out / "validation.h5"
        if not validation_file.is_file():
            carve_validation(config.data, validation_file, fraction=config.val_fraction, seed=config.base.seed,
                             option="--val-fraction")
    results: dict[str, list[dict[str, Any]]] = {}
    trained = reused = 0
    for cell in cells:
        train_data = validation_file if cell.on_validation else config.data
        files = {**eval_files, "validation": validation_file} if cell.on_validation else eval_files
        results[cell.name] = []
        for seed in config.seeds:
            result, was_trained = run_cell(cell, seed, config, train_data, files)
            results[cell.name].append(result)
            trained += was_trained
            reused += not was_trained

    figures = [plot_cmc_curves(cells, results, focus, config.out / "cmc.png")]
    sections = [f"# Study `{config.grid}`", "",
                f"Data: `{config.data}` (fingerprint `{store.fingerprint[:12]}`), seeds {list(config.seeds)}, "
                f"arch {config.base.arch}, input {config.base.input_size[0]}x{config.base.input_size[1]}, "
                f"{config.base.epochs} epochs, P×K = {config.base.batch_p}×{config.base.batch_k}. "
                f"Queries against the clean gallery, retrieval distance {config.distance}"
                f"{', features averaged with the mirrored image' if config.flip else ''}; values in %.", ""]
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
                     f"Every row gets the same compute: rows that train on clean + occluded pairs see two images "
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
    return StudyReport(out=config.out, report_md=report_md, results_json=results_json, tables=table,
                       figures=figures, trained=trained, reused=reused)


def draw_table1_saliency(config: StudyConfig, cells: list[Cell], results: dict[str, list[dict[str, Any]]],
                         focus: str, n: int = 8) -> tuple[list[Path], str]:
    """Grad-CAM sheets of every Table-1 model (first seed) on the same occluded queries.

    Returns:
        (the contact sheet PNG in a list, the box-mass table as Markdown).
    """
    from reid.saliency import run_saliency

    checkpoints = [results[c.name][0]["checkpoint"] for c in cells]
    report = run_saliency(config.data, checkpoints, config.out / "saliency", names=[c.name for c in cells],
                          n=n, seed=config.base.seed, occ_type=focus.split(":", 1)[1], device=config.device)
    chance = float(np.mean([image["area_share"] for image in report.summary["per_image"]]))
    rows = [[m["name"], "n/a" if m["mean_box_mass"] is None else f"{100 * m['mean_box_mass']:.1f}",
             "n/a" if m["lift"] is None else f"{m['lift']:.2f}"] for m in report.summary["models"]]
    table = markdown_table(["model", "saliency mass inside the box (%)", "lift over the box's area share"], rows)
    table += f"\n\nChance level (the box's share of the image): {100 * chance:.1f} %, over {len(report.summary['per_image'])} occluded queries."
    return [report.figures[-1]], table
