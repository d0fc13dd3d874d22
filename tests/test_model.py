"""The AlignedReID network, ImageNet weight loading and checkpoints (tiny: resnet18, 64x32)."""

from __future__ import annotations

import logging
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
import torchvision
from torch import hub, nn

from common.errors import BadInputError
from reid.models import (
    AlignedReID,
    ModelConfig,
    ModelOutput,
    build_model,
    load_checkpoint,
    load_model,
    save_checkpoint,
)

R18 = ModelConfig(num_classes=5, arch="resnet18", num_stripes=None)
R18_FILE = "resnet18-f37072fd.pth"  # torchvision's IMAGENET1K_V1 file name


def _images(n: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 64, 32, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def r18() -> AlignedReID:
    torch.manual_seed(0)
    return build_model(R18, pretrained=None)


# ------------------------------------------------------------------------- network


def test_output_shapes_resnet18_last_stride_1(r18: AlignedReID) -> None:
    out = r18.train()(_images())
    assert isinstance(out, ModelOutput)
    # 64x32 input: /4 (stem), /2 (layer2), /2 (layer3), /1 (layer4, last_stride 1) -> 4x2 map
    assert out.global_feat.shape == (8, 512)
    assert out.bn_feat.shape == (8, 512)
    assert out.local_feat.shape == (8, 4, 128)
    assert out.id_logits.shape == (8, 5)
    assert out.occ_logits.shape == (8, 2)
    eval_out = r18.eval()(_images())
    assert [t.shape for t in eval_out] == [t.shape for t in out]


def test_last_stride_2_halves_the_stripes() -> None:
    model = build_model(ModelConfig(num_classes=3, arch="resnet18", last_stride=2, num_stripes=None), pretrained=None).eval()
    out = model(_images(2))
    assert out.local_feat.shape == (2, 2, 128)  # 2x1 map


def test_resnet50_global_dim() -> None:
    model = build_model(ModelConfig(num_classes=3, arch="resnet50", local_dim=16, num_stripes=None), pretrained=None).eval()
    with torch.no_grad():
        out = model(_images(2))
    assert out.global_feat.shape == (2, 2048)
    assert out.local_feat.shape == (2, 4, 16)


def test_features_are_pooled_from_layer4_by_rows(r18: AlignedReID) -> None:
    """Global = mean over the map; stripe k = conv/BN/ReLU of the mean of its rows."""
    model = build_model(ModelConfig(num_classes=5, arch="resnet18", num_stripes=2), pretrained=None).eval()
    captured: list[torch.Tensor] = []
    handle = model.backbone.layer4.register_forward_hook(lambda m, i, o: captured.append(o))
    with torch.no_grad():
        out = model(_images(3))
    handle.remove()
    fmap = captured[0]  # [3, 512, 4, 2]
    assert fmap.shape == (3, 512, 4, 2)
    torch.testing.assert_close(out.global_feat, fmap.mean(dim=(2, 3)))
    assert out.local_feat.shape == (3, 2, 128)
    with torch.no_grad():
        for k in range(2):
            rows = fmap[:, :, 2 * k : 2 * k + 2, :].mean(dim=(2, 3))  # [3, 512]
            conv = model.local_conv.weight.view(128, 512)
            bn = model.local_bn
            z = (rows @ conv.t() - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps)
            expected = torch.relu(z * bn.weight + bn.bias)
            torch.testing.assert_close(out.local_feat[:, k], expected, rtol=1e-4, atol=1e-5)
        neck = model.neck
        bn_expected = (out.global_feat - neck.running_mean) / torch.sqrt(neck.running_var + neck.eps)
        torch.testing.assert_close(out.bn_feat, bn_expected * neck.weight + neck.bias, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(out.occ_logits, out.bn_feat @ model.obc_head.weight.t() + model.obc_head.bias)


def test_no_neck_bn_heads_see_global_feature() -> None:
    model = build_model(ModelConfig(num_classes=5, arch="resnet18", neck_bn=False), pretrained=None).eval()
    with torch.no_grad():
        out = model(_images(2))
    torch.testing.assert_close(out.bn_feat, out.global_feat)


def test_config_round_trip_and_validation() -> None:
    cfg = ModelConfig(num_classes=7, arch="resnet34", last_stride=2, local_dim=64, num_stripes=6, neck_bn=False)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(BadInputError, match="vgg16"):
        ModelConfig(num_classes=3, arch="vgg16")
    with pytest.raises(BadInputError, match="last"):
        ModelConfig(num_classes=3, last_stride=3)
    with pytest.raises(BadInputError, match="num_classes"):
        ModelConfig(num_classes=0)
    with pytest.raises(BadInputError, match="unknown keys"):
        ModelConfig.from_dict({**cfg.to_dict(), "depth": 3})


# ---------------------------------------------------------------- pretrained weights


@pytest.fixture
def hub_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path / "hub" / "checkpoints"


def test_imagenet_offline_warns_once_and_falls_back(
    hub_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[tuple[object, float | None]] = []
    before = socket.getdefaulttimeout()

    def offline(url: str, *args: object, timeout: object = None, **kwargs: object) -> None:
        seen.append((timeout, socket.getdefaulttimeout()))
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    start = time.perf_counter()
    with caplog.at_level(logging.WARNING):
        model = build_model(R18, pretrained="imagenet")
    assert time.perf_counter() - start < 10
    assert isinstance(model, AlignedReID)
    # the request has its own short timeout; the process-wide socket default is never touched
    assert len(seen) == 1 and isinstance(seen[0][0], float) and seen[0][0] <= 30 and seen[0][1] == before
    assert not list(hub_dir.glob(".*.tmp"))  # the partial download is removed
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "--pretrained" in message and R18_FILE in message and str(hub_dir) in message
    assert "\n" not in message


def test_imagenet_from_torchvision_cache(hub_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, *a, **k: calls.append(url))
    hub_dir.mkdir(parents=True)
    reference = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(reference, hub_dir / R18_FILE)
    model = build_model(R18, pretrained="imagenet")
    assert calls == []
    torch.testing.assert_close(model.backbone.conv1.weight, reference["conv1.weight"], rtol=0, atol=0)
    torch.testing.assert_close(
        model.backbone.layer4[1].bn2.running_var, reference["layer4.1.bn2.running_var"], rtol=0, atol=0
    )


def test_none_is_silent_random_init(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, *a, **k: calls.append(url))
    with caplog.at_level(logging.DEBUG):
        build_model(R18, pretrained=None)
    assert calls == [] and not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_local_weights_file(tmp_path: Path) -> None:
    reference = torchvision.models.resnet18(weights=None).state_dict()
    path = tmp_path / "r18.pth"
    torch.save(reference, path)
    model = build_model(R18, pretrained=path)
    torch.testing.assert_close(
        model.backbone.layer3[0].conv1.weight, reference["layer3.0.conv1.weight"], rtol=0, atol=0
    )
    # "module."-prefixed (DataParallel) files load too
    torch.save({f"module.{k}": v for k, v in reference.items()}, path)
    model = build_model(R18, pretrained=str(path))
    torch.testing.assert_close(model.backbone.conv1.weight, reference["conv1.weight"], rtol=0, atol=0)


def test_wrong_weights_files(tmp_path: Path) -> None:
    other = tmp_path / "r34.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), other)
    with pytest.raises(BadInputError, match="r34.pth"):
        build_model(R18, pretrained=other)
    garbage = tmp_path / "junk.pth"
    garbage.write_bytes(b"not a torch file at all")
    with pytest.raises(BadInputError, match="junk.pth"):
        build_model(R18, pretrained=garbage)
    with pytest.raises(BadInputError, match="missing.pth"):
        build_model(R18, pretrained=tmp_path / "missing.pth")
    text = tmp_path / "list.pth"
    torch.save([1, 2, 3], text)
    with pytest.raises(BadInputError, match="list.pth"):
        build_model(R18, pretrained=text)


def test_a_weights_file_that_never_saw_an_image_is_called_out(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fresh = torchvision.models.resnet18(weights=None)
    path = tmp_path / "pretrained-but-not.pth"
    torch.save(fresh.state_dict(), path)
    with caplog.at_level(logging.WARNING):
        build_model(R18, pretrained=path)
    assert any("pretrained-but-not.pth" in r.getMessage() and "never seen an image" in r.getMessage()
               for r in caplog.records)
    # One forward pass in training mode moves the statistics: no warning for those weights.
    fresh.train()
    with torch.no_grad():
        fresh(_images(4, seed=0))
    torch.save(fresh.state_dict(), path)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        build_model(R18, pretrained=path)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# --------------------------------------------------------------------- checkpoints


def _trained_copy() -> AlignedReID:
    torch.manual_seed(1)
    model = build_model(R18, pretrained=None).train()
    with torch.no_grad():
        model(_images(8, seed=3))  # moves the BN running statistics away from their init
    return model.eval()


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    model = _trained_copy()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(_images(2)).global_feat.sum().backward()
    optimizer.step()
    path = tmp_path / "run" / "last.pt"
    save_checkpoint(path, model, R18, "fp-123", extra={"epoch": 3, "metrics": {"r1": 0.5}},
                    optimizer_state=optimizer.state_dict())
    raw = torch.load(path, weights_only=True)
    assert raw["dataset_fingerprint"] == "fp-123"
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary left

    loaded, ckpt = load_model(path)
    assert not loaded.training
    assert ckpt.config == R18 and ckpt.dataset_fingerprint == "fp-123"
    assert ckpt.extra == {"epoch": 3, "metrics": {"r1": 0.5}}
    x = _images(4, seed=9)
    with torch.no_grad():
        a, b = model.eval()(x), loaded(x)
    for name in ModelOutput._fields:
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=0, atol=0)
    fresh = torch.optim.SGD(loaded.parameters(), lr=0.1, momentum=0.9)
    fresh.load_state_dict(ckpt.optimizer_state)
    first = next(iter(optimizer.state.values()))["momentum_buffer"]
    torch.testing.assert_close(next(iter(fresh.state.values()))["momentum_buffer"], first, rtol=0, atol=0)


def test_checkpoint_unwraps_dataparallel(tmp_path: Path) -> None:
    model = build_model(R18, pretrained=None)
    save_checkpoint(tmp_path / "c.pt", nn.DataParallel(model), R18, "fp")
    assert all(not k.startswith("module.") for k in load_checkpoint(tmp_path / "c.pt").state_dict)


def test_checkpoint_of_another_architecture(tmp_path: Path) -> None:
    r34 = build_model(ModelConfig(num_classes=5, arch="resnet34"), pretrained=None)
    path = tmp_path / "mislabelled.pt"
    save_checkpoint(path, r34, R18, "fp")  # resnet34 weights recorded as a resnet18 config
    with pytest.raises(BadInputError, match="mislabelled.pt.*another architecture"):
        load_model(path)
    good = tmp_path / "good.pt"
    save_checkpoint(good, r34, ModelConfig(num_classes=5, arch="resnet34"), "fp")
    with pytest.raises(BadInputError, match="good.pt.*arch='resnet34'"):
        load_checkpoint(good, expected_config=R18)
    six = build_model(ModelConfig(num_classes=6, arch="resnet18"), pretrained=None)
    wrong_classes = tmp_path / "classes.pt"
    save_checkpoint(wrong_classes, six, R18, "fp")
    with pytest.raises(BadInputError, match="classifier.weight"):
        load_checkpoint(wrong_classes)


def test_damaged_and_foreign_checkpoints(tmp_path: Path) -> None:
    model = build_model(R18, pretrained=None)
    path = tmp_path / "c.pt"
    save_checkpoint(path, model, R18, "fp")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00\x01garbage" * 100)
    plain = tmp_path / "plain.pt"
    torch.save(model.state_dict(), plain)  # weights without our metadata
    for bad in (truncated, garbage, plain, tmp_path / "absent.pt"):
        with pytest.raises(BadInputError, match=bad.name):
            load_model(bad)


def test_save_refuses_non_plain_values_and_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = build_model(R18, pretrained=None)
    path = tmp_path / "c.pt"
    save_checkpoint(path, model, R18, "old")
    with pytest.raises(TypeError, match="Path"):
        save_checkpoint(path, model, R18, "new", extra={"where": tmp_path})

    def exploding_save(obj: object, f: object, *a: object, **k: object) -> None:
        f.write(b"partial")  # type: ignore[attr-defined]
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", exploding_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model, R18, "new")
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]
    assert load_checkpoint(path).dataset_fingerprint == "old"


def test_damaged_torchvision_cache_file(hub_dir: Path) -> None:
    hub_dir.mkdir(parents=True)
    (hub_dir / R18_FILE).write_bytes(b"half a download")
    with pytest.raises(BadInputError, match=f"{R18_FILE}.*delete it"):
        build_model(R18, pretrained="imagenet")


def test_default_is_eight_stripes_at_256x128() -> None:
    """AlignedReID's 8 stripes at its 256x128 input, with the default last_stride 1 (16-row map)."""
    model = build_model(ModelConfig(num_classes=3, arch="resnet18"), pretrained=None).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 256, 128))
    assert out.local_feat.shape == (1, 8, 128)
