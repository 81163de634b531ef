"""Audio-only reference enhancers to compare the VAE methods against.

Every baseline has the signature ``fn(noisy, sr, clean=None, seed=0) -> enhanced`` (float32,
same length as ``noisy``) and is listed in :data:`BASELINES`:

* ``noisy`` - identity (the "do nothing" row of a results table);
* ``oracle_wiener`` - Wiener gain from the true clean and noise power spectrograms: an upper
  bound for any single-channel real-valued mask in the reavise STFT; needs ``clean``;
* ``spectral_subtraction`` - power spectral subtraction (Boll 1979) with over-subtraction and a
  spectral floor (Berouti et al. 1979);
* ``mmse_lsa`` - Ephraim & Malah (1985) MMSE log-spectral amplitude estimator with the
  decision-directed a-priori SNR (Ephraim & Malah 1984);
* ``noisereduce`` - spectral gating from the ``noisereduce`` package (optional extra);
* ``rnnoise`` - the RNNoise recurrent network (Valin 2018) via ``pyrnnoise`` (optional extra;
  its weights are compiled into the bundled ``librnnoise`` so it runs offline; 48 kHz only).

The STFT-domain methods use the reavise STFT (``reavise.audio.stft``: 16 kHz, sine window 1024,
hop 256); inputs at other rates are resampled to 16 kHz and back.
"""

from __future__ import annotations

import ctypes
import functools
import math
from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch
from scipy.ndimage import minimum_filter1d
from scipy.special import exp1

from .audio import DEFAULT_STFT, SAMPLE_RATE, istft, resample, stft
from .errors import InputError, ReaviseError
from .registry import Registry

_EPS = 1e-12


class EnhanceFn(Protocol):
    """The one signature every baseline follows."""

    def __call__(
        self, noisy: np.ndarray, sr: int, clean: np.ndarray | None = None, seed: int = 0
    ) -> np.ndarray: ...


# --------------------------------------------------------------------------- helpers


def _check(x: np.ndarray, name: str, min_len: int = DEFAULT_STFT.n_fft) -> np.ndarray:
    """Float64 mono copy with clear errors for wrong shape, non-finite values or tiny input."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 2 and 1 in a.shape:
        a = a.reshape(-1)
    if a.ndim != 1:
        raise InputError(f"{name}: expected a mono 1-D signal, got shape {tuple(a.shape)}")
    if not np.all(np.isfinite(a)):
        raise InputError(f"{name}: signal contains NaN or infinite samples")
    if a.size < min_len:
        raise InputError(f"{name}: too short ({a.size} samples; need at least {min_len})")
    return a


def _spec(x: np.ndarray) -> np.ndarray:
    """Complex reavise STFT [frames, bins] of a 16 kHz signal (computed in float64)."""
    return stft(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))).numpy()


def _ispec(X: np.ndarray, length: int) -> np.ndarray:
    """Inverse of :func:`_spec`, cut/padded to ``length`` samples."""
    return istft(torch.from_numpy(X), length=length).numpy()


def _at_16k(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """Run an STFT-domain baseline at 16 kHz: resample in and out, keep the input length."""

    @functools.wraps(fn)
    def wrapper(
        noisy: np.ndarray, sr: int, clean: np.ndarray | None = None, seed: int = 0, **kw
    ) -> np.ndarray:
        y = _check(noisy, "noisy", min_len=max(16, DEFAULT_STFT.n_fft * sr // SAMPLE_RATE))
        c = None if clean is None else _check(clean, "clean", min_len=1)
        if sr != SAMPLE_RATE:
            y = resample(y, sr, SAMPLE_RATE).astype(np.float64)
            c = None if c is None else resample(c, sr, SAMPLE_RATE).astype(np.float64)
        out = fn(y, SAMPLE_RATE, c, seed, **kw)
        if sr != SAMPLE_RATE:
            out = resample(out, SAMPLE_RATE, sr)
        return _fit_length(out, len(noisy))

    return wrapper


def _fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """Float32 copy of ``x`` trimmed or zero-padded to exactly ``n`` samples."""
    x = np.asarray(x, dtype=np.float32).reshape(-1)
    if len(x) >= n:
        return np.ascontiguousarray(x[:n])
    return np.pad(x, (0, n - len(x)))


# --------------------------------------------------------------------------- noise PSD


def noise_psd_min_stats(
    power: np.ndarray,
    window_s: float = 1.5,
    smoothing: float = 0.85,
    bias: float = 2.3,
    frames_per_second: float = DEFAULT_STFT.frames_per_second,
) -> np.ndarray:
    """Time-varying noise PSD [frames, bins] by minimum statistics (simplified Martin 2001).

    The periodogram is smoothed recursively, ``S(l) = a S(l-1) + (1-a) |Y(l)|^2``; in every
    bin the noise level is the minimum of ``S`` over a ``window_s`` window (centred, since we
    process offline) times ``bias``, which compensates for the minimum of a smoothed chi-square
    variable lying below its mean (Martin's B(D, Q_eq)); 2.3 makes the estimate unbiased
    for stationary white noise with these settings (measured).
    """
    s = np.empty_like(power)
    acc = power[: max(1, int(round(0.1 * frames_per_second)))].mean(axis=0)  # warm start
    for t in range(power.shape[0]):
        acc = smoothing * acc + (1.0 - smoothing) * power[t]
        s[t] = acc
    width = max(3, int(round(window_s * frames_per_second)))
    return bias * minimum_filter1d(s, size=width, axis=0, mode="nearest") + _EPS


def noise_psd_lowest_frames(
    power: np.ndarray, fraction: float = 0.1, min_frames: int = 5
) -> np.ndarray:
    """Stationary noise PSD [1, bins]: mean periodogram of the lowest-energy ``fraction`` of frames.

    The quietest frames of an utterance are (mostly) speech pauses, so their average power
    spectrum estimates a stationary noise; it underestimates noise that is never alone.
    """
    energy = power.sum(axis=1)
    k = min(power.shape[0], max(min_frames, int(math.ceil(fraction * power.shape[0]))))
    idx = np.argsort(energy)[:k]
    return power[idx].mean(axis=0, keepdims=True) + _EPS


def noise_psd_first_frames(power: np.ndarray, seconds: float = 0.25) -> np.ndarray:
    """Stationary noise PSD [1, bins] from the first ``seconds`` (assumed speech-free)."""
    k = max(1, min(power.shape[0], int(round(seconds * DEFAULT_STFT.frames_per_second))))
    return power[:k].mean(axis=0, keepdims=True) + _EPS


#: name -> ``fn(power [frames, bins]) -> noise PSD [1, bins]``
NOISE_ESTIMATORS = Registry("noise estimator")
NOISE_ESTIMATORS.add("min_stats", noise_psd_min_stats)
NOISE_ESTIMATORS.add("lowest_frames", noise_psd_lowest_frames)
NOISE_ESTIMATORS.add("first_frames", noise_psd_first_frames)


def estimate_noise_psd(power: np.ndarray, method: str = "min_stats") -> np.ndarray:
    """Noise PSD by name (``min_stats``, ``lowest_frames``, ``first_frames``); broadcastable."""
    return NOISE_ESTIMATORS.get(method)(power)


# --------------------------------------------------------------------------- baselines


def identity(
    noisy: np.ndarray, sr: int, clean: np.ndarray | None = None, seed: int = 0
) -> np.ndarray:
    """The noisy input unchanged (float32 copy): the 'no processing' reference row."""
    return _check(noisy, "noisy", min_len=1).astype(np.float32)


@_at_16k
def oracle_wiener(
    noisy: np.ndarray, sr: int, clean: np.ndarray | None = None, seed: int = 0
) -> np.ndarray:
    """Oracle Wiener filter ``G = |S|^2 / (|S|^2 + |N|^2)`` from the true clean and noise.

    ``N = noisy - clean`` is the true additive noise; this is the best real gain per bin in
    the power sense, an upper bound for mask-based methods (it needs ``clean``).
    """
    if clean is None:
        raise ReaviseError("baseline 'oracle_wiener' needs the clean reference (clean=...)")
    n = len(noisy)
    if abs(len(clean) - n) > DEFAULT_STFT.hop:
        raise InputError(f"oracle_wiener: clean has {len(clean)} samples but noisy has {n}")
    c = np.zeros(n)
    c[: min(n, len(clean))] = clean[:n]
    Y = _spec(noisy)
    S2 = np.abs(_spec(c)) ** 2
    N2 = np.abs(_spec(noisy - c)) ** 2
    gain = S2 / (S2 + N2 + _EPS)
    return _ispec(gain * Y, n)


@_at_16k
def spectral_subtraction(
    noisy: np.ndarray,
    sr: int,
    clean: np.ndarray | None = None,
    seed: int = 0,
    over_subtraction: float = 2.0,
    floor: float = 0.02,
    noise: str = "min_stats",
) -> np.ndarray:
    """Power spectral subtraction (Boll 1979) with over-subtraction and a floor (Berouti 1979).

    ``|S|^2 = max(|Y|^2 - a N, b |Y|^2)`` with noise PSD ``N`` (minimum statistics by
    default), i.e. the gain ``G = sqrt(max(1 - a N / |Y|^2, b))`` applied to the noisy STFT
    (noisy phase kept). ``a > 1`` removes more of the noise peaks; the floor ``b`` limits the
    "musical noise" of isolated surviving peaks.
    """
    Y = _spec(noisy)
    P = np.abs(Y) ** 2
    N = estimate_noise_psd(P, noise)
    gain2 = np.maximum(1.0 - over_subtraction * N / (P + _EPS), floor)
    return _ispec(np.sqrt(gain2) * Y, len(noisy))


def lsa_gain(xi: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """Ephraim & Malah (1985) eq. (20): ``G = xi/(1+xi) exp(E1(v)/2)``, ``v = xi/(1+xi) gamma``.

    ``xi`` is the a-priori SNR, ``gamma`` the a-posteriori SNR, ``E1`` the exponential
    integral; the estimator minimises E[(log A - log Â)^2].
    """
    ratio = xi / (1.0 + xi)
    v = np.maximum(ratio * gamma, 1e-10)
    # exp(0.5 E1(v)) overflows only for v -> 0, where E1(v) ~ -log(v); clip keeps it finite
    return ratio * np.exp(0.5 * np.minimum(exp1(v), 50.0))


@_at_16k
def mmse_lsa(
    noisy: np.ndarray,
    sr: int,
    clean: np.ndarray | None = None,
    seed: int = 0,
    alpha: float = 0.98,
    xi_min_db: float = -25.0,
    noise: str = "min_stats",
) -> np.ndarray:
    """MMSE log-spectral amplitude estimator (Ephraim & Malah 1985) with decision-directed SNR.

    Per frame ``l`` and bin: a-posteriori SNR ``gamma = |Y|^2 / N`` and the decision-directed
    a-priori SNR (Ephraim & Malah 1984, eq. 51)
    ``xi(l) = alpha |Â(l-1)|^2 / N(l-1) + (1 - alpha) max(gamma(l) - 1, 0)``, floored at
    ``xi_min`` (Cappé 1994: the floor sets the residual-noise level and hides musical noise);
    the amplitude gain is :func:`lsa_gain` (eq. 20) and the noisy phase is kept.
    """
    Y = _spec(noisy)
    P = np.abs(Y) ** 2
    N = np.broadcast_to(estimate_noise_psd(P, noise), P.shape)
    gamma = P / N
    xi_min = 10.0 ** (xi_min_db / 10.0)
    gain = np.empty_like(P)
    prev_a2 = np.zeros(P.shape[1])  # |Â(l-1)|^2 / N(l-1), the previous clean-SNR estimate
    for t in range(P.shape[0]):
        ml = np.maximum(gamma[t] - 1.0, 0.0)  # maximum-likelihood SNR estimate
        xi = ml if t == 0 else alpha * prev_a2 + (1.0 - alpha) * ml
        xi = np.maximum(xi, xi_min)
        gain[t] = lsa_gain(xi, gamma[t])
        prev_a2 = gain[t] ** 2 * gamma[t]
    return _ispec(gain * Y, len(noisy))


def _optional(module: str, baseline: str, package: str):
    """Import an optional dependency or raise a ReaviseError naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except (ImportError, OSError) as exc:
        raise ReaviseError(
            f"baseline '{baseline}' needs the optional package '{package}' "
            f"({type(exc).__name__}: {exc}); install it with: pip install reavise[baselines]"
        ) from None


def noisereduce_baseline(
    noisy: np.ndarray, sr: int, clean: np.ndarray | None = None, seed: int = 0
) -> np.ndarray:
    """Non-stationary spectral gating from the ``noisereduce`` package (Sainburg 2020)."""
    nr = _optional("noisereduce", "noisereduce", "noisereduce")
    y = _check(noisy, "noisy")
    out = nr.reduce_noise(y=y.astype(np.float32), sr=sr, stationary=False, n_jobs=1)
    return _fit_length(out, len(y))


#: RNNoise's algorithmic delay at 48 kHz: two 480-sample frames (window overlap + pitch
#: look-ahead). Measured by cross-correlating input and output speech; removed from the output.
RNNOISE_DELAY_48K = 960


def rnnoise_baseline(
    noisy: np.ndarray, sr: int, clean: np.ndarray | None = None, seed: int = 0
) -> np.ndarray:
    """RNNoise (Valin 2018) through ``pyrnnoise``'s bundled C library; runs offline.

    RNNoise works on 10 ms frames (480 samples) at 48 kHz on int16-scaled floats, so the input
    is resampled to 48 kHz (soxr), processed frame by frame through the C API (the package's
    high-level ``RNNoise`` class needs file I/O via ``audiolab``), delay-compensated and
    resampled back.
    """
    rn = _optional("pyrnnoise.rnnoise", "rnnoise", "pyrnnoise")
    y = _check(noisy, "noisy", min_len=16)
    rate, frame = int(rn.SAMPLE_RATE), int(rn.FRAME_SIZE)
    x = resample(y.astype(np.float32), sr, rate).astype(np.float32) * 32768.0
    n = len(x)
    n_frames = int(math.ceil((n + RNNOISE_DELAY_48K) / frame))
    buf = np.zeros(n_frames * frame, dtype=np.float32)
    buf[:n] = x
    out = np.zeros_like(buf)
    state = rn.create()
    try:
        fin = np.empty(frame, dtype=np.float32)
        fout = np.empty(frame, dtype=np.float32)
        p_in = fin.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        p_out = fout.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        for i in range(n_frames):
            fin[:] = buf[i * frame : (i + 1) * frame]
            rn.lib.rnnoise_process_frame(state, p_out, p_in)
            out[i * frame : (i + 1) * frame] = fout
    finally:
        rn.destroy(state)
    enhanced = out[RNNOISE_DELAY_48K : RNNOISE_DELAY_48K + n] / 32768.0
    return _fit_length(resample(enhanced, rate, sr), len(y))


#: name -> :class:`EnhanceFn`
BASELINES = Registry("baseline")
BASELINES.add("noisy", identity)
BASELINES.add("oracle_wiener", oracle_wiener)
BASELINES.add("spectral_subtraction", spectral_subtraction)
BASELINES.add("mmse_lsa", mmse_lsa)
BASELINES.add("noisereduce", noisereduce_baseline)
BASELINES.add("rnnoise", rnnoise_baseline)
#: Baselines that need the clean reference (oracles: upper bounds, not real methods).
NEEDS_CLEAN: frozenset[str] = frozenset({"oracle_wiener"})
#: Baselines that need an optional package (``pip install reavise[baselines]``).
OPTIONAL: dict[str, str] = {"noisereduce": "noisereduce", "rnnoise": "pyrnnoise"}


def get_baseline(name: str) -> EnhanceFn:
    """The baseline called ``name``, or a ReaviseError listing the known ones."""
    return BASELINES.get(name)


def enhance(
    name: str, noisy: np.ndarray, sr: int, clean: np.ndarray | None = None, seed: int = 0
) -> np.ndarray:
    """Run baseline ``name`` on ``noisy``; a float32 signal of the same length comes back."""
    return get_baseline(name)(noisy, sr, clean=clean, seed=seed)
