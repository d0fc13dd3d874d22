"""One overwrite policy for every command: an existing output needs --force, an output that is
one of the command's inputs is refused even with it, and of two writers of one output only
one succeeds (the final move is no-clobber without --force)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from common.atomic import AtomicTarget, atomic_write_bytes, check_output, check_output_folder, commit_file
from common.errors import BadInputError
from occsim.store import read_store
from tests.conftest import one_error_line, write_tiny_store


def _never(*args, **kwargs):
    raise AssertionError("the outputs must be checked before any work")


def _invoke(command: str, *args: object):
    """Run ``reid <command>`` (or ``occsim <command>`` for ``occsim:NAME``) with ``args``."""
    from cli.occsim_cli import main as occsim_main
    from cli.reid_cli import main as reid_main

    group, name = ("occsim", command[7:]) if command.startswith("occsim:") else ("reid", command)
    main = occsim_main if group == "occsim" else reid_main
    return CliRunner().invoke(main, [name, *(str(a) for a in args)], prog_name=group)


# ---------------------------------------------------------------------------- the policy


@pytest.mark.parametrize("alias", ["same", "relative", "symlink", "hardlink"])
def test_an_output_that_is_an_input_is_refused_even_with_force(tmp_path: Path, alias: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data" / "x.h5"
    data.parent.mkdir()
    data.write_bytes(b"the input")
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path / "other")
    out = {
        "same": data,
        "relative": Path("../data/../data/x.h5"),
        "symlink": tmp_path / "link.h5",
        "hardlink": tmp_path / "hard.h5",
    }[alias]
    if alias == "symlink":
        out.symlink_to(data)
    elif alias == "hardlink":
        os.link(data, out)
    for force in (False, True):
        with pytest.raises(BadInputError, match=r"is also this command's input .*x\.h5, which writing the features "
                                                r"file would destroy \(even with --force\); choose another --out$"):
            check_output(out, [Path("../data/x.h5")], force, "features file")
    assert data.read_bytes() == b"the input"


def test_folder_outputs_check_the_names_the_command_writes(tmp_path: Path) -> None:
    folder = tmp_path / "rank"
    folder.mkdir()
    (folder / "notes.txt").write_text("not ours")
    assert check_output_folder(folder, "rank figures", outputs=("rank_*.png",)) == folder
    (folder / "rank_sheet.png").write_bytes(b"png")
    with pytest.raises(BadInputError, match=r"rank_sheet\.png: already exists; pass --force"):
        check_output_folder(folder, "rank figures", outputs=("rank_*.png",))
    check_output_folder(folder, "rank figures", outputs=("rank_*.png",), force=True)
    with pytest.raises(BadInputError, match=r"rank_sheet\.png: is also this command's input"):
        check_output_folder(folder, "rank figures", outputs=("rank_*.png",), inputs=[folder / "rank_sheet.png"],
                            force=True)


# -------------------------------------------------------------------- concurrent writers


def test_of_two_commits_to_one_path_the_second_without_force_fails(tmp_path: Path) -> None:
    out = tmp_path / "o.bin"
    first, second = AtomicTarget(out, overwrite=False), AtomicTarget(out, overwrite=False)
    first.tmp.write_bytes(b"first")
    second.tmp.write_bytes(b"second")
    first.commit()
    with pytest.raises(BadInputError, match=r"o\.bin: already exists, written by another run while this one worked "
                                            r"\(this run's output was discarded\); pass --force"):
        second.commit()
    second.discard()
    assert out.read_bytes() == b"first" and sorted(p.name for p in tmp_path.iterdir()) == ["o.bin"]
    # With --force the last writer wins: it asked to overwrite.
    third = AtomicTarget(out, overwrite=True)
    third.tmp.write_bytes(b"third")
    third.commit()
    assert out.read_bytes() == b"third" and sorted(p.name for p in tmp_path.iterdir()) == ["o.bin"]


def test_the_no_clobber_commit_works_without_hard_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(*args: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    tmp = tmp_path / "a.tmp"
    tmp.write_bytes(b"a")
    commit_file(tmp, tmp_path / "o.bin", overwrite=False)
    tmp.write_bytes(b"b")
    with pytest.raises(BadInputError, match="already exists"):
        commit_file(tmp, tmp_path / "o.bin", overwrite=False)
    assert (tmp_path / "o.bin").read_bytes() == b"a"


def test_atomic_writes_are_no_clobber_without_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "o.json"
    atomic_write_bytes(out, b"1", overwrite=False)
    with pytest.raises(BadInputError, match="already exists"):
        atomic_write_bytes(out, b"2", overwrite=False)
    atomic_write_bytes(out, b"3")  # internal rewrites (a run's last.pt) replace, as before
    assert out.read_bytes() == b"3"


def _empty(split: str) -> "SplitManifest":
    from occsim.store import SplitManifest

    return SplitManifest(pid=[], camid=[], occluded=[], occ_type=[], box=[], clean_index=[], path=[],
                         label=[] if split == "train" else None)


def test_two_store_writers_of_one_file_cannot_both_succeed(tmp_path: Path) -> None:
    from occsim.schema import SPLITS
    from occsim.store import StoreWriter

    out = tmp_path / "o.h5"
    with StoreWriter(out, (32, 16)) as slow:  # both pass the check at the start ...
        for split in SPLITS:
            slow.add_split(split, _empty(split))
        winner = write_tiny_store(out, seed=1)  # ... the other one finishes first (the fixture writes with force)
        with pytest.raises(BadInputError, match=r"o\.h5: already exists, written by another run while this one worked"):
            slow.finish(source="slow", seed=2, generator_args={})
    assert read_store(winner).seed == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.h5"]


def test_occsim_generate_loses_to_a_writer_that_finished_first(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import occsim.generate as gen
    from tests.conftest import make_market_tree

    market = make_market_tree(tmp_path / "Market")
    other = write_tiny_store(tmp_path / "other.h5", seed=7)
    out = tmp_path / "out" / "o.h5"
    real, calls = gen._process_chunk, []

    def another_run_finishes(*args, **kwargs):
        if not calls:  # while this run works, another one with the same --out completes
            out.parent.mkdir(exist_ok=True)
            shutil.copyfile(other, out)
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(gen, "_process_chunk", another_run_finishes)
    args = ["--src", market, "--out", out, "--size", "32x16", "--patch", "10", "--workers", "1"]
    one_error_line(_invoke("occsim:generate", *args), f"{out}: already exists, written by another run")
    assert read_store(out).seed == 7 and sorted(p.name for p in out.parent.iterdir()) == ["o.h5"]
    calls.clear()
    result = _invoke("occsim:generate", *args, "--force")  # last writer wins: it asked to overwrite
    assert result.exit_code == 0, result.output
    assert read_store(out).seed == 0 and read_store(out).source == "Market"


# ------------------------------------------------------------------------ every command


@pytest.fixture
def taken(tmp_path: Path) -> Path:
    """An existing output file (its content must survive a refusal)."""
    path = tmp_path / "taken"
    path.write_bytes(b"an earlier result")
    return path


def test_reid_eval_refuses_an_existing_report_before_computing(tiny_store: Path, checkpoint: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("reid.engine.evaluator.run_eval", _never)
    out = tmp_path / "eval.json"
    out.write_text("{}")
    one_error_line(_invoke("eval", "--data", tiny_store, "--checkpoint", checkpoint, "--out", out),
                   f"{out}: already exists; pass --force")
    (tmp_path / "eval_cmc.png").write_bytes(b"png")
    out.unlink()
    one_error_line(_invoke("eval", "--data", tiny_store, "--checkpoint", checkpoint, "--out", out),
                   "eval_cmc.png: already exists; pass --force")


@pytest.mark.parametrize("command", ["eval", "embed", "export", "rank", "saliency", "search"])
def test_existing_outputs_need_force(command: str, tiny_store: Path, checkpoint: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    for library in ("reid.engine.evaluator.run_eval", "reid.rank.run_rank", "reid.saliency.run_saliency",
                    "reid.inference.export.load_inference_model", "reid.inference.embedder.Embedder"):
        monkeypatch.setattr(library, _never)
    folder = tmp_path / "figs"
    folder.mkdir()
    out, args = {
        "eval": (tmp_path / "r.json", ["--data", tiny_store, "--checkpoint", checkpoint, "--out", tmp_path / "r.json"]),
        "embed": (tmp_path / "f.h5", ["--src", tiny_store, "--checkpoint", checkpoint, "--out", tmp_path / "f.h5"]),
        "export": (tmp_path / "m.pt", ["--checkpoint", checkpoint, "--format", "torchscript",
                                       "--out", tmp_path / "m.pt"]),
        "rank": (folder / "rank_sheet.png", ["--data", tiny_store, "--checkpoint", checkpoint, "--out", folder]),
        "saliency": (folder / "box_mass.json", ["--data", tiny_store, "--checkpoint", checkpoint, "--out", folder]),
        "search": (folder / "search.json", ["--gallery", tmp_path / "none.h5", "--query", tmp_path / "none.h5",
                                            "--out", folder]),
    }[command]
    out.write_bytes(b"an earlier result")
    one_error_line(_invoke(command, *args), f"{out}: already exists; pass --force to overwrite it")
    assert out.read_bytes() == b"an earlier result"
    if command == "embed":  # --resume continues from the spool folder; an existing --out still needs --force
        one_error_line(_invoke(command, *args, "--resume"), f"{out}: already exists; pass --force")
    result = _invoke(command, *args, "--force")  # gets past the check: to the stubbed work (or the missing gallery)
    assert "already exists" not in result.output
    if command == "search":
        one_error_line(result, "none.h5: no such features file")
    else:
        assert isinstance(result.exception, AssertionError), result.output


@pytest.mark.parametrize("command", ["embed-src", "embed-checkpoint", "eval", "export", "split-val"])
def test_no_command_writes_over_its_own_input(command: str, tiny_store: Path, checkpoint: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    data, ckpt = tmp_path / "x.h5", tmp_path / "c.pt"
    shutil.copyfile(tiny_store, data)
    shutil.copyfile(checkpoint, ckpt)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "link.pt").symlink_to(ckpt)
    name, args, victim = {
        "embed-src": ("embed", ["--src", data, "--checkpoint", ckpt, "--out", "./sub/../x.h5"], data),
        "embed-checkpoint": ("embed", ["--src", data, "--checkpoint", ckpt, "--out", "link.pt"], ckpt),
        "eval": ("eval", ["--data", data, "--checkpoint", ckpt, "--out", data], data),
        "export": ("export", ["--checkpoint", ckpt, "--format", "torchscript", "--out", ckpt], ckpt),
        "split-val": ("occsim:split-val", [data, "--out", data], data),
    }[command]
    before = victim.read_bytes()
    one_error_line(_invoke(name, *args, "--force"), "is also this command's input", "(even with --force)")
    assert victim.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt", "link.pt", "x.h5"]


def test_preview_needs_force_and_never_writes_over_its_input(tiny_store: Path, tmp_path: Path) -> None:
    png = tmp_path / "p.png"
    assert _invoke("occsim:preview", tiny_store, "--out", png, "--n", 2).exit_code == 0
    first = png.read_bytes()
    one_error_line(_invoke("occsim:preview", tiny_store, "--out", png, "--n", 3), f"{png}: already exists")
    assert png.read_bytes() == first
    result = _invoke("occsim:preview", tiny_store, "--out", png, "--n", 3, "--force")
    assert result.exit_code == 0, result.output
    assert png.read_bytes() != first
    fake = tmp_path / "data.png"  # an input named like a PNG
    shutil.copyfile(tiny_store, fake)
    one_error_line(_invoke("occsim:preview", fake, "--out", fake, "--force"), "is also this command's input")
    assert fake.read_bytes() == tiny_store.read_bytes()


def test_generate_never_writes_over_its_csv_source(tmp_path: Path) -> None:
    from tests.test_readers import make_csv_tree

    csv = make_csv_tree(tmp_path / "mine") / "manifest.csv"
    before = csv.read_bytes()
    one_error_line(_invoke("occsim:generate", "--src", csv, "--out", csv, "--force", "--size", "32x16", "--patch", 10),
                   f"{csv}: is also this command's input")
    assert csv.read_bytes() == before


def test_curves_need_force_and_spare_the_metrics(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("{}\n")
    one_error_line(_invoke("curves", run, "--out", run / "metrics.jsonl", "--force"), "is also this command's input")
    (tmp_path / "c.png").write_bytes(b"png")
    one_error_line(_invoke("curves", run, "--out", tmp_path / "c.png"), "c.png: already exists; pass --force")
    assert (run / "metrics.jsonl").read_text() == "{}\n"


def test_train_never_clears_or_writes_over_its_own_inputs(tiny_store: Path, tmp_path: Path) -> None:
    """--force removes the run's files before starting over (TrainConfig itself refuses an
    --init-from inside --out); --pretrained runs/r/last.pt or --data was one of them."""
    from reid.engine.config import TrainConfig
    from reid.engine.run_folder import prepare_run_dir

    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    for name in ("config.json", "last.pt", "best.pt"):
        (run / name).write_bytes(name.encode())
    for inputs in ({"pretrained": run / "last.pt"}, {"data": run / "config.json"}):
        config = TrainConfig(**{"data": str(tiny_store), **inputs}, out=str(run), force=True)
        with pytest.raises(BadInputError, match=r"is also this command's input .*\(even with --force\); choose "
                                                r"another --out$"):
            prepare_run_dir(config)
    assert sorted(p.read_bytes() for p in run.iterdir()) == [b"best.pt", b"config.json", b"last.pt"]
    prepare_run_dir(TrainConfig(data=str(tiny_store), out=str(run), force=True))  # an unrelated input: cleared
    assert list(run.iterdir()) == []
