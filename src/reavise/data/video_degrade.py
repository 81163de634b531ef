"""Degradations of full-face videos: the real path of ``reavise data mix-video`` (issue 12).

:mod:`reavise.data.degrade` damages the 67x67 mouth ROIs the detector already cut, so the
model is told which frames are bad. Here the damage is done to the face video itself, before
any detection: ``reavise enhance`` then decodes it, runs the project's face/mouth detector
(:mod:`reavise.video`) and feeds the model whatever ROIs and validity flags it finds.

Every degradation takes uint8 RGB frames [T, H, W, 3], a severity in 0..1, a numpy
``Generator``, the frame rate and the mouth poses [T, 4] (cx, cy, side, angle; from the
detector on the clean video, :func:`mouth_track`) and returns a :class:`FaceDegraded`:
the frames (None for ``missing``: no video track at all), which frames were touched, and
for ``occlusion`` the pixel box of the object drawn in each run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import ReaviseError
from ..registry import Registry
from .degrade import VisualCondition, _run_bounds, parse_condition, runs_mask

log = logging.getLogger(__name__)

FACE_DEGRADATIONS = Registry("face-video condition")
_register = FACE_DEGRADATIONS.register

#: Severity used when a condition is named without one (``--visual blur``).
DEFAULT_SEVERITY = {"clean": 0.0, "occlusion": 0.5, "blur": 0.5, "dropped": 0.3, "missing": 1.0}
#: Gaussian blur sigma at severity 1, as a fraction of the frame height (GRID 288 px: 8.6 px;
#: severity 0.5 blurs the mouth about as much as ``degrade.blur`` at 1 blurs the 67 px ROI).
MAX_BLUR_FRAC = 0.03
#: Object colours (RGB): three skin tones (a hand), a black microphone, a white and a red cup.
PALETTE = ((224, 172, 140), (198, 134, 86), (141, 85, 56), (38, 38, 44), (232, 230, 222), (178, 34, 44))


@dataclass
class FaceDegraded:
    """A degraded face video: frames (None: no video), frames touched, object boxes."""

    frames: np.ndarray | None
    affected: np.ndarray  # bool [T]: frames the degradation changed (all True for missing)
    boxes: list[tuple[int, int, int, int, int, int]] = field(default_factory=list)
    # (start, stop, x0, y0, x1, y1) per occlusion run: the object lies inside x0:x1, y0:y1


def parse_face_visual(spec: str) -> VisualCondition:
    """Parse ``name`` or ``name:severity`` (``occlusion:0.7``) into a face-video condition."""
    return parse_condition(spec, FACE_DEGRADATIONS, DEFAULT_SEVERITY, "face-video condition", "--visual",
                           lead="--visual: ")  # fmt: skip


def mouth_track(frames: np.ndarray, warn: Callable[[str], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mouth poses [T, 4] for drawing on ``frames`` and the detector's validity [T].

    The project's detector + tracker (:func:`reavise.video.mouth_poses`) on the clean video;
    frames it missed take the poses interpolated from the frames it found. No face in any
    frame: the lower middle of the frame (mouth side a fifth of the width), said through
    ``warn``.
    """
    from .. import video as V

    poses, valid = V.mouth_poses(frames)
    t, h, w = frames.shape[:3]
    if not valid.any():
        if warn is not None:
            warn("no face found in the clean video: the object is drawn at the frame's lower middle")
        return np.tile([w / 2, 0.72 * h, 0.2 * w, 0.0], (t, 1)), valid
    idx = np.flatnonzero(valid)
    out = np.stack([np.interp(np.arange(t), idx, poses[idx, j]) for j in range(4)], axis=1)
    return out, valid


def degrade_face_video(
    frames: np.ndarray,
    cond: VisualCondition | str,
    mouth: np.ndarray,
    rng: np.random.Generator | int | None = None,
    fps: float = 25.0,
) -> FaceDegraded:
    """Apply a named face-video degradation (see the module docstring)."""
    cond = parse_face_visual(cond) if isinstance(cond, str) else cond
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) < 1:
        raise ReaviseError(f"face video must be uint8 [T, H, W, 3] with T >= 1, got {frames.dtype} {frames.shape}")
    mouth = np.asarray(mouth, dtype=np.float64)
    if mouth.shape != (len(frames), 4):
        raise ReaviseError(f"mouth poses must be [T, 4] = [{len(frames)}, 4], got {list(mouth.shape)}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    fn = FACE_DEGRADATIONS.get(cond.name)
    return fn(frames, float(cond.severity), rng, fps=fps, mouth=mouth)


@_register("clean")
def _clean(frames: np.ndarray, severity: float, rng: np.random.Generator, **_) -> FaceDegraded:
    """The video as it is."""
    return FaceDegraded(frames.copy(), np.zeros(len(frames), dtype=bool))


def _object(side: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """An opaque object (RGB float image, alpha) for a mouth ``side`` px wide: a hand (skin
    colour, finger bands), a microphone or a cup (flat colour, shading), with smooth texture.

    The object is an ellipse 1.4-1.8 mouth sides wide and 0.9-1.2 high: it hides the lips
    and the chin corners, as a hand or a cup in front of the mouth does. Alpha is 1 inside
    with a 1.5 px soft rim, 0 outside the ellipse's bounding box.
    """
    from scipy.ndimage import gaussian_filter

    ow, oh = side * rng.uniform(1.4, 1.8), side * rng.uniform(0.9, 1.2)
    w, h = int(np.ceil(ow)) + 4, int(np.ceil(oh)) + 4
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    u, v = (xx - (w - 1) / 2) / (ow / 2), (yy - (h - 1) / 2) / (oh / 2)
    r = np.sqrt(u**2 + v**2)
    alpha = np.clip((1.0 - r) * min(ow, oh) / 3.0 + 0.5, 0.0, 1.0)
    k = int(rng.integers(0, len(PALETTE)))
    base = np.array(PALETTE[k], dtype=np.float64)
    shade = 1.0 - 0.18 * np.clip(u * 0.6 + v * 0.8, -1, 1)  # light from the top left
    tex = gaussian_filter(rng.standard_normal((h, w)), max(1.0, side / 30))
    tex = 10.0 * tex / (tex.std() + 1e-8)
    img = base[None, None, :] * shade[..., None] + tex[..., None]
    if k < 3:  # a hand: four finger bands across
        period = ow / rng.uniform(3.5, 4.5)
        img += (14.0 * np.sin(2 * np.pi * xx / period + rng.uniform(0, 2 * np.pi)))[..., None]
    return np.clip(img, 0, 255), alpha


@_register("occlusion")
def _occlusion(
    frames: np.ndarray, severity: float, rng: np.random.Generator, fps: float = 25.0, mouth=None, **_
) -> FaceDegraded:
    """An opaque object over the mouth in a fraction ``severity`` of frames, in runs of 0.2-1 s.

    Each run draws a new object and holds it still at the run's median mouth position
    (jittered by up to a tenth of the mouth side), as a hand or a cup held in front of the
    mouth; pixels outside the object's box are untouched.
    """
    t, hgt, wid = frames.shape[:3]
    mask = runs_mask(t, severity, rng, max(1, round(0.2 * fps)), max(1, round(1.0 * fps)))
    out = frames.copy()
    boxes = []
    for start, stop in _run_bounds(mask):
        cx, cy, side = np.median(mouth[start:stop, :3], axis=0)
        side = max(side, 8.0)
        img, alpha = _object(side, rng)
        cx += rng.uniform(-0.1, 0.1) * side
        cy += rng.uniform(-0.1, 0.1) * side
        h, w = alpha.shape
        x0, y0 = int(round(cx - w / 2)), int(round(cy - h / 2))
        xa, ya, xb, yb = max(0, x0), max(0, y0), min(wid, x0 + w), min(hgt, y0 + h)
        if xb <= xa or yb <= ya:
            continue  # the mouth is outside the frame
        a = alpha[ya - y0 : yb - y0, xa - x0 : xb - x0, None]
        o = img[ya - y0 : yb - y0, xa - x0 : xb - x0]
        region = out[start:stop, ya:yb, xa:xb].astype(np.float64)
        out[start:stop, ya:yb, xa:xb] = np.round(region * (1 - a) + o * a).astype(np.uint8)
        boxes.append((start, stop, xa, ya, xb, yb))
    return FaceDegraded(out, mask, boxes)


@_register("blur")
def _blur(frames: np.ndarray, severity: float, rng: np.random.Generator, **_) -> FaceDegraded:
    """Gaussian blur of every whole frame, sigma = severity * MAX_BLUR_FRAC * frame height."""
    import cv2

    sigma = severity * MAX_BLUR_FRAC * frames.shape[1]
    if sigma <= 0:
        return FaceDegraded(frames.copy(), np.zeros(len(frames), dtype=bool))
    out = np.stack([cv2.GaussianBlur(f, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE) for f in frames])
    return FaceDegraded(out, np.ones(len(frames), dtype=bool))


@_register("dropped")
def _dropped(
    frames: np.ndarray, severity: float, rng: np.random.Generator, fps: float = 25.0, mode: str = "mixed", **_
) -> FaceDegraded:
    """A fraction ``severity`` of frames lost in runs of 1 frame to 1/3 s: each run either
    repeats the frame before it (a stalled stream; frame 0 at the start) or is black.

    ``mode`` ``freeze`` / ``blank`` forces one kind; ``mixed`` draws one per run. The frame
    count and timing stay, so the audio stays in sync.
    """
    if mode not in ("mixed", "freeze", "blank"):
        raise ReaviseError(f"dropped mode must be mixed, freeze or blank, got {mode!r}")
    mask = runs_mask(len(frames), severity, rng, 1, max(1, round(fps / 3)))
    out = frames.copy()
    for start, stop in _run_bounds(mask):
        freeze = mode == "freeze" or (mode == "mixed" and rng.random() < 0.5)
        out[start:stop] = frames[max(start - 1, 0)] if freeze else 0
    return FaceDegraded(out, mask)


@_register("missing")
def _missing(frames: np.ndarray, severity: float, rng: np.random.Generator, **_) -> FaceDegraded:
    """No video track: the input is the noisy audio alone."""
    return FaceDegraded(None, np.ones(len(frames), dtype=bool))
