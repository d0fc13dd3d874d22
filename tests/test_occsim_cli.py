"""`occsim` CLI: the happy path and every bad input of issue 2 (exit 2, one line naming the file)."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
from click.testing import CliRunner, Result

from cli.occsim_cli import main
from occsim.store import open_h5, read_images, read_store
from tests.conftest import one_error_line
from tests.conftest import make_market_tree, write_jpeg

SMALL = ["--size", "32x16", "--patch", "10", "--workers", "1"]


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture()
def market(tmp_path: Path) -> Path:
    return make_market_tree(tmp_path / "Market")


def test_generate_info_preview(market: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.h5"
    result = _run("generate", "--src", market, "--out", out, "--type", "mean,black", "--type", "random", *SMALL)
    assert result.exit_code == 0, result.output
    # The source's counts come before the summary.
    assert result.stdout.index("train") < result.stdout.index("wrote")
    assert "gallery" in result.stdout and "junk" in result.stdout
    assert "train        16 rows: 4 clean, 4 mean, 4 black, 4 random" in result.stdout
    info = read_store(out)
    assert info.generator_args["types"] == ["mean", "black", "random"]
    assert info.generator_args["patch"] == 10 and info.image_size == (32, 16)

    result = _run("info", out)
    assert result.exit_code == 0
    assert info.fingerprint in result.stdout
    assert "4 clean; occluded: 4 mean, 4 black, 4 random" in result.stdout
    assert "5 clean (incl. 1 junk, 1 distractor); occluded: none" in result.stdout
    assert "cameras 1, 2, 3, 6" in result.stdout  # train cameras

    png = tmp_path / "p" / "preview.png"
    result = _run("preview", out, "--out", png, "--n", "5")
    assert result.exit_code == 0, result.output
    grid = cv2.imread(str(png))
    assert grid is not None and grid.shape[0] > 2 * 3 * 32 and grid.shape[1] > 4 * 2 * 3 * 16  # 2 rows of 4, scaled 3x


def test_occlude_option_and_gallery_flag(market: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.h5"
    assert _run("generate", "--src", market, "--out", out, "--occlude", "query", "--occlude-gallery", *SMALL).exit_code == 0
    info = read_store(out)
    assert [int(info.splits[s].occluded.sum()) for s in ("train", "query", "gallery")] == [0, 2, 5]


def test_synth_then_generate(tmp_path: Path) -> None:
    syn = tmp_path / "syn"
    result = _run("synth", "--out", syn, "--ids", "4", "--images-per-id", "3", "--cameras", "2")
    assert result.exit_code == 0, result.output
    assert (syn / "bounding_box_train").is_dir() and (syn / "bounding_box_test" / "Thumbs.db").exists()
    result = _run("generate", "--src", syn, "--out", tmp_path / "o.h5", "--workers", "2")
    assert result.exit_code == 0, result.output
    assert read_store(tmp_path / "o.h5").image_size == (128, 64)
    one_error_line(_run("synth", "--out", syn, "--ids", "4"), str(syn), "--force")


def test_missing_source(tmp_path: Path) -> None:
    result = _run("generate", "--src", tmp_path / "nowhere", "--out", tmp_path / "o.h5", *SMALL)
    one_error_line(result, "nowhere", "no such folder")
    assert not (tmp_path / "o.h5").exists()


def test_empty_source(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = _run("generate", "--src", tmp_path / "empty", "--out", tmp_path / "o.h5", *SMALL)
    one_error_line(result, "empty", "folder is empty")
    assert not (tmp_path / "o.h5").exists()


def test_not_market_layout(tmp_path: Path) -> None:
    write_jpeg(tmp_path / "holiday" / "IMG_0001.jpg", seed=0)
    result = _run("generate", "--src", tmp_path / "holiday", "--out", tmp_path / "o.h5", *SMALL)
    one_error_line(result, "holiday", "no known dataset layout; looked for", "bounding_box_train/", "campus/",
                      "--layout")
    assert not (tmp_path / "o.h5").exists()


def test_unparsable_name(market: Path, tmp_path: Path) -> None:
    write_jpeg(market / "bounding_box_train" / "person_7.jpg", seed=0)
    result = _run("generate", "--src", market, "--out", tmp_path / "o.h5", *SMALL)
    one_error_line(result, "bounding_box_train/person_7.jpg", "does not parse")
    assert not (tmp_path / "o.h5").exists()


@pytest.mark.parametrize("damage, reason", [
    (lambda data: data[: len(data) // 2], "truncated JPEG"),
    (lambda data: b"", "zero-byte file"),
    (lambda data: b"\x00" * len(data), "not a decodable image"),
])
def test_unreadable_image(market: Path, tmp_path: Path, damage, reason: str) -> None:
    bad = market / "bounding_box_test" / "0001_c4s2_012345_02.jpg"
    bad.write_bytes(damage(bad.read_bytes()))
    out = tmp_path / "o.h5"
    result = _run("generate", "--src", market, "--out", out, "--size", "32x16", "--patch", "10", "--workers", "2")
    one_error_line(result, "bounding_box_test/0001_c4s2_012345_02.jpg", reason, "--skip-bad")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Market"]  # no file, no partial file


def test_skip_bad_reports_each(market: Path, tmp_path: Path) -> None:
    (market / "query" / "0003_c2s1_000201_00.jpg").write_bytes(b"")
    t = market / "bounding_box_train" / "0002_c2s1_000301_01.jpg"
    t.write_bytes(t.read_bytes()[:-20])
    result = _run("generate", "--src", market, "--out", tmp_path / "o.h5", "--skip-bad", *SMALL)
    assert result.exit_code == 0, result.output
    assert "skipped 2 unreadable images" in result.stdout
    assert "query/0003_c2s1_000201_00.jpg: zero-byte file" in result.stdout
    assert "bounding_box_train/0002_c2s1_000301_01.jpg: truncated JPEG" in result.stdout
    assert result.stderr.count("WARNING") == 2  # and each logged as it is found
    assert len(read_store(tmp_path / "o.h5").splits["query"]) == 2  # 1 clean + 1 occluded


def test_grayscale_and_rgba_are_converted(market: Path, tmp_path: Path) -> None:
    assert cv2.imwrite(str(market / "query" / "0001_c1s1_001051_00.jpg"), np.full((32, 16), 90, np.uint8))
    rgba = np.zeros((32, 16, 4), np.uint8)
    rgba[..., 2], rgba[..., 3] = 250, 40  # red, mostly transparent
    ok, png = cv2.imencode(".png", rgba)
    (market / "query" / "0003_c2s1_000201_00.jpg").write_bytes(png.tobytes())
    out = tmp_path / "o.h5"
    result = _run("generate", "--src", market, "--out", out, *SMALL)
    assert result.exit_code == 0, result.output
    with open_h5(out) as h5:
        gray, red = read_images(h5, "query", [0, 1])
    assert gray.shape == red.shape == (32, 16, 3)
    assert np.all(np.abs(gray.astype(int) - 90) <= 1)
    assert red[0, 0].tolist() == [250, 0, 0]


def test_existing_output_without_force(market: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.h5"
    out.write_bytes(b"keep me")
    one_error_line(_run("generate", "--src", market, "--out", out, *SMALL), str(out), "--force")
    assert out.read_bytes() == b"keep me"
    assert _run("generate", "--src", market, "--out", out, "--force", *SMALL).exit_code == 0
    assert read_store(out).splits["query"].pid.size == 4


def test_unwritable_output_folder(market: Path, tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("a file, not a folder")
    out = tmp_path / "file.txt" / "occluded.h5"
    one_error_line(_run("generate", "--src", market, "--out", out, *SMALL), "file.txt", "choose another --out")
    assert (tmp_path / "file.txt").read_text() == "a file, not a folder"


@pytest.mark.parametrize("args, needle", [
    (["--type", "mean,blur"], "--type 'blur'"),
    (["--occlude", "train,test"], "--occlude 'test'"),
    (["--size", "128by64"], "--size"),
    (["--patch", "0"], "--patch"),
    (["--area-min", "0.5", "--area-max", "0.2"], "--area-min"),
])
def test_bad_options(market: Path, tmp_path: Path, args: list[str], needle: str) -> None:
    one_error_line(_run("generate", "--src", market, "--out", tmp_path / "o.h5", "--workers", "1", *args), needle)
    assert not (tmp_path / "o.h5").exists()


def test_click_usage_error_exits_2(tmp_path: Path) -> None:
    result = _run("generate", "--patch", "big")
    assert result.exit_code == 2 and "Invalid value" in result.stderr


def test_info_on_files_that_are_not_ours(market: Path, tmp_path: Path) -> None:
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    one_error_line(_run("info", text), "notes.h5", "not a readable HDF5 file")

    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as h5:
        h5["x"] = np.arange(3)
    one_error_line(_run("info", foreign), "foreign.h5", "not an occluded-reid file")

    one_error_line(_run("info", tmp_path / "absent.h5"), "absent.h5", "no such file")

    good = tmp_path / "good.h5"
    assert _run("generate", "--src", market, "--out", good, *SMALL).exit_code == 0
    data = good.read_bytes()
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(data[: len(data) // 2])
    one_error_line(_run("info", truncated), "truncated.h5")
    one_error_line(_run("preview", truncated, "--out", tmp_path / "p.png"), "truncated.h5")
    assert not (tmp_path / "p.png").exists()


def test_preview_needs_png_and_occluded_rows(market: Path, tmp_path: Path) -> None:
    out = tmp_path / "clean.h5"
    assert _run("generate", "--src", market, "--out", out, "--occlude", "", *SMALL).exit_code == 0
    one_error_line(_run("preview", out, "--out", tmp_path / "p.png"), "clean.h5", "no occluded rows")
    one_error_line(_run("preview", out, "--out", tmp_path / "p.jpg"), "p.jpg", ".png")


def test_default_source_is_synthesised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No --src and no data/Market-1501-v15.09.15: the synthetic set is made (here, a stub) and used."""
    monkeypatch.chdir(tmp_path)

    def fake_synth(out_dir, config, workers=1, force=False):
        make_market_tree(Path(out_dir))

    monkeypatch.setattr("occsim.synth.synthesize_market", fake_synth)
    result = _run("generate", *SMALL)
    assert result.exit_code == 0, result.output
    assert "making the built-in synthetic set in data/synthetic-market" in result.stdout
    assert read_store(tmp_path / "data" / "occluded.h5").source == "synthetic-market"
    shutil.rmtree(tmp_path / "data" / "synthetic-market")
