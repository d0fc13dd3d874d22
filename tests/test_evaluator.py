"""Feature extraction and the evaluator (reid.engine.features / evaluator / report / runs)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from common.errors import BadInputError
from occsim.schema import OCC_TYPE_NAMES
from occsim.store import SplitManifest, StoreWriter, read_store
from reid.engine.eval_config import EvalConfig
from reid.engine.evaluator import evaluate_model, run_eval
from reid.engine.features import extract_features, input_size_from_extra
from reid.engine.queries import expand_queries
from reid.engine.report import format_table, plot_cmc, write_json
from reid.engine.runs import find_latest_checkpoint
from reid.models.aligned import ModelConfig, ModelOutput, build_model
from reid.models.checkpoint import save_checkpoint

SIZE = (64, 32)


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(num_classes=4, arch="resnet18"), pretrained=None).eval()


class Flipped(nn.Module):
    """The wrapped model applied to the horizontally mirrored input."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, images: torch.Tensor) -> ModelOutput:
        return self.inner(images.flip(dims=[3]))


class GrayModel(nn.Module):
    """Features = per-channel image means: for solid gray images, distance grows with |gray1 - gray2|."""

    def forward(self, images: torch.Tensor) -> ModelOutput:
        n = images.shape[0]
        g = images.mean(dim=(2, 3))  # [N, 3]
        local = images.mean(dim=3).permute(0, 2, 1)[:, :4]  # [N, 4, 3]
        zeros = torch.zeros(n, 2)
        return ModelOutput(global_feat=g, local_feat=local, id_logits=zeros, occ_logits=zeros, bn_feat=g)


def _manifest(pids, camids, occ_types=None, clean_index=None, label=None) -> SplitManifest:
    n = len(pids)
    occ = np.zeros(n, np.uint8) if occ_types is None else np.asarray(occ_types, np.uint8)
    return SplitManifest(
        pid=pids,
        camid=camids,
        occluded=occ > 0,
        occ_type=occ,
        box=np.full((n, 4), -1),
        clean_index=np.arange(n) if clean_index is None else clean_index,
        path=[f"img{i}.jpg" for i in range(n)],
        label=label,
    )


def _write_gray_store(path: Path, query: dict, gallery: dict, seed: int = 0) -> Path:
    """A hand-made file whose images are solid gray levels (query/gallery dicts: pid, camid, gray, occ)."""
    size = (16, 8)
    with StoreWriter(path, image_size=size) as writer:
        splits = {
            "train": dict(pid=[1, 1], camid=[0, 1], gray=[10, 20]),
            "query": query,
            "gallery": gallery,
        }
        for name, spec in splits.items():
            occ = spec.get("occ")
            clean_index = spec.get("clean_index")
            label = np.zeros(len(spec["pid"]), np.int32) if name == "train" else None
            writer.add_split(name, _manifest(spec["pid"], spec["camid"], occ, clean_index, label))
            images = np.stack([np.full((*size, 3), g, np.uint8) for g in spec["gray"]])
            writer.write_images(name, 0, images)
        writer.finish(source="hand-made", seed=seed, generator_args={"seed": seed})
    return path


# Query rows: pid 1 @ gray 100, pid 2 @ 150, pid 3 @ 200 (only a same-camera match: skipped),
# then an occluded (mean) copy of the pid-1 query at gray 106.
GRAY_QUERY = dict(pid=[1, 2, 3, 1], camid=[0, 0, 0, 0], gray=[100, 150, 200, 106], occ=[0, 0, 0, 1],
                  clean_index=[0, 1, 2, 0])
# Gallery rows: 0 pid 1 cam 1 @105, 1 pid 2 cam 1 @104, 2 pid 2 cam 2 @160, 3 pid 3 cam 0 @200
# (same camera as query 3: junk), 4 distractor pid 0 @150, 5 junk pid -1 @101.
GRAY_GALLERY = dict(pid=[1, 2, 2, 3, 0, -1], camid=[1, 1, 2, 0, 1, 1], gray=[105, 104, 160, 200, 150, 101])


@pytest.fixture()
def gray_store(tmp_path: Path) -> Path:
    return _write_gray_store(tmp_path / "gray.h5", GRAY_QUERY, GRAY_GALLERY)


def _valid_query_count(store, rows: np.ndarray) -> int:
    """Queries with at least one gallery image of their pid from another camera (pid -1 never matches)."""
    q, g = store.splits["query"], store.splits["gallery"]
    g_rows = g.rows("clean")
    count = 0
    for r in rows:
        same = (g.pid[g_rows] == q.pid[r]) & (g.camid[g_rows] != q.camid[r]) & (g.pid[g_rows] != -1)
        count += bool(same.any())
    return count


# ---------------------------------------------------------------------------- features


def test_extract_features_shapes_and_row_order(model: nn.Module, tiny_store: Path) -> None:
    store = read_store(tiny_store)
    q = store.splits["query"]
    rows = np.arange(len(q))[::-1][:6].copy()  # reversed order: the output must follow it
    feats = extract_features(model, tiny_store, "query", rows, input_size=SIZE, batch_size=4)
    n = len(rows)
    assert feats.global_feat.shape == (n, 512) and feats.global_feat.dtype == np.float32
    assert feats.local_feat.shape[0] == n and feats.local_feat.shape[2] == 128
    assert feats.local_feat.shape[1] == (model.config.num_stripes or SIZE[0] // 16)
    np.testing.assert_array_equal(feats.rows, rows)
    np.testing.assert_array_equal(feats.pids, q.pid[rows])
    np.testing.assert_array_equal(feats.camids, q.camid[rows])
    # Batching must not change the features (eval-mode BN): batch 4 vs one image at a time.
    single = extract_features(model, tiny_store, "query", rows[:3], input_size=SIZE, batch_size=1)
    np.testing.assert_allclose(single.global_feat, feats.global_feat[:3], rtol=1e-4, atol=1e-5)


def test_flip_average_is_mean_of_both_passes(model: nn.Module, tiny_store: Path) -> None:
    rows = np.arange(5)
    kwargs = dict(input_size=SIZE, batch_size=8)
    plain = extract_features(model, tiny_store, "gallery", rows, **kwargs)
    mirrored = extract_features(Flipped(model), tiny_store, "gallery", rows, **kwargs)
    both = extract_features(model, tiny_store, "gallery", rows, flip=True, **kwargs)
    assert not np.allclose(plain.global_feat, mirrored.global_feat)  # else the test proves nothing
    np.testing.assert_allclose(both.global_feat, (plain.global_feat + mirrored.global_feat) / 2, rtol=1e-5, atol=1e-6)
    # Stripes are averaged in place: a horizontal flip keeps the top-to-bottom order.
    np.testing.assert_allclose(both.local_feat, (plain.local_feat + mirrored.local_feat) / 2, rtol=1e-5, atol=1e-6)


def test_extract_restores_training_mode(model: nn.Module, tiny_store: Path) -> None:
    model.train()
    try:
        extract_features(model, tiny_store, "query", [0], input_size=SIZE)
        assert model.training
    finally:
        model.eval()


def test_input_size_from_extra() -> None:
    assert input_size_from_extra({"input_size": [64, 32]}) == (64, 32)
    assert input_size_from_extra({"input_size": "96x48"}) == (96, 48)
    assert input_size_from_extra({"config": {"size": [32, 16]}}) == (32, 16)
    assert input_size_from_extra({}) == (256, 128)
    assert input_size_from_extra({"input_size": [0, 5]}) == (256, 128)


# ---------------------------------------------------------------------------- evaluator


def test_hand_made_scores(gray_store: Path) -> None:
    report = evaluate_model(GrayModel(), gray_store, queries=("all",), input_size=(16, 8), device="cpu")
    assert [r.name for r in report.rows] == ["clean", "occluded:mean"]
    clean = report.row("clean")
    # Query pid 1 (@100): junk @101 dropped, pid 2 @104 first, its match @105 second -> AP 1/2.
    # Query pid 2 (@150): distractor @150 (pid 0 counts as a negative), match @160 at rank 2,
    # pid 1 @105 at 3, match @104 at 4 -> AP (1/2 + 2/4) / 2 = 1/2, INP 2/4.
    # Query pid 3: its only gallery image is from its own camera -> skipped.
    assert (clean.num_queries, clean.num_skipped) == (2, 1)
    assert clean.r1 == 0.0 and clean.r5 == 1.0 and clean.r10 == 1.0
    assert clean.mAP == pytest.approx(0.5) and clean.mINP == pytest.approx(0.5)
    assert len(clean.cmc) == 6  # the gallery is shorter than max_rank
    occluded = report.row("occluded:mean")  # @106: pid 1 @105 first
    assert (occluded.num_queries, occluded.r1, occluded.mAP) == (1, 1.0, 1.0)
    assert report.gallery_size == 6 and report.data_fingerprint == read_store(gray_store).fingerprint


def test_gallery_without_shared_identities(tmp_path: Path) -> None:
    gallery = dict(pid=[7, 8], camid=[1, 1], gray=[10, 20])
    path = _write_gray_store(tmp_path / "disjoint.h5", GRAY_QUERY, gallery)
    with pytest.raises(BadInputError, match=r"disjoint\.h5.*shares no identity"):
        evaluate_model(GrayModel(), path, queries=("clean",), input_size=(16, 8), device="cpu")
    # Shared identities, but only from the queries' own camera: no query has a valid match.
    same_camera = dict(pid=[1, 2, 3], camid=[0, 0, 0], gray=[10, 20, 30])
    path = _write_gray_store(tmp_path / "samecam.h5", GRAY_QUERY, same_camera)
    with pytest.raises(BadInputError, match=r"samecam\.h5: clean queries against the clean gallery: no query has a match"):
        evaluate_model(GrayModel(), path, queries=("clean",), input_size=(16, 8), device="cpu")


def test_evaluate_model_on_tiny_store(model: nn.Module, tiny_store: Path) -> None:
    store = read_store(tiny_store)
    q = store.splits["query"]
    codes = sorted({int(c) for c in q.occ_type if c})
    expected_names = ["clean"] + [f"occluded:{OCC_TYPE_NAMES[c]}" for c in codes]
    report = evaluate_model(model, tiny_store, queries=("all",), input_size=SIZE, device="cpu", batch_size=16)
    assert [r.name for r in report.rows] == expected_names
    for row in report.rows:
        rows = np.flatnonzero(~q.occluded) if row.name == "clean" else np.flatnonzero(q.occ_type == OCC_TYPE_NAMES.index(row.name.split(":")[1]))
        assert row.num_queries == _valid_query_count(store, rows)
        assert row.num_queries + row.num_skipped == len(rows)
        assert 0.0 <= row.r1 <= row.r5 <= row.r10 <= 1.0
    assert report.gallery_size == int((~store.splits["gallery"].occluded).sum())
    parsed = json.loads(report.to_json())
    assert [r["name"] for r in parsed["rows"]] == expected_names
    assert parsed["data_fingerprint"] == store.fingerprint


def test_rerank_and_shortlist_paths(model: nn.Module, tiny_store: Path) -> None:
    from reid.retrieval_distance import combined_distance
    from reid.metrics.protocol import evaluate
    from reid.metrics.rerank import re_rank

    store = read_store(tiny_store)
    q, g = store.splits["query"], store.splits["gallery"]
    q_rows, g_rows = np.flatnonzero(~q.occluded), np.flatnonzero(~g.occluded)
    kwargs = dict(queries=("clean",), input_size=SIZE, device="cpu", batch_size=32)
    report = evaluate_model(model, tiny_store, rerank=True, **kwargs).row("clean")
    qf = extract_features(model, tiny_store, "query", q_rows, input_size=SIZE)
    gf = extract_features(model, tiny_store, "gallery", g_rows, input_size=SIZE)
    dist = re_rank(*(combined_distance(a.global_feat, b.global_feat, device="cpu") for a, b in ((qf, gf), (qf, qf), (gf, gf))))
    ref = evaluate(dist, qf.pids, gf.pids, qf.camids, gf.camids, max_rank=len(g_rows))
    np.testing.assert_allclose(report.cmc, ref.cmc)
    assert report.mAP == pytest.approx(ref.mAP) and report.mINP == pytest.approx(ref.mINP)
    # A shortlist as long as the gallery is the full global+local distance.
    full = evaluate_model(model, tiny_store, distance="global+local", **kwargs).row("clean")
    short = evaluate_model(model, tiny_store, distance="global+local", shortlist=len(g_rows), **kwargs).row("clean")
    np.testing.assert_allclose(short.cmc, full.cmc)
    assert short.mAP == pytest.approx(full.mAP)


def test_occluded_expands_to_types_present(tiny_store: Path) -> None:
    store = read_store(tiny_store)
    codes = sorted({int(c) for c in store.splits["query"].occ_type if c})
    assert codes, "tiny_store should hold occluded queries"
    types = [f"occluded:{OCC_TYPE_NAMES[c]}" for c in codes]
    assert expand_queries(("occluded",), store) == types
    assert expand_queries(("all",), store) == ["clean", *types]
    # Repeats are dropped, order is kept.
    assert expand_queries((types[0], "clean", "all"), store) == [types[0], "clean", *types[1:]]


def test_unknown_query_types(tiny_store: Path) -> None:
    store = read_store(tiny_store)
    present = store.splits["query"].occ_types_present()
    absent = [t for t in OCC_TYPE_NAMES[1:] if t not in present]
    if absent:
        with pytest.raises(BadInputError, match=rf"{tiny_store.name}.*{absent[0]}.*present: {', '.join(present)}"):
            expand_queries((f"occluded:{absent[0]}",), store)
    with pytest.raises(BadInputError, match="unknown occluder type 'plaid'"):
        expand_queries(("occluded:plaid",), store)
    with pytest.raises(BadInputError, match="unknown query set"):
        expand_queries(("dirty",), store)


def test_absent_type_in_hand_made_file(gray_store: Path) -> None:
    # The hand-made file has only "mean" occlusions: "black" is a known type but absent.
    with pytest.raises(BadInputError, match=r"gray\.h5: has no 'black' occluded queries \(occluder types present: mean\)"):
        evaluate_model(GrayModel(), gray_store, queries=("occluded:black",), input_size=(16, 8))


def test_bad_options(gray_store: Path) -> None:
    with pytest.raises(BadInputError, match="--shortlist"):
        evaluate_model(GrayModel(), gray_store, distance="global", shortlist=5, input_size=(16, 8))
    with pytest.raises(BadInputError, match="--shortlist with --rerank"):
        evaluate_model(GrayModel(), gray_store, distance="global+local", shortlist=5, rerank=True, input_size=(16, 8))
    with pytest.raises(BadInputError, match="--gallery"):
        evaluate_model(GrayModel(), gray_store, gallery="occluded", input_size=(16, 8))


def test_fingerprint_mismatch_warns(model: nn.Module, tiny_store: Path, tmp_path: Path, caplog) -> None:
    store = read_store(tiny_store)
    config = ModelConfig(num_classes=4, arch="resnet18")
    good = save_checkpoint(tmp_path / "good.pt", model, config, store.fingerprint, extra={"input_size": list(SIZE)})
    other = save_checkpoint(tmp_path / "other.pt", model, config, "0" * 64, extra={"input_size": list(SIZE)})
    kwargs = dict(data=tiny_store, queries=("clean",), device="cpu", batch_size=32)
    with caplog.at_level(logging.WARNING):
        report = run_eval(EvalConfig(checkpoint=good, **kwargs))
    assert not [r for r in caplog.records if "splits may differ" in r.getMessage()]
    assert report.input_size == SIZE and report.checkpoint == str(good)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        report = run_eval(EvalConfig(checkpoint=other, **kwargs))
    warnings = [r for r in caplog.records if "splits may differ" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert "\n" not in warnings[0].getMessage()
    assert report.checkpoint_fingerprint == "0" * 64


# ------------------------------------------------------------------------------ report


def test_report_table_json_plot(gray_store: Path, tmp_path: Path) -> None:
    report = evaluate_model(GrayModel(), gray_store, queries=("all",), input_size=(16, 8), max_rank=3)
    table = format_table(report).splitlines()
    assert table[0].split() == ["query", "set", "R1", "R5", "R10", "mAP", "mINP", "queries", "P(occ)"]
    # GrayModel's OBC logits are zeros: P(occluded) = 50 % for every query
    assert table[2].split() == ["clean", "0.00", "100.00", "100.00", "50.00", "50.00", "2", "50.00"]
    assert table[3].split() == ["occluded:mean", "100.00", "100.00", "100.00", "100.00", "100.00", "1", "50.00"]
    assert len({len(line) for line in table[:4]}) == 1  # aligned columns
    assert "clean: 1" in table[-1]  # the skipped query is reported
    out = write_json(report, tmp_path / "sub" / "r.json")
    data = json.loads(out.read_text())
    assert data["rows"][0]["cmc"] == [0.0, 1.0, 1.0] and data["distance"] == "global"
    png = plot_cmc(report, tmp_path / "r.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_leave_the_callers_matplotlib_backend_alone(gray_store: Path, tmp_path: Path) -> None:
    import matplotlib

    from reid.engine.curves import plot_curves

    report = evaluate_model(GrayModel(), gray_store, queries=("all",), input_size=(16, 8), max_rank=3)
    previous = matplotlib.get_backend()
    matplotlib.use("svg")  # what an embedding application (a notebook, a GUI) may have chosen
    try:
        plot_cmc(report, tmp_path / "r.png")
        plot_curves([{"epoch": 1, "total": 1.0}], tmp_path / "curves.png")
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(previous)
    assert (tmp_path / "r.png").read_bytes()[:4] == (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


# -------------------------------------------------------------------------------- runs


def _touch(path: Path, mtime: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    os.utime(path, (mtime, mtime))


def test_find_latest_checkpoint(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    with pytest.raises(BadInputError, match="no checkpoint under .*runs/: train one with `reid train`"):
        find_latest_checkpoint(runs)
    _touch(runs / "old" / "best.pt", 1_000)
    _touch(runs / "old" / "last.pt", 1_500)
    assert find_latest_checkpoint(runs) == runs / "old" / "best.pt"  # best preferred within a run
    _touch(runs / "new" / "last.pt", 2_000)
    (runs / "empty").mkdir()
    assert find_latest_checkpoint(runs) == runs / "new" / "last.pt"  # the newest run wins
    _touch(runs / "old" / "last.pt", 3_000)  # the old run was resumed and wrote later
    assert find_latest_checkpoint(runs) == runs / "old" / "best.pt"
