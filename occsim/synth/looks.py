"""Appearance of the synthetic set: palettes (RGB), the attributes of one person
(:class:`Look`) and of one camera (:class:`Camera`).

An identity is a *combination* of attributes spread over the whole body (skin, hair colour and
style, upper garment colour and pattern, sleeve length, lower garment kind and colour, shoes,
bag), each drawn from a small palette, so many identities share any single attribute and only
the combination identifies. Cameras differ in background, lighting, scale, position and the
views (front, back, side) they tend to see; :func:`make_camera` is seeded with
``(seed, S_CAMERA, camera)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from occsim.synth.plan import S_CAMERA


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
VIEWS = ("front", "back", "right", "left")


# --------------------------------------------------------------------------- identities


@dataclass(frozen=True)
class Look:
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


def random_look(rng: np.random.Generator) -> Look:
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
    return Look(
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


# ------------------------------------------------------------------------------ cameras


@dataclass(frozen=True)
class _Clutter:
    kind: str  # "pole", "box", "window", "bush", "bike"
    color: tuple[float, float, float]
    x: float  # fractions of the image
    y: float
    w: float
    h: float


@dataclass(frozen=True)
class Camera:
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


def make_camera(seed: int, cam: int) -> Camera:
    """The look of camera ``cam`` (1-based) of the set seeded with ``seed``."""
    rng = np.random.default_rng([seed, S_CAMERA, cam])
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
    return Camera(
        sky=sky, ground=ground, horizon=float(rng.uniform(0.3, 0.75)),
        texture=("none", "tiles", "planks", "fence")[int(rng.integers(4))],
        texture_period=float(rng.uniform(0.15, 0.45)), roughness=float(rng.uniform(5, 25)),
        clutter=tuple(clutter), gain=float(rng.uniform(0.8, 1.15)),
        cast=tuple(float(c) for c in rng.uniform(0.91, 1.09, 3)),  # type: ignore[arg-type]
        scale=float(rng.uniform(0.8, 0.92)), view_p=view_p,
        bystander_p=float(rng.uniform(0.03, 0.2)),
        blur=float(rng.uniform(0.3, 0.9)), noise=float(rng.uniform(1.5, 5.0)),
    )
