"""Damage and misuse that must never pass silently: flipped pixel bytes, leftovers of killed
runs, absurd worker counts, occluders larger than the image, Click's own usage errors,
outputs that collide with folders, Ctrl-C during generate."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from common.errors import BadInputError
from occsim.schema import PIXEL_CRC, SPLITS
from occsim.store import read_images, read_store, verify_pixels
from tests.conftest import one_error_line


# ------------------------------------------------------------------------- pixel checksums

DAMAGED_ROW = 5


def _damage(src: Path, dst: Path, split: str = "train", row: int = DAMAGED_ROW) -> Path:
    """Copy ``src`` to ``dst`` with one bit flipped in the stored pixels of ``split`` row ``row``."""
    shutil.copyfile(src, dst)
    with h5py.File(dst, "r") as h5:
        chunk = h5[split]["images"].id.get_chunk_info_by_coord((row, 0, 0, 0))
    with open(dst, "r+b") as fh:
        fh.seek(chunk.byte_offset + chunk.size // 2)
        byte = fh.read(1)[0]
        fh.seek(-1, 1)
        fh.write(bytes([byte ^ 0x10]))
    return dst


def _without_checksums(src: Path, dst: Path, fletcher32: bool = False) -> Path:
    """``src`` as a file written before checksums existed: same datasets and attributes, no
    CRC-32 dataset, and the Fletcher32 filter only with ``fletcher32`` (what files written
    between the two checksums hold)."""
    with h5py.File(src, "r") as old, h5py.File(dst, "w") as new:
        new.attrs.update(dict(old.attrs))
        for split in SPLITS:
            group = new.create_group(split)
            for name, dataset in old[split].items():
                if name == PIXEL_CRC:
                    continue
                extra = {}
                if name == "images":
                    extra = {"chunks": dataset.chunks, "fletcher32": fletcher32 and len(dataset) > 0}
                group.create_dataset(name, data=dataset[()], dtype=dataset.dtype, **extra)
                group[name].attrs.update(dict(dataset.attrs))
    return dst


def _black_patch_to_white(src: Path, dst: Path, split: str, row: int) -> Path:
    """Copy ``src`` to ``dst`` with two bytes of ``row``'s black patch, one aligned 16-bit word,
    flipped 0x00 0x00 -> 0xFF 0xFF on disk: Fletcher-32 (sums of words modulo 65535) cannot
    see it."""
    shutil.copyfile(src, dst)
    x, y, w, _ = (int(v) for v in read_store(src).splits[split].box[row])
    with h5py.File(dst, "r") as h5:
        images = h5[split]["images"]
        chunk = images.id.get_chunk_info_by_coord((row, 0, 0, 0))
        offset = (y * images.shape[2] + x) * 3
        offset += offset % 2  # a whole Fletcher-32 word (the chunk starts one)
        assert not images[row].reshape(-1)[offset : offset + 2].any() and w * 3 >= 4, "not inside the black patch"
    with open(dst, "r+b") as fh:
        fh.seek(chunk.byte_offset + offset)
        fh.write(b"\xff\xff")
    return dst


@pytest.fixture
def damaged(tiny_store: Path, tmp_path: Path) -> Path:
    return _damage(tiny_store, tmp_path / "damaged.h5")


def test_images_carry_a_checksum_and_info_verifies_them_all(tiny_store: Path) -> None:
    from cli.occsim_cli import main

    info = read_store(tiny_store)
    assert info.pixel_checksums and info.pixel_crc
    total = sum(len(m) for m in info.splits.values())
    assert verify_pixels(tiny_store, progress=False) == total
    result = CliRunner().invoke(main, ["info", str(tiny_store)])
    assert result.exit_code == 0, result.output
    assert f"pixels: a CRC-32 checksum per image, all {total} verified" in result.stdout


def test_the_crc32_sees_a_black_patch_flipped_to_white_that_fletcher32_misses(tmp_path: Path) -> None:
    from cli.occsim_cli import main
    from tests.conftest import write_tiny_store

    black = write_tiny_store(tmp_path / "black.h5", occ_types=("black",))
    row = int(read_store(black).splits["train"].rows("occluded:black")[DAMAGED_ROW])
    flipped = _black_patch_to_white(black, tmp_path / "flipped.h5", "train", row)
    with h5py.File(flipped, "r") as h5, h5py.File(black, "r") as original:
        # HDF5's own check (Fletcher32) passes: this is the damage the CRC-32 exists for.
        changed = h5["train"]["images"][row]
        assert (changed != original["train"]["images"][row]).sum() == 2 and (changed == 255).sum() == 2
        read_images(h5, "train", [row - 1, row + 1])  # the neighbours still read
        with pytest.raises(BadInputError, match=rf"flipped.h5: the pixels of train row {row} cannot be read "
                                                r"\(checksum mismatch, CRC-32: damaged or modified file\)"):
            read_images(h5, "train", [row])
    with pytest.raises(BadInputError, match=rf"train row {row} cannot be read \(checksum mismatch, CRC-32"):
        verify_pixels(flipped, progress=False)
    one_error_line(CliRunner().invoke(main, ["info", str(flipped)]), str(flipped), f"train row {row}", "CRC-32")
    # The training and evaluation loaders read through the same check.
    from reid.data import HDF5Split

    split = HDF5Split(flipped, "train")
    split.read_row(row - 1)
    with pytest.raises(BadInputError, match=rf"flipped.h5: the pixels of train row {row} cannot be read .*CRC-32"):
        split.read_row(row)


def test_pixels_rewritten_through_h5py_fail_their_crc32(tiny_store: Path, tmp_path: Path) -> None:
    """h5py recomputes the Fletcher32 of what it writes; the CRC-32 was written with the image."""
    from cli.occsim_cli import main

    edited = tmp_path / "edited.h5"
    shutil.copyfile(tiny_store, edited)
    with h5py.File(edited, "r+") as h5:
        image = h5["query"]["images"][3]
        image[:4, :4] = 255 - image[:4, :4]
        h5["query"]["images"][3] = image
    one_error_line(CliRunner().invoke(main, ["info", str(edited)]), str(edited), "query row 3", "CRC-32")


def test_every_writer_of_images_stores_the_crc32s(tiny_store: Path, tmp_path: Path) -> None:
    from occsim.pixels import image_crc32
    from occsim.validation import carve_validation

    carved = carve_validation(tiny_store, tmp_path / "val.h5", fraction=0.34)
    for path in (tiny_store, carved):  # StoreWriter (the generator and the fixture) and split-val
        assert read_store(path).pixel_crc
        with h5py.File(path, "r") as h5:
            for split in SPLITS:
                assert np.array_equal(h5[split][PIXEL_CRC][()], image_crc32(h5[split]["images"][()]))


def test_a_file_with_fletcher32_only_reads_and_info_says_what_it_lacks(tiny_store: Path, tmp_path: Path) -> None:
    from cli.occsim_cli import main

    older = _without_checksums(tiny_store, tmp_path / "fletcher.h5", fletcher32=True)
    info = read_store(older)
    assert info.pixel_checksums and not info.pixel_crc
    total = sum(len(m) for m in info.splits.values())
    assert verify_pixels(older, progress=False) == total
    with h5py.File(older, "r") as a, h5py.File(tiny_store, "r") as b:
        assert np.array_equal(read_images(a, "train", [0, 7]), read_images(b, "train", [0, 7]))
    result = CliRunner().invoke(main, ["info", str(older)])
    assert result.exit_code == 0, result.output
    assert "pixels: only a Fletcher32 checksum per image" in result.stdout
    assert "regenerate the file to add them" in result.stdout and f"all {total} verified" in result.stdout


def test_a_flipped_pixel_bit_fails_info_naming_the_row(damaged: Path) -> None:
    from cli.occsim_cli import main

    read_store(damaged)  # the manifests and the fingerprint are intact: only the pixels changed
    with pytest.raises(BadInputError, match=rf"damaged.h5: the pixels of train row {DAMAGED_ROW} cannot be read "
                                            r"\(checksum mismatch"):
        verify_pixels(damaged, progress=False)
    line = one_error_line(CliRunner().invoke(main, ["info", str(damaged)]))
    assert f"train row {DAMAGED_ROW}" in line and "regenerate it with `occsim generate`" in line


def test_split_val_refuses_a_damaged_file(damaged: Path, tmp_path: Path) -> None:
    from cli.occsim_cli import main

    out = tmp_path / "val.h5"
    result = CliRunner().invoke(main, ["split-val", str(damaged), "--out", str(out), "--fraction", "0.34"])
    assert result.exit_code == 2
    assert f"train row {DAMAGED_ROW}" in one_error_line(result)
    assert not out.exists() and not list(tmp_path.glob(".val.h5*"))


def test_reading_a_damaged_row_is_a_bad_input_error(damaged: Path) -> None:
    from reid.data import HDF5Split

    with h5py.File(damaged, "r") as h5:
        read_images(h5, "train", [DAMAGED_ROW - 1])  # its neighbour still reads
        with pytest.raises(BadInputError, match=f"train row {DAMAGED_ROW} cannot be read"):
            read_images(h5, "train", [DAMAGED_ROW])
    dataset = HDF5Split(damaged, "train")
    dataset[DAMAGED_ROW + 1]
    with pytest.raises(BadInputError, match=f"train row {DAMAGED_ROW} cannot be read"):
        dataset[DAMAGED_ROW]


def test_a_bad_input_error_from_a_loader_worker_stays_one_line(damaged: Path) -> None:
    """torch's DataLoader re-raises a worker's exception with the worker's traceback as its
    message (torch._utils.ExceptionWrapper); BadInputError keeps the original line. (Simulated
    in-process: forking a DataLoader worker here, after other tests used cv2, can deadlock.)"""
    from torch._utils import ExceptionWrapper

    from reid.data import HDF5Split

    try:
        HDF5Split(damaged, "train")[DAMAGED_ROW]
    except BadInputError:
        wrapper = ExceptionWrapper(where="in DataLoader worker process 0")
    with pytest.raises(BadInputError) as caught:
        wrapper.reraise()
    message = str(caught.value)
    assert message.startswith(f"{damaged}: the pixels of train row {DAMAGED_ROW} cannot be read")
    assert "Traceback" not in message and "\n" not in message and "DataLoader" not in message


def test_reid_eval_on_a_damaged_query_row_exits_2(tiny_store: Path, checkpoint: Path, tmp_path: Path) -> None:
    from cli.reid_eval import eval_command

    damaged = _damage(tiny_store, tmp_path / "damaged.h5", split="query", row=2)
    out = tmp_path / "eval.json"
    result = CliRunner().invoke(eval_command, ["--data", str(damaged), "--checkpoint", str(checkpoint),
                                               "--device", "cpu", "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "query row 2 cannot be read" in one_error_line(result)
    assert not out.exists()


def test_a_file_without_checksums_still_reads_and_info_says_so(tiny_store: Path, tmp_path: Path) -> None:
    from cli.occsim_cli import main

    old = _without_checksums(tiny_store, tmp_path / "old.h5")
    info = read_store(old)
    assert not info.pixel_checksums and info.fingerprint == read_store(tiny_store).fingerprint
    assert verify_pixels(old, progress=False) is None
    with h5py.File(old, "r") as a, h5py.File(tiny_store, "r") as b:
        assert np.array_equal(read_images(a, "query", [0, 3]), read_images(b, "query", [0, 3]))
    result = CliRunner().invoke(main, ["info", str(old)])
    assert result.exit_code == 0, result.output
    assert "pixels: no checksums" in result.stdout and "regenerate the file to add them" in result.stdout


def test_files_with_checksums_stay_byte_identical(tiny_store: Path, tmp_path: Path) -> None:
    from tests.conftest import write_tiny_store

    assert write_tiny_store(tmp_path / "again.h5").read_bytes() == tiny_store.read_bytes()


# ------------------------------------------------------------------ Click's own usage errors


@pytest.mark.parametrize(("group", "args", "expected"), [
    ("reid", ["train", "--batch-p", "1"], "error: reid train: Invalid value for '--batch-p': 1 is not in the range x>=2; "
                                          "see 'reid train --help'"),
    ("reid", ["eval", "--gallery", "foo"], "error: reid eval: Invalid value for '--gallery': 'foo' is not one of"),
    ("reid", ["nope"], "error: reid: No such command 'nope'; see 'reid --help'"),
    ("occsim", ["generate", "--bogus"], "error: occsim generate: No such option '--bogus'"),
    ("occsim", ["info"], "error: occsim info: Missing argument 'FILE'; see 'occsim info --help'"),
])
def test_usage_errors_are_one_line_and_exit_2(group: str, args: list[str], expected: str) -> None:
    from cli.occsim_cli import main as occsim_main
    from cli.reid_cli import main as reid_main

    main = reid_main if group == "reid" else occsim_main
    result = CliRunner().invoke(main, args, prog_name=group)
    assert result.exit_code == 2
    assert one_error_line(result).startswith(expected) and result.stdout == ""


def test_the_torchrun_entry_point_has_the_same_one_line_usage_errors() -> None:
    import subprocess
    import sys

    # `torchrun -m cli.reid_train` runs the module, not the `reid` group.
    done = subprocess.run([sys.executable, "-m", "cli.reid_train", "--batch-p", "1"], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == ["error: python -m cli.reid_train: Invalid value for '--batch-p': 1 is not in "
                                        "the range x>=2; see 'python -m cli.reid_train --help'"]


@pytest.mark.parametrize(("group", "args"), [
    ("occsim", ["generate", "--src"]), ("occsim", ["synth", "--out"]), ("reid", ["train", "--data"]),
    ("reid", ["embed", "--src"]), ("reid", ["eval", "--query"]), ("reid", ["search", "--gallery"]),
    ("reid", ["export", "--out"]),
])
def test_parser_errors_name_the_real_command_not_main(group: str, args: list[str]) -> None:
    """Click raises "requires an argument" without a context: the line fell back to the
    group's function name (``error: main: ...``)."""
    from cli.occsim_cli import main as occsim_main
    from cli.reid_cli import main as reid_main

    command = f"{group} {args[0]}"
    result = CliRunner().invoke(reid_main if group == "reid" else occsim_main, args, prog_name=group)
    assert one_error_line(result) == (f"error: {command}: Option '{args[1]}' requires an argument; "
                                      f"see '{command} --help'")


MODULES = ("reid_curves", "reid_embed", "reid_eval", "reid_export", "reid_rank", "reid_saliency", "reid_search",
           "reid_recipes", "reid_study", "reid_train")


def test_every_reid_module_runs_as_python_m_with_one_line_usage_errors() -> None:
    """``python -m cli.reid_eval --bogus`` exited 0 doing nothing: only cli.reid_train had an entry."""
    import subprocess
    import sys

    assert sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "cli").glob("reid_*.py")) == sorted(
        MODULES + ("reid_cli",))
    for module in MODULES:
        done = subprocess.run([sys.executable, "-m", f"cli.{module}", "--bogus"], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parents[1], timeout=120)
        prog = f"python -m cli.{module}"
        assert done.returncode == 2 and done.stdout == "", (module, done)
        lines = done.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {prog}: No such option '--bogus'"), (module, lines)


def test_both_tools_answer_version_with_the_one_project_version() -> None:
    import common
    import occsim
    import reid
    from cli.occsim_cli import main as occsim_main
    from cli.reid_cli import main as reid_main

    assert reid.__version__ is occsim.__version__ is common.__version__
    for main, name in ((occsim_main, "occsim"), (reid_main, "reid")):
        result = CliRunner().invoke(main, ["--version"], prog_name=name)
        assert result.exit_code == 0 and result.stdout == f"{name} {occsim.__version__}\n", result.output


# ------------------------------------------------------------- tracebacks made one line


def test_a_features_file_with_non_utf8_text_is_one_line(tmp_path: Path) -> None:
    from cli.reid_search import search_command
    from reid.inference.features_file import FeatureBlock, write_features

    block = FeatureBlock(global_feat=np.ones((2, 4), np.float32), local_feat=None, occlusion=np.zeros(2, np.float32),
                         names=["a.png", "b.png"])
    gallery = write_features(tmp_path / "g.h5", {"checkpoint": "c.pt"}, [block], 2)
    with h5py.File(gallery, "r+") as h5:
        h5.attrs["checkpoint"] = np.bytes_(b"runs/\xff\xfe.pt")
    out = tmp_path / "search"
    result = CliRunner().invoke(search_command, ["--gallery", str(gallery), "--query", str(gallery), "--out", str(out)])
    one_error_line(result, f"{gallery}: holds text that is not UTF-8", "embed again")
    assert not out.exists()


def test_a_csv_pid_beyond_int32_is_one_line_naming_the_line(tmp_path: Path) -> None:
    from cli.occsim_cli import main
    from tests.test_readers import make_csv_tree

    lines = ["path,pid,camid,split", "cam1/a.png,7,1,train", "cam2/b.jpg,1099511627776,2,query",
             "cam3/c.bmp,7,3,gallery"]
    csv = make_csv_tree(tmp_path / "mine", lines) / "manifest.csv"
    out = tmp_path / "o.h5"
    result = CliRunner().invoke(main, ["generate", "--src", str(csv), "--out", str(out), "--size", "32x16",
                                       "--patch", "10"], prog_name="occsim")
    one_error_line(result, f"{csv}:3: pid 1099511627776 does not fit the file's int32 pid column "
                           "(-2147483648 to 2147483647)")
    lines[2] = "cam2/b.jpg,7,70000,query"
    make_csv_tree(tmp_path / "mine", lines)
    result = CliRunner().invoke(main, ["generate", "--src", str(csv), "--out", str(out)], prog_name="occsim")
    one_error_line(result, f"{csv}:3: camid 70000 does not fit the file's int16 camid column")
    assert not out.exists()


def test_a_huge_size_is_refused_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import occsim.generate as gen
    from cli.occsim_cli import main
    from common.options import MAX_IMAGE_SIDE

    monkeypatch.setattr(gen, "_read", _never)
    monkeypatch.setattr(gen, "resolve_source", _never)
    for size in ("100000x100000", f"128x{MAX_IMAGE_SIDE + 1}"):
        result = CliRunner().invoke(main, ["generate", "--out", str(tmp_path / "o.h5"), "--size", size],
                                    prog_name="occsim")
        assert one_error_line(result) == (f"error: --size {size}: each side must be 1 to {MAX_IMAGE_SIDE} pixels, "
                                          "e.g. 128x64")
    assert list(tmp_path.iterdir()) == []


def test_an_onnx_opset_pytorch_cannot_write_is_one_line(checkpoint: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import reid.inference.export as export
    from cli.reid_export import export_command

    out = tmp_path / "m.onnx"
    monkeypatch.setattr(export, "load_inference_model", _never)  # refused before the model is loaded
    result = CliRunner().invoke(export_command, ["--checkpoint", str(checkpoint), "--out", str(out), "--opset", "99"])
    one_error_line(result, "--opset 99: PyTorch", f"exports opsets {export.MIN_OPSET} to", "choose one of them")
    monkeypatch.undo()
    monkeypatch.setattr(export, "highest_opset", lambda: None)  # a PyTorch that does not say: the exporter refuses
    result = CliRunner().invoke(export_command, ["--checkpoint", str(checkpoint), "--out", str(out), "--opset", "99"])
    one_error_line(result, "--opset 99: PyTorch", "cannot export this model at it (Unsupported onnx_opset_version")
    assert list(tmp_path.iterdir()) == []


def test_a_run_folder_as_checkpoint_means_its_best_else_its_last(tiny_store: Path, checkpoint: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from cli.reid_eval import eval_command
    from reid.engine.runs import resolve_checkpoint

    run = tmp_path / "runs" / "r18"
    run.mkdir(parents=True)
    shutil.copyfile(checkpoint, run / "last.pt")
    with caplog.at_level(logging.INFO, logger="reid.engine.runs"):
        assert resolve_checkpoint(run) == run / "last.pt"
        shutil.copyfile(checkpoint, run / "best.pt")
        assert resolve_checkpoint(run) == run / "best.pt"
        assert resolve_checkpoint(run / "last.pt") == run / "last.pt"  # a file is itself, no choice made
    assert [r.getMessage() for r in caplog.records] == [
        f"checkpoint: {run / 'last.pt'} (last.pt of the run folder {run})",
        f"checkpoint: {run / 'best.pt'} (best.pt of the run folder {run})"]
    with pytest.raises(BadInputError, match=r"runs: a folder without best\.pt or last\.pt"):
        resolve_checkpoint(tmp_path / "runs")  # exists, holds no checkpoint
    seen = []

    def record(config):
        seen.append(config.checkpoint)
        raise BadInputError("stop here")

    monkeypatch.setattr("reid.engine.evaluator.run_eval", record)
    result = CliRunner().invoke(eval_command, ["--data", str(tiny_store), "--checkpoint", str(run)])
    one_error_line(result, "stop here")
    assert seen == [run / "best.pt"]


def test_help_still_answers(tmp_path: Path) -> None:
    from cli.occsim_cli import main as occsim_main
    from cli.reid_cli import main as reid_main

    for main, args in ((reid_main, ["train", "--help"]), (occsim_main, ["generate", "--help"]), (reid_main, [])):
        result = CliRunner().invoke(main, args)
        assert result.output.startswith("Usage: "), result.output
        assert result.exit_code == (2 if not args else 0)  # a bare group shows its help, as Click does


# ------------------------------------------------------------ occluders larger than the image


def test_a_square_covering_the_whole_image_is_refused_naming_the_size(tmp_path: Path) -> None:
    from occsim.generate import GenerateConfig
    from occsim.occluders import OccluderParams

    for patch, size in ((500, (128, 64)), (50, (10, 10)), (128, (128, 64))):
        config = GenerateConfig(out=tmp_path / "o.h5", occluder=OccluderParams(patch=patch), image_size=size)
        with pytest.raises(BadInputError, match=rf"^--patch {patch}: the square covers the whole "
                                                rf"{size[0]}x{size[1]} stored image"):
            config.validate()
    # clipped on one side only: accepted, with a warning; no occluded split: nothing to check
    GenerateConfig(occluder=OccluderParams(patch=100), image_size=(128, 64)).validate()
    GenerateConfig(occluder=OccluderParams(patch=500), occlude=()).validate()
    GenerateConfig(types=("random",), occluder=OccluderParams(patch=500)).validate()


def test_generate_refuses_the_flat_occluder_before_any_work(tmp_path: Path) -> None:
    from cli.occsim_cli import main

    result = CliRunner().invoke(main, ["generate", "--src", str(tmp_path / "missing"), "--out", str(tmp_path / "o.h5"),
                                       "--size", "10x10"], prog_name="occsim")
    assert result.exit_code == 2
    assert one_error_line(result) == ("error: --patch 50: the square covers the whole 10x10 stored image, so every "
                                      "occluded copy would be one flat colour; use a --patch of at most 9 or a "
                                      "larger --size")
    assert list(tmp_path.iterdir()) == []


def test_a_clipped_square_warns(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from occsim.occluders import OccluderParams

    with caplog.at_level(logging.WARNING):
        OccluderParams(patch=100).check_fits((128, 64), ("mean",))
    assert [r.getMessage() for r in caplog.records] == [
        "--patch 100 is wider than the 128x64 stored image: the box is clipped to 100x64"]


# ------------------------------------------------------------------------ --workers 1000


@pytest.fixture
def two_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    import common.workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(common.workers, "_warned", set())


def test_worker_counts_are_capped_at_the_usable_cpus_with_one_warning(
        two_cpus: None, tiny_store: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from common.workers import cap_workers, resolve_workers
    from reid.data import build_eval_loader, build_train_loader

    with caplog.at_level(logging.WARNING):
        assert [cap_workers(n) for n in (0, 1, 2, 3, 1000)] == [0, 1, 2, 2, 2]
        assert resolve_workers(1000) == 2 and resolve_workers(1) == 1
        assert build_eval_loader(tiny_store, "query", size=(32, 16), workers=1000).num_workers == 2
        train = build_train_loader(tiny_store, "clean", batch_p=2, batch_k=2, workers=64)
        assert train.num_workers == 2
    assert [r.getMessage() for r in caplog.records] == [
        "--workers 3: only 2 CPUs are usable here; using 2 worker processes"]


# ------------------------------------------------------------------- leftovers of kill -9


def _dead_pid() -> int:
    import subprocess
    import sys

    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(child.stdout)


def test_the_next_store_writer_sweeps_partial_files_of_dead_runs(tmp_path: Path) -> None:
    import os

    from tests.conftest import write_tiny_store

    dead, alive = tmp_path / f".o.h5.{_dead_pid()}-k1ll3d.tmp", tmp_path / f".o.h5.{os.getppid()}-l1v3.tmp"
    legacy = tmp_path / f".o.h5.partial-{_dead_pid()}"  # the name earlier versions used
    other = tmp_path / f".other.h5.{_dead_pid()}-x.tmp"
    for path in (dead, alive, legacy, other):
        path.write_bytes(b"19 MB of a killed run")
    write_tiny_store(tmp_path / "o.h5")
    assert not dead.exists() and not legacy.exists()
    assert alive.exists() and other.exists()  # a live run's file and other names stay
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, other.name, "o.h5"])


def test_atomic_writes_sweep_temporaries_of_dead_writers(tmp_path: Path) -> None:
    import os

    from common.atomic import atomic_write_bytes
    from reid.models.aligned import ModelConfig, build_model
    from reid.models.checkpoint import save_checkpoint

    pid = _dead_pid()
    dead = tmp_path / f".last.pt.{pid}-x1y2z3.tmp"
    alive = tmp_path / f".last.pt.{os.getppid()}-a1b2c3.tmp"
    unrelated = tmp_path / f".best.pt.{pid}-q.tmp"
    for path in (dead, alive, unrelated):
        path.write_bytes(b"half a checkpoint")
    config = ModelConfig(num_classes=2, arch="resnet18")
    save_checkpoint(tmp_path / "last.pt", build_model(config, pretrained=None), config, "fingerprint")
    assert not dead.exists() and alive.exists() and unrelated.exists()
    assert sorted(p.name for p in tmp_path.glob("last.pt*")) == ["last.pt"]
    atomic_write_bytes(tmp_path / "best.pt", b"x")
    assert not unrelated.exists()


# ---------------------------------------------------- outputs that collide with folders, Ctrl-C


def test_an_atomic_write_onto_a_folder_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    from common.atomic import atomic_write_bytes

    (tmp_path / "r_cmc.png").mkdir()
    with pytest.raises(BadInputError, match=r"r_cmc.png: is a folder, so the CMC plot cannot be written there"):
        atomic_write_bytes(tmp_path / "r_cmc.png", b"png", "CMC plot")
    assert [p.name for p in tmp_path.iterdir()] == ["r_cmc.png"]


def _never(*args, **kwargs):
    raise AssertionError("the outputs must be checked before any features are computed")


def test_reid_eval_refuses_a_companion_folder_before_computing(tiny_store: Path, checkpoint: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.reid_eval import eval_command

    (tmp_path / "X_cmc.png").mkdir()
    monkeypatch.setattr("reid.engine.evaluator.run_eval", _never)
    result = CliRunner().invoke(eval_command, ["--data", str(tiny_store), "--checkpoint", str(checkpoint),
                                               "--device", "cpu", "--out", str(tmp_path / "X.json")])
    assert result.exit_code == 2, result.output
    assert "X_cmc.png: is a folder, so the CMC plot cannot be written there" in one_error_line(result)
    assert [p.name for p in tmp_path.iterdir()] == ["X_cmc.png"]  # no half-written report


@pytest.mark.parametrize(("command", "library"), [
    ("cli.reid_rank:rank_command", "reid.rank.run_rank"),
    ("cli.reid_saliency:saliency_command", "reid.saliency.run_saliency"),
])
def test_figure_folders_are_checked_before_computing(command: str, library: str, tiny_store: Path, checkpoint: Path,
                                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    module, name = command.split(":")
    blocker = tmp_path / "taken"
    blocker.write_text("a file where the figures would go")
    monkeypatch.setattr(library, _never)
    result = CliRunner().invoke(getattr(importlib.import_module(module), name), [
        "--data", str(tiny_store), "--checkpoint", str(checkpoint), "--device", "cpu", "--out", str(blocker / "figs")])
    assert result.exit_code == 2, result.output
    assert "taken: is a file, so the folder for the" in one_error_line(result)


def test_study_checks_its_report_folder_before_training(tiny_store: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.reid_study import study_command

    blocker = tmp_path / "report"
    blocker.write_text("x")
    monkeypatch.setattr("reid.study.run_study", _never)
    result = CliRunner().invoke(study_command, ["table1", "--data", str(tiny_store), "--out", str(blocker)])
    assert result.exit_code == 2, result.output
    assert "report: is a file, not a folder for the study report" in one_error_line(result)


def test_ctrl_c_during_generate_is_one_line_exit_130_and_leaves_nothing(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import signal

    import occsim.generate as gen
    from cli.occsim_cli import main

    # What was installed before (SIG_IGN when the suite runs as a background job, e.g. under nohup).
    before = signal.getsignal(signal.SIGINT)
    from tests.conftest import make_market_tree

    market = make_market_tree(tmp_path / "Market")
    out_dir = tmp_path / "out"
    real, calls = gen._process_chunk, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C must not cut the clean-up short
        return real(*args, **kwargs)

    monkeypatch.setattr(gen, "_process_chunk", interrupted)
    result = CliRunner().invoke(main, ["generate", "--src", str(market), "--out", str(out_dir / "o.h5"), "--size",
                                       "32x16", "--patch", "10", "--workers", "1"], prog_name="occsim")
    assert result.exit_code == 130, result.output
    assert one_error_line(result, exit_code=130) == ("error: interrupted by signal 2; nothing was written (outputs "
                                                     "appear only when complete)")
    assert list(out_dir.iterdir()) == []
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored


def test_synth_workers_are_capped_too(two_cpus: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import occsim.synth as synth

    asked = []

    class Recording:
        def __init__(self, n_jobs: int, **kwargs) -> None:
            asked.append(n_jobs)
            raise RuntimeError("recorded")

    monkeypatch.setattr(synth.write, "Parallel", Recording)
    with pytest.raises(RuntimeError, match="recorded"):
        synth.synthesize_market(tmp_path / "s", synth.SynthConfig(n_ids=4, images_per_id=3), workers=1000)
    assert asked == [2] and not (tmp_path / "s").exists()
