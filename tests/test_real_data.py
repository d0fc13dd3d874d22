"""Real benchmarks end to end: test-only files, the `real` occluder code, damaged JPEGs, image
formats, CSV errors through the CLI, and cross-dataset evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner, Result

from cli.occsim_cli import main as occsim_main
from cli.reid_eval import eval_command
from common.errors import BadInputError
from common.decoding import decode_image
from occsim.generate import GenerateConfig, generate
from occsim.info import describe
from occsim.occluders import OccluderParams
from occsim.schema import NO_BOX, OccType
from occsim.store import open_h5, read_images, read_store
from tests.conftest import one_error_line
from tests.test_readers import make_csv_tree, make_cuhk01, make_occluded_reid, write_image
from tests.conftest import make_market_tree

SMALL = ["--size", "32x16", "--patch", "10", "--workers", "1"]


def _occsim(*args: object) -> Result:
    return CliRunner().invoke(occsim_main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def occluded_reid_h5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An Occluded-REID-like file: 3 ids x 2 occluded queries (+ a mean copy) x 2 whole-body gallery."""
    root = make_occluded_reid(tmp_path_factory.mktemp("occ") / "Occluded_REID", ids=(1, 2, 3))
    out = root.parent / "occluded-reid.h5"
    generate(GenerateConfig(src=root, out=out, types=("mean",), image_size=(32, 16),
                            occluder=OccluderParams(patch=10), workers=1, progress=False))
    return out


def test_test_only_file_has_an_empty_train_split_and_real_queries(occluded_reid_h5: Path) -> None:
    store = read_store(occluded_reid_h5)
    train, query, gallery = (store.splits[s] for s in ("train", "query", "gallery"))
    assert len(train) == 0 and train.label is not None and len(train.label) == 0
    n = 6
    assert query.occ_type.tolist() == [OccType.REAL] * n + [OccType.MEAN] * n
    assert query.occluded.all()
    assert query.box[:n].tolist() == [list(NO_BOX)] * n and (query.box[n:] >= 0).all()
    assert query.clean_index.tolist() == list(range(n)) * 2  # real rows are their own originals
    assert query.rows("clean").size == 0 and query.occ_types_present() == ["mean", "real"]
    assert gallery.occ_type.tolist() == [0] * n and not gallery.occluded.any()
    assert set(query.camid.tolist()) == {1} and set(gallery.camid.tolist()) == {2}
    with open_h5(occluded_reid_h5) as h5:
        assert h5["train"]["images"].shape == (0, 32, 16, 3)
    text = describe(store)
    assert "train         0 rows: none (a test-only benchmark" in text
    assert "occluded: 6 mean, 6 real" in text


def test_reid_train_on_a_test_only_file_is_one_line(occluded_reid_h5: Path, tmp_path: Path) -> None:
    from cli.reid_train import train_command

    result = CliRunner().invoke(train_command, ["--data", str(occluded_reid_h5), "--arch", "resnet18",
                                                "--pretrained", "none", "--out", str(tmp_path / "run")])
    one_error_line(result, str(occluded_reid_h5), "has no train split", "reid eval")
    assert not (tmp_path / "run").exists()


def test_cross_dataset_eval_on_real_queries(occluded_reid_h5: Path, checkpoint: Path, tiny_store: Path,
                                            tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    result = CliRunner().invoke(eval_command, ["--data", str(occluded_reid_h5), "--checkpoint", str(checkpoint),
                                               "--device", "cpu", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    # Default "all": no clean query in a real occluded benchmark, so the occluded kinds only.
    assert [row["name"] for row in report["rows"]] == ["occluded:mean", "occluded:real"]
    assert all(row["num_queries"] == 6 for row in report["rows"])
    assert report["cross_dataset"] is True
    assert report["checkpoint_fingerprint"] == read_store(tiny_store).fingerprint
    assert report["data_fingerprint"] == read_store(occluded_reid_h5).fingerprint
    assert report["input_size"] == [64, 32]  # the checkpoint's, not the file's 32x16
    assert "cross-dataset (trained on" in result.stdout
    for query in ("occluded:real", "occluded"):
        again = CliRunner().invoke(eval_command, ["--data", str(occluded_reid_h5), "--checkpoint", str(checkpoint),
                                                  "--device", "cpu", "--query", query, "--out", str(out), "--force"])
        assert again.exit_code == 0, again.output
    assert [row["name"] for row in json.loads(out.read_text())["rows"]] == ["occluded:mean", "occluded:real"]
    clean = CliRunner().invoke(eval_command, ["--data", str(occluded_reid_h5), "--checkpoint", str(checkpoint),
                                              "--device", "cpu", "--query", "clean"])
    one_error_line(clean, "the query split has no clean rows")


def test_cuhk01_split_recorded_and_other_files_unchanged(tmp_path: Path) -> None:
    root = make_cuhk01(tmp_path / "CUHK01", n_ids=6)
    out = tmp_path / "c.h5"
    result = _occsim("generate", "--src", root, "--out", out, "--split-seed", "4", "--type", "mean", *SMALL)
    assert result.exit_code == 0, result.output
    store = read_store(out)
    args = store.generator_args["source_args"]
    assert args["split_seed"] == 4 and len(args["train_ids"]) == 3
    assert sorted(set(store.splits["train"].pid.tolist())) == args["train_ids"]
    assert set(store.splits["query"].pid.tolist()) == set(range(1, 7)) - set(args["train_ids"])
    assert store.splits["train"].label.tolist()[:8] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert "train_ids: " not in describe(store)  # recorded under source_args
    # A Market file records no source_args, so its fingerprint is what it was before readers had any.
    market = _occsim("generate", "--src", make_market_tree(tmp_path / "m"), "--out", tmp_path / "m.h5", *SMALL)
    assert market.exit_code == 0, market.output
    assert "source_args" not in read_store(tmp_path / "m.h5").generator_args


def test_real_is_not_a_synthetic_occluder(tmp_path: Path) -> None:
    result = _occsim("generate", "--src", make_csv_tree(tmp_path / "mine"), "--out", tmp_path / "o.h5",
                     "--type", "real", *SMALL)
    one_error_line(result, "--type 'real': unknown", "mean, black, random")


# ---------------------------------------------------------------------------------------
# Damaged JPEGs (issue 11) and image formats.


def _half_jpeg(path: Path) -> None:
    """A JPEG cut in half and closed with an end marker: libjpeg decodes it with a warning."""
    image = cv2.resize(np.random.default_rng(0).integers(0, 256, (8, 4, 3), dtype=np.uint8), (64, 128))
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    data = data.tobytes()
    path.write_bytes(data[: len(data) // 2] + b"\xff\xd9")


def test_jpeg_with_premature_end_of_data_segment_is_bad(tmp_path: Path) -> None:
    _half_jpeg(tmp_path / "half.jpg")
    image, reason = decode_image(str(tmp_path / "half.jpg"), (128, 64))
    assert image is None
    assert reason == "damaged JPEG (libjpeg: Corrupt JPEG data: premature end of data segment)"
    write_image(tmp_path / "fine.jpg", seed=0)
    image, reason = decode_image(str(tmp_path / "fine.jpg"), (128, 64))
    assert reason == "" and image.shape == (128, 64, 3)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_damaged_jpeg_stops_generate_or_is_skipped(tmp_path: Path, workers: str) -> None:
    root = make_csv_tree(tmp_path / "mine")
    _half_jpeg(root / "cam2" / "b.jpg")  # the only query image of pid 7... plus one more below
    write_image(root / "cam2" / "q2.png", seed=5)
    with open(root / "manifest.csv", "a") as fh:
        fh.write("cam2/q2.png,8,2,query\n")
    args = ["--size", "32x16", "--patch", "10", "--workers", workers]
    result = _occsim("generate", "--src", root, "--out", tmp_path / "o.h5", *args)
    one_error_line(result, "cam2/b.jpg: damaged JPEG (libjpeg: Corrupt JPEG data: premature end of data segment)",
                      "--skip-bad")
    assert not (tmp_path / "o.h5").exists()
    result = _occsim("generate", "--src", root, "--out", tmp_path / "o.h5", "--skip-bad", *args)
    assert result.exit_code == 0, result.output
    assert "cam2/b.jpg: damaged JPEG" in result.output
    store = read_store(tmp_path / "o.h5")
    assert "cam2/b.jpg" not in store.splits["query"].path
    assert store.generator_args["skipped"] == ["cam2/b.jpg"]


def test_png_tif_bmp_and_grayscale_decode_to_rgb_at_the_stored_size(tmp_path: Path) -> None:
    root = tmp_path / "mine"
    colour = np.zeros((60, 20, 3), dtype=np.uint8)
    colour[:] = (10, 20, 30)  # BGR on disk
    root.mkdir()
    for name in ("a.png", "b.tif", "c.bmp"):
        assert cv2.imwrite(str(root / name), colour)
    assert cv2.imwrite(str(root / "d.png"), np.full((300, 100), 77, dtype=np.uint8))  # grayscale, larger
    (root / "manifest.csv").write_text("path,pid,camid,split\na.png,1,1,train\nb.tif,1,2,query\n"
                                       "c.bmp,1,3,gallery\nd.png,2,3,gallery\n")
    out = tmp_path / "o.h5"
    result = _occsim("generate", "--src", root, "--out", out, "--type", "mean", *SMALL)
    assert result.exit_code == 0, result.output
    with open_h5(out) as h5:
        assert read_images(h5, "train", [0])[0].reshape(-1, 3).tolist() == [[30, 20, 10]] * (32 * 16)
        assert read_images(h5, "query", [0])[0].reshape(-1, 3).tolist() == [[30, 20, 10]] * (32 * 16)
        gallery = read_images(h5, "gallery", [0, 1])
    assert gallery[0].reshape(-1, 3).tolist() == [[30, 20, 10]] * (32 * 16)
    assert gallery[1].reshape(-1, 3).tolist() == [[77, 77, 77]] * (32 * 16)


# ---------------------------------------------------------------------------------------
# Bad CSV manifests through the CLI: one line naming file and line, exit 2, no output file.


@pytest.mark.parametrize("bad_line, needle", [
    ("cam2/b.jpg,7,2,probe", "manifest.csv:3: unknown split 'probe'"),
    ("cam2/b.jpg,x7,2,query", "manifest.csv:3: pid 'x7' is not an integer"),
    ("cam2/zz.jpg,7,2,query", "manifest.csv:3: "),
])
def test_bad_csv_through_the_cli(tmp_path: Path, bad_line: str, needle: str) -> None:
    root = make_csv_tree(tmp_path / "mine", ["path,pid,camid,split", "cam1/a.png,7,1,train", bad_line,
                                             "cam3/c.bmp,7,3,gallery"])
    result = _occsim("generate", "--src", root, "--out", tmp_path / "o.h5", *SMALL)
    one_error_line(result, needle)
    assert not (tmp_path / "o.h5").exists()
    assert not list(tmp_path.glob(".o.h5*"))


def test_forced_layout_that_does_not_fit(tmp_path: Path) -> None:
    root = make_csv_tree(tmp_path / "mine")
    result = _occsim("generate", "--src", root, "--layout", "cuhk01", "--out", tmp_path / "o.h5", *SMALL)
    one_error_line(result, "no campus/ folder")
    with pytest.raises(BadInputError, match="--layout 'market'"):
        generate(GenerateConfig(src=root, out=tmp_path / "o.h5", layout="market"))


def test_study_adds_other_test_files_as_columns(tiny_store: Path, occluded_reid_h5: Path, tmp_path: Path) -> None:
    from cli.reid_study import study_command

    out = tmp_path / "study"
    training = ["--arch", "resnet18", "--pretrained", "none", "--size", "32x16", "--epochs", "1", "--batch-p", "2",
                "--batch-k", "2", "--warmup-epochs", "0", "--workers", "0", "--device", "cpu",
                "--max-steps-per-epoch", "1"]
    args = ["alpha", "--data", str(tiny_store), "--out", str(out), "--alphas", "1", "--val-fraction", "0.34", *training]
    first = CliRunner().invoke(study_command, args, catch_exceptions=False)
    assert first.exit_code == 0, first.output
    cell_file = out / "cells" / "alpha-1-seed0" / "result.json"
    assert set(json.loads(cell_file.read_text())["evaluations"]) == {"test", "validation"}
    # Added afterwards: the finished cell is evaluated on it, not trained again.
    again = CliRunner().invoke(study_command, [*args, "--test-data", str(occluded_reid_h5)], catch_exceptions=False)
    assert again.exit_code == 0, again.output
    assert "0 cell run(s) trained, 1 reused" in again.output
    evaluation = json.loads(cell_file.read_text())["evaluations"]["test:occluded-reid"]
    assert set(evaluation) == {"occluded:mean", "occluded:real"}
    assert evaluation["occluded:real"]["num_queries"] == 6
    results = json.loads((out / "results.json").read_text())
    assert results["test_data"]["test:occluded-reid"]["fingerprint"] == read_store(occluded_reid_h5).fingerprint
    report = (out / "report.md").read_text()
    assert "## Other test files (cross-dataset)" in report
    assert "| model | occluded-reid occluded:mean | occluded-reid occluded:real |" in report
    twice = CliRunner().invoke(study_command, [*args, "--test-data", str(tiny_store)])
    one_error_line(twice, "--test-data", "equal to --data")
