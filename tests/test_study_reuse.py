"""`reid study --reuse-from REPORT`: a cell another report finished with the same training
options, seed and file is taken from it, not trained again; anything else is trained."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cli.reid_study import study_command
from common.errors import BadInputError
from reid.engine.config import TrainConfig
from reid.study import reused_result
from reid.study_config import recipe_cell
from tests.conftest import one_error_line
from tests.test_study import TINY_TRAINING, _base


@pytest.fixture(scope="module")
def recipe_report(tiny_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished recipe study of the baseline and erasing rows (table1's aligned-clean and this-project)."""
    out = tmp_path_factory.mktemp("reuse") / "recipe"
    args = ["recipe", "--data", str(tiny_store), "--out", str(out), "--cells", "baseline,erasing", *TINY_TRAINING]
    result = CliRunner().invoke(study_command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out


def _counting_train(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Patch the trainer to record the run folder of every training it starts (and run it)."""
    import reid.engine.trainer as trainer

    runs: list[str] = []
    real = trainer.train

    def counting(config: TrainConfig, *args: Any, **kwargs: Any) -> Any:
        runs.append(Path(config.out).parent.name)
        return real(config, *args, **kwargs)

    monkeypatch.setattr(trainer, "train", counting)
    return runs


def _cell_result(out: Path, name: str) -> dict[str, Any]:
    return json.loads((out / "cells" / name / "result.json").read_text())


def test_table1_reuses_the_recipe_reports_matching_cells_and_trains_the_others(
        tiny_store: Path, recipe_report: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = _counting_train(monkeypatch)
    out = tmp_path / "table1"
    args = ["table1", "--data", str(tiny_store), "--out", str(out), "--no-saliency", "--reuse-from", str(recipe_report),
            *TINY_TRAINING]
    result = CliRunner().invoke(study_command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "2 cell run(s) trained, 2 reused" in result.output
    assert sorted(runs) == ["aligned-both-seed0", "aligned-obc-seed0"]
    for name, source in (("aligned-clean", "baseline"), ("this-project", "erasing")):
        mine, theirs = _cell_result(out, f"{name}-seed0"), _cell_result(recipe_report, f"{source}-seed0")
        assert mine["reused_from"] == str(recipe_report / "cells" / f"{source}-seed0" / "result.json")
        assert mine["checkpoint"] == theirs["checkpoint"] and mine["cell"] == name and mine["label"] != theirs["label"]
        assert mine["evaluations"]["test"] == theirs["evaluations"]["test"]  # the same weights on the same file
        assert not (out / "cells" / f"{name}-seed0" / "run").exists()
    assert "reused_from" not in _cell_result(out, "aligned-obc-seed0")
    report = (out / "report.md").read_text()
    assert f"`aligned-clean-seed0` ← `{recipe_report / 'cells' / 'baseline-seed0'}`" in report
    cells = json.loads((out / "results.json").read_text())["cells"]
    assert cells["aligned-clean"][0]["reused_from"].endswith("baseline-seed0/result.json")

    again = CliRunner().invoke(study_command, args, catch_exceptions=False)  # now finished cells of its own
    assert again.exit_code == 0 and "0 cell run(s) trained, 4 reused" in again.output
    assert sorted(runs) == ["aligned-both-seed0", "aligned-obc-seed0"]

    # The report again, now with Grad-CAM over 3 queries: no training, the share averaged over all 3.
    with_saliency = [a for a in args if a != "--no-saliency"] + ["--saliency-queries", "3"]
    drawn = CliRunner().invoke(study_command, with_saliency, catch_exceptions=False)
    assert drawn.exit_code == 0 and "0 cell run(s) trained, 4 reused" in drawn.output
    assert "over 3 occluded queries" in (out / "report.md").read_text()
    assert len(json.loads((out / "saliency" / "box_mass.json").read_text())["per_image"]) == 3


def test_a_longer_run_is_not_reused(tiny_store: Path, recipe_report: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    runs = _counting_train(monkeypatch)
    out = tmp_path / "longer"
    args = ["recipe", "--data", str(tiny_store), "--out", str(out), "--cells", "baseline",
            "--reuse-from", str(recipe_report), *TINY_TRAINING, "--epochs", "2"]
    result = CliRunner().invoke(study_command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "1 cell run(s) trained, 0 reused" in result.output and runs == ["baseline-seed0"]
    assert "reused_from" not in _cell_result(out, "baseline-seed0")
    assert "reused from other reports" not in (out / "report.md").read_text()


def test_only_the_same_options_seed_and_file_match(tiny_store: Path, recipe_report: Path, tmp_path: Path) -> None:
    cell = recipe_cell("baseline")
    config = cell.train_config(_base(tiny_store), seed=0, eval_every=0)
    found = reused_result(cell, 0, [recipe_report], config, tiny_store)
    assert found is not None and found["cell"] == "baseline"
    assert reused_result(cell, 0, [recipe_report], dataclasses.replace(config, lr=0.01), tiny_store) is None
    assert reused_result(cell, 1, [recipe_report], dataclasses.replace(config, seed=1), tiny_store) is None
    other = tmp_path / "other.h5"
    other.write_bytes(tiny_store.read_bytes())  # the same content under another name: not the same file
    assert reused_result(cell, 0, [recipe_report], config, other) is None
    assert reused_result(recipe_cell("augment"), 0, [recipe_report],
                         recipe_cell("augment").train_config(_base(tiny_store), seed=0), tiny_store) is None


def test_a_match_whose_checkpoint_is_gone_is_skipped_with_a_warning(
        tiny_store: Path, recipe_report: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = _cell_result(recipe_report, "baseline-seed0")
    moved = tmp_path / "moved" / "cells" / "baseline-seed0"
    moved.mkdir(parents=True)
    (moved / "result.json").write_text(json.dumps({**source, "checkpoint": str(tmp_path / "gone" / "last.pt")}))
    cell = recipe_cell("baseline")
    config = cell.train_config(_base(tiny_store), seed=0)
    with caplog.at_level(logging.WARNING, logger="reid.study"):
        assert reused_result(cell, 0, [tmp_path / "moved"], config, tiny_store) is None
    assert "gone" in caplog.text and "not reusing" in caplog.text
    # A later folder's match is still found.
    assert reused_result(cell, 0, [tmp_path / "moved", recipe_report], config, tiny_store) is not None


def test_a_reuse_folder_that_is_no_report_is_one_error_line(tiny_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "study"
    base = ["recipe", "--data", str(tiny_store), "--out", str(out), "--cells", "baseline", *TINY_TRAINING]
    missing = tmp_path / "no-such-report"
    one_error_line(CliRunner().invoke(study_command, [*base, "--reuse-from", str(missing)]),
                   f"--reuse-from {missing}", "no cells/ folder")
    (tmp_path / "empty").mkdir()
    one_error_line(CliRunner().invoke(study_command, [*base, "--reuse-from", str(tmp_path / "empty")]),
                   "empty", "reid study")
    (out / "cells").mkdir(parents=True)
    one_error_line(CliRunner().invoke(study_command, [*base, "--reuse-from", str(out)]), str(out), "own --out")
    assert not (out / "cells" / "baseline-seed0").exists()  # refused before any training
    with pytest.raises(BadInputError, match="no-such-report"):
        from reid.study import check_reuse_folders
        from reid.study_config import StudyConfig

        check_reuse_folders(StudyConfig("recipe", tiny_store, out, _base(tiny_store), reuse_from=(missing,)))
