"""Numpy renderer of 67x67 grayscale mouth-region images (the TCD-TIMIT ROI format).

A frame is drawn in mouth-centred coordinates (u right, v down, pixels) from five mouth
parameters (open, spread, round, teeth, tongue; see :mod:`reavise.data.visemes`): the lips are
the regions between an outer and an inner contour ``v = +-h * (1 - (u/W)^2)^p`` (an ellipse at
p = 1/2, flatter for p < 1/2), the mouth cavity lies between the inner contours and holds teeth
and tongue. Coverage is anti-aliased by a one-pixel linear ramp on the signed vertical distance.
All frames of an utterance are drawn at once ([T, 67, 67] arrays). A per-speaker
:class:`MouthStyle` fixes the face; per-frame nuisance (head motion, lighting drift, blur,
sensor noise) keeps a single pixel from giving the phoneme away.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.signal import lfilter

from ..lips import ROI_SIZE, VIDEO_FPS
from .visemes import segments_from_phonemes, trajectories


@dataclass(frozen=True)
class MouthStyle:
    """A speaker's visual identity (pixel units are for the 67x67 image)."""

    skin: float = 0.70  # skin brightness
    lip_contrast: float = 0.12  # skin minus lip brightness
    half_width: float = 25.0  # mouth half-width at rest
    cx: float = 33.0  # mouth centre (column)
    cy: float = 26.0  # lip line (row)
    upper_thick: float = 5.0  # upper-lip height at the centre
    lower_thick: float = 8.0  # lower-lip height at the centre
    bow: float = 1.0  # Cupid's-bow depth
    max_open: float = 14.0  # aperture at open = 1
    cavity: float = 0.15  # mouth-cavity brightness
    teeth: float = 0.82  # teeth brightness
    tongue: float = 0.42  # tongue brightness
    texture: float = 0.02  # skin texture amplitude
    texture_seed: int = 0
    chin_shade: float = 0.15  # darkening of the lower corners (face curvature)
    sulcus: float = 0.06  # shadow under the lower lip
    philtrum: float = 0.03  # groove above the upper lip
    blur: float = 0.18  # 3-tap blur side weight
    noise: float = 0.01  # sensor-noise std
    motion: float = 1.0  # head translation std (pixels)
    rotation: float = 0.03  # head rotation std (radians)
    light_drift: float = 0.03  # lighting gain/offset drift std
    open_gain: float = 1.0  # how wide this speaker opens (hypo/hyper-articulation)
    coart: float = 1.0  # dominance-rate scale (< 1: more coarticulation)

    def to_dict(self) -> dict:
        return asdict(self)


def random_style(rng: np.random.Generator) -> MouthStyle:
    """A plausible random speaker face (ranges cover the TCD-TIMIT speakers roughly)."""
    u = rng.uniform
    skin = u(0.6, 0.8)
    return MouthStyle(
        skin=skin,
        lip_contrast=u(0.06, 0.17),
        half_width=u(25.0, 31.5),
        cx=u(31.0, 35.0),
        cy=u(22.0, 29.0),
        upper_thick=u(6.0, 9.0),
        lower_thick=u(9.0, 13.5),
        bow=u(0.3, 1.8),
        max_open=u(13.0, 19.0),
        cavity=u(0.08, 0.22),
        teeth=u(0.68, 0.9),
        tongue=u(0.35, 0.5),
        texture=u(0.005, 0.015),
        texture_seed=int(rng.integers(2**31)),
        chin_shade=u(0.05, 0.22),
        sulcus=u(0.04, 0.12),
        philtrum=u(0.0, 0.05),
        blur=u(0.08, 0.25),
        noise=u(0.003, 0.012),
        motion=u(0.4, 1.5),
        rotation=u(0.01, 0.05),
        light_drift=u(0.01, 0.05),
        # x1.8 since corpus v4: openings now match the real TCD-TIMIT ROIs, and the wider
        # articulation measurably helped AV priors (SI-SDR with vs without video, -5 dB)
        open_gain=u(1.35, 2.05),
        coart=u(0.7, 1.3),
    )


def _smooth(
    rng: np.random.Generator, n: int, tau: float, shape: tuple[int, ...] = ()
) -> np.ndarray:
    """Unit-variance AR(1) noise ``x_t = a x_{t-1} + sqrt(1 - a^2) e_t``, a = exp(-1/tau)."""
    a = float(np.exp(-1.0 / max(tau, 1e-3)))
    e = rng.standard_normal((n, *shape))
    init = rng.standard_normal((1, *shape))  # y_{-1} ~ N(0, 1): start in the stationary law
    x, _ = lfilter([np.sqrt(1 - a * a)], [1.0, -a], e, axis=0, zi=a * init)
    return x


def _ramp(d: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage of a half-plane at signed distance ``d`` (pixels, > 0 inside)."""
    return np.clip(d + 0.5, 0.0, 1.0)


def _texture(style: MouthStyle, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Skin texture as a sum of random plane waves in face coordinates (moves with the head)."""
    rng = np.random.default_rng(style.texture_seed)
    k = 10
    freq = rng.uniform(0.8, 2.2, k)  # rad/pixel: pores and fine wrinkles
    ang = rng.uniform(0, np.pi, k)
    phase = rng.uniform(0, 2 * np.pi, k)
    amp = rng.uniform(0.5, 1.0, k)
    amp /= np.sqrt((amp**2).sum() / 2)
    out = np.zeros(np.broadcast_shapes(u.shape, v.shape), np.float32)
    for i in range(k):
        fx, fy = freq[i] * np.cos(ang[i]), freq[i] * np.sin(ang[i])
        out += amp[i] * np.cos(fx * u + fy * v + phase[i])
    # Broad blotches (uneven skin) at a lower frequency.
    out += 1.5 * np.cos(0.11 * u + 0.07 * v + phase[0]) * np.cos(0.09 * v - 0.05 * u + phase[1])
    return style.texture * out


def render_frames(
    params: np.ndarray, style: MouthStyle, rng: np.random.Generator, size: int = ROI_SIZE
) -> np.ndarray:
    """Mouth parameters [T, 5] (open, spread, round, teeth, tongue) -> frames [T, size, size] in 0..1."""
    params = np.asarray(params, dtype=np.float32)
    n = params.shape[0]
    s = size / ROI_SIZE  # geometry is specified for 67x67
    col = lambda a: np.asarray(a, np.float32).reshape(n, 1, 1)  # noqa: E731
    p_open = col(np.clip(params[:, 0] * style.open_gain, 0, 1.2))
    p_spread, p_round = col(params[:, 1]), col(params[:, 2])
    p_teeth, p_tongue = col(params[:, 3]), col(params[:, 4])

    # Head motion: smooth translation, rotation and scale (AR(1), ~0.5 s correlation).
    dx = col(style.motion * _smooth(rng, n, 15.0)) * s
    dy = col(style.motion * 0.7 * _smooth(rng, n, 15.0)) * s
    rot = col(style.rotation * _smooth(rng, n, 20.0))
    scl = col(1.0 + 0.02 * _smooth(rng, n, 25.0)) * s
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    X = x[None] - (style.cx * s + dx)
    Y = y[None] - (style.cy * s + dy)
    cr, sr = np.cos(rot), np.sin(rot)
    u = (cr * X + sr * Y) / scl  # face coordinates in 67x67 pixel units
    v = (-sr * X + cr * Y) / scl

    # --- geometry ------------------------------------------------------------------------
    W = style.half_width * (1.0 + 0.14 * (p_spread - 0.4) - 0.22 * p_round)
    Wi = W * (0.92 - 0.42 * p_round)  # inner opening narrows when rounded
    open_px = style.max_open * p_open
    hu, hl = 0.33 * open_px, 0.67 * open_px  # the jaw carries the lower lip
    p_in = 0.35 + 0.45 * p_round  # flat when spread, elliptic when rounded
    xo = np.clip(1.0 - (u / W) ** 2, 0.0, 1.0)
    xi = np.clip(1.0 - (u / Wi) ** 2, 0.0, 1.0)
    prof = xi**p_in
    yui = -hu * prof  # upper inner lip edge (v < 0 is up)
    yli = hl * prof  # lower inner lip edge
    tu = style.upper_thick * (1.0 + 0.35 * p_round - 0.15 * p_spread)
    tl = style.lower_thick * (1.0 + 0.25 * p_round - 0.15 * p_spread)
    au = np.abs(u) / W
    bow = style.bow * (np.exp(-(((au - 0.2) / 0.1) ** 2)) - 0.8 * np.exp(-((au / 0.08) ** 2)))
    yuo = yui - tu * xo**0.45 - bow * xo  # upper outer contour with Cupid's bow
    ylo = yli + tl * xo**0.6  # lower outer contour
    inside_x = _ramp(W - np.abs(u))

    # Outer lip borders are soft (vermilion border, ~2 px ramp); inner edges are sharp.
    up = _ramp((v - yuo) / 2.0) * _ramp(yui - v) * inside_x
    lo = _ramp(v - yli) * _ramp((ylo - v) / 2.0) * inside_x
    gap = yli - yui
    # Lips parted by less than ~1 px show only the dark seam, not the cavity.
    cav = _ramp(v - yui) * _ramp(yli - v) * _ramp(Wi - np.abs(u)) * np.clip(gap - 0.7, 0, 1)

    # --- skin ----------------------------------------------------------------------------
    img = np.full(u.shape, style.skin, np.float32)
    img += _texture(style, u, v)
    img -= style.philtrum * np.exp(-((u / 2.2) ** 2)) * _ramp(-(v + style.upper_thick + 1.5))
    img += (
        0.6
        * style.philtrum
        * np.exp(-(((np.abs(u) - 4.5) / 1.5) ** 2))
        * _ramp(-(v + style.upper_thick + 1))
    )
    lo_c = hl + style.lower_thick  # lower edge of the lower lip at the centre
    img -= style.sulcus * np.exp(-(((v - lo_c - 4.0) / 3.0) ** 2)) * np.exp(-((u / (0.6 * W)) ** 2))
    img += 0.03 * np.exp(-(((v - lo_c - 11.0) / 6.0) ** 2)) * np.exp(-((u / 12.0) ** 2))  # chin
    chin_u = np.clip((np.abs(u) - 12.0) / 22.0, 0, 1) ** 2
    chin_v = np.clip((v - lo_c) / 25.0, 0, 1)
    img -= style.chin_shade * chin_u * (0.4 + chin_v)
    img -= 0.04 * np.exp(-(((np.abs(u) - W - 4.0) / 3.0) ** 2)) * _ramp(3.0 - v)  # cheek folds
    img -= 0.03 * np.clip(-(v + 18.0) / 8.0, 0, 1)  # nose shadow at the top edge
    nose_v = v + style.upper_thick + 17.0  # tip of the nose / columella just above the ROI
    img += 0.05 * np.exp(-((u / 5.0) ** 2) - (np.clip(nose_v, 0, None) / 4.0) ** 2)

    # --- lips ----------------------------------------------------------------------------
    lip = style.skin - style.lip_contrast
    qu = np.clip((v - yuo) / np.maximum(yui - yuo, 0.5), 0, 1)  # 0 at the top, 1 at the seam
    tone_up = lip - 0.07 * qu**2 + 0.03 * (1 - qu)
    ql = np.clip((v - yli) / np.maximum(ylo - yli, 0.5), 0, 1)
    tone_lo = lip + 0.09 * np.sin(np.pi * ql) ** 2 * (1 - ql) - 0.05 * ql**3  # highlight, lower rim
    # Vertical lip wrinkles: a faint striation across the lips, fixed per speaker.
    striae = 0.5 * style.texture * np.cos(1.3 * u + 0.3 * np.sin(0.5 * u) + style.texture_seed % 7)
    tone_up = tone_up + striae
    tone_lo = tone_lo + 1.5 * striae
    img = img * (1 - up) + up * tone_up
    img = img * (1 - lo) + lo * tone_lo
    # The seam where the lips meet is a dark line, fading as the lips part.
    seam_v = 0.5 * (yui + yli)
    seam = np.exp(-(((v - seam_v) / 0.8) ** 2)) * inside_x * xo**0.3 * np.exp(-gap / 2.0)
    img -= (0.25 + 0.5 * style.lip_contrast) * seam

    # --- mouth cavity: dark inside, tongue, lower and upper teeth ---------------------------
    inner = np.clip(gap, 1e-3, None)
    depth = np.clip((v - yui) / inner, 0, 1)
    tone_cav = style.cavity * (0.7 + 0.5 * np.abs(u) / (Wi + 1e-3)) + 0.03 * depth
    tongue_top = yli - p_tongue * 0.45 * open_px - 0.1 * open_px
    tg = _ramp(v - tongue_top) * _ramp(0.55 * Wi - np.abs(u)) * (p_tongue + 0.3) / 1.3
    tone_cav = tone_cav * (1 - tg) + tg * style.tongue
    period = np.maximum(0.27 * W, 3.0)
    gaps = (0.5 + 0.5 * np.cos(2 * np.pi * u / period)) ** 6  # dark lines between teeth
    shade = 1.0 - 0.35 * (np.abs(u) / (Wi + 1e-3)) ** 2  # teeth darken toward the corners
    t_lo = _ramp(v - (yli - p_teeth * 0.3 * open_px - 0.5)) * np.clip(p_teeth * 1.2, 0, 0.9)
    tone_cav = tone_cav * (1 - t_lo) + t_lo * (style.teeth - 0.12) * shade * (1 - 0.25 * gaps)
    t_up_h = p_teeth * np.minimum(7.0, 0.55 * open_px + 2.0)
    t_up = _ramp(yui + t_up_h - v) * np.clip(p_teeth * 1.5, 0, 1)
    tone_cav = tone_cav * (1 - t_up) + t_up * style.teeth * shade * (1 - 0.25 * gaps)
    img = img * (1 - cav) + cav * tone_cav

    # --- camera: lighting drift (image coordinates), blur, sensor noise ----------------------
    gain = col(1.0 + style.light_drift * _smooth(rng, n, 30.0))
    offset = col(0.5 * style.light_drift * _smooth(rng, n, 30.0))
    grad = col(style.light_drift * _smooth(rng, n, 40.0))
    img = img * gain + offset + grad * (x[None] - size / 2) / size
    b = style.blur
    img = (1 - 2 * b) * img + b * (np.roll(img, 1, 1) + np.roll(img, -1, 1))
    img = (1 - 2 * b) * img + b * (np.roll(img, 1, 2) + np.roll(img, -1, 2))
    img += style.noise * rng.standard_normal(img.shape).astype(np.float32)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def mouth_params(
    phonemes: list[tuple[str, float, float]],
    n_frames: int,
    style: MouthStyle,
    fps: float = VIDEO_FPS,
) -> np.ndarray:
    """Coarticulated mouth parameters [n_frames, 5] at frame times ``k / fps``."""
    times = np.arange(n_frames) / fps
    # Silence before the first and after the last phoneme (lead-in, trailing frames).
    first = phonemes[0][1] if phonemes else n_frames / fps
    last = phonemes[-1][2] if phonemes else 0.0
    padded = [("_", 0.0, first), *phonemes, ("_", last, max(last, n_frames / fps) + 0.2)]
    segs = segments_from_phonemes([p for p in padded if p[2] > p[1]])
    return trajectories(segs, times, rate_scale=style.coart)


def render_lips(
    phoneme_timings: list[tuple[str, float, float]],
    duration: float,
    speaker_style: MouthStyle,
    rng: np.random.Generator,
    fps: float = VIDEO_FPS,
) -> np.ndarray:
    """Phonemes (symbol, start_s, end_s) -> lips frames [n, 67, 67] in 0..1, ``n = round(duration * fps)``."""
    n = n_video_frames(duration, fps)
    return render_frames(mouth_params(phoneme_timings, n, speaker_style, fps), speaker_style, rng)


def n_video_frames(duration: float, fps: float = VIDEO_FPS) -> int:
    """Frames for ``duration`` seconds: ``round(duration * fps)`` (at least 1); frame k shows time k/fps."""
    return max(1, int(round(duration * fps)))
