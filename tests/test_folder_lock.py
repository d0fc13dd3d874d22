"""One writer per folder: a run folder another process trains into is refused (nothing of its run
removed, even with --force), and `reid study` run twice on one grid splits the cells between
the two processes instead of training one cell twice."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cli.reid_study import study_command
from cli.reid_train import train_command
from common.folder_lock import FolderBusy, FolderLock
from reid.engine.config import TrainConfig
from tests.conftest import one_error_line
from tests.test_reid_train_cli import TINY_ARGS
from tests.test_study import TINY_TRAINING
from tests.test_study_reuse import _counting_train


def _lock(path: Path) -> FolderLock:
    return FolderLock(path, "doing something there", "wait for it")


def test_a_second_holder_is_refused_until_the_first_lets_go(tmp_path: Path) -> None:
    first, second = _lock(tmp_path), _lock(tmp_path)
    assert first.acquire() and first.held
    with pytest.raises(FolderBusy) as refused:
        second.acquire()
    assert str(refused.value) == f"{tmp_path}: another process is doing something there; wait for it"
    assert not second.held
    first.release()
    assert second.acquire()
    second.release()


def test_a_missing_folder_is_not_locked_until_it_exists(tmp_path: Path) -> None:
    folder = tmp_path / "later"
    lock = _lock(folder)
    assert not lock.acquire() and not lock.held and not folder.exists()  # made nothing
    folder.mkdir()
    assert lock.acquire() and lock.held
    with pytest.raises(FolderBusy):
        _lock(folder).acquire()
    lock.release()


def test_wait_blocks_until_the_holder_releases(tmp_path: Path) -> None:
    holder, events = _lock(tmp_path), []
    holder.acquire()

    def let_go() -> None:
        time.sleep(0.3)
        events.append("released")
        holder.release()

    threading.Thread(target=let_go).start()
    waiter = _lock(tmp_path)
    assert waiter.acquire(wait=True)
    events.append("acquired")
    assert events == ["released", "acquired"]
    waiter.release()


def test_the_lock_dies_with_its_process(tmp_path: Path) -> None:
    code = ("import sys, time; from common.folder_lock import FolderLock; "
            f"FolderLock({str(tmp_path)!r}, 'x', 'y').acquire(); print('locked', flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parents[1])
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "locked"
        with pytest.raises(FolderBusy):
            _lock(tmp_path).acquire()
    finally:
        child.kill()
        child.wait()
    lock = _lock(tmp_path)
    assert lock.acquire()  # no stale lock after a kill
    lock.release()


def test_training_into_a_folder_another_process_trains_into_is_refused(tiny_store: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"the other run's checkpoint")
    (run / "metrics.jsonl").write_text('{"epoch": 1}\n')
    with FolderLock(run, "training", "wait"):
        for extra in (["--force"], ["--resume"]):
            result = CliRunner().invoke(train_command, [*TINY_ARGS, "--data", str(tiny_store), "--out", str(run), *extra])
            one_error_line(result, str(run), "another process is training into this run folder", "choose another --out")
    assert (run / "last.pt").read_bytes() == b"the other run's checkpoint"  # --force removed nothing
    assert sorted(p.name for p in run.iterdir()) == ["last.pt", "metrics.jsonl"]
    # Once it lets go, the same command runs.
    result = CliRunner().invoke(train_command, [*TINY_ARGS, "--data", str(tiny_store), "--out", str(run), "--force"])
    assert result.exit_code == 0, result.output


def test_the_lock_is_released_when_training_ends(tiny_store: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = CliRunner().invoke(train_command, [*TINY_ARGS, "--data", str(tiny_store), "--out", str(run)])
    assert result.exit_code == 0, result.output
    lock = _lock(run)
    assert lock.acquire()
    lock.release()


def test_a_study_does_the_cell_another_process_runs_last_once_it_lets_go(
        tiny_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "grid"
    busy_cell, other_cell = out / "cells" / "baseline-seed0", out / "cells" / "erasing-seed0"
    busy_cell.mkdir(parents=True)
    other_process = FolderLock(busy_cell, "running this study cell", "wait")
    other_process.acquire()
    runs = _counting_train(monkeypatch)

    def let_go_after_the_other_cell() -> None:  # the "other process" finishes once this one did its cell
        deadline = time.monotonic() + 300
        while not (other_cell / "result.json").is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        other_process.release()

    threading.Thread(target=let_go_after_the_other_cell, daemon=True).start()
    args = ["recipe", "--data", str(tiny_store), "--out", str(out), "--cells", "baseline,erasing", *TINY_TRAINING]
    with caplog.at_level(logging.INFO, logger="reid"):
        result = CliRunner().invoke(study_command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert runs == ["erasing-seed0", "baseline-seed0"]  # the busy cell last, after waiting for it
    assert "another process is running it" in caplog.text and "waiting for the other process running it" in caplog.text
    assert "2 cell run(s) trained, 0 reused" in result.output
    report = (out / "report.md").read_text()
    assert report.index("clean-only baseline") < report.index("Random Erasing")  # the grid's order, not the run's


def test_two_studies_on_one_grid_split_the_cells_and_the_waiter_reuses_the_other_ones(
        tiny_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import reid.engine.trainer as trainer
    from reid.study import run_study
    from reid.study_config import StudyConfig
    from tests.test_study import _base

    out = tmp_path / "grid"
    runs: list[str] = []
    real = trainer.train

    def gated(config: TrainConfig, *args: Any, **kwargs: Any) -> Any:
        name = Path(config.out).parent.name
        runs.append(name)
        if name == "baseline-seed0":  # the other study holds its cell until this one finished erasing
            deadline = time.monotonic() + 300
            while not (out / "cells" / "erasing-seed0" / "result.json").is_file() and time.monotonic() < deadline:
                time.sleep(0.05)
        return real(config, *args, **kwargs)

    monkeypatch.setattr(trainer, "train", gated)
    base = _base(tiny_store)
    other = threading.Thread(target=run_study, args=(StudyConfig("recipe", tiny_store, out, base, cells=("baseline",)),))
    other.start()
    deadline = time.monotonic() + 60
    while "baseline-seed0" not in runs and time.monotonic() < deadline:  # the other study is inside its cell
        time.sleep(0.05)
    report = run_study(StudyConfig("recipe", tiny_store, out, base, cells=("baseline", "erasing")))
    other.join(timeout=300)
    assert runs == ["baseline-seed0", "erasing-seed0"]  # each cell trained once, by one study
    assert (report.trained, report.reused) == (1, 1)
    assert "Random Erasing" in report.tables and "clean-only baseline" in report.tables


def test_skip_busy_passes_over_a_busy_cell_and_writes_no_report(tiny_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "grid"
    busy_cell = out / "cells" / "baseline-seed0"
    busy_cell.mkdir(parents=True)
    args = ["recipe", "--data", str(tiny_store), "--out", str(out), "--cells", "baseline,erasing", *TINY_TRAINING]
    with FolderLock(busy_cell, "running this study cell", "wait"):
        result = CliRunner().invoke(study_command, [*args, "--skip-busy"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert "1 cell run(s) trained, 0 reused, 1 passed over" in result.output and "no report yet" in result.output
        assert not (out / "report.md").exists() and not (out / "results.json").exists()
        assert (out / "cells" / "erasing-seed0" / "result.json").is_file()
        assert list(busy_cell.iterdir()) == []  # the other process's cell untouched
    again = CliRunner().invoke(study_command, args, catch_exceptions=False)  # it let go: the rest, and the report
    assert again.exit_code == 0, again.output
    assert "1 cell run(s) trained, 1 reused" in again.output and (out / "report.md").is_file()


def test_without_flock_nothing_is_locked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import common.folder_lock as folder_lock

    monkeypatch.setattr(folder_lock, "fcntl", None)  # as on Windows
    first, second = _lock(tmp_path), _lock(tmp_path)
    assert not first.acquire() and not second.acquire() and not first.held


def test_loader_workers_do_not_keep_the_lock_after_training(tiny_store: Path, tmp_path: Path) -> None:
    # Forked data-loader workers share the lock's open file; they must be gone when train() returns,
    # or the next training into the folder from this process would be refused.
    run = tmp_path / "run"
    args = [*TINY_ARGS, "--data", str(tiny_store), "--out", str(run), "--workers", "2"]
    first = CliRunner().invoke(train_command, [*args, "--epochs", "1"])
    assert first.exit_code == 0, first.output
    second = CliRunner().invoke(train_command, [*args, "--epochs", "2", "--resume"])
    assert second.exit_code == 0, second.output
