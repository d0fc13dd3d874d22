"""Using a trained model: the inference spec, `reid embed`, `reid search`, `reid export`, `reid.Embedder`.

Models are resnet18 at 64x32 (random weights from the conftest ``checkpoint`` fixture, or
trained here for four steps); image folders are a dozen small files written by the tests.
"""

from __future__ import annotations

import filecmp
import json
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli.reid_embed import embed_command
from cli.reid_export import export_command
from cli.reid_search import search_command
from common.errors import BadInputError
from occsim.store import open_h5, read_images, read_store
from reid.distance import aligned_local_distance, pairwise_distance
from reid.inference.embed import EmbedConfig, run_embed, spool_dir
from reid.inference.features_file import FeaturesFile
from reid.inference.images import list_images
from reid.inference.search import ArrayGallery, search_topk
from reid.models.inference import load_inference_model
from tests.conftest import one_error_line

REPO = Path(__file__).resolve().parents[1]


def _colour_image(seed: int, size: tuple[int, int]) -> np.ndarray:
    """uint8 RGB [H, W, 3]: a flat colour per seed plus noise (deterministic)."""
    rng = np.random.default_rng(seed)
    colour = rng.integers(30, 226, size=3)
    return np.clip(colour + rng.normal(0, 12, size=(*size, 3)), 0, 255).astype(np.uint8)


def _write(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR if rgb.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    assert cv2.imwrite(str(path), image)


@pytest.fixture(scope="module")
def crops(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder as a person would have it: nested folders, JPEG / PNG / BMP, grayscale, RGBA,
    plus a text file, a hidden file, a garbage ".jpg" and a JPEG cut in half."""
    root = tmp_path_factory.mktemp("crops")
    for i in range(4):
        _write(root / "cam1" / f"p{i}.jpg", _colour_image(i, (48, 24)))
    _write(root / "cam2" / "deep" / "p4.png", _colour_image(4, (100, 40)))
    _write(root / "cam2" / "p5.bmp", _colour_image(5, (64, 32)))
    gray = _colour_image(6, (64, 32))[:, :, 0]
    _write(root / "gray.png", gray)
    _write(root / "gray_as_rgb.png", np.repeat(gray[:, :, None], 3, axis=2))
    rgba = np.concatenate([_colour_image(7, (64, 32)), np.full((64, 32, 1), 200, np.uint8)], axis=2)
    _write(root / "rgba.png", rgba)
    (root / "notes.txt").write_text("not an image\n")
    _write(root / ".hidden.png", _colour_image(8, (64, 32)))
    (root / "cam1" / "broken.jpg").write_bytes(b"this is not a JPEG")
    ok, jpeg = cv2.imencode(".jpg", _colour_image(9, (64, 32)))
    (root / "cam2" / "cut.jpg").write_bytes(jpeg.tobytes()[: len(jpeg) // 2])
    return root


GOOD = ["cam1/p0.jpg", "cam1/p1.jpg", "cam1/p2.jpg", "cam1/p3.jpg", "cam2/deep/p4.png", "cam2/p5.bmp",
        "gray.png", "gray_as_rgb.png", "rgba.png"]
BAD = ["cam1/broken.jpg", "cam2/cut.jpg"]


def _config(checkpoint: Path, src: Path, out: Path, **overrides) -> EmbedConfig:
    return EmbedConfig(**{"checkpoint": checkpoint, "src": src, "out": out, "device": "cpu", **overrides})


# ------------------------------------------------------------------------ inference spec


def test_inference_spec_reads_the_checkpoint(checkpoint: Path) -> None:
    model, spec = load_inference_model(checkpoint)
    assert not model.training
    assert spec.arch == "resnet18" and spec.input_size == (64, 32)
    assert spec.mean == (0.485, 0.456, 0.406) and spec.std == (0.229, 0.224, 0.225)
    assert (spec.global_dim, spec.num_stripes, spec.local_dim) == (512, 8, 128)
    out = model(torch.zeros(2, 3, *spec.input_size))
    assert out.local_feat.shape == (2, spec.num_stripes, spec.local_dim)


# ---------------------------------------------------------------------------- listing


def test_list_images_walks_sorted_and_leaves_out_non_images(crops: Path) -> None:
    listing = list_images(crops)
    assert listing.kind == "folder"
    assert list(listing.names) == sorted(GOOD + BAD)
    assert listing.files[0] == str(crops / "cam1" / "broken.jpg")


def test_list_file_paths_are_relative_to_the_list(crops: Path, tmp_path: Path) -> None:
    lst = tmp_path / "sub" / "list.txt"
    lst.parent.mkdir()
    lst.write_text(f"# my crops\n{crops}/cam1/p1.jpg\n\n../../{crops.name}/gray.png\n".replace(f"../../{crops.name}", os.path.relpath(crops, lst.parent)))
    listing = list_images(lst)
    assert listing.kind == "list" and len(listing) == 2
    assert Path(listing.files[1]) == (crops / "gray.png").resolve()
    lst.write_text("missing.png\n")
    with pytest.raises(BadInputError, match=r"list\.txt: entry 1 'missing\.png' is not a file"):
        list_images(lst)


def test_list_images_refuses_an_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "readme.md").write_text("x")
    with pytest.raises(BadInputError, match="no images found"):
        list_images(tmp_path)


# ------------------------------------------------------------------------------ embed


def test_embed_skip_bad_lists_them_and_keeps_the_rest(checkpoint: Path, crops: Path, tmp_path: Path) -> None:
    report = run_embed(_config(checkpoint, crops, tmp_path / "f.h5", skip_bad=True, batch_size=4))
    assert report.rows == len(GOOD)
    assert report.skipped == [("cam1/broken.jpg", "not a decodable image"),
                              ("cam2/cut.jpg", "truncated JPEG (no end-of-image marker)")]
    with FeaturesFile(tmp_path / "f.h5") as f:
        assert f.paths == GOOD
        assert f.h5["global"].shape == (len(GOOD), 512)
        assert f.h5["local"].shape == (len(GOOD), 8, 128)
        assert f.occlusion.shape == (len(GOOD),) and np.all((f.occlusion > 0) & (f.occlusion < 1))
        assert [s.decode() for s in f.h5["skipped_path"][()]] == ["cam1/broken.jpg", "cam2/cut.jpg"]
        assert f.checkpoint_fingerprint == __import__("hashlib").sha256(checkpoint.read_bytes()).hexdigest()
        assert list(f.h5.attrs["input_size"]) == [64, 32]
        g = f.global_rows(0, len(f))
    # Grayscale decodes to three equal channels: same features as the same pixels saved as RGB.
    np.testing.assert_array_equal(g[GOOD.index("gray.png")], g[GOOD.index("gray_as_rgb.png")])
    assert not spool_dir(tmp_path / "f.h5").exists()


def test_embed_bad_image_is_one_error_line_and_nothing_written(checkpoint: Path, crops: Path, tmp_path: Path) -> None:
    out = tmp_path / "f.h5"
    result = CliRunner().invoke(embed_command, ["--checkpoint", str(checkpoint), "--src", str(crops), "--out", str(out),
                                                "--device", "cpu"])
    assert one_error_line(result) == (f"error: {crops / 'cam1' / 'broken.jpg'}: not a decodable image; replace or "
                                      "remove the file, or pass --skip-bad to skip unreadable images")
    assert sorted(os.listdir(tmp_path)) == []


def test_embed_same_input_same_bytes(checkpoint: Path, crops: Path, tmp_path: Path) -> None:
    run_embed(_config(checkpoint, crops, tmp_path / "a.h5", skip_bad=True, batch_size=4))
    run_embed(_config(checkpoint, crops, tmp_path / "b.h5", skip_bad=True, batch_size=4, workers=2))
    assert filecmp.cmp(tmp_path / "a.h5", tmp_path / "b.h5", shallow=False)


@pytest.fixture(scope="module")
def bn_checkpoint(tiny_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh checkpoint that retrieves with the BN-neck feature (`reid train`'s default), its neck
    randomised so that the BN feature differs from the pooled one."""
    from tests.conftest import write_fresh_checkpoint

    return write_fresh_checkpoint(tmp_path_factory.mktemp("run") / "bn" / "last.pt", tiny_store, retrieval_feature="bn")


@pytest.mark.parametrize("which", ["checkpoint", "bn_checkpoint"])
def test_embed_h5_source_matches_reid_eval_features(which: str, tiny_store: Path, tmp_path: Path,
                                                    request: pytest.FixtureRequest) -> None:
    """`reid embed` stores the feature `reid eval` measures, the BN-neck one for a BN-neck model."""
    from reid.engine.features import extract_features

    checkpoint = request.getfixturevalue(which)
    run_embed(_config(checkpoint, tiny_store, tmp_path / "q.h5", splits=("query",), batch_size=5))
    model, spec = load_inference_model(checkpoint)
    n = len(read_store(tiny_store).splits["query"])
    expected = extract_features(model, tiny_store, "query", np.arange(n), input_size=spec.input_size, batch_size=5)
    with FeaturesFile(tmp_path / "q.h5") as f:
        assert f.paths[:2] == ["query/0", "query/1"] and f.source_kind == "h5"
        np.testing.assert_array_equal(f.pids, read_store(tiny_store).splits["query"].pid)
        np.testing.assert_allclose(f.global_rows(0, n), expected.global_feat, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(f.local_rows(0, n), expected.local_feat, rtol=1e-5, atol=1e-5)
    if which == "bn_checkpoint":  # the BN feature, not the pooled one
        from reid.inference.export import example_batch

        with torch.inference_mode():
            out = model(example_batch(spec, 2))
        # The pooled feature before the neck is what retrieval must not use for a BN-neck model.
        assert not np.allclose(out.bn_feat.numpy(), out.global_feat.numpy(), atol=1e-3)


_KILLER = """
import os, signal, sys
from pathlib import Path
from reid.inference.embed import EmbedConfig, run_embed
config = EmbedConfig(checkpoint=Path(sys.argv[1]), src=Path(sys.argv[2]), out=Path(sys.argv[3]), device="cpu",
                     batch_size=2, chunk_rows=4, skip_bad=True)
def kill_after(chunk, done):
    if chunk == 1:
        os.kill(os.getpid(), signal.SIGKILL)
run_embed(config, on_chunk=kill_after)
"""


def test_resume_after_kill_gives_the_uninterrupted_rows(checkpoint: Path, crops: Path, tmp_path: Path) -> None:
    options = dict(batch_size=2, chunk_rows=4, skip_bad=True)
    run_embed(_config(checkpoint, crops, tmp_path / "whole.h5", **options))
    out = tmp_path / "killed.h5"
    # The killed run must use this process's thread count: float sums differ between 1 and 2 threads.
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()), "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", _KILLER, str(checkpoint), str(crops), str(out)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert not out.exists()
    assert sorted(p.name for p in spool_dir(out).glob("chunk-*")) == ["chunk-000000.npz", "chunk-000001.npz"]

    with pytest.raises(BadInputError, match="pass --resume to continue it"):
        run_embed(_config(checkpoint, crops, out, **options))
    with pytest.raises(BadInputError, match=r"same checkpoint, source and options .*batch_size 2 -> 3"):
        run_embed(_config(checkpoint, crops, out, **{**options, "batch_size": 3}, resume=True))

    computed: list[int] = []
    report = run_embed(_config(checkpoint, crops, out, **options, resume=True), on_chunk=lambda c, done: computed.append(c))
    # 11 listed images, 2 per batch, 2 batches per chunk: chunks 0-1 (8 images, 2 of them bad)
    # were kept, only chunk 2 (3 images) computed.
    assert computed == [2]
    assert report.resumed_rows == 6 and report.computed_rows == 3 and report.rows == len(GOOD)
    assert filecmp.cmp(tmp_path / "whole.h5", out, shallow=False)
    assert not spool_dir(out).exists()


# ----------------------------------------------------------------------------- search


def test_search_topk_equals_a_stable_sort_of_the_full_matrix() -> None:
    rng = np.random.default_rng(0)
    # Small integer features: many exactly equal distances, which must rank by gallery row.
    gallery = rng.integers(0, 3, size=(50, 4)).astype(np.float32)
    queries = rng.integers(0, 3, size=(6, 4)).astype(np.float32)
    dense = pairwise_distance(torch.from_numpy(queries), torch.from_numpy(gallery)).numpy()
    expected = np.argsort(dense, axis=1, kind="stable")[:, :7]
    for block_rows in (3, 7, 50):
        found = search_topk(queries, ArrayGallery(gallery), top=7, device="cpu", block_rows=block_rows, query_block=4)
        np.testing.assert_array_equal(found.indices, expected)
        np.testing.assert_array_equal(found.distances, np.take_along_axis(dense, expected, axis=1))
    assert search_topk(queries, ArrayGallery(gallery[:3]), top=7, device="cpu").indices.shape == (6, 3)
    # Cosine of normalised rows is not exact in float32 (equal vectors may round apart from one
    # block to the next): random features without near ties.
    queries, gallery = rng.normal(size=(6, 8)).astype(np.float32), rng.normal(size=(50, 8)).astype(np.float32)
    cosine = pairwise_distance(torch.from_numpy(queries), torch.from_numpy(gallery), "cosine").numpy()
    found = search_topk(queries, ArrayGallery(gallery), top=7, metric="cosine", device="cpu", block_rows=8)
    np.testing.assert_array_equal(found.indices, np.argsort(cosine, axis=1, kind="stable")[:, :7])
    np.testing.assert_allclose(found.distances, np.sort(cosine, axis=1)[:, :7], atol=1e-6)


def test_search_global_plus_local_equals_the_combined_distance() -> None:
    rng = np.random.default_rng(1)
    qg, gg = rng.normal(size=(5, 16)).astype(np.float32), rng.normal(size=(40, 16)).astype(np.float32)
    ql, gl = rng.normal(size=(5, 4, 8)).astype(np.float32), rng.normal(size=(40, 4, 8)).astype(np.float32)
    dense = (pairwise_distance(torch.from_numpy(qg), torch.from_numpy(gg))
             + aligned_local_distance(torch.from_numpy(ql), torch.from_numpy(gl))).numpy()
    found = search_topk(qg, ArrayGallery(gg, gl), top=5, distance="global+local", q_local=ql, device="cpu", block_rows=9)
    np.testing.assert_array_equal(found.indices, np.argsort(dense, axis=1, kind="stable")[:, :5])
    np.testing.assert_allclose(found.distances, np.sort(dense, axis=1)[:, :5], rtol=1e-5)
    with pytest.raises(BadInputError, match="--distance global\\+local: the queries have no local features"):
        search_topk(qg, ArrayGallery(gg), distance="global+local")


@pytest.fixture(scope="module")
def trained_checkpoint(tiny_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """resnet18 at 64x32 trained for 2 x 2 steps on the tiny store."""
    from reid.engine.trainer import TrainConfig, train

    config = TrainConfig(data=str(tiny_store), out=str(tmp_path_factory.mktemp("runs") / "tiny"), arch="resnet18",
                         pretrained=None, batch_p=2, batch_k=2, input_size=(64, 32), workers=0, eval_every=0,
                         epochs=2, max_steps_per_epoch=2, seed=0)
    return train(config).last_checkpoint


def _export_split(store: Path, split: str, folder: Path) -> list[int]:
    """Write the clean rows of ``split`` as PNG files named pid_camid_row.png; returns their pids."""
    manifest = read_store(store).splits[split]
    rows = [r for r in range(len(manifest)) if not manifest.occluded[r] and manifest.pid[r] > 0]
    with open_h5(store) as h5:
        for row, image in zip(rows, read_images(h5, split, rows)):
            _write(folder / f"{manifest.pid[row]}_c{manifest.camid[row]}_{row}.png", image)
    return [int(manifest.pid[r]) for r in rows]


def test_embed_then_search_finds_each_querys_identity_at_rank_1(trained_checkpoint: Path, tiny_store: Path,
                                                                 tmp_path: Path) -> None:
    query_pids = _export_split(tiny_store, "query", tmp_path / "queries")
    _export_split(tiny_store, "gallery", tmp_path / "gallery")
    runner = CliRunner()
    result = runner.invoke(embed_command, ["--checkpoint", str(trained_checkpoint), "--src", str(tmp_path / "gallery"),
                                           "--out", str(tmp_path / "gallery.h5"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(search_command, ["--gallery", str(tmp_path / "gallery.h5"), "--query", str(tmp_path / "queries"),
                                            "--top", "3", "--out", str(tmp_path / "res"), "--device", "cpu",
                                            "--distance", "global+local", "--figures", "2"])
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "res" / "search.json").read_text())
    assert len(results["queries"]) == len(query_pids) == 8
    assert results["obc_head_trained"] is False  # alpha = 1: no occlusion probability (tests/test_honest_heads.py)
    for query in results["queries"]:
        best = query["results"][0]["path"]
        assert best.split("_")[0] == query["query"].split("_")[0], query
        assert query["occlusion"] is None
        assert [r["rank"] for r in query["results"]] == [1, 2, 3]
    # The command prints each query's top results (all 8 queries here, 3 results each), then what it wrote.
    printed = result.stdout.strip().splitlines()
    first = results["queries"][0]
    assert printed[0] == f"{first['query']}: " + ", ".join(f"{r['path']} ({r['distance']:.3f})" for r in first["results"])
    assert len(printed) == 8 + 1 + 3 and printed[8].endswith("search.json")  # then the three PNGs
    assert sorted(os.listdir(tmp_path / "res")) == ["query_0000.png", "query_0001.png", "search.json", "search_sheet.png"]
    sheet = cv2.imread(str(tmp_path / "res" / "search_sheet.png"))
    first = cv2.imread(str(tmp_path / "res" / "query_0000.png"))
    assert sheet.shape[1] == first.shape[1] and sheet.shape[0] > 2 * first.shape[0]


def test_search_refuses_another_checkpoint(checkpoint: Path, trained_checkpoint: Path, crops: Path, tmp_path: Path) -> None:
    run_embed(_config(checkpoint, crops, tmp_path / "g.h5", skip_bad=True))
    result = CliRunner().invoke(search_command, ["--gallery", str(tmp_path / "g.h5"), "--query", str(crops / "gray.png"),
                                                 "--checkpoint", str(trained_checkpoint), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "not the checkpoint" in result.stderr and "g.h5 was embedded with" in result.stderr
    assert not (tmp_path / "r" / "search.json").exists()


# ------------------------------------------------------------------------------- Embedder


def test_embedder_arrays_and_paths_agree(checkpoint: Path, crops: Path) -> None:
    from reid import Embedder

    embedder = Embedder(checkpoint, device="cpu", batch_size=2)
    gray = cv2.imread(str(crops / "gray.png"), cv2.IMREAD_UNCHANGED)
    rgb = cv2.cvtColor(cv2.imread(str(crops / "cam2" / "p5.bmp")), cv2.COLOR_BGR2RGB)
    from_arrays = embedder.embed([gray, rgb, rgb])
    from_paths = embedder.embed([crops / "gray.png", str(crops / "cam2" / "p5.bmp"), crops / "cam2" / "p5.bmp"])
    assert from_arrays.global_feat.shape == (3, 512) and from_arrays.local_feat.shape == (3, 8, 128)
    np.testing.assert_allclose(from_arrays.global_feat, from_paths.global_feat, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(from_arrays.occlusion, from_paths.occlusion, rtol=1e-6, atol=1e-6)
    with pytest.raises(BadInputError, match="dtype float64: expected uint8"):
        embedder.embed([np.zeros((10, 10, 3))])
    with pytest.raises(BadInputError, match="broken.jpg: not a decodable image"):
        embedder.embed([crops / "cam1" / "broken.jpg"])


# -------------------------------------------------------------------------------- export


@pytest.mark.parametrize("which", ["checkpoint", "bn_checkpoint"])
def test_export_onnx_matches_pytorch_with_a_dynamic_batch(which: str, tmp_path: Path,
                                                          request: pytest.FixtureRequest) -> None:
    """The exported "global" output is the retrieval feature: the BN-neck one for a BN-neck model."""
    ort = pytest.importorskip("onnxruntime")
    from reid.inference.export import example_batch, read_onnx_metadata
    from reid.models.checkpoint import retrieval_feature_of

    checkpoint = request.getfixturevalue(which)

    out = tmp_path / "model.onnx"
    result = CliRunner().invoke(export_command, ["--checkpoint", str(checkpoint), "--out", str(out)])
    assert result.exit_code == 0, result.output
    meta = read_onnx_metadata(out)
    assert json.loads(meta["input_size"]) == [64, 32] and json.loads(meta["mean"]) == [0.485, 0.456, 0.406]
    assert meta["outputs"] == '["global", "local", "occlusion"]' and meta["package_version"]
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    model, spec = load_inference_model(checkpoint)
    images = example_batch(spec, 5, seed=7)
    got = dict(zip(["global", "local", "occlusion"], session.run(None, {"images": images.numpy()})))
    with torch.inference_mode():
        ref = model(images)
    feature = retrieval_feature_of(model)
    assert feature == ("bn" if which == "bn_checkpoint" else "global")
    np.testing.assert_allclose(got["global"], ref.retrieval(feature).numpy(), atol=1e-4)
    if feature == "bn":
        assert not np.allclose(got["global"], ref.global_feat.numpy(), atol=1e-2)
    np.testing.assert_allclose(got["local"], ref.local_feat.numpy(), atol=1e-4)
    np.testing.assert_allclose(got["occlusion"], ref.occ_logits.softmax(1)[:, 1].numpy(), atol=1e-4)


def test_export_refuses_and_removes_a_file_that_differs(checkpoint: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    result = CliRunner().invoke(export_command, ["--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.onnx"),
                                                 "--tolerance", "0"])
    assert result.exit_code == 2
    assert "differs from PyTorch by" in result.stderr and "the file was not kept" in result.stderr
    assert os.listdir(tmp_path) == []


def test_export_torchscript_round_trip(checkpoint: Path, tmp_path: Path) -> None:
    from reid.inference.export import ExportConfig, example_batch, run_export

    report = run_export(ExportConfig(checkpoint=checkpoint, out=tmp_path / "m.pt", format="torchscript"))
    assert max(report.max_abs_diff.values()) <= 1e-4
    files = {"metadata.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notice
        module = torch.jit.load(str(tmp_path / "m.pt"), _extra_files=files)
    assert json.loads(files["metadata.json"])["input_size"] == "[64, 32]"
    global_feat, local_feat, occlusion = module(example_batch(load_inference_model(checkpoint)[1], 4))
    assert global_feat.shape == (4, 512) and local_feat.shape == (4, 8, 128) and occlusion.shape == (4,)


def test_export_without_onnx_says_how_to_install(checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` raise ImportError
    result = CliRunner().invoke(export_command, ["--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 2
    assert result.stderr.strip() == ("error: reid export --format onnx: the onnxruntime package is not installed; "
                                     "install it with pip install -e '.[export]' (or: pip install onnx onnxruntime)")
