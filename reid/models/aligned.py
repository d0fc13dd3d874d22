"""The AlignedReID network with the occlusion-classification (OBC) head.

Layout (shapes for resnet50, input [N, 3, 256, 128], ``last_stride=1``)::

    images [N, 3, 256, 128]
      -> backbone (torchvision ResNet up to layer4)       feature map [N, 2048, 16, 8]
         |-> global average pooling                       global_feat [N, 2048]   (triplet, retrieval)
         |     -> BatchNorm1d ("neck")                    bn_feat     [N, 2048]
         |          -> Linear(2048, num_classes)          id_logits   [N, num_classes]
         |          -> Linear(2048, 2)                    occ_logits  [N, 2]      (OBC head)
         |-> mean over the width, (optionally) adaptive-pool the height to ``num_stripes``
               -> 1x1 conv to local_dim -> BN -> ReLU     local_feat  [N, H, 128]
               -> 1x1 conv to 1 (``visibility_head``)     visibility_logits [N, H]

Which feature does what:

* ``global_feat`` (before the BN neck) is the one the triplet loss shapes and the one used for
  retrieval. This follows AlignedReID, whose global and aligned local distances are both
  defined on un-normalised features trained by TriHard; the evaluator's combined
  global + local distance then adds two distances from the same metric space the loss built.
  (BoT retrieves with the BN feature and cosine distance; ``bn_feat`` is returned too so that
  an evaluator can try it, but it is not the default.)
* ``bn_feat`` feeds the two softmax heads (identity classifier and OBC head): BoT showed that
  putting cross-entropy after a BN neck keeps it from fighting the triplet loss on the same
  embedding. With ``neck_bn=False`` the neck is the identity and both heads see ``global_feat``.

OBC label convention: class 1 = occluded, class 0 = clean, i.e. the HDF5 ``occluded`` column
(True = occluded) cast to long. (The paper wrote 0 for occluded; we do not.)

``last_stride`` defaults to 1, the choice of BoT and of most AlignedReID re-implementations
since: it doubles the resolution of the last feature map (16x8 at 256x128 instead of 8x4) for a
small cost. ``num_stripes`` defaults to 8, AlignedReID's stripe count at 256x128, whatever the
stride (the aligned distance costs H^2 per pair, so 16 stripes would cost 4x at evaluation);
``num_stripes=None`` uses one stripe per feature-map row (16 at 256x128 with ``last_stride=1``).

The optional visibility head (``visibility_head=True``) predicts, per stripe, the logit of the
fraction of that stripe that is visible (not covered by an occluder); it is trained with the
simulator's boxes (:mod:`reid.losses.visibility`) and weighs the stripes of the
visibility-weighted aligned distance (:func:`reid.distance.visibility_weighted_aligned_distance`).
It is a 1x1 conv (D -> 1, with bias) on the *pooled stripe features* [N, D, H, 1], before the
local projection: those D-dim features carry all the evidence the backbone has about the
stripe, whereas the 128-d local feature is a BN + ReLU projection shaped by the triplet metric
(asking it to also encode visibility would spend metric dimensions on it). It costs D + 1
parameters. Without the head, ``visibility_logits`` is an empty [N, 0] tensor (and the
checkpoint has no ``visibility_head.*`` keys, so older checkpoints load unchanged).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import urllib.request
from collections import OrderedDict
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal, NamedTuple
from urllib.parse import urlparse

import torch
import torchvision
from torch import hub, nn

from common.atomic import atomic_open
from common.errors import BadInputError
from reid.options import ARCH_DIMS, RETRIEVAL_FEATURES  # noqa: F401 (re-exported: declared torch-free there)

logger = logging.getLogger(__name__)

#: Seconds the connection may stay silent while trying to download ImageNet weights; offline machines
#: must fall back to random initialisation quickly instead of hanging.
DOWNLOAD_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the network (stored in every checkpoint).

    Attributes:
        num_classes: number of training identities (rows of the identity classifier).
        arch: torchvision ResNet name, one of ``ARCH_DIMS``.
        last_stride: stride of the first block of layer4, 1 (BoT, default) or 2 (ImageNet
            ResNet, original AlignedReID).
        local_dim: channels of each local stripe feature (AlignedReID: 128).
        num_stripes: None = one stripe per feature-map row; an int = adaptive average pooling
            of the height to that many stripes.
        neck_bn: BatchNorm1d between the global feature and the softmax heads.
        visibility_head: add the per-stripe visibility head (``visibility_logits`` [N, H]).
        retrieval_feature: the feature evaluation retrieves with: "global" (``global_feat``,
            AlignedReID) or "bn" (``bn_feat``, after the BN neck, as BoT). Training is the same
            either way; it is recorded here so that every evaluator of the checkpoint uses it.
    """

    num_classes: int
    arch: str = "resnet50"
    last_stride: int = 1
    local_dim: int = 128
    num_stripes: int | None = 8
    neck_bn: bool = True
    visibility_head: bool = False
    retrieval_feature: str = "global"

    def __post_init__(self) -> None:
        if self.arch not in ARCH_DIMS:
            raise BadInputError(
                f"--arch {self.arch!r}: unknown architecture; use one of {', '.join(ARCH_DIMS)}"
            )
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise BadInputError(f"num_classes {self.num_classes!r}: must be a positive integer")
        if self.last_stride not in (1, 2):
            raise BadInputError(f"--last-stride {self.last_stride!r}: must be 1 or 2")
        if isinstance(self.local_dim, bool) or not isinstance(self.local_dim, int) or self.local_dim < 1:
            raise BadInputError(f"local_dim {self.local_dim!r}: must be a positive integer")
        if self.num_stripes is not None and (
            isinstance(self.num_stripes, bool) or not isinstance(self.num_stripes, int) or self.num_stripes < 1
        ):
            raise BadInputError(f"num_stripes {self.num_stripes!r}: must be a positive integer or None")
        if not isinstance(self.neck_bn, bool):
            raise BadInputError(f"neck_bn {self.neck_bn!r}: must be true or false")
        if not isinstance(self.visibility_head, bool):
            raise BadInputError(f"visibility_head {self.visibility_head!r}: must be true or false")
        if self.retrieval_feature not in RETRIEVAL_FEATURES:
            raise BadInputError(
                f"--retrieval-feature {self.retrieval_feature!r}: use one of {', '.join(RETRIEVAL_FEATURES)}")

    @property
    def global_dim(self) -> int:
        """Dimension D of ``global_feat``."""
        return ARCH_DIMS[self.arch]

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (JSON- and ``weights_only``-safe)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error (a newer format, or not ours)."""
        if not isinstance(data, dict):
            raise BadInputError(f"model config: expected a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise BadInputError(f"model config: unknown keys {unknown}; it was written by another version")
        if "num_classes" not in data:
            raise BadInputError("model config: 'num_classes' is missing")
        return cls(**data)


class ModelOutput(NamedTuple):
    """One forward pass (a NamedTuple so DDP and torch.compile can walk it like a tuple).

    Attributes:
        global_feat: shape [N, D], pooled feature before the BN neck (triplet loss, retrieval).
        local_feat: shape [N, H, local_dim], one feature per horizontal stripe, top to bottom.
        id_logits: shape [N, num_classes].
        occ_logits: shape [N, 2]; class 1 = occluded, class 0 = clean.
        bn_feat: shape [N, D], ``global_feat`` after the BN neck (input of both heads).
        visibility_logits: shape [N, H], per-stripe logit of the visible fraction (sigmoid =
            probability that the stripe is visible), top to bottom. A model without the
            visibility head returns an empty [N, 0] tensor (every field stays a tensor, so
            code that walks the tuple keeps working); hand-built outputs may leave it None.
            Test with :attr:`has_visibility`.
    """

    global_feat: torch.Tensor
    local_feat: torch.Tensor
    id_logits: torch.Tensor
    occ_logits: torch.Tensor
    bn_feat: torch.Tensor
    visibility_logits: torch.Tensor | None = None

    @property
    def has_visibility(self) -> bool:
        """True when ``visibility_logits`` holds one logit per stripe."""
        return self.visibility_logits is not None and self.visibility_logits.shape[-1] > 0


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


class AlignedReID(nn.Module):
    """AlignedReID (global + aligned local features) with an identity and an OBC head.

    ``self.backbone.layer4`` is the last convolutional block (the Grad-CAM target layer).
    Forward returns the same :class:`ModelOutput` in train and eval mode; eval only switches
    the BatchNorm layers to their running statistics.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.global_dim
        self.backbone = _resnet_trunk(config.arch, config.last_stride)
        self.neck = nn.BatchNorm1d(dim) if config.neck_bn else nn.Identity()
        # No conv bias: the BN right after it would cancel it.
        self.local_conv = nn.Conv2d(dim, config.local_dim, kernel_size=1, bias=False)
        self.local_bn = nn.BatchNorm2d(config.local_dim)
        self.local_relu = nn.ReLU(inplace=True)
        self.classifier = nn.Linear(dim, config.num_classes)
        self.obc_head = nn.Linear(dim, 2)
        heads: list[nn.Module] = [self.classifier, self.obc_head]
        if config.visibility_head:
            self.visibility_head = nn.Conv2d(dim, 1, kernel_size=1, bias=True)
            heads.append(self.visibility_head)
        for head in heads:
            # Small initial logits (AlignedReID / BoT): the first softmax is near uniform.
            nn.init.normal_(head.weight, std=0.001)
            nn.init.zeros_(head.bias)

    def forward(self, images: torch.Tensor) -> ModelOutput:
        """images: shape [N, 3, H_in, W_in], normalised. Returns :class:`ModelOutput`."""
        fmap = self.backbone(images)  # [N, D, h, w]
        global_feat = fmap.mean(dim=(2, 3))  # [N, D]
        bn_feat = self.neck(global_feat)
        stripes = fmap.mean(dim=3, keepdim=True)  # [N, D, h, 1]
        if self.config.num_stripes is not None:
            stripes = nn.functional.adaptive_avg_pool2d(stripes, (self.config.num_stripes, 1))
        local = self.local_relu(self.local_bn(self.local_conv(stripes)))  # [N, local_dim, H, 1]
        local_feat = local.squeeze(3).permute(0, 2, 1).contiguous()  # [N, H, local_dim]
        visibility_logits = global_feat.new_zeros((global_feat.shape[0], 0))  # no head: [N, 0]
        if self.config.visibility_head:
            visibility_logits = self.visibility_head(stripes).flatten(1)  # [N, 1, H, 1] -> [N, H]
        return ModelOutput(
            global_feat=global_feat,
            local_feat=local_feat,
            id_logits=self.classifier(bn_feat),
            occ_logits=self.obc_head(bn_feat),
            bn_feat=bn_feat,
            visibility_logits=visibility_logits,
        )


def _extract_backbone_state(
    raw: Any, source: Path | str, arch: str, expected: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Pick the ResNet trunk weights out of a loaded weights file, or raise BadInputError."""
    hint = f"pass a torchvision {arch} ImageNet state dict (.pth), or leave --pretrained out for random init"
    if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in raw.items()
    ):
        raise BadInputError(f"{source}: not a state dict of tensors; {hint}")
    state = {k.removeprefix("module."): v for k, v in raw.items()}
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise BadInputError(f"{source}: not {arch} weights ({detail}); {hint}")
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise BadInputError(
                f"{source}: not {arch} weights ({key} has shape {tuple(value.shape)}, "
                f"expected {tuple(expected[key].shape)}); {hint}"
            )
    return state


def _load_weights_file(path: Path, arch: str, expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise BadInputError(f"{path}: no such weights file; give the path of a torchvision {arch} .pth file")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for damaged or foreign files
        raise BadInputError(
            f"{path}: cannot read weights ({type(exc).__name__}); pass a torchvision {arch} state dict (.pth)"
        ) from exc
    state = _extract_backbone_state(raw, path, arch, expected)
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


def _imagenet_state(arch: str, expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """ImageNet weights from torchvision's cache, else a fast-failing download, else None."""
    url = torchvision.models.get_model_weights(arch)["IMAGENET1K_V1"].url
    filename = os.path.basename(urlparse(url).path)
    cached = Path(hub.get_dir()) / "checkpoints" / filename
    if cached.is_file():
        try:
            return _load_weights_file(cached, arch, expected)
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
    return _load_weights_file(cached, arch, expected)


def build_model(
    config: ModelConfig, pretrained: str | Path | None | Literal["imagenet"] = "imagenet"
) -> AlignedReID:
    """Build the network; optionally load ImageNet weights into the backbone.

    Args:
        config: the architecture.
        pretrained: ``"imagenet"``: torchvision's IMAGENET1K_V1 weights from its cache
            (``~/.cache/torch/hub/checkpoints/<file>``) or a download; when neither works,
            random initialisation and one warning line saying how to provide them.
            A path: a torchvision ResNet state dict file (``fc.*`` keys are ignored).
            None: random initialisation, silently.

    Raises:
        BadInputError: a weights file that is missing, unreadable or for another architecture.
    """
    model = AlignedReID(config)
    if pretrained is None:
        return model
    expected = model.backbone.state_dict()
    if isinstance(pretrained, str) and pretrained == "imagenet":
        state = _imagenet_state(config.arch, expected)
    else:
        state = _load_weights_file(Path(pretrained), config.arch, expected)
    if state is not None:
        model.backbone.load_state_dict(state, strict=True)
        logger.info("loaded %s backbone weights from %s", config.arch, pretrained)
    return model
