"""Drawing the synthetic set with cv2: background, person, and one whole image
(:func:`render_image`, uint8 RGB [H, W, 3]).

Everything is drawn at twice the output size (``_SS``) and downscaled with INTER_AREA; then
the camera's light, blur and noise are added. Every pixel of an image comes from generators
seeded with ``(seed, stream, pid, image index)`` or ``(seed, stream, camera)``, so an image is
a pure function of the configuration and its :class:`~occsim.synth.plan.ImageSpec`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from occsim.synth.looks import VIEWS, Camera, Look, make_camera, random_look
from occsim.synth.plan import (
    KIND_DISTRACTOR,
    KIND_JUNK,
    KIND_PERSON,
    S_DISTRACTOR,
    S_IDENTITY,
    S_IMAGE,
    S_JUNK,
    S_TRACK,
    ImageSpec,
)
from occsim.synth_config import SynthConfig


_SS = 2  # supersampling factor
_AA = cv2.LINE_AA


def _c(colour: tuple[float, float, float], shade: float = 1.0) -> tuple[float, float, float]:
    return (min(255.0, colour[0] * shade), min(255.0, colour[1] * shade), min(255.0, colour[2] * shade))


def _draw_background(canvas: np.ndarray, cam: Camera, rng: np.random.Generator) -> None:
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


def _draw_torso(canvas: np.ndarray, b: _Body, look: Look, poly: list[tuple[int, int]], front: bool) -> None:
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


def _draw_person(canvas: np.ndarray, look: Look, pose: _Pose, cx: float, top: float, height: float) -> None:
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


# ---------------------------------------------------------------------------- one image


def _frame_person(canvas: np.ndarray, cam: Camera, rng: np.random.Generator,
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


def _finish(canvas: np.ndarray, out_hw: tuple[int, int], cam: Camera, rng: np.random.Generator) -> np.ndarray:
    """Downscale, light, blur and add noise. Returns shape [H, W, 3] uint8, RGB."""
    h, w = out_hw
    small = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
    gain = cam.gain * rng.uniform(0.92, 1.08)
    small *= np.array(cam.cast, dtype=np.float32) * np.float32(gain)
    sigma = cam.blur * rng.uniform(0.8, 1.25)
    small = cv2.GaussianBlur(small, (0, 0), sigmaX=sigma)
    small += rng.standard_normal(small.shape, dtype=np.float32) * np.float32(cam.noise)
    return np.clip(small + 0.5, 0, 255).astype(np.uint8)


def render_image(config: SynthConfig, spec: ImageSpec) -> np.ndarray:
    """Pixels of one planned image, shape [H, W, 3] uint8, RGB; a pure function of its inputs."""
    h, w = config.image_size
    cam = make_camera(config.seed, spec.camera)
    if spec.kind == KIND_PERSON:
        rng = np.random.default_rng([config.seed, S_IMAGE, spec.pid, spec.index])
        look = random_look(np.random.default_rng([config.seed, S_IDENTITY, spec.pid]))
        # A track (one identity in one camera) mostly keeps its walking direction.
        track_rng = np.random.default_rng([config.seed, S_TRACK, spec.pid, spec.camera])
        track_view = VIEWS[track_rng.choice(4, p=cam.view_p)]
        view = track_view if rng.random() < 0.8 else VIEWS[rng.choice(4, p=cam.view_p)]
    else:
        stream = S_JUNK if spec.kind == KIND_JUNK else S_DISTRACTOR
        rng = np.random.default_rng([config.seed, stream, spec.pid, 1])
        look = random_look(np.random.default_rng([config.seed, stream, spec.pid, 2]))
        view = VIEWS[rng.choice(4, p=cam.view_p)]
    canvas = np.empty((h * _SS, w * _SS, 3), dtype=np.uint8)
    _draw_background(canvas, cam, rng)
    cx, top, height = _frame_person(canvas, cam, rng, spec.is_query)
    if rng.random() < cam.bystander_p:
        # Someone else at the edge of the box, behind: natural partial occlusion.
        other = random_look(rng)
        side = 1.0 if rng.random() < 0.5 else -1.0
        ox = cx + side * canvas.shape[1] * rng.uniform(0.55, 0.8)
        _draw_person(canvas, other, _pose(rng, VIEWS[rng.choice(4)]), ox, top - height * 0.03, height * 0.97)
    pose = _pose(rng, view)
    if spec.kind == KIND_JUNK:
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
    elif spec.kind == KIND_DISTRACTOR and rng.random() < 0.4:
        # Distractors: detections that are not a labelled identity; some are badly framed.
        shift = canvas.shape[1] * rng.uniform(0.2, 0.4) * (1 if rng.random() < 0.5 else -1)
        _draw_person(canvas, look, pose, cx + shift, top + height * rng.uniform(0.0, 0.25), height)
    else:
        _draw_person(canvas, look, pose, cx, top, height)
    return _finish(canvas, (h, w), cam, rng)
