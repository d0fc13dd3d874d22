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

Several processes share a grid: each locks the cell it runs (:class:`common.folder_lock.FolderLock`
on the cell folder), so the same ``reid study`` command started in two shells (one core each)
trains different cells; a process that meets a cell another one is running does the other cells
first, then waits for that one and reuses its result (with ``--skip-busy``, stops without the
report instead, to get on with other work).

Grids share cells (table1's ``aligned-clean`` trains what the recipe grid's ``baseline`` does):
with ``--reuse-from REPORT`` a cell this study has not started takes the finished cell of
REPORT with the same training options, seed and training file (:func:`reused_result`) instead
of training it again; its ``result.json`` says so (``reused_from``) and so does the report.

Other test files (``--test-data``, repeatable): every cell's last checkpoint is also
evaluated on the query/gallery splits of each, e.g. a real occluded benchmark made with
``occsim generate --src Occluded_REID`` for the standard train-on-Market, test-on-Occluded-
REID protocol; the report adds their query sets as extra columns. A finished cell is
evaluated on a test file it has not seen yet without being trained again.

The report (tables, the recipe grid's reading, figures, report.md and results.json) is
:mod:`reid.study_report`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from common.atomic import atomic_write_json
from common.errors import BadInputError
from common.folder_lock import FolderBusy, FolderLock
from occsim.store import StoreInfo, read_store
from occsim.validation import carve_validation
from reid.engine.config import RESUME_MUTABLE, TrainConfig, config_differences
from reid.engine.runs import LAST_CHECKPOINT
from reid.study_config import RECIPE_CELLS, Cell, StudyConfig, this_project_cell, without_held_out
from reid.study_report import write_report

logger = logging.getLogger(__name__)

RESULT_FILE = "result.json"
#: The measures each evaluation of a cell records (attributes of a reid.engine.evaluator.QueryResult).
METRICS: tuple[str, ...] = ("r1", "r5", "r10", "mAP", "mINP")


@dataclass
class StudyReport:
    """What :func:`run_study` returns: where the report is and the tables it printed
    (``report_md`` and ``results_json`` None, ``tables`` empty, when cells were passed over)."""

    out: Path
    report_md: Path | None
    results_json: Path | None
    tables: str
    figures: list[Path] = field(default_factory=list)
    trained: int = 0
    reused: int = 0
    passed_over: int = 0


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


def cell_lock(folder: Path) -> FolderLock:
    """The lock a process holds on a cell folder while it trains, reuses or evaluates the cell."""
    return FolderLock(folder, "running this study cell", "run the study again once it has finished")


def run_cell(cell: Cell, seed: int, config: StudyConfig, train_data: Path, eval_files: dict[str, Path],
             wait: bool = False) -> tuple[dict[str, Any], bool]:
    """Train one cell (or reuse its finished result) and evaluate its last checkpoint.

    Args:
        train_data: the file the run trains on.
        eval_files: role ("test", "validation") -> file whose query/gallery splits it is evaluated on.
        wait: when another process runs the cell, wait for it (then reuse what it finished)
            instead of raising :class:`FolderBusy`.

    Returns:
        (result dict as written to result.json, True when it was trained now).

    Raises:
        FolderBusy: another process runs the cell and ``wait`` is False.
    """
    folder = cell_dir(config.out, cell, seed)
    folder.mkdir(parents=True, exist_ok=True)  # every way through writes here; made first, so it can be locked
    lock = cell_lock(folder)
    lock.acquire(wait=wait)
    try:
        return _run_cell(cell, seed, config, train_data, eval_files, folder)
    finally:
        lock.release()


def _run_cell(cell: Cell, seed: int, config: StudyConfig, train_data: Path, eval_files: dict[str, Path],
              folder: Path) -> tuple[dict[str, Any], bool]:
    from reid.engine.trainer import train

    result_path = folder / RESULT_FILE
    run_dir = folder / "run"
    resume = (run_dir / LAST_CHECKPOINT).is_file()
    train_config = cell.train_config(
        config.base, data=str(train_data), out=str(run_dir), seed=seed, eval_every=0, resume=resume, force=not resume,
    )
    result, finished_here = None, result_path.is_file()
    if finished_here:
        result = json.loads(result_path.read_text())
    elif not resume and config.reuse_from:
        result = reused_result(cell, seed, config.reuse_from, train_config, train_data)
        if result is not None:  # reused_result logged where it came from
            atomic_write_json(result_path, result)
    if result is not None:
        # What a resume may change, except the epochs: a finished cell's length is its recipe.
        changed = config_differences(train_config, result.get("train_config", {}), ignore=RESUME_MUTABLE - {"epochs"})
        if changed:  # reusing it would put another recipe's numbers in this report
            raise BadInputError(f"{folder}: this cell was trained with other options ({'; '.join(changed)}); "
                                f"pass a new --out, or delete {folder} to train it again")
        if finished_here:  # (a reused cell's source was logged by reused_result)
            logger.info("%s (seed %d): finished earlier, reusing %s", cell.label, seed, result_path)
        if evaluation_settings(result) != evaluation_settings(config):  # asked for other settings: evaluate again
            result = {**result, "evaluations": {}, **evaluation_settings(config)}
        missing = {role: path for role, path in eval_files.items() if role not in result["evaluations"]}
        if missing:  # a --test-data file added since (or other evaluation settings): evaluate, do not train
            logger.info("%s (seed %d): evaluating on %s", cell.label, seed, ", ".join(map(str, missing.values())))
            result["evaluations"].update(
                evaluate_checkpoint(Path(result["checkpoint"]), missing, config))
            atomic_write_json(result_path, result)
        return result, False
    logger.info("%s (seed %d): %s", cell.label, seed, "resuming" if resume else "training")
    trained = train(train_config)
    if trained.interrupted:
        raise KeyboardInterrupt(trained.message)
    evaluations = evaluate_checkpoint(trained.last_checkpoint, eval_files, config)
    result = {
        "cell": cell.name, "label": cell.label, "seed": seed, "alpha": cell.alpha, "train_on": cell.train_on,
        "train_occluders": list(cell.train_occluders), "train_data": str(train_data),
        "checkpoint": str(trained.last_checkpoint), "epochs": trained.epochs_completed,
        "train_config": train_config.to_dict(), **evaluation_settings(config),
        "train_metrics": trained.final_metrics, "evaluations": evaluations,
    }
    atomic_write_json(result_path, result)
    return result, True


def check_reuse_folders(config: StudyConfig) -> None:
    """Refuse a ``--reuse-from`` folder that is no study report (missing, or without ``cells/``)
    or that is this study's own ``--out``.

    Raises:
        BadInputError: naming the folder and what to pass instead.
    """
    for folder in config.reuse_from:
        if Path(folder).resolve() == Path(config.out).resolve():
            raise BadInputError(f"--reuse-from {folder}: is this study's own --out (its finished cells are "
                                "reused anyway); drop it or name another report folder")
        if not (Path(folder) / "cells").is_dir():
            raise BadInputError(f"--reuse-from {folder}: no study report there (no cells/ folder); "
                                "pass the --out folder of a `reid study` run")


def reused_result(cell: Cell, seed: int, folders: Sequence[Path], train_config: TrainConfig,
                  train_data: Path) -> dict[str, Any] | None:
    """The result of a finished cell of another report that trained what ``cell`` would, as
    ``cell``'s own; None when no folder has one.

    A candidate is any ``cells/*-seed<seed>/result.json`` of ``folders`` (in order) whose recorded
    training options match ``train_config`` as a finished cell of this study must (every option a
    resume may not change, the epochs included) and whose training file is ``train_data`` (same
    resolved path). One whose checkpoint is gone is skipped with a warning. The copy keeps the
    source's checkpoint, names ``cell``, records ``reused_from`` and keeps only the evaluation on
    the training file itself ("test", or "validation" for a cell trained on the validation
    file): the one file both studies surely share. :func:`run_cell` evaluates the others.

    Args:
        train_config: what this study would train ``cell`` with.
    """
    data = Path(train_data).resolve()
    role = "validation" if cell.on_validation else "test"  # the role run_study gives the training file
    for folder in folders:
        for source in sorted((Path(folder) / "cells").glob(f"*-seed{seed}/{RESULT_FILE}")):
            try:
                result = json.loads(source.read_text())
            except (OSError, ValueError):
                continue  # a half-written or foreign file: not a finished cell
            if (not isinstance(result, dict) or result.get("seed") != seed or "checkpoint" not in result
                    or Path(result.get("train_data", "")).resolve() != data
                    or config_differences(train_config, result.get("train_config", {}),
                                          ignore=RESUME_MUTABLE - {"epochs"})):
                continue
            if not Path(result["checkpoint"]).is_file():
                logger.warning("%s (seed %d): %s matches but its checkpoint %s is gone; not reusing it",
                               cell.label, seed, source, result["checkpoint"])
                continue
            evaluations = result.get("evaluations", {})
            source_role = "validation" if "validation" in evaluations else "test"  # its training file's role
            logger.info("%s (seed %d): reusing the finished cell %s", cell.label, seed, source)
            return {**result, "cell": cell.name, "label": cell.label, "reused_from": str(source),
                    "evaluations": {role: evaluations[role]} if source_role == role and role in evaluations else {}}
    return None


def evaluation_settings(source: StudyConfig | dict[str, Any]) -> dict[str, Any]:
    """How a cell's checkpoint is evaluated (distance, metric, flip), from the study's config or from a
    cell's result.json (written before the metric was a study option: Euclidean)."""
    if isinstance(source, StudyConfig):
        return {"distance": source.distance, "metric": source.metric, "flip": source.flip}
    return {"distance": source.get("distance", "global"), "metric": source.get("metric", "euclidean"),
            "flip": source.get("flip", False)}


def evaluate_checkpoint(checkpoint: Path, eval_files: dict[str, Path],
                        config: StudyConfig) -> dict[str, dict[str, Any]]:
    """Scores of ``checkpoint`` on each file's query sets ("all") against its clean gallery,
    at the checkpoint's input size, with the study's distance, metric, flip and device: role -> query
    set -> metrics, ``num_queries`` and ``cmc``."""
    from reid.engine.evaluator import evaluate_model
    from reid.models.inference import load_inference_model

    model, spec = load_inference_model(checkpoint, device="cpu")
    evaluations = {}
    for role, path in eval_files.items():
        report = evaluate_model(model, path, queries=("all",), gallery="clean", device=config.device,
                                input_size=spec.input_size, distance=config.distance, metric=config.metric,
                                flip=config.flip,
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


# --------------------------------------------------------------------------- the study


def run_study(config: StudyConfig) -> StudyReport:
    """Run (or resume) every cell of the grid and write report.md, results.json and figures."""
    store = read_store(config.data)
    focus = occluded_focus(store)
    cells = grid_cells(config, store)
    others = other_test_files(config.test_data, config.data)
    check_reuse_folders(config)
    config.out.mkdir(parents=True, exist_ok=True)
    eval_files: dict[str, Path] = {"test": config.data, **{role: path for role, (path, _) in others.items()}}
    validation_file = None
    if any(c.on_validation for c in cells):
        validation_file = config.out / "validation.h5"
        if not validation_file.is_file():
            carve_validation(config.data, validation_file, fraction=config.val_fraction, seed=config.base.seed,
                             option="--val-fraction")

    def inputs(cell: Cell) -> tuple[Path, dict[str, Path]]:
        """The cell's training file and evaluation files."""
        if cell.on_validation:
            assert validation_file is not None
            return validation_file, {**eval_files, "validation": validation_file}
        return config.data, eval_files

    outcome: dict[tuple[str, int], tuple[dict[str, Any], bool]] = {}
    busy: list[tuple[Cell, int]] = []  # cells another process runs: done last, once it lets go
    for cell in cells:
        for seed in config.seeds:
            try:
                outcome[cell.name, seed] = run_cell(cell, seed, config, *inputs(cell))
            except FolderBusy:
                logger.info("%s (seed %d): another process is running it; the other cells first", cell.label, seed)
                busy.append((cell, seed))
    if not config.skip_busy:
        for cell, seed in busy:
            logger.info("%s (seed %d): waiting for the other process running it", cell.label, seed)
            outcome[cell.name, seed] = run_cell(cell, seed, config, *inputs(cell), wait=True)
    trained = sum(was_trained for _, was_trained in outcome.values())
    reused = len(outcome) - trained
    if busy and config.skip_busy:  # no report: it needs those cells
        logger.info("%d cell run(s) passed over (another process runs them); run the study again for the report",
                    len(busy))
        return StudyReport(out=config.out, report_md=None, results_json=None, tables="", trained=trained,
                           reused=reused, passed_over=len(busy))
    results = {cell.name: [outcome[cell.name, seed][0] for seed in config.seeds] for cell in cells}

    report_md, results_json, table, figures = write_report(config, store, focus, cells, results, others)
    return StudyReport(out=config.out, report_md=report_md, results_json=results_json, tables=table,
                       figures=figures, trained=trained, reused=reused)
