"""Shared pytest fixtures and helpers: a tiny, valid occluded-reid HDF5 file written with
StoreWriter, a fresh checkpoint for it, and the check of a one-line ``error:`` exit."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import pytest

from occsim.schema import NO_BOX, occ_type_code
from occsim.store import SplitManifest, StoreWriter

def one_error_line(result: Any, *needles: str, exit_code: int = 2) -> str:
    """The whole stderr of a refused command (a Click ``Result``): exit status ``exit_code`` and
    exactly one line, ``error: ...``, that contains every needle. Returns the line."""
    assert result.exit_code == exit_code, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


TINY_SIZE: tuple[int, int] = (32, 16)  # (H, W)
TINY_TRAIN_PIDS: tuple[int, ...] = (3, 8, 15, 22, 40, 71)
TINY_QUERY_PIDS: tuple[int, ...] = (101, 102, 103, 104)
TINY_IMAGES_PER_TRAIN_ID = 4
TINY_BOX_HW: tuple[int, int] = (10, 8)  # occluder patch height, width


def _identity_image(pid: int, index: int, size: tuple[int, int]) -> np.ndarray:
    """uint8 [H, W, 3]: the identity's colour plus per-image noise (deterministic)."""
    colour = np.random.default_rng([abs(pid), 7]).integers(40, 216, size=3)
    noise = np.random.default_rng([abs(pid), index, 11]).normal(0.0, 20.0, size=(*size, 3))
    return np.clip(colour + noise, 0, 255).astype(np.uint8)


def _occlude(image: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Fill a TINY_BOX_HW patch at a random position: image mean colour ("mean"/"random") or 0 ("black")."""
    h, w = TINY_BOX_HW
    y = int(rng.integers(0, image.shape[0] - h + 1))
    x = int(rng.integers(0, image.shape[1] - w + 1))
    out = image.copy()
    fill = np.zeros(3) if kind == "black" else image.reshape(-1, 3).mean(axis=0)
    out[y : y + h, x : x + w] = np.round(fill).astype(np.uint8)
    return out, (x, y, w, h)


def _split(
    entries: list[tuple[int, int]], occ_types: Sequence[str], rng: np.random.Generator, labels: dict[int, int] | None
) -> tuple[SplitManifest, np.ndarray]:
    """Clean rows from (pid, camid) entries, then one occluded copy per row and type."""
    images = [_identity_image(pid, i, TINY_SIZE) for i, (pid, _) in enumerate(entries)]
    n = len(entries)
    cols: dict[str, list] = {k: [] for k in ("pid", "camid", "occluded", "occ_type", "box", "clean_index", "path")}
    for i, (pid, cam) in enumerate(entries):
        cols["pid"].append(pid)
        cols["camid"].append(cam)
        cols["occluded"].append(False)
        cols["occ_type"].append(0)
        cols["box"].append(NO_BOX)
        cols["clean_index"].append(i)
        cols["path"].append(f"{pid:04d}_c{cam}s1_{i:06d}_00.jpg")
    for kind in occ_types:
        for i in range(n):
            occluded, box = _occlude(images[i], kind, rng)
            images.append(occluded)
            for name in ("pid", "camid", "path"):
                cols[name].append(cols[name][i])
            cols["occluded"].append(True)
            cols["occ_type"].append(occ_type_code(kind))
            cols["box"].append(box)
            cols["clean_index"].append(i)
    label = None if labels is None else [labels[p] for p in cols["pid"]]
    return SplitManifest(**cols, label=label), np.stack(images)


def write_tiny_store(path: Path, occ_types: Sequence[str] = ("mean",), seed: int = 0) -> Path:
    """Write a tiny occluded-reid file and return its path.

    Contents (images 32x16 = H x W, RGB, each identity a noisy flat colour):

    * train: 6 identities (pids 3, 8, 15, 22, 40, 71; labels 0..5 in that order) x 4 clean
      images (cameras 1, 2, 3, 1), rows 0..23 grouped by identity; then for each type in
      ``occ_types`` one occluded copy of every clean row (rows 24.., same order), a 10x8 patch
      filled with the image's mean colour (0 for "black").
    * query: 4 identities (101..104) x cameras 1 and 2 (8 clean rows, identity-major), then
      one occluded copy per row and type.
    * gallery (never occluded): each query identity in cameras 3 and 4 (8 rows), then one
      junk row (pid -1, camera 1) and one distractor row (pid 0, camera 2): 10 rows.
    """
    rng = np.random.default_rng(seed)
    train_entries = [(pid, (1, 2, 3, 1)[j]) for pid in TINY_TRAIN_PIDS for j in range(TINY_IMAGES_PER_TRAIN_ID)]
    query_entries = [(pid, cam) for pid in TINY_QUERY_PIDS for cam in (1, 2)]
    gallery_entries = [(pid, cam) for pid in TINY_QUERY_PIDS for cam in (3, 4)] + [(-1, 1), (0, 2)]
    labels = {pid: i for i, pid in enumerate(TINY_TRAIN_PIDS)}
    splits = {
        "train": _split(train_entries, occ_types, rng, labels),
        "query": _split(query_entries, occ_types, rng, None),
        "gallery": _split(gallery_entries, (), rng, None),
    }
    with StoreWriter(path, image_size=TINY_SIZE, force=True) as writer:
        for name, (manifest, images) in splits.items():
            writer.add_split(name, manifest)
            writer.write_images(name, 0, images)
        writer.finish(source="tiny", seed=seed, generator_args={"fixture": "tiny_store", "occ_types": list(occ_types)})
    return path


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a tiny valid occluded-reid file (see :func:`write_tiny_store`); do not modify it."""
    return write_tiny_store(tmp_path_factory.mktemp("tiny_store") / "tiny.h5")


def write_fresh_checkpoint(path: Path, store: Path, retrieval_feature: str = "global", **extra: Any) -> Path:
    """A freshly initialised (seed 0) resnet18 checkpoint for ``store`` at ``path``, input 64x32,
    as `reid train` writes one; ``extra`` adds to what it records (e.g. mean and std).

    With ``retrieval_feature="bn"`` the model retrieves with the BN-neck feature, and the neck
    gets random statistics and affine weights, so that ``bn_feat`` differs from ``global_feat``
    (a fresh neck is nearly the identity)."""
    import torch

    from occsim.store import read_store
    from reid.models.aligned import ModelConfig, build_model
    from reid.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    config = ModelConfig(num_classes=6, arch="resnet18", retrieval_feature=retrieval_feature)
    model = build_model(config, pretrained=None)
    if retrieval_feature == "bn":
        with torch.no_grad():
            for tensor in (model.neck.running_mean, model.neck.weight, model.neck.bias):
                tensor.copy_(torch.randn_like(tensor))
            model.neck.running_var.uniform_(0.5, 2.0)
    return save_checkpoint(path, model, config, read_store(store).fingerprint,
                           extra={"input_size": [64, 32], **extra})


@pytest.fixture(scope="module")
def checkpoint(tiny_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly initialised resnet18 checkpoint for tiny_store (input 64x32), as `reid train` writes one."""
    return write_fresh_checkpoint(tmp_path_factory.mktemp("run") / "baseline" / "last.pt", tiny_store)


# ------------------------------------------------------------ a Market-1501 source folder

MARKET_FILES: tuple[tuple[str, str], ...] = (
    ("bounding_box_train", "0002_c1s1_000451_03.jpg"),
    ("bounding_box_train", "0002_c2s1_000301_01.jpg"),
    ("bounding_box_train", "0007_c3s3_077419_03.jpg"),
    ("bounding_box_train", "0010_c6s4_002427_02.jpg"),
    ("query", "0001_c1s1_001051_00.jpg"),
    ("query", "0003_c2s1_000201_00.jpg"),
    ("bounding_box_test", "-1_c1s1_000401_03.jpg"),
    ("bounding_box_test", "0000_c5s1_000101_04.jpg"),
    ("bounding_box_test", "0001_c4s2_012345_02.jpg"),
    ("bounding_box_test", "0003_c5s3_054321_01.jpg"),
    ("bounding_box_test", "0003_c1s1_000777_01.jpg"),
)


def write_jpeg(path: Path, seed: int, size: tuple[int, int] = (32, 16)) -> None:
    """A small smooth colour JPEG (distinct per seed)."""
    rng = np.random.default_rng(seed)
    image = cv2.resize(rng.integers(0, 256, size=(4, 2, 3), dtype=np.uint8), (size[1], size[0]),
                       interpolation=cv2.INTER_LINEAR)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)


def make_market_tree(root: Path, files: tuple[tuple[str, str], ...] = MARKET_FILES,
                     size: tuple[int, int] = (32, 16)) -> Path:
    """Write ``files`` as small JPEGs under ``root`` plus the stray Thumbs.db and a .mat file."""
    for i, (folder, name) in enumerate(files):
        write_jpeg(root / folder / name, seed=i, size=size)
    (root / "bounding_box_test" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0" + bytes(60))
    (root / "gt_query").mkdir(parents=True, exist_ok=True)
    (root / "gt_query" / "0001_c1s1_001051_00_good.mat").write_bytes(b"MATLAB")
    (root / "readme.txt").write_text("Market-1501")
    return root
