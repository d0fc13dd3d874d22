"""Tests for occsim.synth: Market-1501 layout, splits, determinism and visible identity."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest

from occsim import synth
from common.errors import BadInputError
from occsim.synth import GALLERY_DIR, QUERY_DIR, TRAIN_DIR, SynthConfig, synthesize_market

MARKET_NAME = re.compile(r"^(-1|\d{4})_c(\d)s([1-6])_(\d{6})_(\d{2})\.jpg$")
TINY = SynthConfig(n_ids=12, images_per_id=6, n_cameras=4, seed=3, n_junk=5, n_distractors=7)


def _parse(folder: Path) -> list[tuple[int, int, str]]:
    """(pid, camera, name) of every JPEG in ``folder``; fails on a name Market would not have."""
    out = []
    for path in sorted(folder.iterdir()):
        if path.name == "Thumbs.db":
            continue
        m = MARKET_NAME.match(path.name)
        assert m is not None, f"not a Market name: {path.name}"
        out.append((int(m.group(1)), int(m.group(2)), path.name))
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, synth.SynthSummary]:
    root = tmp_path_factory.mktemp("tiny") / "market"
    return root, synthesize_market(root, TINY)


def test_layout_and_names(tiny: tuple[Path, synth.SynthSummary]) -> None:
    root, summary = tiny
    assert sorted(p.name for p in root.iterdir()) == sorted([TRAIN_DIR, GALLERY_DIR, QUERY_DIR])
    # The temporary sibling folder is gone: the parent holds only the finished set.
    assert [p.name for p in root.parent.iterdir()] == ["market"]
    # A plain mkdir's permissions (mkdtemp's 0700 would hide the set from the rest of a team).
    import os
    mask = os.umask(0)
    os.umask(mask)
    assert root.stat().st_mode & 0o777 == 0o777 & ~mask
    train, gallery, query = (_parse(root / d) for d in (TRAIN_DIR, GALLERY_DIR, QUERY_DIR))
    assert len(train) == summary.n_train_images
    assert len(gallery) == summary.n_gallery_images
    assert len(query) == summary.n_query_images
    for _, cam, _ in train + gallery + query:
        assert 1 <= cam <= TINY.n_cameras
    train_pids = {p for p, _, _ in train}
    test_pids = {p for p, _, _ in gallery if p > 0}
    assert len(train_pids) == summary.n_train_ids == 6
    assert len(test_pids) == summary.n_test_ids == 6
    assert -1 not in train_pids and 0 not in train_pids
    # Non-contiguous Market-like pids in 1..1501.
    pids = sorted(train_pids | test_pids)
    assert 1 <= pids[0] and pids[-1] <= 1501
    assert pids != list(range(pids[0], pids[0] + len(pids)))


def test_train_and_test_identities_are_disjoint(tiny: tuple[Path, synth.SynthSummary]) -> None:
    root, _ = tiny
    train = {p for p, _, _ in _parse(root / TRAIN_DIR)}
    gallery = {p for p, _, _ in _parse(root / GALLERY_DIR) if p > 0}
    query = {p for p, _, _ in _parse(root / QUERY_DIR)}
    assert not train & gallery
    assert query <= gallery


def test_every_query_has_a_cross_camera_match(tiny: tuple[Path, synth.SynthSummary]) -> None:
    root, _ = tiny
    gallery_cams: dict[int, set[int]] = defaultdict(set)
    for pid, cam, _ in _parse(root / GALLERY_DIR):
        gallery_cams[pid].add(cam)
    query = _parse(root / QUERY_DIR)
    assert query
    seen = set()
    for pid, cam, name in query:
        assert gallery_cams[pid] - {cam}, f"{name} has no gallery match in another camera"
        assert (pid, cam) not in seen, "Market has at most one query per identity and camera"
        seen.add((pid, cam))
    # Every test identity is queried at least once.
    assert {p for p, _ in seen} == {p for p in gallery_cams if p > 0}


def test_junk_distractors_and_thumbs_db(tiny: tuple[Path, synth.SynthSummary]) -> None:
    root, summary = tiny
    gallery = _parse(root / GALLERY_DIR)
    assert sum(p == -1 for p, _, _ in gallery) == 5 == summary.n_junk
    assert sum(p == 0 for p, _, _ in gallery) == 7 == summary.n_distractors
    assert (root / GALLERY_DIR / "Thumbs.db").is_file()
    assert not (root / QUERY_DIR / "Thumbs.db").exists()


def test_images_decode_to_the_configured_size(tiny: tuple[Path, synth.SynthSummary], tmp_path: Path) -> None:
    root, _ = tiny
    for path in list((root / QUERY_DIR).iterdir())[:5]:
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert img is not None and img.dtype == np.uint8 and img.shape == (128, 64, 3)
    cfg = SynthConfig(n_ids=2, images_per_id=3, image_size=(96, 40), n_junk=1, n_distractors=1)
    synthesize_market(tmp_path / "small", cfg)
    shapes = {cv2.imread(str(p)).shape for p in (tmp_path / "small").rglob("*.jpg")}
    assert shapes == {(96, 40, 3)}


def test_images_per_identity_vary(tiny: tuple[Path, synth.SynthSummary]) -> None:
    root, _ = tiny
    counts: dict[int, int] = defaultdict(int)
    for pid, _, _ in _parse(root / TRAIN_DIR):
        counts[pid] += 1
    assert min(counts.values()) >= 3
    assert len(set(counts.values())) > 1


def test_deterministic_across_runs_and_workers(tiny: tuple[Path, synth.SynthSummary], tmp_path: Path) -> None:
    root, _ = tiny
    reference = _files(root)
    synthesize_market(tmp_path / "again", TINY, workers=1)
    synthesize_market(tmp_path / "two", TINY, workers=2)
    assert _files(tmp_path / "again") == reference
    assert _files(tmp_path / "two") == reference


def test_different_seed_differs(tiny: tuple[Path, synth.SynthSummary], tmp_path: Path) -> None:
    root, _ = tiny
    other = SynthConfig(**{**TINY.__dict__, "seed": TINY.seed + 1})
    synthesize_market(tmp_path / "other", other)
    a, b = _files(root), _files(tmp_path / "other")
    assert set(a) != set(b)
    assert sorted(a.values()) != sorted(b.values())


def _hist(path: Path) -> np.ndarray:
    """Normalised hue-saturation histogram of the central third of the width (the person).

    Hue and saturation rather than RGB: each camera has its own gain, which RGB bins feel.
    """
    img = cv2.imread(str(path))
    w = img.shape[1]
    hsv = cv2.cvtColor(img[:, w // 3: 2 * w // 3], cv2.COLOR_BGR2HSV)
    h = cv2.calcHist([hsv], [0, 1], None, [12, 6], [0, 180, 0, 256]).ravel()
    return h / h.sum()


def test_identity_is_visible_across_cameras(tmp_path: Path) -> None:
    cfg = SynthConfig(n_ids=24, images_per_id=6, seed=5, n_junk=0, n_distractors=0)
    synthesize_market(tmp_path / "m", cfg)
    items = []
    for path in sorted((tmp_path / "m" / TRAIN_DIR).glob("*.jpg")):
        m = MARKET_NAME.match(path.name)
        assert m is not None
        items.append((int(m.group(1)), int(m.group(2)), _hist(path)))
    n = len(items)
    dist = np.array([[0.5 * np.abs(a[2] - b[2]).sum() for b in items] for a in items])
    pid = np.array([p for p, _, _ in items])
    cam = np.array([c for _, c, _ in items])
    cross = cam[:, None] != cam[None, :]  # cross-camera pairs only: background and light differ
    same = pid[:, None] == pid[None, :]
    assert dist[cross & same].mean() < dist[cross & ~same].mean()
    # Nearest cross-camera neighbour has the same identity far more often than chance.
    masked = np.where(cross, dist, np.inf)
    rank1 = float(np.mean(pid[masked.argmin(axis=1)] == pid))
    chance = 1.0 / len(set(pid.tolist()))
    assert n > 0 and rank1 > 2 * chance


def test_existing_output_needs_force(tmp_path: Path) -> None:
    cfg = SynthConfig(n_ids=2, images_per_id=3, n_junk=1, n_distractors=1)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(BadInputError, match="--force"):
        synthesize_market(out, cfg)
    assert (out / "keep.txt").exists()
    summary = synthesize_market(out, cfg, force=True)
    assert not (out / "keep.txt").exists()
    assert summary.n_train_images == len(list((out / TRAIN_DIR).iterdir()))
    # An empty existing folder is fine without force.
    empty = tmp_path / "empty"
    empty.mkdir()
    synthesize_market(empty, cfg)
    assert (empty / QUERY_DIR).is_dir()


def test_force_never_removes_the_working_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "keep.txt").write_text("x")
    monkeypatch.chdir(tmp_path)
    cfg = SynthConfig(n_ids=2, images_per_id=3, n_junk=1, n_distractors=1)
    for target in (Path("."), tmp_path, tmp_path.parent):
        with pytest.raises(BadInputError, match="is the current folder, one above it or the home folder"):
            synthesize_market(target, cfg, force=True)
    assert (tmp_path / "keep.txt").exists()


def test_interrupted_run_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def failing(config: SynthConfig, specs: list, root: str) -> int:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(config, specs, root)

    real = synth.write._render_chunk
    monkeypatch.setattr(synth.write, "_render_chunk", failing)
    with pytest.raises(KeyboardInterrupt):
        synthesize_market(tmp_path / "out", SynthConfig(n_ids=12, images_per_id=6))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n_ids": 1}, r"n_ids \(--ids\) = 1: must be in \[2, 9998\]"),
    ({"n_cameras": 1}, r"n_cameras \(--cameras\) = 1: must be in \[2, 9\]"),
    ({"n_cameras": 10}, r"n_cameras \(--cameras\) = 10: must be in \[2, 9\]"),
    ({"images_per_id": 2}, r"images_per_id \(--images-per-id\) = 2: must be in \[3, 1000\]"),
    ({"seed": -1}, r"seed \(--seed\) = -1: must be in \[0, "),
    ({"image_size": (16, 64)}, r"image_size height = 16: must be in \[32, 1024\]"),
    ({"n_junk": -1}, r"n_junk = -1: must be in \[0, "),
    ({"n_ids": 2.5}, r"n_ids \(--ids\) = 2\.5: not an integer"),
])
def test_bad_config_is_a_bad_input_error(kwargs: dict, message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        SynthConfig(**kwargs)


def test_default_junk_and_distractors_follow_market_proportions() -> None:
    cfg = SynthConfig(n_ids=300, images_per_id=12)
    # 150 test identities x 12 images; Market has 0.21 junk and 0.29 distractors per such image.
    assert cfg.junk_count == round(0.21 * 1800)
    assert cfg.distractor_count == round(0.29 * 1800)
    assert SynthConfig(n_junk=0).junk_count == 0
