"""The AlignedReID network with the occlusion-classification (OBC) head.

Layout (shapes for resnet50, input [N, 3, 256, 128], ``last_stride=1``)::

    images [N, 3, 256, 128]
      -> backbone (torchvision ResNet up to layer4, or     feature map [N, 2048, 16, 8]
                   MobileNetV2's features: [N, 1280, 16, 8]; reid.models.backbones)
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
visibility-weighted aligned distance (:func:`reid.retrieval_distance.visibility_weighted_aligned_distance`).
It is a 1x1 conv (D -> 1, with bias) on the *pooled stripe features* [N, D, H, 1], before the
local projection: those D-dim features carry all the evidence the backbone has about the
stripe, whereas the 128-d local feature is a BN + ReLU projection shaped by the triplet metric
(asking it to also encode visibility would spend metric dimensions on it). It costs D + 1
parameters. Without the head, ``visibility_logits`` is an empty [N, 0] tensor (and the
checkpoint has no ``visibility_head.*`` keys, so older checkpoints load unchanged).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
from torch import nn

from common.errors import BadInputError
from reid.models.backbones import build_trunk, imagenet_state, load_weights_file
from reid.options import ARCH_DIMS, RETRIEVAL_FEATURES  # noqa: F401 (re-exported: declared torch-free there)

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the network (stored in every checkpoint).

    Attributes:
        num_classes: number of training identities (rows of the identity classifier).
        arch: torchvision backbone name, one of ``ARCH_DIMS`` (ResNets, mobilenet_v2).
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

    def retrieval(self, feature: str) -> torch.Tensor:
        """The feature retrieval compares, shape [N, D] (:func:`retrieval_of`)."""
        return retrieval_of(feature, self.global_feat, self.bn_feat)

    def occluded_probability(self) -> torch.Tensor:
        """The OBC head's probability that each image is occluded, float32, shape [N]."""
        return torch.softmax(self.occ_logits.float(), dim=1)[:, 1]

    def visible_probability(self) -> torch.Tensor | None:
        """Per-stripe probability of being visible, float32, shape [N, H]; None without the
        visibility head."""
        return torch.sigmoid(self.visibility_logits.float()) if self.has_visibility else None


def retrieval_of(feature: str, global_feat: torch.Tensor, bn_feat: torch.Tensor) -> torch.Tensor:
    """The feature retrieval compares, shape [N, D]: ``bn_feat`` for "bn", else ``global_feat``
    (:attr:`ModelConfig.retrieval_feature`; :func:`reid.models.checkpoint.retrieval_feature_of`).
    The exported head (:mod:`reid.inference.export`) chooses with it too."""
    return bn_feat if feature == "bn" else global_feat


class AlignedReID(nn.Module):
    """AlignedReID (global + aligned local features) with an identity and an OBC head.

    ``self.backbone.layer4`` (ResNets) or ``self.backbone.features`` (MobileNetV2) is the last
    convolutional block (the Grad-CAM target layer).
    Forward returns the same :class:`ModelOutput` in train and eval mode; eval only switches
    the BatchNorm layers to their running statistics.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.global_dim
        self.backbone = build_trunk(config.arch, config.last_stride)
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


def build_model(
    config: ModelConfig, pretrained: str | Path | None | Literal["imagenet"] = "imagenet"
) -> AlignedReID:
    """Build the network; optionally load ImageNet weights into the backbone.

    Args:
        config: the architecture.
        pretrained: ``"imagenet"``: torchvision's IMAGENET1K_V1 weights from its cache
            (``~/.cache/torch/hub/checkpoints/<file>``) or a download; when neither works,
            random initialisation and one warning line saying how to provide them.
            A path: a torchvision state dict file of ``config.arch`` (the ImageNet classifier's
            keys are ignored; MobileNetV2 files of torchvision's older layout are mapped).
            None: random initialisation, silently.

    Raises:
        BadInputError: a weights file that is missing, unreadable or for another architecture.
    """
    model = AlignedReID(config)
    if pretrained is None:
        return model
    expected = model.backbone.state_dict()
    if isinstance(pretrained, str) and pretrained == "imagenet":
        state = imagenet_state(config.arch, expected)
    else:
        state = load_weights_file(Path(pretrained), config.arch, expected)
    if state is not None:
        model.backbone.load_state_dict(state, strict=True)
        logger.info("loaded %s backbone weights from %s", config.arch, pretrained)
    return model
