"""The built-in synthetic pedestrian set, written in the exact Market-1501 folder layout.

Each image is a standing person drawn with cv2 on a camera-specific background. An identity
is a *combination* of attributes spread over the whole body (skin, hair colour and style,
upper garment colour and pattern, sleeve length, lower garment kind and colour, shoes, bag),
each drawn from a small palette, so many identities share any single attribute and only the
combination identifies: a patch that hides one region removes some of the evidence, never
all of it. Cameras differ in background, lighting, scale, position and the views (front,
back, side) they tend to see; each image adds its own pose, jitter, blur and noise.

Determinism: the plan (pids, splits, file names) comes from one generator seeded with
``[seed, stream]``; every pixel of an image comes from generators seeded with ``(seed,
stream, pid, image index)`` or ``(seed, stream, camera)``, so the bytes written do not depend
on how the images are split between worker processes.

Layout written (Market-1501, 2015 release)::

    out_dir/bounding_box_train/0002_c1s1_000451_03.jpg   train identities
    out_dir/bounding_box_test/0001_c2s3_012345_01.jpg    test identities (gallery),
    out_dir/bounding_box_test/-1_c3s1_000123_02.jpg      junk (ignored by the protocol),
    out_dir/bounding_box_test/0000_c1s1_000999_01.jpg    distractors (negatives),
    out_dir/bounding_box_test/Thumbs.db                  the stray file the real download has
    out_dir/query/0001_c1s2_004567_01.jpg                one image per test identity per camera
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from joblib import Parallel, delayed
from tqdm import tqdm

from common.errors import BadInputError
from common.workers import cap_workers

logger = logging.getLogger(__name__)

TRAIN_DIR = "bounding_box_train"
GALLERY_DIR = "bounding_box_test"
QUERY_DIR = "query"
JUNK_PID = -1
DISTRACTOR_PID = 0
JPEG_QUALITY = 95

# Stream tags keep the generators of different purposes independent of one another.
_S_PLAN = 0
_S_IDENTITY = 1
_S_CAMERA = 2
_S_TRACK = 3
_S_IMAGE = 4
_S_JUNK = 5
_S_DISTRACTOR = 6

_KIND_PERSON = 0
_KIND_JUNK = 1
_KIND_DISTRACTOR = 2

# Market-1501's proportions: 2,798 junk and 3,819 distractors beside 13,115 gallery images
# of 750 test identities, i.e. about 0.21 and 0.29 of the test identities' images.
_JUNK_PER_TEST_IMAGE = 0.21
_DISTRACTORS_PER_TEST_IMAGE = 0.29

# The "Thumbs.db" Windows leaves in the real download is an OLE2 compound file; its magic
# number is enough for a reader to have to skip it.
_THUMBS_DB = bytes.fromhex("d0cf11e0a1b11ae1") + bytes(504)


@dataclass(frozen=True)
class SynthConfig:
    """What to synthesise.

    ``n_junk`` and ``n_distractors`` default (None) to Market-1501's proportions of the test
    identities' images; read the resolved counts from :attr:`junk_count` and
    :attr:`distractor_count`. ``image_size`` is (H, W) of the written JPEGs.
    """

    n_ids: int = 300
    n_cameras: int = 6
    images_per_id: int = 12
    image_size: tuple[int, int] = (128, 64)
    seed: int = 0
    n_junk: int | None = None
    n_distractors: int | None = None

    def __post_init__(self) -> None:
        _check_int("n_ids (--ids)", self.n_ids, 2, 9998, "one train and one test identity at least")
        _check_int("n_cameras (--cameras)", self.n_cameras, 2, 9, "Market names hold one camera digit")
        _check_int("images_per_id (--images-per-id)", self.images_per_id, 3, 1000,
                   "two cameras and one query image per identity need 3")
        _check_int("seed (--seed)", self.seed, 0, 2**63 - 1, "a seed is a non-negative integer")
        size = tuple(self.image_size)
        if len(size) != 2:
            raise BadInputError(f"image_size (--size) = {self.image_size!r}: expected (H, W); pass e.g. 128x64")
        _check_int("image_size height", size[0], 32, 1024, "Market's native height is 128")
        _check_int("image_size width", size[1], 16, 1024, "Market's native width is 64")
        object.__setattr__(self, "image_size", (int(size[0]), int(size[1])))
        if self.n_junk is not None:
            _check_int("n_junk", self.n_junk, 0, 10**6, "pass 0 for none")
        if self.n_distractors is not None:
            _check_int("n_distractors", self.n_distractors, 0, 10**6, "pass 0 for none")

    @property
    def junk_count(self) -> int:
        """Number of junk (pid -1) images: ``n_junk`` or Market's proportion."""
        if self.n_junk is not None:
            return self.n_junk
        return max(1, round(_JUNK_PER_TEST_IMAGE * self._test_images_estimate()))

    @property
    def distractor_count(self) -> int:
        """Number of distractor (pid 0000) images: ``n_distractors`` or Market's proportion."""
        if self.n_distractors is not None:
            return self.n_distractors
        return max(1, round(_DISTRACTORS_PER_TEST_IMAGE * self._test_images_estimate()))

    def _test_images_estimate(self) -> int:
        return (self.n_ids // 2) * self.images_per_id


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`synthesize_market` wrote. Gallery counts include junk and distractors."""

    root: Path
    n_train_ids: int
    n_test_ids: int
    n_train_images: int
    n_query_images: int
    n_gallery_images: int
    n_junk: int
    n_distractors: int
    n_cameras: int


def _check_int(name: str, value: object, low: int, high: int, why: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise BadInputError(f"{name} = {value!r}: not an integer; pass a whole number")
    if not low <= int(value) <= high:
        raise BadInputError(f"{name} = {value}: must be in [{low}, {high}] ({why}); pass a value in range")


# ----------------------------------------------------------------------------------------
# The plan: which files exist, in which folder, with which names. Made in one process.


@dataclass(frozen=True)
class _ImageSpec:
    """One file to render: its path relative to the root and what to draw in it."""

    rel_path: str
    kind: int  # _KIND_PERSON, _KIND_JUNK or _KIND_DISTRACTOR
    pid: int  # Market pid for persons; running index j for junk and distractors
    index: int  # image index within the identity (persons) or 0
    camera: int  # 1-based
    is_query: bool


@dataclass(frozen=True)
class _Plan:
    train_pids: tuple[int, ...]
    test_pids: tuple[int, ...]
    specs: tuple[_ImageSpec, ...]


def _market_name(pid: int, camera: int, seq: int, frame: int, box: int) -> str:
    pid_text = "-1" if pid == JUNK_PID else f"{pid:04d}"
    return f"{pid_text}_c{camera}s{seq}_{frame:06d}_{box:02d}.jpg"


def _identity_images(config: SynthConfig, pid: int) -> list[tuple[int, int, int, int]]:
    """Cameras and (seq, frame, box) of one identity's images, a track per camera.

    Returns a list of (camera, seq, frame, box), grouped by camera; the list index is the
    image index that seeds the image's pixels.
    """
    rng = np.random.default_rng([config.seed, _S_PLAN, pid])
    n_images = max(3, int(round(config.images_per_id * rng.uniform(0.7, 1.3))))
    n_cams = int(rng.integers(2, min(config.n_cameras, n_images - 1) + 1))
    cams = np.sort(rng.choice(np.arange(1, config.n_cameras + 1), size=n_cams, replace=False))
    # Every camera gets one image, the rest fall where the person lingered (uneven weights).
    counts = np.ones(n_cams, dtype=np.int64)
    counts += rng.multinomial(n_images - n_cams, rng.dirichlet(np.full(n_cams, 1.5)))
    out: list[tuple[int, int, int, int]] = []
    for cam, count in zip(cams.tolist(), counts.tolist()):
        seq = int(rng.integers(1, 7))
        frame = int(rng.integers(0, 150_000))
        for _ in range(count):
            frame += int(rng.integers(4, 60))
            out.append((cam, seq, frame, int(rng.integers(1, 4))))
    return out


def _unique_names(rng: np.random.Generator, pid: int, count: int, n_cameras: int) -> list[tuple[str, int]]:
    """``count`` distinct Market names for one shared pid (-1 or 0), with their camera."""
    seen: set[str] = set()
    out: list[tuple[str, int]] = []
    while len(out) < count:
        cam = int(rng.integers(1, n_cameras + 1))
        name = _market_name(pid, cam, int(rng.integers(1, 7)), int(rng.integers(0, 200_000)),
                            int(rng.integers(1, 9)))
        if name not in seen:
            seen.add(name)
            out.append((name, cam))
    return out


def _make_plan(config: SynthConfig) -> _Plan:
    """Pids, splits, query choice and every file name, from ``config`` alone."""
    rng = np.random.default_rng([config.seed, _S_PLAN])
    # Non-contiguous pids like Market's (a subset of 1..1501, or wider for bigger sets).
    pool = min(9999, max(1501, 2 * config.n_ids))
    pids = rng.choice(np.arange(1, pool + 1), size=config.n_ids, replace=False)
    order = rng.permutation(config.n_ids)
    n_train = (config.n_ids + 1) // 2
    train_pids = tuple(sorted(int(p) for p in pids[order[:n_train]]))
    test_pids = tuple(sorted(int(p) for p in pids[order[n_train:]]))

    specs: list[_ImageSpec] = []
    for pid in train_pids:
        for k, (cam, seq, frame, box) in enumerate(_identity_images(config, pid)):
            specs.append(_ImageSpec(f"{TRAIN_DIR}/{_market_name(pid, cam, seq, frame, box)}",
                                    _KIND_PERSON, pid, k, cam, False))
    for pid in test_pids:
        images = _identity_images(config, pid)
        qrng = np.random.default_rng([config.seed, _S_PLAN, pid, 1])
        by_cam: dict[int, list[int]] = {}
        for k, (cam, _, _, _) in enumerate(images):
            by_cam.setdefault(cam, []).append(k)
        # One query per camera that keeps a gallery image of its own: then every camera of
        # the identity stays in the gallery and each query has a match in another camera.
        queries = {int(qrng.choice(ks)) for ks in by_cam.values() if len(ks) >= 2}
        for k, (cam, seq, frame, box) in enumerate(images):
            folder = QUERY_DIR if k in queries else GALLERY_DIR
            specs.append(_ImageSpec(f"{folder}/{_market_name(pid, cam, seq, frame, box)}",
                                    _KIND_PERSON, pid, k, cam, k in queries))

    junk_rng = np.random.default_rng([config.seed, _S_JUNK])
    for j, (name, cam) in enumerate(_unique_names(junk_rng, JUNK_PID, config.junk_count, config.n_cameras)):
        specs.append(_ImageSpec(f"{GALLERY_DIR}/{name}", _KIND_JUNK, j, 0, cam, False))
    dis_rng = np.random.default_rng([config.seed, _S_DISTRACTOR])
    for j, (name, cam) in enumerate(_unique_names(dis_rng, DISTRACTOR_PID, config.distractor_count,
                                                   config.n_cameras)):
        specs.append(_ImageSpec(f"{GALLERY_DIR}/{name}", _KIND_DISTRACTOR, j, 0, cam, False))
    return _Plan(train_pids, test_pids, tuple(specs))


# ----------------------------------------------------------------------------------------
# Appearance: palettes (RGB), identities and cameras.

_SKIN = np.array([(255, 224, 196), (241, 194, 160), (224, 172, 130), (198, 134, 95),
                  (141, 85, 54), (96, 58, 38)], dtype=np.float32)
_HAIR = np.array([(22, 20, 20), (58, 40, 28), (105, 70, 40), (196, 160, 95), (150, 148, 145),
                  (135, 62, 32)], dtype=np.float32)
_UPPER = np.array([
    (235, 235, 232), (32, 32, 35), (128, 128, 130), (30, 42, 92), (40, 90, 190), (140, 180, 228),
    (188, 32, 38), (112, 28, 42), (42, 128, 62), (112, 116, 52), (228, 198, 44), (232, 150, 180),
    (110, 62, 150), (232, 120, 34), (120, 80, 52), (214, 196, 160)], dtype=np.float32)
_LOWER = np.array([
    (30, 30, 34), (42, 56, 92), (112, 140, 180), (100, 100, 106), (190, 170, 122), (224, 224, 222),
    (100, 70, 46), (90, 96, 56), (32, 36, 72), (158, 36, 42)], dtype=np.float32)
# Dark trousers and jeans are the common case, as on a real street.
_LOWER_P = np.array([0.22, 0.2, 0.12, 0.1, 0.09, 0.05, 0.06, 0.06, 0.07, 0.03])
_SHOES = np.array([(25, 25, 28), (230, 230, 230), (96, 62, 40), (120, 120, 125), (180, 40, 40),
                   (40, 70, 150), (200, 185, 150)], dtype=np.float32)
_SHOES_P = np.array([0.38, 0.25, 0.12, 0.1, 0.05, 0.05, 0.05])
_BAG = np.array([(28, 28, 30), (110, 110, 115), (105, 70, 45), (35, 45, 90), (170, 40, 45),
                 (45, 110, 60), (205, 190, 150), (220, 140, 170)], dtype=np.float32)

_PATTERNS = ("plain", "hstripes", "vstripes", "checks", "logo")
_PATTERN_P = np.array([0.42, 0.17, 0.11, 0.12, 0.18])
_HAIR_STYLES = ("short", "long", "ponytail", "buzz", "cap")
_HAIR_P = np.array([0.38, 0.26, 0.12, 0.12, 0.12])
_LOWER_KINDS = ("trousers", "shorts", "skirt")
_LOWER_KIND_P = np.array([0.68, 0.18, 0.14])
_BAGS = ("none", "backpack", "shoulder", "handbag")
_BAG_P = np.array([0.45, 0.27, 0.17, 0.11])
_VIEWS = ("front", "back", "right", "left")


@dataclass(frozen=True)
class _Look:
    """The attributes of one person; colours are RGB float triples."""

    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    hair_style: str
    hat: tuple[float, float, float]
    upper: tuple[float, float, float]
    upper2: tuple[float, float, float]
    pattern: str
    period: float  # stripe / check period as a fraction of body height
    long_sleeves: bool
    lower_kind: str
    lower: tuple[float, float, float]
    legwear: tuple[float, float, float]  # what shows below shorts or a skirt
    shoes: tuple[float, float, float]
    bag: str
    bag_color: tuple[float, float, float]
    bag_side: int  # +1 the person's right, -1 their left
    height: float  # body height factor
    build: float  # body width factor


def _pick(rng: np.random.Generator, palette: np.ndarray, p: np.ndarray | None = None,
          jitter: float = 8.0) -> tuple[float, float, float]:
    """A palette colour with a small per-person shift (two "navy" shirts are never identical)."""
    colour = palette[rng.choice(len(palette), p=p)] + rng.uniform(-jitter, jitter, 3)
    return tuple(float(c) for c in np.clip(colour, 0, 255))  # type: ignore[return-value]


def _random_look(rng: np.random.Generator) -> _Look:
    """Draw one person's attributes; shared by identities, distractors and bystanders."""
    skin = _pick(rng, _SKIN, jitter=6)
    hair_style = _HAIR_STYLES[rng.choice(len(_HAIR_STYLES), p=_HAIR_P)]
    upper_i = int(rng.integers(len(_UPPER)))
    upper2_i = (upper_i + int(rng.integers(1, len(_UPPER)))) % len(_UPPER)
    jit = rng.uniform(-8, 8, (2, 3))
    upper = tuple(float(c) for c in np.clip(_UPPER[upper_i] + jit[0], 0, 255))
    upper2 = tuple(float(c) for c in np.clip(_UPPER[upper2_i] + jit[1], 0, 255))
    lower_kind = _LOWER_KINDS[rng.choice(len(_LOWER_KINDS), p=_LOWER_KIND_P)]
    lower = _pick(rng, _LOWER, _LOWER_P)
    # Bare legs under shorts; under a skirt, bare legs or dark tights.
    legwear = skin if lower_kind == "shorts" or rng.random() < 0.6 else _pick(rng, _LOWER[:2], jitter=4)
    return _Look(
        skin=skin,
        hair=_pick(rng, _HAIR, jitter=6),
        hair_style=hair_style,
        hat=_pick(rng, _UPPER),
        upper=upper,  # type: ignore[arg-type]
        upper2=upper2,  # type: ignore[arg-type]
        pattern=_PATTERNS[rng.choice(len(_PATTERNS), p=_PATTERN_P)],
        period=float(rng.uniform(0.035, 0.06)),
        long_sleeves=bool(rng.random() < 0.55),
        lower_kind=lower_kind,
        lower=lower,
        legwear=legwear,
        shoes=_pick(rng, _SHOES, _SHOES_P),
        bag=_BAGS[rng.choice(len(_BAGS), p=_BAG_P)],
        bag_color=_pick(rng, _BAG),
        bag_side=int(rng.choice((-1, 1))),
        height=float(rng.uniform(0.93, 1.04)),
        build=float(rng.uniform(0.88, 1.14)),
    )


@dataclass(frozen=True)
class _Clutter:
    kind: str  # "pole", "box", "window", "bush", "bike"
    color: tuple[float, float, float]
    x: float  # fractions of the image
    y: float
    w: float
    h: float


@dataclass(frozen=True)
class _Camera:
    """What one camera adds: scene, light, framing and the views it tends to see."""

    sky: tuple[float, float, float]  # wall / far colour, top of the image
    ground: tuple[float, float, float]  # floor colour, bottom of the image
    horizon: float  # fraction of the height where wall meets floor
    texture: str  # "none", "tiles", "planks", "fence"
    texture_period: float  # fraction of the width
    roughness: float  # amplitude of the low-frequency background variation
    clutter: tuple[_Clutter, ...]
    gain: float
    cast: tuple[float, float, float]
    scale: float  # person height as a fraction of the image height
    view_p: tuple[float, float, float, float]  # front, back, right, left
    bystander_p: float
    blur: float  # Gaussian sigma in output pixels
    noise: float  # Gaussian noise sigma in grey levels


_SCENE = np.array([(150, 150, 150), (120, 115, 105), (170, 160, 140), (95, 105, 95),
                   (185, 185, 180), (110, 120, 135), (140, 125, 110), (80, 85, 80),
                   (200, 195, 185), (120, 140, 110)], dtype=np.float32)
# Muted street furniture: each kind of clutter has its own plausible colours.
_CLUTTER_COLOURS = {
    "pole": np.array([(70, 70, 72), (150, 150, 148), (120, 60, 50), (60, 80, 70)], dtype=np.float32),
    "box": np.array([(90, 88, 85), (140, 120, 95), (120, 60, 52), (70, 85, 110), (160, 150, 120)],
                    dtype=np.float32),
    "window": np.array([(95, 110, 125), (70, 80, 90), (150, 160, 165), (110, 100, 90)], dtype=np.float32),
    "bush": np.array([(60, 95, 55), (80, 110, 60), (50, 75, 50), (95, 105, 70)], dtype=np.float32),
    "bike": np.array([(40, 40, 42), (90, 90, 95), (120, 45, 45), (50, 70, 110)], dtype=np.float32),
}


def _camera(seed: int, cam: int) -> _Camera:
    rng = np.random.default_rng([seed, _S_CAMERA, cam])
    sky = _pick(rng, _SCENE, jitter=15)
    ground = _pick(rng, _SCENE, jitter=15)
    clutter = []
    for _ in range(int(rng.integers(2, 6))):
        kind = ("pole", "box", "window", "bush", "bike")[int(rng.integers(5))]
        w, h = {"pole": (0.06, 1.0), "box": (0.35, 0.18), "window": (0.4, 0.25), "bush": (0.5, 0.22),
                "bike": (0.55, 0.25)}[kind]
        y = {"pole": 0.0, "box": 0.55, "window": 0.05, "bush": 0.45, "bike": 0.6}[kind]
        clutter.append(_Clutter(kind, _pick(rng, _CLUTTER_COLOURS[kind], jitter=12),
                                float(rng.uniform(-0.2, 1.0)), y + float(rng.uniform(-0.05, 0.1)),
                                w * float(rng.uniform(0.7, 1.3)), h * float(rng.uniform(0.7, 1.3))))
    # Cameras look along a walkway (front/back views) or across it (side views).
    along = float(rng.uniform(0.15, 0.85))
    lr = float(rng.uniform(0.3, 0.7))
    fb = float(rng.uniform(0.3, 0.7))
    view_p = (along * fb, along * (1 - fb), (1 - along) * lr, (1 - along) * (1 - lr))
    return _Camera(
        sky=sky, ground=ground, horizon=float(rng.uniform(0.3, 0.75)),
        texture=("none", "tiles", "planks", "fence")[int(rng.integers(4))],
        texture_period=float(rng.uniform(0.15, 0.45)), roughness=float(rng.uniform(5, 25)),
        clutter=tuple(clutter), gain=float(rng.uniform(0.8, 1.15)),
        cast=tuple(float(c) for c in rng.uniform(0.91, 1.09, 3)),  # type: ignore[arg-type]
        scale=float(rng.uniform(0.8, 0.92)), view_p=view_p,
        bystander_p=float(rng.uniform(0.03, 0.2)),
        blur=float(rng.uniform(0.3, 0.9)), noise=float(rng.uniform(1.5, 5.0)),
    )


# ----------------------------------------------------------------------------------------
# Drawing. Everything is drawn at twice the output size and downscaled with INTER_AREA.

_SS = 2  # supersampling factor
_AA = cv2.LINE_AA


def _c(colour: tuple[float, float, float], shade: float = 1.0) -> tuple[float, float, float]:
    return (min(255.0, colour[0] * shade), min(255.0, colour[1] * shade), min(255.0, colour[2] * shade))


def _draw_background(canvas: np.ndarray, cam: _Camera, rng: np.random.Generator) -> None:
    """Fill ``canvas`` (shape [H, W, 3], uint8, RGB) with this camera's scene, shifted a little."""
    h, w = canvas.shape[:2]
    horizon = int(h * (cam.horizon + rng.uniform(-0.06, 0.06)))
    ys = np.arange(h, dtype=np.float32)[:, None]
    top = np.array(cam.sky, dtype=np.float32)
    bottom = np.array(cam.ground, dtype=np.float32)
    # Wall darkens towards the horizon, floor brightens towards the camera.
    wall = top * (1.05 - 0.15 * ys[:horizon] / max(horizon, 1))
    floor = bottom * (0.9 + 0.15 * (ys[horizon:] - horizon) / max(h - horizon, 1))
    img = np.empty((h, w, 3), dtype=np.float32)
    img[:horizon] = wall[:, None, :]
    img[horizon:] = floor[:, None, :]
    # Low-frequency variation: a coarse random grid blown up smoothly.
    coarse = rng.normal(0, cam.roughness, (6, 4, 1)).astype(np.float32)
    img += cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)[:, :, None]
    period = max(4, int(cam.texture_period * w))
    offset = int(rng.integers(period))
    line = tuple(float(v) for v in 0.8 * bottom)
    if cam.texture == "tiles":
        for x in range(-offset, w, period):
            cv2.line(img, (x, horizon), (x, h), line, 1, _AA)
        for y in range(horizon + period // 2 - offset // 2, h, period // 2 + 1):
            cv2.line(img, (0, y), (w, y), line, 1, _AA)
    elif cam.texture == "planks":
        for y in range(horizon + offset // 3, h, max(3, period // 3)):
            cv2.line(img, (0, y), (w, y), line, 1, _AA)
    elif cam.texture == "fence":
        fence = tuple(float(v) for v in 0.75 * top)
        for x in range(-offset, w, period):
            cv2.line(img, (x, 0), (x, horizon), fence, max(1, w // 60), _AA)
    shift = rng.uniform(-0.5, 0.5)
    for item in cam.clutter:
        x0 = int((item.x + shift) * w)
        y0 = int(item.y * h)
        x1, y1 = x0 + int(item.w * w), y0 + int(item.h * h)
        col = item.color
        if item.kind in ("pole", "box"):
            cv2.rectangle(img, (x0, y0), (x1, y1), col, -1, _AA)
            cv2.rectangle(img, (x0, y0), (x1, y1), _c(col, 0.7), 1, _AA)
        elif item.kind == "window":
            cv2.rectangle(img, (x0, y0), (x1, y1), col, -1, _AA)
            cv2.line(img, ((x0 + x1) // 2, y0), ((x0 + x1) // 2, y1), _c(col, 0.6), max(1, w // 50), _AA)
        elif item.kind == "bush":
            cv2.ellipse(img, ((x0 + x1) // 2, (y0 + y1) // 2), (max(1, (x1 - x0) // 2), max(1, (y1 - y0) // 2)),
                        0, 0, 360, col, -1, _AA)
        else:  # bike: two wheels and a frame
            r = max(2, (y1 - y0) // 2)
            cv2.circle(img, (x0 + r, y1 - r), r, col, max(1, w // 50), _AA)
            cv2.circle(img, (x1 - r, y1 - r), r, col, max(1, w // 50), _AA)
            cv2.line(img, (x0 + r, y1 - r), ((x0 + x1) // 2, y0 + r // 2), col, max(1, w // 50), _AA)
            cv2.line(img, (x1 - r, y1 - r), ((x0 + x1) // 2, y0 + r // 2), col, max(1, w // 50), _AA)
    np.clip(img, 0, 255, out=img)
    canvas[:] = img.astype(np.uint8)


@dataclass(frozen=True)
class _Pose:
    view: str  # "front", "back", "right", "left"
    phase: float  # -1..1: stride / arm swing
    lean: float  # horizontal shift per unit height from feet to head


class _Body:
    """Maps body coordinates to canvas pixels: ``dx`` (fraction of height, towards the image
    right, or forward for side views) and ``fy`` (0 at the top of the head, 1 at the soles)."""

    def __init__(self, cx: float, top: float, height: float, pose: _Pose) -> None:
        self.cx, self.top, self.u, self.pose = cx, top, height, pose
        self.sx = -1.0 if pose.view == "left" else 1.0

    def p(self, dx: float, fy: float) -> tuple[int, int]:
        x = self.cx + self.sx * dx * self.u + self.pose.lean * (1.0 - fy) * self.u
        return (int(round(x)), int(round(self.top + fy * self.u)))

    def t(self, frac: float) -> int:
        """A thickness: fraction of the height in pixels, at least 1."""
        return max(1, int(round(frac * self.u)))


def _fill_poly(canvas: np.ndarray, pts: list[tuple[int, int]], colour: tuple[float, float, float]) -> None:
    cv2.fillPoly(canvas, [np.array(pts, dtype=np.int32)], colour, _AA)


def _limb(canvas: np.ndarray, pts: list[tuple[int, int]], colour: tuple[float, float, float], thick: int) -> None:
    for a, b in zip(pts[:-1], pts[1:]):
        cv2.line(canvas, a, b, colour, thick, _AA)


def _lerp(a: tuple[int, int], b: tuple[int, int], t: float) -> tuple[int, int]:
    return (int(round(a[0] + (b[0] - a[0]) * t)), int(round(a[1] + (b[1] - a[1]) * t)))


def _draw_torso(canvas: np.ndarray, b: _Body, look: _Look, poly: list[tuple[int, int]], front: bool) -> None:
    """The upper garment with its pattern, clipped to ``poly``; the logo shows from the front."""
    pts = np.array(poly, dtype=np.int32)
    h, w = canvas.shape[:2]
    x0, y0 = max(0, int(pts[:, 0].min())), max(0, int(pts[:, 1].min()))
    x1, y1 = min(w, int(pts[:, 0].max()) + 1), min(h, int(pts[:, 1].max()) + 1)
    if x1 <= x0 or y1 <= y0:
        return
    mask = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    cv2.fillPoly(mask, [pts - (x0, y0)], 255, _AA)
    tex = np.empty((y1 - y0, x1 - x0, 3), dtype=np.float32)
    tex[:] = look.upper
    period = max(2.0, look.period * b.u)
    yy = (np.arange(y0, y1, dtype=np.float32) - b.top)[:, None]
    xx = (np.arange(x0, x1, dtype=np.float32) - b.cx)[None, :]
    band = None
    if look.pattern == "hstripes":
        band = np.broadcast_to((yy // (period / 2)) % 2 == 1, tex.shape[:2])
    elif look.pattern == "vstripes":
        band = np.broadcast_to((xx // (period / 2)) % 2 == 1, tex.shape[:2])
    elif look.pattern == "checks":
        band = ((yy // period) % 2 == 1) ^ ((xx // period) % 2 == 1)
    if band is not None:
        tex[band] = look.upper2
    elif look.pattern == "logo" and front:
        cx, cy = b.p(0.0, 0.29)
        hw, hh = b.t(0.045), b.t(0.04)
        cv2.rectangle(tex, (cx - hw - x0, cy - hh - y0), (cx + hw - x0, cy + hh - y0), look.upper2, -1, _AA)
    # Light from the front: the garment darkens towards the body's sides, like a cylinder.
    half = max(1.0, 0.11 * look.build * b.u)
    tex *= (1.0 - 0.22 * np.clip((xx - b.pose.lean * b.u * 0.6) / half, -1.0, 1.0) ** 2)[:, :, None]
    alpha = mask.astype(np.float32)[:, :, None] / 255.0
    roi = canvas[y0:y1, x0:x1].astype(np.float32)
    canvas[y0:y1, x0:x1] = (roi * (1.0 - alpha) + tex * alpha + 0.5).astype(np.uint8)


def _draw_person(canvas: np.ndarray, look: _Look, pose: _Pose, cx: float, top: float, height: float) -> None:
    """Draw a standing / walking person into ``canvas`` (shape [H, W, 3], uint8, RGB)."""
    b = _Body(cx, top, height * look.height, pose)
    side_view = pose.view in ("left", "right")
    front = pose.view == "front"
    wf = look.build
    ph = pose.phase
    skin = look.skin
    far = 0.8  # shade of the limbs on the far side

    # Which image side a bag on the person's right/left appears on, in front or back view.
    bag_x = -look.bag_side if front else look.bag_side
    # In side view (facing +dx), the person's left is towards the camera when walking right.
    bag_near = (look.bag_side == -1) == (pose.view == "right")

    # -- legs -------------------------------------------------------------------------------
    legs: list[tuple[list[tuple[int, int]], bool]] = []  # (hip, knee, ankle), is_far
    if side_view:
        swing = 0.38 * ph
        for sgn, is_far in ((1.0, False), (-1.0, True)):
            a = sgn * swing
            hip = (0.0, 0.52)
            knee = (hip[0] + 0.22 * math.sin(a), hip[1] + 0.22 * math.cos(a))
            # The trailing leg bends at the knee so its foot comes up behind.
            shin_a = a - (0.35 if a < 0 else 0.05)
            ankle = (knee[0] + 0.22 * math.sin(shin_a), knee[1] + 0.22 * math.cos(shin_a))
            legs.append(([b.p(*hip), b.p(*knee), b.p(*ankle)], is_far))
        legs.sort(key=lambda item: not item[1])  # far leg first
    else:
        for sgn in (-1.0, 1.0):
            forward = sgn * ph > 0  # the leg stepping towards the camera lands lower
            spread = 0.012 + 0.018 * abs(ph)
            drop = (0.012 if forward else -0.01) * abs(ph) * (1 if front else -1)
            hip = b.p(sgn * 0.045 * wf, 0.52)
            knee = b.p(sgn * (0.05 * wf + spread / 2), 0.74 + drop / 2)
            ankle = b.p(sgn * (0.048 * wf + spread), 0.955 + drop)
            legs.append(([hip, knee, ankle], False))
    leg_t = b.t(0.068 * wf)
    for pts, is_far in legs:
        shade = far if is_far else 1.0
        if look.lower_kind == "trousers":
            _limb(canvas, pts, _c(look.lower, shade), leg_t)
        else:
            _limb(canvas, pts, _c(look.legwear, shade), b.t(0.055 * wf))
            if look.lower_kind == "shorts":
                _limb(canvas, [pts[0], _lerp(pts[0], pts[1], 0.55)], _c(look.lower, shade), leg_t)
        # Shoes: a flat ellipse, pointing forward in side views.
        ax, ay = pts[2]
        if side_view:
            centre = (ax + int(b.sx * b.t(0.022)), ay + b.t(0.02))
            axes = (b.t(0.05), b.t(0.022))
        else:
            centre = (ax, ay + b.t(0.02))
            axes = (b.t(0.034), b.t(0.022))
        cv2.ellipse(canvas, centre, axes, 0, 0, 360, _c(look.shoes, shade), -1, _AA)

    # -- pelvis / skirt -----------------------------------------------------------------------
    hw = (0.06 if side_view else 0.095) * wf
    if look.lower_kind == "skirt":
        flare = hw + 0.05
        _fill_poly(canvas, [b.p(-hw, 0.46), b.p(hw, 0.46), b.p(flare, 0.7), b.p(-flare, 0.7)], look.lower)
    else:
        _fill_poly(canvas, [b.p(-hw, 0.46), b.p(hw, 0.46), b.p(hw * 0.9, 0.58), b.p(-hw * 0.9, 0.58)],
                   look.lower)

    # -- far arm, far bag, backpack behind (side views) -----------------------------------------
    sw = 0.112 * wf  # half shoulder width
    arm_t = b.t(0.048 * wf)

    def arm(shoulder: tuple[float, float], angle: float, sgn: float, shade: float) -> None:
        """``angle``: swing forward (side views) or outward (front/back), radians."""
        if side_view:
            elbow = (shoulder[0] + 0.155 * math.sin(angle), shoulder[1] + 0.155 * math.cos(angle))
            fa = angle + 0.25 + 0.2 * max(angle, 0)  # forearm bends forward
            wrist = (elbow[0] + 0.145 * math.sin(fa), elbow[1] + 0.145 * math.cos(fa))
        else:
            out = sgn * (0.01 + 0.02 * abs(angle))
            elbow = (shoulder[0] + out, shoulder[1] + 0.155 * (1 - 0.15 * abs(angle)))
            wrist = (elbow[0] + out * 0.5, elbow[1] + 0.145 * (1 - 0.3 * abs(angle)))
        ps, pe, pw = b.p(*shoulder), b.p(*elbow), b.p(*wrist)
        sleeve = _c(look.upper, shade)
        if look.long_sleeves:
            _limb(canvas, [ps, pe, pw], sleeve, arm_t)
        else:
            _limb(canvas, [ps, pe, pw], _c(skin, shade), b.t(0.04 * wf))
            _limb(canvas, [ps, _lerp(ps, pe, 0.55)], sleeve, arm_t)
        cv2.circle(canvas, pw, b.t(0.022), _c(skin, shade), -1, _AA)
        if look.bag == "handbag" and (sgn == bag_x if not side_view else (shade == 1.0) == bag_near):
            bx, by = pw
            cv2.rectangle(canvas, (bx - b.t(0.035), by + b.t(0.015)), (bx + b.t(0.035), by + b.t(0.085)),
                          _c(look.bag_color, shade), -1, _AA)

    if side_view:
        arm((0.0, 0.19), 0.5 * ph, 1.0, far)
        if look.bag == "shoulder" and not bag_near:
            cv2.rectangle(canvas, b.p(-0.07, 0.45), b.p(0.06, 0.55), _c(look.bag_color, far), -1, _AA)

    # -- torso ---------------------------------------------------------------------------------
    neck_t = b.t(0.05)
    _limb(canvas, [b.p(0.0, 0.12), b.p(0.0, 0.18)], skin, neck_t)
    if side_view:
        torso = [b.p(-0.055 * wf, 0.165), b.p(0.04 * wf, 0.165), b.p(0.065 * wf, 0.3), b.p(0.055 * wf, 0.47),
                 b.p(0.06 * wf, 0.53), b.p(-0.065 * wf, 0.53), b.p(-0.06 * wf, 0.45), b.p(-0.07 * wf, 0.28)]
    else:
        torso = [b.p(-sw, 0.17), b.p(-0.04, 0.155), b.p(0.04, 0.155), b.p(sw, 0.17), b.p(0.105 * wf, 0.3),
                 b.p(0.088 * wf, 0.46), b.p(0.095 * wf, 0.53), b.p(-0.095 * wf, 0.53), b.p(-0.088 * wf, 0.46),
                 b.p(-0.105 * wf, 0.3)]
    _draw_torso(canvas, b, look, torso, front)

    # -- bags and near arms ----------------------------------------------------------------------
    bag = look.bag_color
    if side_view:
        if look.bag == "backpack":
            cv2.rectangle(canvas, b.p(-0.12 * wf, 0.2), b.p(-0.05 * wf, 0.44), bag, -1, _AA)
            _limb(canvas, [b.p(0.0, 0.18), b.p(-0.02, 0.36)], _c(bag, 0.8), b.t(0.018))
        arm((0.0, 0.19), -0.5 * ph, 1.0, 1.0)
        if look.bag == "shoulder" and bag_near:
            _limb(canvas, [b.p(0.0, 0.17), b.p(-0.02, 0.46)], _c(bag, 0.8), b.t(0.015))
            cv2.rectangle(canvas, b.p(-0.08, 0.45), b.p(0.05, 0.56), bag, -1, _AA)
    else:
        if look.bag == "backpack" and not front:
            cv2.rectangle(canvas, b.p(-0.085 * wf, 0.19), b.p(0.085 * wf, 0.45), bag, -1, _AA)
            cv2.rectangle(canvas, b.p(-0.06 * wf, 0.33), b.p(0.06 * wf, 0.43), _c(bag, 0.75), -1, _AA)
        swing = 0.6 * abs(ph)
        arm((-sw + 0.015, 0.185), swing, -1.0, 1.0)
        arm((sw - 0.015, 0.185), swing, 1.0, 1.0)
        if look.bag == "backpack" and front:
            for sgn in (-1.0, 1.0):
                _limb(canvas, [b.p(sgn * 0.06 * wf, 0.165), b.p(sgn * 0.07 * wf, 0.37)], bag, b.t(0.022))
        if look.bag == "shoulder":
            _limb(canvas, [b.p(-bag_x * 0.06 * wf, 0.165), b.p(bag_x * 0.1 * wf, 0.47)], _c(bag, 0.85), b.t(0.016))
            x_in, x_out = bag_x * 0.07 * wf, bag_x * 0.17 * wf
            cv2.rectangle(canvas, b.p(min(x_in, x_out), 0.45), b.p(max(x_in, x_out), 0.56), bag, -1, _AA)

    # -- head and hair ---------------------------------------------------------------------------
    head_c = b.p(0.008 if side_view else 0.0, 0.068)
    head_ax = (b.t(0.05 if not side_view else 0.055), b.t(0.064))
    hair = look.hair
    style = look.hair_style
    if style == "long":
        # Hair falling to the shoulders, behind the head (and over the back seen from behind).
        back = -0.045 if side_view else 0.0
        wid = 0.055 if side_view else 0.062
        _fill_poly(canvas, [b.p(back - wid, 0.06), b.p(back + wid, 0.06), b.p(back + wid * 1.05, 0.25),
                            b.p(back - wid * 1.05, 0.25)], _c(hair, 0.95))
    cv2.ellipse(canvas, head_c, head_ax, 0, 0, 360, skin, -1, _AA)
    hair_ax = (head_ax[0] + b.t(0.006), head_ax[1] + b.t(0.004))
    if style == "buzz":
        hair_c = (head_c[0], head_c[1] - b.t(0.006))
        cv2.ellipse(canvas, hair_c, head_ax, 0, 180, 360, _c(hair, 0.9), -1, _AA)
    elif pose.view == "back":
        cv2.ellipse(canvas, (head_c[0], head_c[1] - b.t(0.004)), hair_ax, 0, 0, 360, hair, -1, _AA)
    elif side_view:
        # Hair covers the crown and the back half of the head.
        cv2.ellipse(canvas, (head_c[0], head_c[1] - b.t(0.008)), hair_ax, 0, 180, 360, hair, -1, _AA)
        back_c = b.p(-0.014, 0.068)
        cv2.ellipse(canvas, back_c, (b.t(0.042), b.t(0.055)), 0, 0, 360, hair, -1, _AA)
    else:
        cv2.ellipse(canvas, (head_c[0], head_c[1] - b.t(0.01)), hair_ax, 0, 180, 360, hair, -1, _AA)
        if style == "long":
            for sgn in (-1.0, 1.0):
                _limb(canvas, [b.p(sgn * 0.048, 0.05), b.p(sgn * 0.05, 0.13)], hair, b.t(0.02))
    if style == "ponytail" and pose.view != "front":
        tail = b.p(-0.06, 0.1) if side_view else b.p(0.0, 0.14)
        cv2.ellipse(canvas, tail, (b.t(0.022), b.t(0.04)), 0, 0, 360, hair, -1, _AA)
    if style == "cap":
        cap_c = (head_c[0], head_c[1] - b.t(0.014))
        cv2.ellipse(canvas, cap_c, hair_ax, 0, 180, 360, look.hat, -1, _AA)
        if side_view:
            _limb(canvas, [b.p(0.0, 0.056), b.p(0.085, 0.058)], _c(look.hat, 0.8), b.t(0.014))
        elif front:
            cv2.ellipse(canvas, (cap_c[0], cap_c[1] + b.t(0.004)), (hair_ax[0], b.t(0.012)), 0, 0, 180,
                        _c(look.hat, 0.8), -1, _AA)
    if front or side_view:
        # Eyes: two dark dots (one in profile) so faces read as faces when enlarged.
        eye_y = 0.072
        eyes = (-0.018, 0.018) if front else (0.035,)
        for ex in eyes:
            cv2.circle(canvas, b.p(ex, eye_y), max(1, b.t(0.006)), _c(skin, 0.45), -1, _AA)


def _frame_person(canvas: np.ndarray, cam: _Camera, rng: np.random.Generator,
                  tight: bool) -> tuple[float, float, float]:
    """Centre x, top y and height (canvas pixels) of the main person, with this camera's jitter.

    ``tight``: query boxes are hand-drawn in Market, so they are jittered half as much.
    """
    h, w = canvas.shape[:2]
    j = 0.5 if tight else 1.0
    height = h * cam.scale * (1.0 + rng.uniform(-0.05, 0.05) * j)
    cx = w * (0.5 + rng.uniform(-0.09, 0.09) * j)
    top = (h - height) * 0.5 + h * rng.uniform(-0.035, 0.035) * j
    return cx, top, height


def _pose(rng: np.random.Generator, view: str) -> _Pose:
    phase = float(rng.uniform(-1.0, 1.0))
    lean = float(rng.uniform(-0.02, 0.02))
    if view == "right":
        lean += 0.02
    elif view == "left":
        lean -= 0.02
    return _Pose(view, phase, lean)


def _finish(canvas: np.ndarray, out_hw: tuple[int, int], cam: _Camera, rng: np.random.Generator) -> np.ndarray:
    """Downscale, light, blur and add noise. Returns shape [H, W, 3] uint8, RGB."""
    h, w = out_hw
    small = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
    gain = cam.gain * rng.uniform(0.92, 1.08)
    small *= np.array(cam.cast, dtype=np.float32) * np.float32(gain)
    sigma = cam.blur * rng.uniform(0.8, 1.25)
    small = cv2.GaussianBlur(small, (0, 0), sigmaX=sigma)
    small += rng.standard_normal(small.shape, dtype=np.float32) * np.float32(cam.noise)
    return np.clip(small + 0.5, 0, 255).astype(np.uint8)


def _render_image(config: SynthConfig, spec: _ImageSpec) -> np.ndarray:
    """Pixels of one planned image, shape [H, W, 3] uint8, RGB; a pure function of its inputs."""
    h, w = config.image_size
    cam = _camera(config.seed, spec.camera)
    if spec.kind == _KIND_PERSON:
        rng = np.random.default_rng([config.seed, _S_IMAGE, spec.pid, spec.index])
        look = _random_look(np.random.default_rng([config.seed, _S_IDENTITY, spec.pid]))
        # A track (one identity in one camera) mostly keeps its walking direction.
        track_rng = np.random.default_rng([config.seed, _S_TRACK, spec.pid, spec.camera])
        track_view = _VIEWS[track_rng.choice(4, p=cam.view_p)]
        view = track_view if rng.random() < 0.8 else _VIEWS[rng.choice(4, p=cam.view_p)]
    else:
        stream = _S_JUNK if spec.kind == _KIND_JUNK else _S_DISTRACTOR
        rng = np.random.default_rng([config.seed, stream, spec.pid, 1])
        look = _random_look(np.random.default_rng([config.seed, stream, spec.pid, 2]))
        view = _VIEWS[rng.choice(4, p=cam.view_p)]
    canvas = np.empty((h * _SS, w * _SS, 3), dtype=np.uint8)
    _draw_background(canvas, cam, rng)
    cx, top, height = _frame_person(canvas, cam, rng, spec.is_query)
    if rng.random() < cam.bystander_p:
        # Someone else at the edge of the box, behind: natural partial occlusion.
        other = _random_look(rng)
        side = 1.0 if rng.random() < 0.5 else -1.0
        ox = cx + side * canvas.shape[1] * rng.uniform(0.55, 0.8)
        _draw_person(canvas, other, _pose(rng, _VIEWS[rng.choice(4)]), ox, top - height * 0.03, height * 0.97)
    pose = _pose(rng, view)
    if spec.kind == _KIND_JUNK:
        # Junk are failed detections: a fragment of a person, or mostly background.
        mode = int(rng.integers(3))
        if mode == 0:  # zoomed on part of the body
            zoom = rng.uniform(1.8, 2.6)
            _draw_person(canvas, look, pose, cx, top - height * zoom * rng.uniform(0.1, 0.6), height * zoom)
        elif mode == 1:  # box half off the person
            shift = canvas.shape[1] * rng.uniform(0.45, 0.7) * (1 if rng.random() < 0.5 else -1)
            _draw_person(canvas, look, pose, cx + shift, top, height)
        else:  # small, far person
            small = rng.uniform(0.3, 0.5)
            _draw_person(canvas, look, pose, cx, top + height * (1 - small), height * small)
    elif spec.kind == _KIND_DISTRACTOR and rng.random() < 0.4:
        # Distractors: detections that are not a labelled identity; some are badly framed.
        shift = canvas.shape[1] * rng.uniform(0.2, 0.4) * (1 if rng.random() < 0.5 else -1)
        _draw_person(canvas, look, pose, cx + shift, top + height * rng.uniform(0.0, 0.25), height)
    else:
        _draw_person(canvas, look, pose, cx, top, height)
    return _finish(canvas, (h, w), cam, rng)


# ----------------------------------------------------------------------------------------
# Writing.


def _render_chunk(config: SynthConfig, specs: list[_ImageSpec], root: str) -> int:
    """Render and write ``specs`` under ``root``; returns the number of files written."""
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    for spec in specs:
        rgb = _render_image(config, spec)
        ok, data = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), params)
        if not ok:  # pragma: no cover - cv2 only fails on invalid arrays
            raise RuntimeError(f"cv2 could not encode {spec.rel_path}")
        with open(os.path.join(root, spec.rel_path), "wb") as fh:
            fh.write(data.tobytes())
    return len(specs)


def _chunks(specs: tuple[_ImageSpec, ...], workers: int) -> list[list[_ImageSpec]]:
    """Consecutive runs of specs (an identity's images stay together where the size allows)."""
    size = max(16, min(256, math.ceil(len(specs) / max(1, workers * 8))))
    return [list(specs[i:i + size]) for i in range(0, len(specs), size)]


def _check_out_dir(out_dir: Path, force: bool) -> None:
    real = out_dir.resolve()
    cwd = Path.cwd().resolve()
    if real == cwd or real in cwd.parents or real == Path.home().resolve():
        # --force deletes the folder: never the working directory, an ancestor or home.
        raise BadInputError(f"{out_dir}: is the current folder, one above it or the home folder; "
                            f"pick a dedicated --out such as data/synthetic-market")
    if out_dir.exists() and not force:
        if not out_dir.is_dir():
            raise BadInputError(f"{out_dir}: exists and is not a folder; remove it, pick another --out or pass --force")
        if any(out_dir.iterdir()):
            raise BadInputError(f"{out_dir}: exists and is not empty; pass --force to replace it or pick another --out")


def synthesize_market(out_dir: Path, config: SynthConfig, workers: int = 1, force: bool = False) -> SynthSummary:
    """Write the synthetic set to ``out_dir`` in the Market-1501 layout and return its counts.

    The files are written into a hidden temporary sibling folder that is renamed to
    ``out_dir`` only when complete, so an interrupted run leaves nothing that looks valid.
    An existing non-empty ``out_dir`` is an error unless ``force``, which replaces it (only
    after the new set is complete). The bytes written do not depend on ``workers``.
    """
    out_dir = Path(out_dir)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise BadInputError(f"workers (--workers) = {workers!r}: must be a positive integer; pass e.g. 1 or 2")
    workers = cap_workers(workers)  # more processes than usable CPUs only contend
    _check_out_dir(out_dir, force)
    plan = _make_plan(config)
    target = out_dir.resolve()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    except OSError as exc:
        raise BadInputError(f"{out_dir}: cannot create the output folder ({exc.strerror}); "
                            f"pick a writable --out") from exc
    try:
        for folder in (TRAIN_DIR, GALLERY_DIR, QUERY_DIR):
            (tmp / folder).mkdir()
        chunks = _chunks(plan.specs, workers)
        with tqdm(total=len(plan.specs), unit="img", desc="synth", disable=None) as bar:
            if workers == 1:
                for chunk in chunks:
                    bar.update(_render_chunk(config, chunk, str(tmp)))
            else:
                jobs = (delayed(_render_chunk)(config, chunk, str(tmp)) for chunk in chunks)
                for done in Parallel(n_jobs=workers, backend="loky", return_as="generator_unordered")(jobs):
                    bar.update(done)
        (tmp / GALLERY_DIR / "Thumbs.db").write_bytes(_THUMBS_DB)
        if out_dir.is_symlink() or out_dir.is_file():
            out_dir.unlink()
        elif out_dir.exists():
            shutil.rmtree(out_dir)  # empty, or replaced under force
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    counts = {TRAIN_DIR: 0, QUERY_DIR: 0, GALLERY_DIR: 0}
    for spec in plan.specs:
        counts[spec.rel_path.split("/", 1)[0]] += 1
    summary = SynthSummary(
        root=out_dir, n_train_ids=len(plan.train_pids), n_test_ids=len(plan.test_pids),
        n_train_images=counts[TRAIN_DIR], n_query_images=counts[QUERY_DIR],
        n_gallery_images=counts[GALLERY_DIR], n_junk=config.junk_count,
        n_distractors=config.distractor_count, n_cameras=config.n_cameras,
    )
    logger.info(
        "synthetic Market-1501 at %s: train %d ids / %d images, test %d ids, query %d images, "
        "gallery %d images (incl. %d junk, %d distractors), %d cameras, seed %d",
        out_dir, summary.n_train_ids, summary.n_train_images, summary.n_test_ids, summary.n_query_images,
        summary.n_gallery_images, summary.n_junk, summary.n_distractors, summary.n_cameras, config.seed,
    )
    return summary
