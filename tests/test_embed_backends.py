"""`reid embed --backend torch|onnxruntime|auto` (:mod:`reid.inference.backends`).

A freshly initialised resnet18 at 64x32 (conftest ``checkpoint``) and a folder of a few small
crops, one of them unreadable (so the skipped list is part of the layout compared).
"""

from __future__ import annotations

import filecmp
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli.reid_embed import embed_command
from common.errors import BadInputError
from reid.inference.backends import BACKEND_RECORD, ONNX_FILE
from reid.inference.embed import EmbedConfig, EmbedReport, run_embed, spool_dir
from reid.inference.export import ExportConfig
from tests.conftest import one_error_line

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

REPO = Path(__file__).resolve().parents[1]
BACKENDS_LOGGER = "reid.inference.backends"


@pytest.fixture(scope="module")
def crops(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Nine readable crops of different sizes (JPEG and PNG) and one file that is no image."""
    root = tmp_path_factory.mktemp("crops")
    for i in range(9):
        rng = np.random.default_rng(i)
        size = (48 + 8 * i, 24 + 2 * i)
        image = np.clip(rng.integers(30, 226, size=3) + rng.normal(0, 25, size=(*size, 3)), 0, 255).astype(np.uint8)
        assert cv2.imwrite(str(root / f"p{i}.{'png' if i % 3 == 0 else 'jpg'}"), image)
    (root / "p9.jpg").write_bytes(b"not a JPEG")
    return root


def _config(checkpoint: Path, src: Path, out: Path, **overrides) -> EmbedConfig:
    return EmbedConfig(**{"checkpoint": checkpoint, "src": src, "out": out, "device": "cpu", "batch_size": 4,
                          "skip_bad": True, **overrides})


def _backend_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == BACKENDS_LOGGER]


def _embed_logged(caplog: pytest.LogCaptureFixture, config: EmbedConfig,
                  **kwargs: Any) -> tuple[EmbedReport, list[str]]:
    """``run_embed(config, **kwargs)``'s report and the backend lines that run logged (only
    its own: an earlier run or test may have left logging at INFO)."""
    caplog.set_level(logging.INFO)
    caplog.clear()
    report = run_embed(config, **kwargs)
    return report, _backend_lines(caplog)


def _layout(path: Path) -> tuple[dict, dict]:
    """(root attributes, {dataset: (dtype, shape)}) of a features file."""
    with h5py.File(path, "r") as h5:
        attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in h5.attrs.items()}
        return attrs, {k: (h5[k].dtype.str, h5[k].shape) for k in h5}


def _scaled_diff(got: np.ndarray, expected: np.ndarray) -> float:
    """reid export's parity measure: max |got - expected| / max(1, max |expected|)."""
    expected = expected.astype(np.float64)
    return float(np.max(np.abs(got - expected)) / max(1.0, float(np.max(np.abs(expected)))))


# ------------------------------------------------------------------------------ choice


def test_auto_picks_onnxruntime_on_the_cpu_and_says_why_in_one_line(checkpoint: Path, crops: Path, tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    _, lines = _embed_logged(caplog, _config(checkpoint, crops, tmp_path / "f.h5"))
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"backend: onnxruntime {__import__('onnxruntime').__version__}, "
                               f"{torch.get_num_threads()} thread(s) (auto: CPU, onnxruntime installed; exported")
    assert f"(tolerance {ExportConfig.tolerance:g})" in lines[0]
    assert sorted(os.listdir(tmp_path)) == ["f.h5"]  # the ONNX file went with the spool


def test_auto_without_onnxruntime_uses_torch_and_says_why(checkpoint: Path, crops: Path, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    run_embed(_config(checkpoint, crops, tmp_path / "torch.h5", backend="torch"))
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` raises ImportError
    _, lines = _embed_logged(caplog, _config(checkpoint, crops, tmp_path / "auto.h5"))
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"backend: torch {torch.__version__} on cpu, {torch.get_num_threads()} thread(s) "
                               "(auto: onnxruntime is not installed (pip install -e '.[export]'")
    assert filecmp.cmp(tmp_path / "torch.h5", tmp_path / "auto.h5", shallow=False)


def test_auto_falls_back_to_torch_when_the_checkpoint_does_not_export(checkpoint: Path, crops: Path, tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import reid.inference.backends as backends

    def refuse(*args, **kwargs):
        raise BadInputError("its 'global' output differs from PyTorch by 0.5 (more than 0.0001) in ONNX Runtime")

    monkeypatch.setattr(backends, "export_onnx", refuse)
    _, lines = _embed_logged(caplog, _config(checkpoint, crops, tmp_path / "f.h5"))
    assert lines == [f"backend: torch {torch.__version__} on cpu, {torch.get_num_threads()} thread(s) "
                                      "(auto: the checkpoint does not export to ONNX (its 'global' output differs from "
                                      "PyTorch by 0.5 (more than 0.0001) in ONNX Runtime))"]
    result = CliRunner().invoke(embed_command, ["--checkpoint", str(checkpoint), "--src", str(crops), "--out",
                                                str(tmp_path / "g.h5"), "--skip-bad", "--backend", "onnxruntime"])
    one_error_line(result, "--backend onnxruntime: the checkpoint does not export to ONNX", "use --backend torch")
    assert sorted(os.listdir(tmp_path)) == ["f.h5"]


def test_onnxruntime_backend_without_onnxruntime_is_one_error_line(checkpoint: Path, crops: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    result = CliRunner().invoke(embed_command, ["--checkpoint", str(checkpoint), "--src", str(crops), "--out",
                                                str(tmp_path / "f.h5"), "--backend", "onnxruntime"])
    assert one_error_line(result) == ("error: --backend onnxruntime: the onnxruntime package is not installed; install "
                                      "it with pip install -e '.[export]' (or: pip install onnx onnxruntime), or use "
                                      "--backend torch")
    assert os.listdir(tmp_path) == []


def test_onnxruntime_backend_refuses_a_gpu_device(checkpoint: Path, crops: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(embed_command, ["--checkpoint", str(checkpoint), "--src", str(crops), "--out",
                                                str(tmp_path / "f.h5"), "--backend", "onnxruntime", "--device", "cuda"])
    one_error_line(result, "--backend onnxruntime runs on the CPU, not --device cuda", "--backend torch")
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- parity


@pytest.mark.parametrize("flip", [False, True])
def test_backends_agree_within_the_export_tolerance_in_the_same_layout(checkpoint: Path, crops: Path, tmp_path: Path,
                                                                       flip: bool) -> None:
    for backend in ("torch", "onnxruntime"):
        run_embed(_config(checkpoint, crops, tmp_path / f"{backend}.h5", backend=backend, flip=flip))
    assert _layout(tmp_path / "torch.h5") == _layout(tmp_path / "onnxruntime.h5")
    with h5py.File(tmp_path / "torch.h5", "r") as a, h5py.File(tmp_path / "onnxruntime.h5", "r") as b:
        assert len(a["path"]) == 9 and list(a["path"][()]) == list(b["path"][()])
        assert list(b["skipped_path"][()]) == [b"p9.jpg"]
        for key in ("global", "local", "occlusion"):
            expected, got = a[key][()], b[key][()]
            assert _scaled_diff(got, expected) <= ExportConfig.tolerance, key
        assert not np.array_equal(a["global"][()], b["global"][()])  # two runtimes did compute them


def test_flip_changes_the_onnxruntime_features(checkpoint: Path, crops: Path, tmp_path: Path) -> None:
    for flip in (False, True):
        run_embed(_config(checkpoint, crops, tmp_path / f"{flip}.h5", backend="onnxruntime", flip=flip))
    with h5py.File(tmp_path / "False.h5", "r") as plain, h5py.File(tmp_path / "True.h5", "r") as flipped:
        assert _scaled_diff(flipped["global"][()], plain["global"][()]) > 1e-3
        assert bool(flipped.attrs["flip"]) and not bool(plain.attrs["flip"])


def test_an_untrained_obc_head_gives_nan_occlusion_with_either_backend(tiny_store: Path, crops: Path,
                                                                         tmp_path: Path) -> None:
    from tests.conftest import write_fresh_checkpoint

    untrained = write_fresh_checkpoint(tmp_path / "alpha1.pt", tiny_store, obc_head_trained=False)
    for backend in ("torch", "onnxruntime"):
        run_embed(_config(untrained, crops, tmp_path / f"{backend}.h5", backend=backend, flip=True))
    with h5py.File(tmp_path / "torch.h5", "r") as a, h5py.File(tmp_path / "onnxruntime.h5", "r") as b:
        assert np.isnan(a["occlusion"][()]).all() and np.isnan(b["occlusion"][()]).all()
        assert _scaled_diff(b["global"][()], a["global"][()]) <= ExportConfig.tolerance


# ----------------------------------------------------------------------------- resume


_KILLER = """
import os, signal, sys
from pathlib import Path
from reid.inference.embed import EmbedConfig, run_embed
config = EmbedConfig(checkpoint=Path(sys.argv[1]), src=Path(sys.argv[2]), out=Path(sys.argv[3]), device="cpu",
                     batch_size=2, chunk_rows=4, skip_bad=True, backend="onnxruntime")
def kill_after(chunk, done):
    if chunk == 1:
        os.kill(os.getpid(), signal.SIGKILL)
run_embed(config, on_chunk=kill_after)
"""


def test_resume_with_onnxruntime_gives_the_uninterrupted_bytes_and_keeps_its_backend(
        checkpoint: Path, crops: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    options = dict(batch_size=2, chunk_rows=4)
    run_embed(_config(checkpoint, crops, tmp_path / "whole.h5", backend="onnxruntime", **options))
    out = tmp_path / "killed.h5"
    # The killed run must use this process's thread count (ONNX Runtime follows PyTorch's).
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()), "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", _KILLER, str(checkpoint), str(crops), str(out)], env=env,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    spool = spool_dir(out)
    assert sorted(os.listdir(spool)) == [BACKEND_RECORD, "chunk-000000.npz", "chunk-000001.npz", "manifest.json",
                                         ONNX_FILE]

    # Another backend is refused: the rows of the two would differ slightly.
    with pytest.raises(BadInputError) as refused:
        run_embed(_config(checkpoint, crops, out, resume=True, backend="torch", **options))
    message = refused.value.args[0]
    assert "\n" not in message and message.startswith(
        f"{spool}: the interrupted run embedded with --backend onnxruntime and this one would use torch (--backend "
        "torch); rows of two backends differ slightly, so a run keeps one: resume with --backend onnxruntime"), message
    assert sorted(os.listdir(spool)) == [BACKEND_RECORD, "chunk-000000.npz", "chunk-000001.npz", "manifest.json",
                                         ONNX_FILE]

    computed: list[int] = []
    report, lines = _embed_logged(caplog, _config(checkpoint, crops, out, resume=True, **options),
                                  on_chunk=lambda c, d: computed.append(c))
    assert computed == [2] and report.resumed_rows == 8 and report.computed_rows == 1  # p8; p9 is unreadable
    assert len(lines) == 1 and lines[0].startswith("backend: onnxruntime") and \
        lines[0].endswith("(auto: CPU, onnxruntime installed (the interrupted run's backend); reusing the interrupted "
                          "run's model.onnx)"), lines
    assert filecmp.cmp(tmp_path / "whole.h5", out, shallow=False)
    assert sorted(os.listdir(tmp_path)) == ["killed.h5", "whole.h5"]


def test_auto_resumes_a_torch_run_with_torch(checkpoint: Path, crops: Path, tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    options = dict(batch_size=2, chunk_rows=4, backend="torch")
    run_embed(_config(checkpoint, crops, tmp_path / "whole.h5", **options))
    out = tmp_path / "cut.h5"

    def stop(chunk: int, done: int) -> None:
        if chunk == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_embed(_config(checkpoint, crops, out, **options), on_chunk=stop)
    _, lines = _embed_logged(caplog, _config(checkpoint, crops, out, batch_size=2, chunk_rows=4, resume=True))
    assert lines[-1].endswith("(auto: the interrupted run used torch)")
    assert filecmp.cmp(tmp_path / "whole.h5", out, shallow=False)
