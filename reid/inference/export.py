"""``reid export``: a checkpoint as an ONNX or TorchScript file that runs without this package.

The exported graph takes ``images``: float32 [batch, 3, H, W], RGB, normalised as
``(x / 255 - mean) / std`` (H, W, mean and std are in the file's metadata), batch size
dynamic, and returns ``global`` [batch, D], ``local`` [batch, stripes, C] and ``occlusion``
[batch] (the OBC head's probability that the image is occluded; meaningless when the
metadata's ``obc_head_trained`` is ``false``: an alpha = 1 checkpoint). After writing, both the
exported model and the PyTorch model run on the same batch (of another size than the one
traced, so the dynamic batch is checked too); if any output differs by more than
``tolerance`` the file is not kept.

ONNX uses PyTorch's TorchScript-based exporter (``dynamo=False``): the newer exporter needs
the ``onnxscript`` package, and this one needs nothing beyond ``onnx`` and ``onnxruntime``.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from common.atomic import atomic_path, check_output
from common.errors import BadInputError
from reid.inference.config import MIN_OPSET, ExportConfig
from reid.models.aligned import retrieval_of
from reid.models.checkpoint import retrieval_feature_of
from reid.models.inference import InferenceSpec, file_fingerprint, load_inference_model

logger = logging.getLogger(__name__)

OUTPUT_NAMES: tuple[str, ...] = ("global", "local", "occlusion")
INPUT_NAME = "images"
INSTALL_HINT = "pip install -e '.[export]' (or: pip install onnx onnxruntime)"
#: Batch sizes of the traced example and of the parity check (different on purpose).
TRACE_BATCH = 2
PARITY_BATCH = 3


def stripe_pooling_matrix(height: int, stripes: int) -> torch.Tensor:
    """[stripes, height]: row i averages feature-map rows floor(i h / s) .. ceil((i + 1) h / s) - 1,
    the bins of ``adaptive_avg_pool2d`` (which ONNX cannot export when s does not divide h)."""
    pool = torch.zeros(stripes, height)
    for i in range(stripes):
        start, stop = (i * height) // stripes, -((-(i + 1) * height) // stripes)
        pool[i, start:stop] = 1.0 / (stop - start)
    return pool


class ExportHead(nn.Module):
    """The network as exported: normalised images -> (global, local, occlusion probability);
    "global" is the retrieval feature, ``bn_feat`` for a model trained with ``--retrieval-feature bn``.

    The same layers as :meth:`reid.models.aligned.AlignedReID.forward`; only the stripe pooling
    is a constant matrix product (the input size is fixed), because ONNX has no adaptive
    pooling whose output size does not divide the input. The parity check guards the equality.
    """

    def __init__(self, model: nn.Module, input_size: tuple[int, int]) -> None:
        super().__init__()
        self.model = model
        with torch.device("meta"):
            height = int(type(model)(model.config).backbone(torch.empty(1, 3, *input_size)).shape[2])
        stripes = model.config.num_stripes or height
        self.register_buffer("pool", stripe_pooling_matrix(height, stripes), persistent=False)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        m = self.model
        fmap = m.backbone(images)  # [N, D, h, w]
        global_feat = fmap.mean(dim=(2, 3))  # [N, D]
        bn_feat = m.neck(global_feat)  # [N, D]
        stripes = torch.matmul(fmap.mean(dim=3), self.pool.t())  # [N, D, stripes]
        local = m.local_relu(m.local_bn(m.local_conv(stripes.unsqueeze(3))))  # [N, C, stripes, 1]
        local_feat = local.squeeze(3).permute(0, 2, 1)  # [N, stripes, C]
        occlusion = m.obc_head(bn_feat).softmax(dim=1)[:, 1]  # [N]
        retrieval = retrieval_of(retrieval_feature_of(m), global_feat, bn_feat)  # what `reid eval` measures
        return retrieval, local_feat, occlusion


@dataclass
class ExportReport:
    out: Path
    format: str
    max_abs_diff: dict[str, float]
    metadata: dict[str, str]


def export_metadata(spec: InferenceSpec, checkpoint_fingerprint: str) -> dict[str, str]:
    """What a runtime needs to feed the file and read its outputs, as strings (ONNX
    ``metadata_props``); ``obc_head_trained`` is "true", "false" (the ``occlusion`` output is
    then no probability) or "null" (the checkpoint does not say)."""
    from reid import __version__

    height, width = spec.input_size
    return {
        "format": "occluded-reid-model",
        "package_version": __version__,
        "arch": spec.arch,
        "input_name": INPUT_NAME,
        "input_size": json.dumps([height, width]),
        "input_layout": f"float32 [batch, 3, {height}, {width}], RGB, (x / 255 - mean) / std",
        "mean": json.dumps(list(spec.mean)),
        "std": json.dumps(list(spec.std)),
        "outputs": json.dumps(list(OUTPUT_NAMES)),
        "global_dim": str(spec.global_dim),
        "num_stripes": str(spec.num_stripes),
        "local_dim": str(spec.local_dim),
        "checkpoint_fingerprint": checkpoint_fingerprint,
        "dataset_fingerprint": spec.dataset_fingerprint,
        "obc_head_trained": json.dumps(spec.obc_head_trained),
    }


def require_onnx() -> tuple[Any, Any]:
    """(onnx, onnxruntime), or a one-line BadInputError saying how to install them."""
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise BadInputError(f"reid export --format onnx: the {exc.name} package is not installed; install it with {INSTALL_HINT}") from exc
    return onnx, onnxruntime


def highest_opset() -> int | None:
    """The highest ONNX opset this PyTorch's exporter writes (None when it does not say)."""
    try:
        from torch.onnx import _constants
    except ImportError:
        return None
    value = getattr(_constants, "ONNX_MAX_OPSET", None)
    return int(value) if value is not None else None


def check_opset(opset: int) -> None:
    """Refuse, before any work, an ONNX opset this PyTorch cannot export.

    Raises:
        BadInputError: naming ``--opset``, the range and the default.
    """
    highest = highest_opset()
    if opset < MIN_OPSET or (highest is not None and opset > highest):
        bounds = f"{MIN_OPSET} to {highest}" if highest is not None else f"{MIN_OPSET} or more"
        raise BadInputError(f"--opset {opset}: PyTorch {torch.__version__} exports opsets {bounds}; "
                            f"choose one of them (default {ExportConfig.opset})")


def example_batch(spec: InferenceSpec, batch: int, seed: int = 0) -> torch.Tensor:
    """Random uint8 images normalised as the model expects: float32 [batch, 3, H, W]."""
    from reid.data.transforms import normalize_batch

    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch, 3, *spec.input_size), generator=generator, dtype=torch.uint8)
    return normalize_batch(images, spec.mean, spec.std)


def run_export(config: ExportConfig) -> ExportReport:
    """Write ``config.checkpoint`` (None: the newest run's, :func:`reid.engine.runs.resolve_checkpoint`)
    as ``config.format`` to ``config.out`` after the parity check.

    Raises:
        BadInputError: missing onnx/onnxruntime (names the install command),
            an opset this PyTorch or onnxruntime cannot handle, a bad checkpoint, an unwritable
            or existing output (without ``force``) or the checkpoint as output, or outputs
            differing from PyTorch by more than ``tolerance`` (the file is removed).
    """
    from reid.engine.runs import resolve_checkpoint

    checkpoint = resolve_checkpoint(config.checkpoint)
    if config.format == "onnx":
        require_onnx()
        check_opset(config.opset)
    out = Path(config.out)
    check_output(out, (checkpoint,), config.force, "exported model")  # before the model is loaded and traced
    model, spec = load_inference_model(checkpoint, device="cpu")
    head = ExportHead(model, spec.input_size).eval()
    metadata = export_metadata(spec, file_fingerprint(checkpoint))
    if spec.obc_head_trained is False:
        logger.info("%s: the OBC head was not trained (alpha = 1): the 'occlusion' output is no probability "
                    "(metadata obc_head_trained = false)", checkpoint)
    # Moved onto ``out`` only when parity holds (and, without ``force``, only if no file appeared there).
    with atomic_path(out, "exported model", overwrite=config.force) as tmp:
        if config.format == "onnx":
            _write_onnx(head, spec, metadata, tmp, config.opset)
            exported = _onnx_runner(tmp, config.opset)
        else:
            _write_torchscript(head, spec, metadata, tmp)
            exported = _torchscript_runner(tmp)
        diffs = parity(head, exported, example_batch(spec, PARITY_BATCH, seed=1))
        worst = max(diffs, key=diffs.get)  # type: ignore[arg-type]
        if not diffs[worst] <= config.tolerance:
            raise BadInputError(
                f"{out}: the exported model's '{worst}' output differs from PyTorch by {diffs[worst]:.3g} "
                f"of its scale (more than {config.tolerance:g}); the file was not kept, try another --opset or --format"
            )
    logger.info("parity with PyTorch on a batch of %d: max |diff| %s", PARITY_BATCH,
                ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    return ExportReport(out=out, format=config.format, max_abs_diff=diffs, metadata=metadata)


def parity(head: nn.Module, exported: Any, images: torch.Tensor) -> dict[str, float]:
    """Largest difference per output between PyTorch and ``exported`` (a function of a float32
    numpy batch returning the three outputs) on ``images``, on the scale of the output:
    ``max |exported - pytorch| / max(1, max |pytorch|)``, i.e. absolute for outputs within
    [-1, 1] (the occlusion probability) and relative for larger ones (features of a resnet50
    reach the hundreds, where float32 itself resolves only ~1e-5)."""
    with torch.inference_mode():
        reference = head.model(images)  # the PyTorch model itself, not the exported head
        expected = [reference.retrieval(retrieval_feature_of(head.model)).numpy(), reference.local_feat.numpy(),
                    reference.occluded_probability().numpy()]
    got = exported(images.numpy())
    return {
        name: float(np.max(np.abs(np.asarray(g, dtype=np.float64) - e)) / max(1.0, float(np.max(np.abs(e)))))
        if e.size else 0.0
        for name, g, e in zip(OUTPUT_NAMES, got, expected)
    }


def _write_onnx(head: nn.Module, spec: InferenceSpec, metadata: dict[str, str], path: Path, opset: int) -> None:
    onnx, _ = require_onnx()
    dynamic = {name: {0: "batch"} for name in (INPUT_NAME, *OUTPUT_NAMES)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer warnings
        try:
            torch.onnx.export(
                head, (example_batch(spec, TRACE_BATCH),), str(path), dynamo=False, input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES), dynamic_axes=dynamic, opset_version=opset, do_constant_folding=True,
            )
        except RuntimeError as exc:  # "Unsupported onnx_opset_version: N", an op without a symbolic at N
            raise BadInputError(f"--opset {opset}: PyTorch {torch.__version__} cannot export this model at it "
                                f"({_first_line(exc)}); try another --opset (default {ExportConfig.opset})") from exc
    proto = onnx.load(str(path))
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _onnx_runner(path: Path, opset: int) -> Any:
    _, ort = require_onnx()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except RuntimeError as exc:  # onnxruntime's Fail / InvalidGraph: an opset newer than it knows
        raise BadInputError(f"--opset {opset}: onnxruntime {ort.__version__} cannot load the exported model "
                            f"({_first_line(exc)}); try a lower --opset (default {ExportConfig.opset})") from exc
    return lambda images: session.run(list(OUTPUT_NAMES), {INPUT_NAME: images})


def _write_torchscript(head: nn.Module, spec: InferenceSpec, metadata: dict[str, str], path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit deprecation notices
        traced = torch.jit.trace(head, (example_batch(spec, TRACE_BATCH),), check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={"metadata.json": json.dumps(metadata, indent=2)})


def _torchscript_runner(path: Path) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.load(str(path), map_location="cpu")

    def run(images: np.ndarray) -> list[np.ndarray]:
        with torch.inference_mode():
            return [t.numpy() for t in module(torch.from_numpy(images))]

    return run


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    """The metadata a file written by :func:`run_export` (ONNX) carries."""
    onnx, _ = require_onnx()
    return {entry.key: entry.value for entry in onnx.load(str(path), load_external_data=False).metadata_props}
