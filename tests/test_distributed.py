"""DistributedDataParallel on the CPU: torchrun's environment, and a two-process gloo run whose
ranks end with identical weights (and rank 0's last.pt holds them)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from reid.engine.distributed import DistInfo, env_dist_info, sync_batchnorm_supported
from reid.engine.trainer import seed_everything
from reid.models import ModelConfig, build_model, load_checkpoint

REPO = Path(__file__).resolve().parents[1]


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor of a state dict, in key order."""
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


WORKER = textwrap.dedent(
    """
    import hashlib, json, os, sys
    sys.path.insert(0, {repo!r})
    import torch
    from reid.engine.trainer import TrainConfig, train

    def state_digest(state):
        digest = hashlib.sha256()
        for key in sorted(state):
            digest.update(key.encode())
            digest.update(state[key].detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()

    torch.set_num_threads(1)
    data, out, report_dir = sys.argv[1:4]
    config = TrainConfig(data=data, out=out, arch="resnet18", pretrained=None, epochs=2, batch_p=2, batch_k=2,
                         input_size=(64, 32), workers=0, eval_every=0, warmup_epochs=0, seed=5, device="cpu")
    result = train(config)
    rank = int(os.environ["RANK"])
    with open(os.path.join(report_dir, f"rank{{rank}}.json"), "w") as handle:
        json.dump({{"rank": rank, "world": int(os.environ["WORLD_SIZE"]), "digest": state_digest(result.model.state_dict()),
                   "steps": result.global_step, "group_left": not torch.distributed.is_initialized()}}, handle)
    """
)


def test_env_dist_info(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert env_dist_info() == DistInfo(rank=0, world_size=1, local_rank=0)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    info = env_dist_info()
    assert (info.rank, info.world_size, info.local_rank, info.distributed, info.is_main) == (3, 4, 1, True, False)
    for name, value in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(name, value)
    assert env_dist_info().distributed  # torchrun --nproc_per_node=1 runs the DDP path too
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ValueError, match="RANK=4"):
        env_dist_info()


def test_sync_batchnorm_only_on_cuda() -> None:
    assert not sync_batchnorm_supported(torch.device("cpu"))
    assert sync_batchnorm_supported(torch.device("cuda", 0))


def test_two_process_gloo_run_ends_with_identical_weights(tiny_store: Path, tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(repo=str(REPO)))
    reports = tmp_path / "reports"
    reports.mkdir()
    out = tmp_path / "ddp_run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(script), str(tiny_store), str(out), str(reports)]
    proc = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((reports / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["world"] for r in ranks] == [2, 2]
    # 6 identities / P=2 = 3 batches per epoch, sharded over 2 ranks: 1 step per rank and epoch.
    assert [r["steps"] for r in ranks] == [2, 2]
    assert ranks[0]["digest"] == ranks[1]["digest"]
    assert all(r["group_left"] for r in ranks)  # destroy_process_group ran
    # Rank 0 wrote the checkpoint, and it holds those weights, which training did change.
    saved = load_checkpoint(out / "last.pt").state_dict
    assert state_digest(saved) == ranks[0]["digest"]
    seed_everything(5)
    initial = build_model(ModelConfig(num_classes=6, arch="resnet18"), pretrained=None).state_dict()
    assert state_digest(initial) != ranks[0]["digest"]
    assert not torch.equal(saved["backbone.conv1.weight"], initial["backbone.conv1.weight"])
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]  # one writer, no duplicates
