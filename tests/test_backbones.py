"""Backbones (reid.models.backbones) and starting from a checkpoint (reid.models.transfer).

MobileNetV2 beside the ResNets: shapes and last stride, weight files in today's and in
torchvision's older layout (made here), wrong files refused with one line; ``--init-from``:
every part but the identity classifier, same features before fine-tuning.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from common.errors import BadInputError
from occsim.store import read_store
from reid.engine.trainer import TrainConfig, train
from reid.models import ModelConfig, build_model, load_checkpoint, save_checkpoint
from reid.models.transfer import init_from_checkpoint, read_init_checkpoint
from reid.saliency.gradcam import find_target_layer

MOBILE = ModelConfig(num_classes=5, arch="mobilenet_v2", last_stride=2, num_stripes=2)


def _images(n: int, size: tuple[int, int] = (64, 32), seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, *size, generator=torch.Generator().manual_seed(seed))


def _trained_features() -> "OrderedDict[str, torch.Tensor]":
    """MobileNetV2 features with BatchNorm statistics moved off their init (as a trained file's)."""
    torch.manual_seed(4)
    features = torchvision.models.mobilenet_v2(weights=None).features.train()
    with torch.no_grad():
        features(_images(4, (32, 32), seed=1))
    return features


def _old_layout_state(features: nn.Sequential) -> "OrderedDict[str, torch.Tensor]":
    """``features``' state dict as torchvision's older MobileNetV2 saved it: each inverted
    residual block's ``conv`` one flat Sequential (conv, BN, ReLU6, ..., conv, BN), so that
    today's ``features.1.conv.0.0.weight`` is ``features.1.conv.0.weight`` and
    ``features.1.conv.1.weight`` is ``features.1.conv.3.weight``."""
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    for index, block in enumerate(features):
        if not hasattr(block, "conv"):  # the stem and the last 1x1 conv: the same names then and now
            for key, value in block.state_dict().items():
                state[f"features.{index}.{key}"] = value
            continue
        flat: list[nn.Module] = []
        for part in block.conv:
            flat.extend(part.children() if isinstance(part, nn.Sequential) else [part])
        for key, value in nn.Sequential(*flat).state_dict().items():
            state[f"features.{index}.conv.{key}"] = value
    return state


def test_mobilenet_shapes_and_last_stride() -> None:
    for last_stride, map_hw in ((2, (2, 1)), (1, (4, 2))):
        model = build_model(ModelConfig(num_classes=5, arch="mobilenet_v2", last_stride=last_stride,
                                        num_stripes=None), pretrained=None).eval()
        fmap = model.backbone(_images(2))
        assert tuple(fmap.shape) == (2, 1280, *map_hw)
        out = model(_images(2))
        assert tuple(out.global_feat.shape) == (2, 1280)
        assert tuple(out.local_feat.shape) == (2, map_hw[0], 128)
        assert tuple(out.id_logits.shape) == (2, 5)
    assert find_target_layer(model) is model.backbone.features


def test_old_layout_file_maps_onto_todays_names(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    features = _trained_features()
    old = _old_layout_state(features)
    assert "features.1.conv.3.weight" in old and "features.1.conv.0.0.weight" not in old  # really the old names
    path = tmp_path / "mobilenetv2_old.pt"
    torch.save(old, path)
    with caplog.at_level(logging.WARNING):
        model = build_model(MOBILE, pretrained=path)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # trained statistics: no warning
    reference = features.state_dict()
    loaded = model.backbone.features.state_dict()
    assert loaded.keys() == reference.keys()
    assert all(torch.equal(loaded[k], reference[k]) for k in reference)
    # Same outputs as the torchvision network the file came from.
    model.eval(), features.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.backbone(_images(2)), features(_images(2)), rtol=0, atol=0)


def test_todays_layout_with_classifier_loads(tmp_path: Path) -> None:
    net = torchvision.models.mobilenet_v2(weights=None)
    path = tmp_path / "mobilenet_v2-b0353104.pth"
    torch.save(net.state_dict(), path)  # features.* and classifier.*, as torchvision's ImageNet file
    model = build_model(MOBILE, pretrained=path)
    assert torch.equal(model.backbone.features[18][0].weight, net.features[18][0].weight)


def test_old_layout_file_with_a_wrong_tensor_is_refused(tmp_path: Path) -> None:
    old = _old_layout_state(_trained_features())
    key = "features.4.conv.3.weight"
    old[key] = torch.zeros(old[key].shape[0] + 1, *old[key].shape[1:])
    path = tmp_path / "bad.pt"
    torch.save(old, path)
    with pytest.raises(BadInputError, match=r"bad\.pt: not mobilenet_v2 weights") as info:
        build_model(MOBILE, pretrained=path)
    assert "\n" not in str(info.value) and "--pretrained none" in str(info.value)


def test_wrong_architecture_file_is_refused_with_one_line(tmp_path: Path) -> None:
    resnet = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), resnet)
    with pytest.raises(BadInputError, match=r"resnet18\.pth: not mobilenet_v2 weights") as info:
        build_model(MOBILE, pretrained=resnet)
    assert "\n" not in str(info.value)
    mobile = tmp_path / "mobile.pt"
    torch.save(_old_layout_state(_trained_features()), mobile)
    with pytest.raises(BadInputError, match=r"mobile\.pt: not resnet18 weights"):
        build_model(ModelConfig(num_classes=5, arch="resnet18"), pretrained=mobile)


def test_a_reid_checkpoint_given_as_pretrained_points_to_init_from(tmp_path: Path, tiny_store: Path) -> None:
    config = ModelConfig(num_classes=6, arch="resnet18")
    path = save_checkpoint(tmp_path / "best.pt", build_model(config, pretrained=None), config,
                           read_store(tiny_store).fingerprint)
    with pytest.raises(BadInputError, match=r"best\.pt: a reid checkpoint.*--init-from") as info:
        build_model(config, pretrained=path)
    assert "leave --pretrained out" not in str(info.value)


# ------------------------------------------------------------------------------ --init-from


def _source_checkpoint(path: Path, store: Path, config: ModelConfig) -> Path:
    torch.manual_seed(2)
    model = build_model(config, pretrained=None).train()
    with torch.no_grad():
        model(_images(6, seed=5))  # BN statistics off their init
        for param in model.parameters():  # heads off their near-zero init, so a copy is visible
            param.add_(torch.randn_like(param) * 0.01)
    return save_checkpoint(path, model, config, read_store(store).fingerprint, extra={"input_size": [64, 32]})


def test_init_from_loads_every_part_but_the_classifier(tmp_path: Path, tiny_store: Path) -> None:
    source_config = ModelConfig(num_classes=9, arch="resnet18", num_stripes=4, visibility_head=True)
    path = _source_checkpoint(tmp_path / "src" / "best.pt", tiny_store, source_config)
    source = load_checkpoint(path)
    new_config = ModelConfig(num_classes=6, arch="resnet18", num_stripes=4, visibility_head=True)
    torch.manual_seed(7)
    model = build_model(new_config, pretrained=None)
    loaded = init_from_checkpoint(model, read_init_checkpoint(new_config, path))
    state = model.state_dict()
    assert not any(k.startswith("classifier.") for k in loaded)
    assert {"obc_head.weight", "neck.running_mean", "local_conv.weight", "visibility_head.weight"} <= set(loaded)
    assert all(torch.equal(state[k], source.state_dict[k]) for k in loaded)
    assert tuple(model.classifier.weight.shape) == (6, 512)
    # The same features as the source network before any fine-tuning.
    original = build_model(source_config, pretrained=None)
    original.load_state_dict(source.state_dict)
    original.eval(), model.eval()
    with torch.no_grad():
        a, b = original(_images(3, seed=9)), model(_images(3, seed=9))
    for field in ("global_feat", "bn_feat", "local_feat", "occ_logits", "visibility_logits"):
        torch.testing.assert_close(getattr(a, field), getattr(b, field), rtol=0, atol=0)


def test_init_from_another_network_names_the_options(tmp_path: Path, tiny_store: Path) -> None:
    path = _source_checkpoint(tmp_path / "best.pt", tiny_store,
                              ModelConfig(num_classes=6, arch="resnet18", last_stride=2, num_stripes=4))
    with pytest.raises(BadInputError, match=r"--init-from .*best\.pt: made for another network "
                                            r"\(--arch resnet18, --last-stride 2, --stripes 4\)"):
        read_init_checkpoint(ModelConfig(num_classes=6, arch="resnet34"), path)


def test_reid_train_init_from_fine_tunes(tmp_path: Path, tiny_store: Path) -> None:
    source_config = ModelConfig(num_classes=9, arch="resnet18", num_stripes=2, retrieval_feature="bn")
    path = _source_checkpoint(tmp_path / "src" / "best.pt", tiny_store, source_config)
    config = TrainConfig(data=str(tiny_store), out=str(tmp_path / "ft"), arch="resnet18", pretrained="imagenet",
                         init_from=str(path), num_stripes=2, batch_p=2, batch_k=2, input_size=(64, 32), workers=0,
                         eval_every=0, epochs=1, max_steps_per_epoch=1, random_erasing=False)
    train(config)  # pretrained "imagenet" is not used: no download attempted, no warning needed
    tuned = load_checkpoint(tmp_path / "ft" / "last.pt")
    assert tuned.config.num_classes == 6
    assert json.loads((tmp_path / "ft" / "config.json").read_text())["train"]["init_from"] == str(path)
    source = load_checkpoint(path)
    # One step moved the weights away from the source's, but they started there: the backbone's
    # first conv is much closer to the source's than to a fresh initialisation.
    fresh = build_model(tuned.config, pretrained=None).state_dict()
    near = (tuned.state_dict["backbone.conv1.weight"] - source.state_dict["backbone.conv1.weight"]).norm()
    far = (fresh["backbone.conv1.weight"] - source.state_dict["backbone.conv1.weight"]).norm()
    assert near < 0.1 * far


def test_init_from_inside_out_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match=r"--init-from .*last\.pt: it lies in --out"):
        TrainConfig(data="x.h5", out=str(tmp_path / "run"), init_from=str(tmp_path / "run" / "last.pt"), force=True)
