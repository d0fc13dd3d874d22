"""`reid eval` end to end through Click (the command object, outside the `reid` group)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli.reid_eval import eval_command
from occsim.store import read_store
from reid.retrieval_distance import combined_distance
from reid.engine.features import extract_features
from reid.metrics.protocol import evaluate
from reid.models.aligned import ModelConfig, build_model
from reid.models.checkpoint import load_model, save_checkpoint
from tests.conftest import one_error_line, write_fresh_checkpoint

SIZE = (64, 32)


@pytest.fixture(scope="module")
def run_dir(tiny_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """runs/fresh/last.pt: a freshly initialised resnet18 recorded with the file's fingerprint."""
    torch.manual_seed(1)
    config = ModelConfig(num_classes=6, arch="resnet18")
    model = build_model(config, pretrained=None)
    root = tmp_path_factory.mktemp("cli")
    save_checkpoint(root / "runs" / "fresh" / "last.pt", model, config, read_store(tiny_store).fingerprint,
                    extra={"input_size": list(SIZE)})
    return root


def _invoke(*args: str):
    # --force: the tests share runs/fresh, whose default eval.json an earlier test wrote (the
    # overwrite policy itself is tested in test_overwrite.py).
    return CliRunner().invoke(eval_command, [*args, "--device", "cpu", "--batch-size", "32", "--force"])


def test_eval_end_to_end(tiny_store: Path, run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(run_dir)  # --checkpoint defaults to the newest run under ./runs
    result = _invoke("--data", str(tiny_store), "--query", "clean,occluded")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("query set"))
    assert [line.split()[0] for line in lines[header + 2 : header + 4]] == ["clean", "occluded:mean"]
    out = run_dir / "runs" / "fresh" / "eval.json"  # default --out: the run folder
    png = run_dir / "runs" / "fresh" / "eval_cmc.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(out.read_text())
    assert data["checkpoint"] == str(Path("runs/fresh/last.pt"))
    assert data["input_size"] == list(SIZE) and data["distance"] == "global"

    # Recompute independently of the evaluator: features, distance, protocol.
    model, _ = load_model(run_dir / "runs" / "fresh" / "last.pt")
    store = read_store(tiny_store)
    q, g = store.splits["query"], store.splits["gallery"]
    g_rows = np.flatnonzero(~g.occluded)
    gf = extract_features(model, tiny_store, "gallery", g_rows, input_size=SIZE)
    by_name = {row["name"]: row for row in data["rows"]}
    for name, rows in (("clean", np.flatnonzero(~q.occluded)), ("occluded:mean", np.flatnonzero(q.occ_type == 1))):
        qf = extract_features(model, tiny_store, "query", rows, input_size=SIZE)
        dist = combined_distance(qf.global_feat, gf.global_feat, mode="global", device="cpu")
        ref = evaluate(dist, q.pid[rows], g.pid[g_rows], q.camid[rows], g.camid[g_rows], max_rank=50)
        got = by_name[name]
        np.testing.assert_allclose(got["cmc"], ref.cmc, atol=1e-9)
        assert got["mAP"] == pytest.approx(ref.mAP) and got["mINP"] == pytest.approx(ref.mINP)
        assert got["r1"] == pytest.approx(ref.cmc[0]) and got["num_queries"] == ref.num_valid_queries == len(rows)
        # The printed table shows the same numbers as percentages.
        printed = next(line for line in lines if line.split()[0] == name).split()
        assert printed[1] == f"{100 * ref.cmc[0]:.2f}" and printed[4] == f"{100 * ref.mAP:.2f}"


def test_eval_constant_features_rank_by_gallery_row(tiny_store: Path, tmp_path: Path) -> None:
    """All BatchNorm scales and shifts zeroed: every feature is 0, every distance ties, so the
    ranking is the gallery row order (stable), and the scores follow by hand.

    tiny_store's gallery rows: pid 101 (cams 3, 4), 102, 103, 104, then junk and a distractor;
    each query pid has 2 queries (cams 1, 2), matched by gallery rows at ranks (1, 2), (3, 4),
    (5, 6), (7, 8) for pids 101..104.
    """
    config = ModelConfig(num_classes=6, arch="resnet18")
    model = build_model(config, pretrained=None)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            torch.nn.init.zeros_(module.weight)
            torch.nn.init.zeros_(module.bias)
    ckpt = save_checkpoint(tmp_path / "zero.pt", model, config, read_store(tiny_store).fingerprint,
                           extra={"input_size": list(SIZE)})
    out = tmp_path / "zero.json"
    result = _invoke("--data", str(tiny_store), "--checkpoint", str(ckpt), "--query", "clean", "--out", str(out))
    assert result.exit_code == 0, result.output
    row = json.loads(out.read_text())["rows"][0]
    ap = [1.0, (1 / 3 + 2 / 4) / 2, (1 / 5 + 2 / 6) / 2, (1 / 7 + 2 / 8) / 2]
    inp = [2 / 2, 2 / 4, 2 / 6, 2 / 8]
    assert row["num_queries"] == 8 and row["num_skipped"] == 0
    np.testing.assert_allclose(row["cmc"], [0.25, 0.25, 0.5, 0.5, 0.75, 0.75, 1.0, 1.0, 1.0, 1.0], atol=1e-7)
    assert (row["r1"], row["r5"], row["r10"]) == pytest.approx((0.25, 0.75, 1.0))
    assert row["mAP"] == pytest.approx(np.mean(ap)) and row["mINP"] == pytest.approx(np.mean(inp))
    printed = next(line for line in result.stdout.splitlines() if line.startswith("clean")).split()
    # P(occ): zero features and a zero-initialised OBC bias give logits (0, 0), i.e. 50 %
    assert printed[1:] == ["25.00", "75.00", "100.00", f"{100 * np.mean(ap):.2f}", f"{100 * np.mean(inp):.2f}", "8",
                           "50.00"]
    assert row["occ_prob"] == [0.5] * 8 and row["occ_prob_mean"] == 0.5 and row["query_rows"] == list(range(8))


def test_eval_explicit_out_and_local_distance(tiny_store: Path, run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "res" / "results.json"
    result = _invoke("--data", str(tiny_store), "--checkpoint", str(run_dir / "runs" / "fresh" / "last.pt"),
                     "--query", "occluded:mean", "--distance", "global+local", "--out", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert [r["name"] for r in data["rows"]] == ["occluded:mean"] and data["distance"] == "global+local"
    assert (tmp_path / "res" / "results_cmc.png").is_file()


def test_garbage_checkpoint(tiny_store: Path, tmp_path: Path) -> None:
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(b"not a checkpoint at all")
    line = one_error_line(_invoke("--data", str(tiny_store), "--checkpoint", str(bad)))
    assert "garbage.pt" in line


def test_checkpoint_of_another_architecture(tiny_store: Path, tmp_path: Path) -> None:
    # resnet18 weights under a resnet34 configuration: the state dict does not fit.
    model = build_model(ModelConfig(num_classes=6, arch="resnet18"), pretrained=None)
    path = save_checkpoint(tmp_path / "mixed.pt", model, ModelConfig(num_classes=6, arch="resnet34"), "x")
    line = one_error_line(_invoke("--data", str(tiny_store), "--checkpoint", str(path)))
    assert "mixed.pt" in line and "architecture" in line


def test_data_file_not_ours(run_dir: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as h5:
        h5.create_dataset("x", data=np.arange(3))
    ckpt = str(run_dir / "runs" / "fresh" / "last.pt")
    line = one_error_line(_invoke("--data", str(foreign), "--checkpoint", ckpt))
    assert "foreign.h5" in line and "not an occluded-reid file" in line
    text = tmp_path / "text.h5"
    text.write_text("hello")
    assert "text.h5" in one_error_line(_invoke("--data", str(text), "--checkpoint", ckpt))


def test_unknown_query_type(tiny_store: Path, run_dir: Path) -> None:
    ckpt = str(run_dir / "runs" / "fresh" / "last.pt")
    line = one_error_line(_invoke("--data", str(tiny_store), "--checkpoint", ckpt, "--query", "occluded:black"))
    assert "tiny.h5" in line and "black" in line and "present: mean" in line
    line = one_error_line(_invoke("--data", str(tiny_store), "--checkpoint", ckpt, "--query", "clean,sideways"))
    assert "sideways" in line


def test_no_run_to_evaluate(tiny_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    line = one_error_line(_invoke("--data", str(tiny_store)))
    assert "no checkpoint under runs/" in line and "--checkpoint" in line


def test_eval_normalises_with_the_checkpoints_statistics(tiny_store: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import reid.engine.evaluator as evaluator

    path = write_fresh_checkpoint(tmp_path / "run" / "last.pt", tiny_store, mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.3])
    seen: list[dict] = []
    real = evaluator.extract_features

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluator, "extract_features", spy)
    result = CliRunner().invoke(eval_command, ["--data", str(tiny_store), "--checkpoint", str(path),
                                               "--device", "cpu", "--query", "clean"])
    assert result.exit_code == 0, result.output
    assert seen and all(k["mean"] == (0.5, 0.4, 0.3) and k["std"] == (0.2, 0.25, 0.3) for k in seen)
