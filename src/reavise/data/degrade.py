"""Visual degradations of mouth-ROI videos for robustness tests (``reavise data mix --visual``).

Every degradation takes float32 frames [T, H, W] in 0..1, a severity in 0..1 and a numpy
``Generator``, and returns ``(frames, valid)``: degraded float32 frames in 0..1 with the same
frame count, and a bool [T] mask that is False on the frames a robust model should not trust
(occluded, dropped, padded). ``missing`` returns ``(None, all-False)``: no video at all, so
enhancement runs audio-only. Noise and blur leave the mask True: the mouth is still visible.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from ..errors import ReaviseError
from ..registry import Registry

#: Largest Gaussian pixel-noise sigma (severity 1), in 0..1 intensity units.
MAX_NOISE_SIGMA = 0.3
#: Largest Gaussian blur sigma (severity 1), in pixels of the 67x67 ROI.
MAX_BLUR_SIGMA = 4.0
#: Largest audio-video offset (severity 1), in milliseconds (video lags audio).
MAX_OFFSET_MS = 200.0

Degradation = Callable[..., tuple["np.ndarray | None", np.ndarray]]
VISUAL_DEGRADATIONS = Registry("visual condition")

#: Severity used when a condition is named without one (``--visual occlusion``).
DEFAULT_SEVERITY = {
    "clean": 0.0,
    "occlusion": 0.5,
    "pixel_noise": 0.5,
    "blur": 0.5,
    "dropped": 0.3,
    "offset": 0.5,
    "missing": 1.0,
}


_register = VISUAL_DEGRADATIONS.register


@dataclass(frozen=True)
class VisualCondition:
    """One visual test condition: a degradation name and its severity in 0..1."""

    name: str
    severity: float

    @property
    def label(self) -> str:
        """Filename-safe tag, e.g. ``clean``, ``missing``, ``occlusion0.3``."""
        if self.name in ("clean", "missing"):
            return self.name
        return f"{self.name}{self.severity:g}"

    @property
    def spec(self) -> str:
        """The command-line form, e.g. ``occlusion:0.3``."""
        if self.name in ("clean", "missing"):
            return self.name
        return f"{self.name}:{self.severity:g}"


def parse_visual(spec: str) -> VisualCondition:
    """Parse ``name`` or ``name:severity`` (e.g. ``occlusion:0.7``) into a condition."""
    return parse_condition(spec, VISUAL_DEGRADATIONS, DEFAULT_SEVERITY, "visual condition", "visual condition")


def parse_condition(spec: str, known: Registry, defaults: dict[str, float], kind: str, where: str,
                    lead: str = "") -> VisualCondition:  # fmt: skip
    """``name`` or ``name:severity`` into a condition of the registry ``known`` (``defaults``:
    the severity of a bare name); one-line errors name the ``kind`` of condition, start the
    severity ones with ``where`` and the unknown-name one with ``lead``."""
    name, _, sev = spec.strip().partition(":")
    name = name.strip()
    if name not in known:
        raise ReaviseError(f"{lead}unknown {kind} {name!r} in {spec!r} (known: {', '.join(known.names())})")
    if sev.strip() == "":
        return VisualCondition(name, defaults[name])
    try:
        severity = float(sev)
    except ValueError:
        raise ReaviseError(f"{where} {spec!r}: severity {sev!r} is not a number") from None
    if not 0.0 <= severity <= 1.0:
        raise ReaviseError(f"{where} {spec!r}: severity must be in 0..1, got {severity:g}")
    return VisualCondition(name, severity)


def degrade(
    frames: np.ndarray,
    kind: str | VisualCondition,
    severity: float | None = None,
    rng: np.random.Generator | int | None = None,
    fps: float = 30.0,
    **kwargs,
) -> tuple[np.ndarray | None, np.ndarray]:
    """Apply a named degradation; returns (frames float32 [T,H,W] in 0..1 or None, valid bool [T])."""
    if isinstance(kind, VisualCondition):
        name, sev = kind.name, kind.severity if severity is None else severity
    else:
        cond = parse_visual(kind)
        name, sev = cond.name, cond.severity if severity is None else severity
    if not 0.0 <= float(sev) <= 1.0:
        raise ReaviseError(f"visual condition {name!r}: severity must be in 0..1, got {sev:g}")
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 3 or frames.shape[0] < 1:
        raise ReaviseError(f"lips frames must be [T, H, W] with T >= 1, got {frames.shape}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    out, valid = VISUAL_DEGRADATIONS.get(name)(frames, float(sev), rng, fps=fps, **kwargs)
    if out is not None:
        out = np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)
    return out, np.asarray(valid, dtype=bool)


def runs_mask(
    n: int, fraction: float, rng: np.random.Generator, min_len: int, max_len: int
) -> np.ndarray:
    """Bool [n] with exactly round(fraction * n) True frames, grouped in contiguous runs.

    Run lengths are uniform in [min_len, max_len] (the last one trimmed to the total); the
    free frames are split into random gaps between runs (a uniform random composition), so
    occlusions/drop-outs look like real events lasting several frames, not scattered frames.
    """
    k = int(round(fraction * n))
    mask = np.zeros(n, dtype=bool)
    if k <= 0:
        return mask
    if k >= n:
        mask[:] = True
        return mask
    lengths: list[int] = []
    while sum(lengths) < k:
        lengths.append(int(rng.integers(min_len, max_len + 1)))
    lengths[-1] -= sum(lengths) - k
    lengths = [length for length in lengths if length > 0]
    free = n - k
    # Random composition of `free` into len(lengths) + 1 non-negative gaps.
    cuts = np.sort(rng.integers(0, free + 1, size=len(lengths)))
    gaps = np.diff(np.concatenate([[0], cuts, [free]]))
    pos = 0
    for gap, length in zip(gaps[:-1], lengths, strict=True):
        pos += int(gap)
        mask[pos : pos + length] = True
        pos += length
    return mask


def _run_bounds(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of every run of True in ``mask``."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist(), strict=True))


@_register("clean")
def _clean(frames: np.ndarray, severity: float, rng: np.random.Generator, **_) -> tuple:
    """No degradation (the reference condition)."""
    return frames.copy(), np.ones(len(frames), dtype=bool)


def _occluder(
    h: int, w: int, rng: np.random.Generator, textured: bool
) -> tuple[np.ndarray, np.ndarray]:
    """An occluding patch (image, alpha) covering most of the mouth region of an HxW ROI.

    The mouth ROI is mouth-centred, so a patch of ~60-80 % width and height around a jittered
    centre hides most of the lips. ``textured`` draws a hand-like patch: skin intensity,
    vertical finger bands (a raised sinusoid, ~4 fingers across) and smooth random texture;
    otherwise a solid patch of random grey level. Alpha has soft (2 px) edges.
    """
    ph = int(round(h * rng.uniform(0.6, 0.8)))
    pw = int(round(w * rng.uniform(0.6, 0.8)))
    cy = h / 2 + rng.uniform(-0.08, 0.08) * h
    cx = w / 2 + rng.uniform(-0.08, 0.08) * w
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # Signed distance to the rectangle edges (positive inside), softened into alpha.
    inside = np.minimum(ph / 2 - np.abs(yy - cy), pw / 2 - np.abs(xx - cx))
    alpha = np.clip(inside / 2.0 + 0.5, 0.0, 1.0)
    if textured:
        base = rng.uniform(0.45, 0.8)
        period = pw / rng.uniform(3.5, 4.5)
        fingers = 0.08 * np.sin(2 * np.pi * (xx - cx) / period + rng.uniform(0, 2 * np.pi))
        tex = gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), 2.0)
        tex = 0.05 * tex / (tex.std() + 1e-8)
        img = base + fingers + tex
    else:
        img = np.full((h, w), rng.uniform(0.0, 1.0), dtype=np.float32)
    return np.clip(img, 0.0, 1.0).astype(np.float32), alpha.astype(np.float32)


@_register("occlusion")
def _occlusion(
    frames: np.ndarray,
    severity: float,
    rng: np.random.Generator,
    fps: float = 30.0,
    patch: str = "mixed",
    **_,
) -> tuple:
    """A fraction ``severity`` of frames, in runs of 0.2-1 s, hidden by a hand-like or solid patch.

    ``patch`` is ``textured``, ``solid`` or ``mixed`` (each run draws one); occluded frames
    are marked invalid. The patch stays put within a run, as a hand in front of the mouth does.
    """
    if patch not in ("mixed", "textured", "solid"):
        raise ReaviseError(f"occlusion patch must be mixed, textured or solid, got {patch!r}")
    t, h, w = frames.shape
    mask = runs_mask(t, severity, rng, max(1, round(0.2 * fps)), max(1, round(1.0 * fps)))
    out = frames.copy()
    for start, stop in _run_bounds(mask):
        textured = patch == "textured" or (patch == "mixed" and rng.random() < 0.5)
        img, alpha = _occluder(h, w, rng, textured)
        out[start:stop] = out[start:stop] * (1 - alpha) + img * alpha
    return out, ~mask


@_register("pixel_noise")
def _pixel_noise(frames: np.ndarray, severity: float, rng: np.random.Generator, **_) -> tuple:
    """Additive Gaussian pixel noise, sigma = severity * MAX_NOISE_SIGMA, clipped to 0..1."""
    sigma = severity * MAX_NOISE_SIGMA
    out = frames + sigma * rng.standard_normal(frames.shape).astype(np.float32)
    return out, np.ones(len(frames), dtype=bool)


@_register("blur")
def _blur(frames: np.ndarray, severity: float, rng: np.random.Generator, **_) -> tuple:
    """Spatial Gaussian blur of each frame, sigma = severity * MAX_BLUR_SIGMA pixels."""
    sigma = severity * MAX_BLUR_SIGMA
    if sigma <= 0:
        return frames.copy(), np.ones(len(frames), dtype=bool)
    out = gaussian_filter(frames, sigma=(0.0, sigma, sigma), mode="nearest")
    return out, np.ones(len(frames), dtype=bool)


@_register("dropped")
def _dropped(
    frames: np.ndarray,
    severity: float,
    rng: np.random.Generator,
    fps: float = 30.0,
    mode: str = "mixed",
    **_,
) -> tuple:
    """A fraction ``severity`` of frames dropped in runs of 1-10 frames, marked invalid.

    ``mode``: ``freeze`` repeats the last frame before the run (a stalled camera/stream;
    a run at the very start repeats frame 0), ``blank`` makes them black (lost frames),
    ``mixed`` draws one of the two per run.
    """
    if mode not in ("mixed", "freeze", "blank"):
        raise ReaviseError(f"dropped mode must be mixed, freeze or blank, got {mode!r}")
    mask = runs_mask(len(frames), severity, rng, 1, max(1, round(fps / 3)))
    out = frames.copy()
    for start, stop in _run_bounds(mask):
        freeze = mode == "freeze" or (mode == "mixed" and rng.random() < 0.5)
        out[start:stop] = frames[max(start - 1, 0)] if freeze else 0.0
    return out, ~mask


def offset_frames(severity: float, fps: float, max_ms: float = MAX_OFFSET_MS) -> int:
    """Number of video frames the ``offset`` degradation shifts by (severity * max_ms)."""
    return int(round(severity * max_ms / 1000.0 * fps))


@_register("offset")
def _offset(
    frames: np.ndarray,
    severity: float,
    rng: np.random.Generator,
    fps: float = 30.0,
    max_ms: float = MAX_OFFSET_MS,
    **_,
) -> tuple:
    """Video lags the audio by severity * max_ms: frames move k later, the first k repeat frame 0.

    out[t] = frames[t - k] for t >= k; the k padded frames at the start are invalid.
    """
    t = len(frames)
    k = min(offset_frames(severity, fps, max_ms), t)
    out = np.empty_like(frames)
    out[k:] = frames[: t - k]
    out[:k] = frames[0]
    valid = np.ones(t, dtype=bool)
    valid[:k] = False
    return out, valid


@_register("missing")
def _missing(frames: np.ndarray, severity: float, rng: np.random.Generator, **_) -> tuple:
    """No video at all: frames None, mask all False (enhancement then runs audio-only)."""
    return None, np.zeros(len(frames), dtype=bool)
