"""`reid train` through Click: bad input exits 2 with one line, and train -> eval end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from cli.reid_train import train_command

TINY_ARGS = [
    "--arch", "resnet18", "--pretrained", "none", "--epochs", "1", "--batch-p", "2", "--batch-k", "2",
    "--size", "64x32", "--workers", "0", "--warmup-epochs", "0", "--max-steps-per-epoch", "2", "--device", "cpu",
]


def _train(*args: str):
    return CliRunner().invoke(train_command, [*TINY_ARGS, *args])


def _error_line(result) -> str:
    """The one stderr line of a bad-input exit."""
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.fixture(scope="module")
def trained_run(tiny_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny run with validation after its epoch (so best.pt exists)."""
    out = tmp_path_factory.mktemp("cli") / "run"
    result = _train("--data", str(tiny_store), "--out", str(out), "--eval-every", "1")
    assert result.exit_code == 0, result.output
    return out


def test_a_diverging_run_exits_2_with_one_line(tiny_store: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    import reid.engine.step as step

    real = step.compute_losses

    def nan_loss(*args, **kwargs):
        losses = real(*args, **kwargs)
        return dataclasses.replace(losses, total=losses.total * float("nan"))

    monkeypatch.setattr(step, "compute_losses", nan_loss)
    result = _train("--data", str(tiny_store), "--out", str(tmp_path / "run"))
    assert result.exit_code == 2, result.output
    assert "diverged at step 1" in _error_line(result) and "Traceback" not in result.output
    assert not (tmp_path / "run" / "last.pt").exists()


def test_train_then_eval_end_to_end(trained_run: Path, tiny_store: Path) -> None:
    from cli.reid_eval import eval_command

    for name in ("config.json", "metrics.jsonl", "last.pt", "best.pt", "curves.png"):
        assert (trained_run / name).is_file(), name
    record = json.loads((trained_run / "metrics.jsonl").read_text().splitlines()[-1])
    assert set(record["val"]["queries"]) == {"clean", "occluded:mean"}
    assert 0.0 <= record["val"]["score"] <= 1.0
    result = CliRunner().invoke(eval_command, ["--data", str(tiny_store), "--checkpoint", str(trained_run / "best.pt"),
                                               "--device", "cpu"])
    assert result.exit_code == 0, result.output
    report = json.loads((trained_run / "eval.json").read_text())
    # The evaluator reads the training input size back from the checkpoint.
    assert report["input_size"] == [64, 32]
    # Training-time validation and `reid eval` are one protocol: same numbers for the same weights.
    by_name = {row["name"]: row for row in report["rows"]}
    assert by_name["clean"]["mAP"] == pytest.approx(record["val"]["queries"]["clean"]["mAP"])


def test_not_our_file_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as h5:
        h5["x"] = np.zeros(3)
    result = _train("--data", str(path), "--out", str(tmp_path / "run"))
    assert result.exit_code == 2
    assert str(path) in _error_line(result) and "not an occluded-reid file" in _error_line(result)
    assert not (tmp_path / "run").exists()


def test_file_without_train_split_exits_2(tiny_store: Path, tmp_path: Path) -> None:
    path = tmp_path / "no_train.h5"
    shutil.copy(tiny_store, path)
    with h5py.File(path, "a") as h5:
        del h5["train"]
    result = _train("--data", str(path), "--out", str(tmp_path / "run"))
    assert result.exit_code == 2 and "'train'" in _error_line(result)


def test_batch_p_larger_than_identities_exits_2(tiny_store: Path, tmp_path: Path) -> None:
    result = _train("--data", str(tiny_store), "--out", str(tmp_path / "run"), "--batch-p", "7")
    assert result.exit_code == 2
    line = _error_line(result)
    assert "--batch-p 7" in line and "6 identities" in line and str(tiny_store) in line and "lower --batch-p" in line
    assert not (tmp_path / "run").exists()  # nothing half-written: not even an empty run folder


def test_absent_occluder_type_exits_2(tiny_store: Path, tmp_path: Path) -> None:
    result = _train("--data", str(tiny_store), "--out", str(tmp_path / "run"), "--train-on", "both",
                    "--train-occluders", "black")
    assert result.exit_code == 2
    assert "black" in _error_line(result) and "present: mean" in _error_line(result)
    assert not (tmp_path / "run").exists()


def test_existing_run_needs_resume_or_force(tiny_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")
    result = _train("--data", str(tiny_store), "--out", str(out))
    assert result.exit_code == 2
    assert _error_line(result) == (
        f"error: {out} already holds a run; pass --resume to continue it or --force to start over"
    )
    assert (out / "config.json").read_text() == "{}"  # untouched


def test_resume_with_another_config_names_the_keys(trained_run: Path, tiny_store: Path) -> None:
    before = (trained_run / "last.pt").read_bytes()
    result = _train("--data", str(tiny_store), "--out", str(trained_run), "--resume", "--lr", "0.001",
                    "--alpha", "0.5", "--epochs", "3")
    assert result.exit_code == 2
    line = _error_line(result)
    differences = line.split("a different configuration (")[1].split(")")[0]
    assert differences == "alpha: 1.0 -> 0.5; lr: 0.00035 -> 0.001"  # --epochs may change
    assert (trained_run / "last.pt").read_bytes() == before


def test_resume_needs_out(tiny_store: Path) -> None:
    result = _train("--data", str(tiny_store), "--resume")
    assert result.exit_code == 2 and "--out" in _error_line(result)


def test_resume_without_checkpoint_exits_2(tiny_store: Path, tmp_path: Path) -> None:
    result = _train("--data", str(tiny_store), "--out", str(tmp_path / "empty"), "--resume")
    assert result.exit_code == 2 and "nothing to resume" in _error_line(result)
