"""`reid study`: grids, aggregation, the report, and resuming finished cells."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.reid_study import study_command
from common.errors import BadInputError
from occsim.store import read_store
from reid.engine.trainer import TrainConfig
from reid.study import grid_cells, occluded_focus
from reid.study_config import Cell, StudyConfig
from reid.study_report import aggregate, fmt, table1_markdown, validation_score
from tests.conftest import write_tiny_store

TINY_TRAINING = [
    "--arch", "resnet18", "--pretrained", "none", "--size", "32x16", "--epochs", "1", "--batch-p", "2",
    "--batch-k", "2", "--warmup-epochs", "0", "--workers", "0", "--device", "cpu", "--max-steps-per-epoch", "2",
]


def _base(data: Path) -> TrainConfig:
    return TrainConfig(data=str(data), arch="resnet18", pretrained=None, input_size=(32, 16), epochs=1, batch_p=2,
                       batch_k=2, warmup_epochs=0, workers=0, device="cpu", eval_every=0, max_steps_per_epoch=2)


def test_table1_grid_is_the_papers_rows_plus_the_open_question(tiny_store: Path, tmp_path: Path) -> None:
    cells = grid_cells(StudyConfig("table1", tiny_store, tmp_path, _base(tiny_store)), read_store(tiny_store))
    assert [(c.alpha, c.train_on) for c in cells[:3]] == [(1.0, "clean"), (1.0, "both"), (0.8, "both")]
    assert cells[3].name == "this-project"
    # The paper's rows never inherit Random Erasing from the base options; "this project" is the default recipe.
    base = dataclasses.replace(_base(tiny_store), random_erasing=True)
    assert [c.train_config(base).random_erasing for c in cells[:3]] == [False, False, False]


def test_the_default_training_recipe_is_the_recipe_grids_winner(tiny_store: Path) -> None:
    from reid.study_config import DEFAULT_RECIPE, recipe_cell, this_project_cell

    defaults = TrainConfig(data=str(tiny_store))
    # Applying the winning row to the defaults changes nothing: `reid train` with no options runs it.
    assert recipe_cell(DEFAULT_RECIPE).train_config(defaults) == defaults
    assert this_project_cell().train_config(defaults) == defaults
    # ... and it is not the paper's recipe nor the baseline.
    assert recipe_cell("baseline").train_config(defaults) != defaults
    assert recipe_cell("paper-obc").train_config(defaults) != defaults


def test_alpha_grid_trains_on_the_validation_split(tiny_store: Path, tmp_path: Path) -> None:
    config = StudyConfig("alpha", tiny_store, tmp_path, _base(tiny_store), alphas=(1.0, 0.5))
    cells = grid_cells(config, read_store(tiny_store))
    assert [c.alpha for c in cells] == [1.0, 0.5]
    assert all(c.on_validation for c in cells)


def test_occluders_grid_needs_several_types(tiny_store: Path, tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="--type mean,black,random"):
        grid_cells(StudyConfig("occluders", tiny_store, tmp_path, _base(tiny_store)), read_store(tiny_store))
    three = write_tiny_store(tmp_path / "three.h5", occ_types=("mean", "black", "random"))
    cells = grid_cells(StudyConfig("occluders", three, tmp_path, _base(three)), read_store(three))
    assert [c.train_occluders for c in cells] == [("mean",), ("black",), ("random",)]
    assert occluded_focus(read_store(three)) == "occluded:mean"


def test_aggregate_uses_the_sample_standard_deviation() -> None:
    mean, std = aggregate([0.5, 0.7, 0.9])
    assert mean == pytest.approx(0.7)
    assert std == pytest.approx(0.2)  # sqrt(((0.2)^2 + 0 + (0.2)^2) / 2)
    assert fmt([0.5]) == "50.00"
    assert fmt([0.5, 0.7]) == "60.00 ± 14.14"


def _fake_result(clean_r1: float, occ_r1: float) -> dict:
    row = lambda r1: {"r1": r1, "r5": r1, "r10": min(1.0, r1 + 0.1), "mAP": r1 / 2, "mINP": r1 / 4, "cmc": [r1]}  # noqa: E731
    return {"evaluations": {"test": {"clean": row(clean_r1), "occluded:mean": row(occ_r1)},
                            "validation": {"clean": row(clean_r1), "occluded:mean": row(occ_r1)}}}


def test_table1_markdown_puts_the_papers_cmc10_beside_ours() -> None:
    cells = [Cell("aligned-clean", "AlignedReID (clean)", 1.0, "clean"), Cell("aligned-obc", "AlignedReID + OBC", 0.8, "both")]
    results = {"aligned-clean": [_fake_result(0.9, 0.3)], "aligned-obc": [_fake_result(0.8, 0.5), _fake_result(0.6, 0.5)]}
    table = table1_markdown(cells, results, "occluded:mean").splitlines()
    assert table[2].split(" | ")[3:5] == ["90.00", "100.00"]  # clean R1, clean R10
    assert "95.61 / 18.20" in table[2] and "77.40 / 30.94" in table[3]
    assert "70.00 ± 14.14" in table[3]  # clean R1 over two seeds
    assert validation_score(_fake_result(0.8, 0.4)) == pytest.approx(0.5 * (0.4 + 0.2))


def test_study_end_to_end_then_a_rerun_reuses_finished_cells(tiny_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "study"
    args = ["alpha", "--data", str(tiny_store), "--out", str(out), "--alphas", "1,0.5", "--val-fraction", "0.34",
            *TINY_TRAINING]
    runner = CliRunner()
    first = runner.invoke(study_command, args, catch_exceptions=False)
    assert first.exit_code == 0, first.output
    assert "2 cell run(s) trained, 0 reused" in first.output
    results = json.loads((out / "results.json").read_text())
    assert set(results["cells"]) == {"alpha-1", "alpha-0.5"}
    cell = results["cells"]["alpha-0.5"][0]
    assert set(cell["evaluations"]) == {"test", "validation"}
    assert cell["evaluations"]["test"]["clean"]["num_queries"] == 8
    report = (out / "report.md").read_text()
    assert report.count("**yes**") == 1 and (out / "alpha.png").is_file() and (out / "cmc.png").is_file()
    stamp = (out / "cells" / "alpha-0.5-seed0" / "result.json").stat().st_mtime_ns

    second = runner.invoke(study_command, args, catch_exceptions=False)
    assert second.exit_code == 0, second.output
    assert "0 cell run(s) trained, 2 reused" in second.output
    assert (out / "cells" / "alpha-0.5-seed0" / "result.json").stat().st_mtime_ns == stamp
    assert json.loads((out / "results.json").read_text())["cells"] == results["cells"]

    # A finished cell is never reused under other training options: one line, exit 2, nothing touched.
    other = runner.invoke(study_command, [*args, "--lr", "0.01"])
    assert other.exit_code == 2
    assert "alpha-1-seed0" in other.output and "lr: 0.00035 -> 0.01" in other.output and "new --out" in other.output
    longer = runner.invoke(study_command, [*args, "--epochs", "2"])  # a finished cell's length is its recipe
    assert longer.exit_code == 2 and "epochs: 1 -> 2" in longer.output
    assert (out / "cells" / "alpha-0.5-seed0" / "result.json").stat().st_mtime_ns == stamp


def test_an_interrupted_cell_resumes_from_its_last_checkpoint(tiny_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "study"
    args = ["alpha", "--data", str(tiny_store), "--out", str(out), "--alphas", "0.8", "--val-fraction", "0.34",
            *TINY_TRAINING]
    runner = CliRunner()
    assert runner.invoke(study_command, args, catch_exceptions=False).exit_code == 0
    result_file = out / "cells" / "alpha-0.8-seed0" / "result.json"
    first = json.loads(result_file.read_text())
    result_file.unlink()  # as if the study had stopped after training, before evaluating
    again = runner.invoke(study_command, args, catch_exceptions=False)
    assert again.exit_code == 0, again.output
    assert "1 cell run(s) trained" in again.output
    second = json.loads(result_file.read_text())
    # Resumed with nothing left to train: the same weights, so the same scores.
    assert second["evaluations"] == first["evaluations"]


def test_study_bad_input_exits_2(tmp_path: Path) -> None:
    not_ours = tmp_path / "x.h5"
    not_ours.write_bytes(b"not hdf5")
    result = CliRunner().invoke(study_command, ["table1", "--data", str(not_ours), *TINY_TRAINING])
    assert result.exit_code == 2
    assert "x.h5" in result.output and len(result.output.strip().splitlines()) == 1
    bad_seeds = CliRunner().invoke(study_command, ["table1", "--data", str(not_ours), "--seeds", "a,b"])
    assert bad_seeds.exit_code == 2 and "--seeds" in bad_seeds.output


def test_recipe_cells_share_one_budget_and_set_what_they_name(tiny_store: Path, tmp_path: Path) -> None:
    from reid.study_config import RECIPE_CELLS

    base = TrainConfig(data=str(tiny_store), epochs=20, warmup_epochs=2, milestones=(10, 16))
    by_name = {c.name: c for c in RECIPE_CELLS}
    baseline = by_name["baseline"].train_config(base)
    assert (baseline.train_on, baseline.alpha, baseline.epochs) == ("clean", 1.0, 20)
    pairs = by_name["paper-obc"].train_config(base)
    # Two images per sampled item: half the epochs, warm-up and milestones scaled alike.
    assert (pairs.train_on, pairs.alpha, pairs.epochs, pairs.warmup_epochs, pairs.milestones) == (
        "both", 0.8, 10, 1, (5, 8))
    assert by_name["pairs-twin-free"].train_config(base).exclude_twin_positive
    assert by_name["pairs-clean-anchors"].train_config(base).clean_anchors_only
    ramp = by_name["augment-ramp"].train_config(base)
    assert (ramp.train_on, ramp.occlusion_p, ramp.occlusion_ramp_epochs, ramp.epochs) == ("augment", 0.5, 19, 20)
    assert by_name["augment-erasing"].train_config(base).random_erasing
    erasing = by_name["erasing"].train_config(base)
    assert (erasing.train_on, erasing.alpha, erasing.random_erasing, erasing.epochs) == ("clean", 1.0, True, 20)
    assert by_name["augment-visibility"].train_config(base).visibility_weight > 0
    assert not by_name["augment"].train_config(base).random_erasing
    # The no-OBC twins of the paper's pairs and of the augmentation: alpha 1, nothing else changed.
    for name, twin in (("pairs-no-obc", "paper-obc"), ("augment-no-obc", "augment")):
        plain, obc = by_name[name].train_config(base), by_name[twin].train_config(base)
        assert plain.alpha == 1.0 and obc.alpha == 0.8
        assert dataclasses.replace(plain, alpha=0.8) == obc
    subset = StudyConfig("recipe", tiny_store, tmp_path, base, cells=("baseline", "augment"))
    assert [c.name for c in grid_cells(subset, read_store(tiny_store))] == ["baseline", "augment"]
    with pytest.raises(BadInputError, match="--cells 'nope'"):
        StudyConfig("recipe", tiny_store, tmp_path, base, cells=("nope",))
    with pytest.raises(BadInputError, match="--cells: applies to the recipe grid only"):
        StudyConfig("table1", tiny_store, tmp_path, base, cells=("baseline",))


def test_recipe_reading_is_written_from_the_numbers() -> None:
    from reid.study_report import recipe_reading

    def run(clean: float, mean: float) -> dict:
        return {"evaluations": {"test": {"clean": {"mAP": clean}, "occluded:mean": {"mAP": mean}}}}

    cells = [Cell("baseline", "base", 1.0, "clean"), Cell("a", "recipe A", 0.8, "augment"),
             Cell("b", "recipe B", 0.8, "both")]
    results = {"baseline": [run(0.30, 0.05), run(0.32, 0.07)], "a": [run(0.305, 0.15), run(0.30, 0.13)],
               "b": [run(0.20, 0.20), run(0.22, 0.20)]}
    text = recipe_reading(cells, results, ["clean", "occluded:mean"], "occluded:mean")
    assert "clean mAP 31.00 and occluded:mean mAP 6.00" in text
    # Mean of clean and occluded mAP: A (0.3025 + 0.14) / 2 = 0.221 beats B (0.21 + 0.20) / 2 = 0.205.
    assert "the best by the mean of clean and occluded mAP is **recipe A**" in text
    assert "clean mAP 30.25 (-0.75 points" in text and "(2.33x the baseline's)" in text
    assert "cost more than one point of clean mAP: recipe B" in text
    assert "2× baseline): recipe A." in text


def test_recipe_reading_bars_hold_every_other_occluded_set() -> None:
    """A row that doubles the focus set but falls below the baseline on another occluded set
    (e.g. the held-out pedestrian) does not meet the bars."""
    from reid.study_report import recipe_reading

    def run(clean: float, mean: float, ped: float) -> dict:
        return {"evaluations": {"test": {"clean": {"mAP": clean}, "occluded:mean": {"mAP": mean},
                                         "occluded:pedestrian": {"mAP": ped}}}}

    cells = [Cell("baseline", "base", 1.0, "clean"), Cell("a", "recipe A", 1.0, "clean"),
             Cell("b", "recipe B", 1.0, "clean")]
    results = {"baseline": [run(0.50, 0.10, 0.30)], "a": [run(0.50, 0.25, 0.29)], "b": [run(0.495, 0.21, 0.30)]}
    text = recipe_reading(cells, results, ["clean", "occluded:mean", "occluded:pedestrian"], "occluded:mean")
    assert "occluded:pedestrian mAP each ≥ baseline): recipe B." in text


def test_recipe_study_end_to_end_writes_table_and_reading(tiny_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "recipe"
    args = ["recipe", "--data", str(tiny_store), "--out", str(out), "--cells", "baseline,augment", *TINY_TRAINING]
    result = CliRunner().invoke(study_command, args)
    assert result.exit_code == 0, result.output
    report = (out / "report.md").read_text()
    assert "## Recipes" in report and "## Reading" in report and "occlusion as augmentation p=0.5" in report
    cells = json.loads((out / "results.json").read_text())["cells"]
    assert cells["augment"][0]["train_config"]["train_on"] == "augment"
    assert cells["baseline"][0]["distance"] == "global"
    again = CliRunner().invoke(study_command, args)
    assert again.exit_code == 0 and "0 cell run(s) trained, 2 reused" in again.output


@pytest.mark.parametrize(("option", "setting", "value", "report_text"), [
    (["--flip"], "flip", True, "averaged with the mirrored image"),
    (["--metric", "cosine"], "metric", "cosine", "retrieval distance global (cosine)"),
])
def test_recipe_study_other_evaluation_settings_evaluate_finished_cells_again_without_training(
        tiny_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, option: list[str], setting: str,
        value: object, report_text: str) -> None:
    import reid.engine.evaluator as evaluator

    out = tmp_path / "recipe"
    args = ["recipe", "--data", str(tiny_store), "--out", str(out), "--cells", "baseline", *TINY_TRAINING]
    assert CliRunner().invoke(study_command, args).exit_code == 0
    first = json.loads((out / "results.json").read_text())["cells"]["baseline"][0]
    assert (first["flip"], first["metric"]) == (False, "euclidean")
    asked: list[object] = []
    real = evaluator.evaluate_model

    def recording(*a, **kw):  # the evaluation the study asks for, with the setting it passes
        asked.append(kw[setting])
        return real(*a, **kw)

    monkeypatch.setattr(evaluator, "evaluate_model", recording)
    changed = CliRunner().invoke(study_command, [*args, *option])
    assert changed.exit_code == 0, changed.output
    assert "0 cell run(s) trained, 1 reused" in changed.output and asked == [value]
    cell = json.loads((out / "results.json").read_text())["cells"]["baseline"][0]
    assert cell[setting] == value and "clean" in cell["evaluations"]["test"]
    assert report_text in (out / "report.md").read_text()
    again = CliRunner().invoke(study_command, [*args, *option])  # same settings: nothing evaluated again
    assert again.exit_code == 0 and asked == [value]
