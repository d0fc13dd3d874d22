"""``reid embed --backend``: which runtime computes the features, PyTorch or ONNX Runtime.

* ``torch``: the checkpoint's network in PyTorch (:class:`reid.inference.embedder.Embedder`),
  on the CPU or a GPU.
* ``onnxruntime``: the network exported exactly as ``reid export`` writes it (the same graph,
  the same parity check against PyTorch, the same tolerance) and run by ONNX Runtime on the
  CPU, about 1.8x (1 thread) to 3x (2 threads) faster than PyTorch eager there (see
  benchmarks/README.md, "Inference").
* ``auto`` (the default): onnxruntime when the model runs on the CPU, onnx and onnxruntime
  are installed and the checkpoint exports within the tolerance; torch otherwise. On a resume
  ``auto`` keeps the backend of the interrupted run.

Rules:

* One log line says which backend embeds and why (and with how many threads).
* The ONNX file is written into the run's spool folder (``model.onnx``, atomically, only once
  parity holds), so ``--resume`` reuses it instead of exporting again, and it goes away with
  the spool when the features file is written.
* A resume continues with the backend the interrupted run used (recorded in the spool's
  ``backend.json``); another one is refused. Both backends agree within the export tolerance,
  but not to the bit, and a features file is the same bytes as an uninterrupted run only when
  every row comes from one runtime (the file does not record a backend per row).
* ONNX Runtime uses as many intra-op threads as PyTorch does in this process
  (``torch.get_num_threads()``: ``OMP_NUM_THREADS``, else PyTorch's default), one inter-op
  thread, and its idle threads sleep instead of spinning: a spinning thread busy-waits on a
  core that the decoding workers and, on shared machines, other processes need (no speed
  difference was measurable here either way; see benchmarks/README.md, "Inference").
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.atomic import atomic_path, atomic_write_json
from common.errors import BadInputError
from reid.inference.embedder import Embedder, Embeddings
from reid.models.inference import InferenceSpec

logger = logging.getLogger(__name__)

BACKENDS: tuple[str, ...] = ("auto", "torch", "onnxruntime")
ONNX_FILE = "model.onnx"
BACKEND_RECORD = "backend.json"


@dataclass(frozen=True)
class BackendPlan:
    """What to try, decided before the model is loaded.

    Attributes:
        name: "torch" or "onnxruntime" (auto falls back to torch if the checkpoint does not export).
        device: where the PyTorch model loads ("cpu" for onnxruntime).
        reason: why, for the log line.
        explicit: ``--backend`` named it (a failure is then an error, not a fallback).
    """

    name: str
    device: str
    reason: str
    explicit: bool


def missing_onnx_package() -> str | None:
    """The name of the first of onnx / onnxruntime that cannot be imported, or None."""
    for name in ("onnx", "onnxruntime"):
        try:
            __import__(name)
        except ImportError:
            return name
    return None


def recorded_backend(spool: Path) -> str | None:
    """The backend an interrupted run recorded in ``spool``; None when there is none."""
    try:
        value = json.loads((Path(spool) / BACKEND_RECORD).read_text()).get("backend")
    except (OSError, ValueError, AttributeError):
        return None
    return value if value in BACKENDS[1:] else None


def plan_backend(backend: str, device: str, spool: Path | None = None) -> BackendPlan:
    """Choose the backend to try (see the module docstring); ``spool``: an interrupted run's
    folder under ``--resume`` (auto keeps its backend).

    Raises:
        BadInputError: an unknown backend; ``--backend onnxruntime`` with ``--device cuda``
            or without onnx / onnxruntime installed (names ``pip install -e '.[export]'``).
    """
    from common.device import resolve_device
    from reid.inference.export import INSTALL_HINT

    if backend not in BACKENDS:
        raise BadInputError(f"--backend {backend!r}: use {', '.join(BACKENDS)}")
    if backend == "torch":
        return BackendPlan("torch", device, "--backend torch", explicit=True)
    if backend == "onnxruntime":
        if device not in ("auto", "cpu"):
            raise BadInputError(f"--backend onnxruntime runs on the CPU, not --device {device}; "
                                "use --device cpu, or --backend torch on a GPU")
        missing = missing_onnx_package()
        if missing:
            raise BadInputError(f"--backend onnxruntime: the {missing} package is not installed; "
                                f"install it with {INSTALL_HINT}, or use --backend torch")
        return BackendPlan("onnxruntime", "cpu", "--backend onnxruntime", explicit=True)
    previous = recorded_backend(spool) if spool is not None else None
    if previous == "torch":
        return BackendPlan("torch", device, "auto: the interrupted run used torch", explicit=False)
    kept = " (the interrupted run's backend)" if previous else ""
    if previous is None or device != "auto":
        where = resolve_device(device)
        if where.type != "cpu":
            return BackendPlan("torch", device, f"auto: the model runs on {where}; the onnxruntime backend is CPU-only",
                               explicit=False)
    missing = missing_onnx_package()
    if missing:
        return BackendPlan("torch", device, f"auto: {missing} is not installed ({INSTALL_HINT} for the faster "
                           "CPU backend)", explicit=False)
    return BackendPlan("onnxruntime", "cpu", f"auto: CPU, onnxruntime installed{kept}", explicit=False)


class OnnxEmbedder:
    """The exported network in an ONNX Runtime CPU session, with :class:`Embedder`'s
    ``spec``, ``device``, ``flip`` and :meth:`embed_prepared`.

    Args:
        path: an ONNX file written by :func:`export_onnx` (or ``reid export``).
        spec: the checkpoint's inference spec (input size, mean and std).
        flip: average each image's features with its mirror's.
        threads: intra-op threads (default: ``torch.get_num_threads()``).
    """

    def __init__(self, path: Path, spec: InferenceSpec, flip: bool = False, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        self.spec = spec
        self.flip = bool(flip)
        self.device = torch.device("cpu")
        self.threads = int(threads or torch.get_num_threads())
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's Fail / InvalidGraph / NoSuchFile
            raise BadInputError(f"{self.path}: onnxruntime {ort.__version__} cannot load it ({_first_line(exc)})") from exc
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """float32 normalised [B, 3, H, W] -> (global [B, D], local [B, H, C], occlusion [B])."""
        from reid.inference.export import INPUT_NAME, OUTPUT_NAMES

        g, l, p = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: np.ascontiguousarray(images, dtype=np.float32)})
        return g, l, p

    def embed_prepared(self, images: torch.Tensor) -> Embeddings:
        """uint8 [B, 3, H, W] at the input size -> :class:`Embeddings` of the batch, averaged with
        the mirrored images' as :func:`reid.inference.embedder.forward_features` does under ``flip``."""
        from reid.data.transforms import normalize_batch

        x = normalize_batch(images.cpu(), self.spec.mean, self.spec.std).numpy()
        g, l, p = self.run(x)
        if self.flip:
            gm, lm, pm = self.run(x[:, :, :, ::-1])
            g, l, p = (g + gm) / 2, (l + lm) / 2, (p + pm) / 2
        if getattr(self.spec, "obc_head_trained", None) is False:  # as Embedder: an untrained head is no probability
            p = np.full_like(p, np.nan)
        return Embeddings(global_feat=g, local_feat=l, occlusion=p)


def export_onnx(model: torch.nn.Module, spec: InferenceSpec, fingerprint: str, path: Path, flip: bool = False,
                threads: int | None = None) -> tuple[OnnxEmbedder, float]:
    """Export ``model`` (on the CPU) to ``path`` as ``reid export`` does, keeping the file only
    when every output is within ``reid export``'s default tolerance of PyTorch.

    Returns:
        (the session that passed the check, now reading ``path``, with ``flip`` and ``threads``;
        the largest difference found, on :func:`reid.inference.export.parity`'s scale).

    Raises:
        BadInputError: the export fails, or an output differs by more than the tolerance
            (nothing is left at ``path`` then).
    """
    from reid.inference.export import (PARITY_BATCH, ExportConfig, ExportHead, _write_onnx, example_batch,
                                       export_metadata, parity)

    tolerance = ExportConfig.tolerance
    head = ExportHead(model, spec.input_size).eval()
    with atomic_path(path, "ONNX model") as tmp:
        try:
            _write_onnx(head, spec, export_metadata(spec, fingerprint), tmp, ExportConfig.opset)
        except BadInputError:
            raise
        except Exception as exc:  # an op without an ONNX symbolic, the checker refusing the graph
            raise BadInputError(f"torch.onnx.export failed: {type(exc).__name__}: {_first_line(exc)}") from exc
        runner = OnnxEmbedder(tmp, spec, flip=flip, threads=threads)
        diffs = parity(head, runner.run, example_batch(spec, PARITY_BATCH, seed=1))
        worst = max(diffs, key=diffs.get)  # type: ignore[arg-type]
        if not diffs[worst] <= tolerance:
            raise BadInputError(f"its '{worst}' output differs from PyTorch by {diffs[worst]:.3g} (more than "
                                f"{tolerance:g}) in ONNX Runtime")
    runner.path = Path(path)  # the session holds the model; the file was only renamed
    return runner, diffs[worst]


def open_backend(plan: BackendPlan, embedder: Embedder, spool: Path, fingerprint: str, resumed: bool) -> Any:
    """The embedder of the chosen backend; logs the one line that says which and why.

    ``embedder`` is the PyTorch one, already loaded on ``plan.device``; for onnxruntime the
    ONNX file of ``spool`` is reused when it belongs to this checkpoint, else exported there.
    ``resumed``: the spool holds finished chunks, so the backend must be the one they used.

    Raises:
        BadInputError: the checkpoint does not export under an explicit ``--backend onnxruntime``
            (auto falls back to torch); a resume with another backend than the interrupted run's.
    """
    name, reason, chosen = plan.name, plan.reason, embedder
    if plan.name == "onnxruntime":
        try:
            chosen, note = _onnx_embedder(embedder, Path(spool) / ONNX_FILE, fingerprint)
            reason = f"{reason}; {note}"
        except BadInputError as exc:
            if plan.explicit:
                raise BadInputError(f"--backend onnxruntime: the checkpoint does not export to ONNX ({exc.args[0]}); "
                                    "use --backend torch") from exc
            name, reason = "torch", f"auto: the checkpoint does not export to ONNX ({exc.args[0]})"
    previous = recorded_backend(spool) or ("torch" if resumed else None)  # spools before --backend: torch
    if resumed and previous != name:
        raise BadInputError(
            f"{spool}: the interrupted run embedded with --backend {previous} and this one would use {name} ({reason}); "
            f"rows of two backends differ slightly, so a run keeps one: resume with --backend {previous}, "
            "or delete the folder to start over"
        )
    if previous != name or not (Path(spool) / BACKEND_RECORD).is_file():
        atomic_write_json(Path(spool) / BACKEND_RECORD, {"backend": name}, what="embedding backend record")
    if name == "onnxruntime":
        import onnxruntime

        runtime = f"onnxruntime {onnxruntime.__version__}, {chosen.threads} thread(s)"
    else:
        runtime = f"torch {torch.__version__} on {embedder.device}"
        if embedder.device.type == "cpu":
            runtime += f", {torch.get_num_threads()} thread(s)"
    logger.info("backend: %s (%s)", runtime, reason)
    return chosen


def _onnx_embedder(embedder: Embedder, path: Path, fingerprint: str) -> tuple[OnnxEmbedder, str]:
    """(embedder, what was done) for ``path``: reused when it holds this checkpoint, else exported."""
    if path.is_file():
        try:
            reused = OnnxEmbedder(path, embedder.spec, flip=embedder.flip)
        except BadInputError:
            reused = None
        if reused is not None and reused.metadata.get("checkpoint_fingerprint") == fingerprint \
                and reused.metadata.get("input_size") == json.dumps(list(embedder.spec.input_size)):
            return reused, f"reusing the interrupted run's {path.name}"
    from reid.inference.export import ExportConfig

    runner, worst = export_onnx(embedder.model, embedder.spec, fingerprint, path, flip=embedder.flip)
    return runner, f"exported, outputs within {worst:.1e} of PyTorch (tolerance {ExportConfig.tolerance:g})"


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
