"""Honest heads: no command reports the occlusion probability of an OBC head that was never
trained (alpha = 1), and each says so once.

Runs are tiny (resnet18 at 64x32, P=2 x K=2, one step); the other checkpoints are freshly
initialised ones (conftest ``write_fresh_checkpoint``) that record a training configuration.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from cli.reid_eval import eval_command
from reid.engine.report import OBC_UNTRAINED_NOTE
from reid.models.checkpoint import load_checkpoint, obc_head_trained
from reid.models.inference import load_inference_model
from tests.conftest import write_fresh_checkpoint

TINY_RUN = dict(arch="resnet18", pretrained=None, batch_p=2, batch_k=2, input_size=(64, 32), workers=0,
                eval_every=0, epochs=1, max_steps_per_epoch=1, seed=0, train_on="both")


@pytest.fixture(scope="module")
def heads(tiny_store: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Checkpoints by how their OBC head came to be: "untrained" (alpha = 1), "trained"
    (alpha = 0.8), both recorded the old way (only the config), and "unknown" (no config)."""
    root = tmp_path_factory.mktemp("heads")
    return {
        "untrained": write_fresh_checkpoint(root / "a1" / "last.pt", tiny_store, config={"alpha": 1.0, "init_from": None}),
        "trained": write_fresh_checkpoint(root / "a08" / "last.pt", tiny_store, config={"alpha": 0.8, "init_from": None}),
        "unknown": write_fresh_checkpoint(root / "old" / "last.pt", tiny_store),
    }


# ----------------------------------------------------------------------------- the rule


@pytest.mark.parametrize("extra, expected", [
    ({"obc_head_trained": True, "config": {"alpha": 1.0}}, True),  # the record wins (an inherited head)
    ({"obc_head_trained": False, "config": {"alpha": 0.8}}, False),
    ({"obc_head_trained": None, "config": {"alpha": 1.0}}, None),
    ({"config": {"alpha": 0.8}}, True),  # older checkpoints: alpha < 1
    ({"config": {"alpha": 1.0, "init_from": None}}, False),
    ({"config": {"alpha": 1.0, "init_from": "other/last.pt"}}, None),  # may carry a trained head
    ({"config": {}}, None),
    ({"input_size": [64, 32]}, None),
    ({}, None),
    (None, None),
])
def test_obc_head_trained_reads_the_record_then_alpha(extra: dict | None, expected: bool | None) -> None:
    assert obc_head_trained(extra) is expected


# ----------------------------------------------------------------------------- reid train


def _train(store: Path, out: Path, caplog: pytest.LogCaptureFixture, **overrides) -> tuple[str, dict]:
    """Train one tiny epoch; returns its epoch log line and the checkpoint's extra."""
    from reid.engine.trainer import TrainConfig, train

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="reid.engine.trainer"):
        result = train(TrainConfig(data=str(store), out=str(out), **{**TINY_RUN, **overrides}))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch 1/1:")]
    assert len(lines) == 1, [r.getMessage() for r in caplog.records]
    return lines[0], load_checkpoint(result.last_checkpoint).extra


def test_train_logs_and_records_the_obc_head_only_when_trained(tiny_store: Path, tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    line, extra = _train(tiny_store, tmp_path / "a1", caplog, alpha=1.0)
    assert "obc" not in line and "loss " in line and "id " in line
    assert extra["obc_head_trained"] is False

    line, extra = _train(tiny_store, tmp_path / "a08", caplog, alpha=0.8)
    assert "obc " in line and "obc acc " in line
    assert extra["obc_head_trained"] is True

    # --init-from: an alpha = 1 run keeps (frozen) the head it starts from, trained or not.
    line, extra = _train(tiny_store, tmp_path / "ft-trained", caplog, alpha=1.0, init_from=str(tmp_path / "a08" / "last.pt"))
    assert "obc" not in line and extra["obc_head_trained"] is True
    _, extra = _train(tiny_store, tmp_path / "ft-untrained", caplog, alpha=1.0, init_from=str(tmp_path / "a1" / "last.pt"))
    assert extra["obc_head_trained"] is False


# ------------------------------------------------------------------------------ reid eval


def _eval(store: Path, checkpoint: Path, out: Path) -> tuple[list[str], dict]:
    result = CliRunner().invoke(eval_command, ["--data", str(store), "--checkpoint", str(checkpoint),
                                               "--query", "clean,occluded", "--device", "cpu", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines(), json.loads(out.read_text())


def test_eval_reports_no_occlusion_probability_of_an_untrained_head(tiny_store: Path, heads: dict[str, Path],
                                                                     tmp_path: Path) -> None:
    lines, report = _eval(tiny_store, heads["untrained"], tmp_path / "a1.json")
    rows = [line.split() for line in lines if line.split()[:1] in (["clean"], ["occluded:mean"])]
    assert len(rows) == 2 and all(row[-1] == "-" for row in rows)
    assert lines.count(OBC_UNTRAINED_NOTE) == 1 and "alpha = 1" in OBC_UNTRAINED_NOTE
    assert report["obc_head_trained"] is False
    assert all(row["occ_prob"] is None and row["occ_prob_mean"] is None for row in report["rows"])

    for head, recorded in (("trained", True), ("unknown", None)):
        lines, report = _eval(tiny_store, heads[head], tmp_path / f"{head}.json")
        rows = [line.split() for line in lines if line.split()[:1] in (["clean"], ["occluded:mean"])]
        assert all(0.0 <= float(row[-1]) <= 100.0 for row in rows), rows
        assert OBC_UNTRAINED_NOTE not in lines
        assert report["obc_head_trained"] is recorded
        for row in report["rows"]:
            assert len(row["occ_prob"]) == len(row["query_rows"]) and 0.0 <= row["occ_prob_mean"] <= 1.0


# ---------------------------------------------------------------- embed, search, export


@pytest.fixture(scope="module")
def crops(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("crops")
    for i in range(3):
        image = np.random.default_rng(i).integers(0, 256, size=(64, 32, 3), dtype=np.uint8)
        assert cv2.imwrite(str(root / f"p{i}.png"), image)
    return root


def _search(checkpoint: Path, crops: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[dict, list[str]]:
    """Embed ``crops`` with ``checkpoint`` and search them for themselves; returns the
    features file's record, the search JSON and the queries' labels on the sheet."""
    import reid.rank
    from reid.inference.config import SearchConfig
    from reid.inference.embed import EmbedConfig, run_embed
    from reid.inference.features_file import FeaturesFile
    from reid.inference.search import run_search

    features = out / "g.h5"
    run_embed(EmbedConfig(checkpoint=checkpoint, src=crops, out=features, device="cpu"))
    with FeaturesFile(features) as f:
        record = {"obc_head_trained": f.obc_head_trained, "occlusion": f.occlusion}
    labels: list[str] = []
    real = reid.rank.rank_figure

    def spy(*args, **kwargs):
        labels.append(kwargs["query_label"][1])
        return real(*args, **kwargs)

    monkeypatch.setattr(reid.rank, "rank_figure", spy)
    report = run_search(SearchConfig(gallery=features, query=features, out=out / "res", top=2, device="cpu", figures=2))
    return {**record, **json.loads(report.json_path.read_text())}, labels


def test_embed_and_search_mark_an_untrained_head(heads: dict[str, Path], crops: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    got, labels = _search(heads["untrained"], crops, tmp_path / "a1", monkeypatch)
    assert got["obc_head_trained"] is False and np.isnan(got["occlusion"]).all()
    assert all(q["occlusion"] is None for q in got["queries"])
    assert labels == ["OBC head untrained"] * 2

    got, labels = _search(heads["trained"], crops, tmp_path / "a08", monkeypatch)
    assert got["obc_head_trained"] is True and np.isfinite(got["occlusion"]).all()
    assert all(0.0 < q["occlusion"] < 1.0 for q in got["queries"])
    assert [label.startswith("occluded p=") for label in labels] == [True, True]


def test_embedder_and_export_metadata_say_whether_the_head_was_trained(heads: dict[str, Path], crops: Path) -> None:
    from reid import Embedder
    from reid.inference.export import export_metadata

    images = [crops / "p0.png", crops / "p1.png"]
    assert np.isnan(Embedder(heads["untrained"], device="cpu").embed(images).occlusion).all()
    assert np.isfinite(Embedder(heads["unknown"], device="cpu").embed(images).occlusion).all()
    for head, text in (("untrained", "false"), ("trained", "true"), ("unknown", "null")):
        assert export_metadata(load_inference_model(heads[head])[1], "0" * 64)["obc_head_trained"] == text


# ------------------------------------------------------------------------------ saliency


def test_saliency_with_the_obc_target_marks_an_untrained_head(tiny_store: Path, heads: dict[str, Path], tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from reid.saliency import figures, format_box_mass_table, run_saliency

    drawn: list[str] = []
    real = figures.labelled

    def spy(tile, lines, *args, **kwargs):
        drawn.extend(lines)
        return real(tile, lines, *args, **kwargs)

    monkeypatch.setattr(figures, "labelled", spy)
    report = run_saliency(tiny_store, [heads["untrained"], heads["trained"]], tmp_path / "obc", names=["base", "obc"],
                          ids=[102], target="obc", device="cpu")
    assert [m["obc_head_trained"] for m in report.summary["models"]] == [False, True]
    table = format_box_mass_table(report.summary).splitlines()
    assert [line for line in table if "untrained" in line] == [
        "base: OBC head untrained (alpha = 1), the map explains no trained decision"]
    assert "base (OBC head untrained)" in drawn and "obc" in drawn and "obc (OBC head untrained)" not in drawn

    drawn.clear()
    report = run_saliency(tiny_store, [heads["untrained"]], tmp_path / "sim", names=["base"], ids=[102], device="cpu")
    assert "obc_head_trained" not in report.summary["models"][0] and "base" in drawn
    assert "untrained" not in format_box_mass_table(report.summary)


def test_curves_leave_out_the_obc_head_when_it_does_not_train(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from reid.engine import curves

    drawn: list[str] = []
    real = curves._series
    monkeypatch.setattr(curves, "_series", lambda records, key: (drawn.append(key), real(records, key))[1])
    records = [{"epoch": 1, "total": 1.0, "obc": 0.69, "obc_acc": 0.5, "violation_fraction": 0.2}]
    curves.plot_curves(records, tmp_path / "with.png", obc=True)
    assert {"obc", "obc_acc"} <= set(drawn)
    drawn.clear()
    curves.plot_curves(records, tmp_path / "without.png", obc=False)
    assert "obc" not in drawn and "obc_acc" not in drawn and "violation_fraction" in drawn
