"""Noise bank for test mixtures: synthetic noises from a seed, babble, and real recordings.

Every generator is registered by name and called through
``make_noise(kind, n_samples, rng, **ctx)``; it returns float32 [n_samples] at 16 kHz with
RMS ``NOISE_RMS`` (the level is irrelevant for mixing, which rescales to the SNR). The same
``Generator`` state gives the same samples. Coloured noises are band-limited to >= 20 Hz so
that an SNR measures audible energy and does not depend on the utterance length (a 1/f^2
spectrum otherwise puts most of its energy in the lowest, sub-audio FFT bins).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from scipy.signal import butter, sosfilt, welch

from ..audio import SAMPLE_RATE, load_audio
from ..errors import InputError, ReaviseError
from ..registry import Registry

NOISE_RMS = 0.1
#: Lower band edge of the coloured noises (Hz).
F_LOW = 20.0
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff", ".au", ".opus")

NoiseFn = Callable[..., np.ndarray]
NOISE_TYPES = Registry("noise type")

# Long-term average speech spectrum, 1/3-octave band levels in dB SPL (male+female average,
# 70 dB overall), approximately as tabulated by Byrne et al. (1994), "An international
# comparison of long-term average speech spectra", JASA 96(4):2108-2120. Used only when no
# speech is given to measure the LTASS from; shape (not absolute level) is what matters.
BYRNE_LTASS_HZ = np.array(
    [63, 80, 100, 125, 160, 200, 250, 315, 400, 500, 630, 800, 1000, 1250, 1600, 2000, 2500,
     3150, 4000, 5000, 6300, 8000], dtype=np.float64)  # fmt: skip
BYRNE_LTASS_DB = np.array(
    [38.6, 43.5, 54.4, 57.7, 56.8, 58.2, 59.7, 60.0, 62.4, 62.6, 59.8, 53.5, 52.6, 53.0, 51.0,
     48.8, 47.6, 46.9, 47.0, 44.8, 43.2, 42.5], dtype=np.float64)  # fmt: skip


def register_noise(name: str) -> Callable[[NoiseFn], NoiseFn]:
    """Decorator adding a generator ``fn(n_samples, rng, **ctx)`` to the registry."""
    return NOISE_TYPES.register(name)


def known_noises() -> list[str]:
    """Names of the registered noise types."""
    return NOISE_TYPES.names()


def check_noise_type(kind: str) -> None:
    """Raise a one-line ReaviseError for an unknown noise type, listing the known ones."""
    if kind not in NOISE_TYPES:
        raise ReaviseError(f"unknown noise type {kind!r} (known: {', '.join(known_noises())})")


def make_noise(
    kind: str, n_samples: int, rng: np.random.Generator | int | None = None, **ctx
) -> np.ndarray:
    """Generate ``n_samples`` of noise ``kind`` (float32, RMS ``NOISE_RMS``) from ``rng``.

    ``ctx`` carries what some types need: ``sources`` (babble utterances), ``ltass`` or
    ``speech`` (speech-shaped), ``mains_hz`` (hum), ``noise_file``/``noise_files`` (file).
    """
    check_noise_type(kind)
    if int(n_samples) < 1:
        raise ReaviseError(f"noise {kind!r}: need at least 1 sample, got {n_samples}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    x = np.asarray(NOISE_TYPES.get(kind)(int(n_samples), rng, **ctx), dtype=np.float64)
    rms = float(np.sqrt(np.mean(x**2)))
    if not np.isfinite(rms) or rms == 0.0:
        raise ReaviseError(f"noise {kind!r}: generated signal is silent or not finite")
    return (x * (NOISE_RMS / rms)).astype(np.float32)


def shape_spectrum(
    white: np.ndarray, gain: Callable[[np.ndarray], np.ndarray], sr: int = SAMPLE_RATE
) -> np.ndarray:
    """Filter ``white`` in the frequency domain by amplitude response ``gain(f_hz)``.

    Multiplying the rFFT of white noise by |H(f)| gives a (circular) noise of PSD |H(f)|^2,
    exact at every bin, for any length.
    """
    n = len(white)
    spec = np.fft.rfft(white)
    f = np.fft.rfftfreq(n, 1.0 / sr)
    return np.fft.irfft(spec * gain(f), n)


def _coloured(
    n_samples: int, rng: np.random.Generator, gain: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """Shaped Gaussian noise; made at >= 1 s and cropped so that 20 Hz stays resolvable."""
    m = max(n_samples, SAMPLE_RATE)
    return shape_spectrum(rng.standard_normal(m), gain)[:n_samples]


def _power_law(alpha: float) -> Callable[[np.ndarray], np.ndarray]:
    """Amplitude response of a 1/f^alpha power spectrum, zero below F_LOW (and at DC)."""

    def gain(f: np.ndarray) -> np.ndarray:
        g = np.zeros_like(f)
        band = f >= F_LOW
        g[band] = f[band] ** (-alpha / 2.0)  # power ~ f^-alpha => amplitude ~ f^(-alpha/2)
        return g

    return gain


@register_noise("white")
def white_noise(n_samples: int, rng: np.random.Generator, **_) -> np.ndarray:
    """Gaussian white noise (flat spectrum)."""
    return rng.standard_normal(n_samples)


@register_noise("pink")
def pink_noise(n_samples: int, rng: np.random.Generator, **_) -> np.ndarray:
    """Pink noise: power ~ 1/f, i.e. -3 dB/octave (-10 dB/decade), above 20 Hz."""
    return _coloured(n_samples, rng, _power_law(1.0))


@register_noise("brown")
def brown_noise(n_samples: int, rng: np.random.Generator, **_) -> np.ndarray:
    """Brown(ian) noise: power ~ 1/f^2, i.e. -6 dB/octave (-20 dB/decade), above 20 Hz."""
    return _coloured(n_samples, rng, _power_law(2.0))


def compute_ltass(
    signals: Sequence[np.ndarray], sr: int = SAMPLE_RATE, nperseg: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Long-term average speech spectrum (frequencies Hz, PSD) of ``signals``.

    Welch PSD of each signal (Hann, 50 % overlap), averaged with weights proportional to
    the number of samples, i.e. the PSD of the concatenation without seams.
    """
    if len(signals) == 0:
        raise ReaviseError("LTASS: no speech signals given")
    total, acc, freqs = 0, None, None
    for s in signals:
        s = np.asarray(s, dtype=np.float64).reshape(-1)
        if len(s) < nperseg:
            continue
        freqs, p = welch(s, fs=sr, nperseg=nperseg)
        acc = p * len(s) if acc is None else acc + p * len(s)
        total += len(s)
    if acc is None:
        raise ReaviseError(f"LTASS: every speech signal is shorter than {nperseg} samples")
    return freqs, acc / total


def byrne_ltass(f: np.ndarray) -> np.ndarray:
    """PSD (linear, arbitrary scale) of the Byrne et al. (1994) LTASS at frequencies ``f``.

    1/3-octave band levels are band powers; dividing by the bandwidth (0.2316 fc for a
    1/3 octave, 2^(1/6) - 2^(-1/6)) gives a spectral density. Interpolated in log-log,
    held constant outside 63 Hz-8 kHz.
    """
    density_db = BYRNE_LTASS_DB - 10 * np.log10(0.2316 * BYRNE_LTASS_HZ)
    lf = np.log10(np.clip(f, BYRNE_LTASS_HZ[0], BYRNE_LTASS_HZ[-1]))
    return 10 ** (np.interp(lf, np.log10(BYRNE_LTASS_HZ), density_db) / 10)


@register_noise("speech_shaped")
def speech_shaped_noise(
    n_samples: int,
    rng: np.random.Generator,
    ltass: tuple[np.ndarray, np.ndarray] | None = None,
    speech: Sequence[np.ndarray] | None = None,
    **_,
) -> np.ndarray:
    """Gaussian noise with the LTASS of ``speech`` (or a given ``ltass``), else Byrne's curve.

    Speech-shaped noise masks speech uniformly across frequency (the classic SSN masker).
    """
    if ltass is None and speech is not None:
        ltass = compute_ltass(speech)
    if ltass is not None:
        freqs, psd = (np.asarray(a, dtype=np.float64) for a in ltass)

        def gain(f: np.ndarray) -> np.ndarray:
            g = np.sqrt(np.maximum(np.interp(f, freqs, psd), 0.0))
            g[f < F_LOW] = 0.0
            return g

    else:

        def gain(f: np.ndarray) -> np.ndarray:
            g = np.sqrt(byrne_ltass(f))
            g[f < F_LOW] = 0.0
            return g

    return _coloured(n_samples, rng, gain)


def _loop_segment(x: np.ndarray, n_samples: int, start: int) -> np.ndarray:
    """``n_samples`` of ``x`` from ``start``, wrapping around (looping) when needed."""
    idx = (start + np.arange(n_samples)) % len(x)
    return x[idx]


@register_noise("babble")
def babble_noise(
    n_samples: int,
    rng: np.random.Generator,
    sources: Sequence[np.ndarray] | None = None,
    **_,
) -> np.ndarray:
    """Babble: the sum of several talkers' utterances, each at equal RMS from a random start.

    ``sources`` are utterances of held-out speakers (see :func:`select_babble`); shorter
    ones are looped. Equal levels make no single talker intelligible over the others.
    """
    if not sources:
        raise ReaviseError("babble noise needs 'sources' (utterances of other speakers)")
    out = np.zeros(n_samples, dtype=np.float64)
    for s in sources:
        s = np.asarray(s, dtype=np.float64).reshape(-1)
        rms = float(np.sqrt(np.mean(s**2)))
        if rms == 0.0:
            continue
        out += _loop_segment(s / rms, n_samples, int(rng.integers(0, len(s))))
    return out


def select_babble(
    pool: Sequence[dict],
    target_speaker: str,
    n_talkers: int,
    rng: np.random.Generator,
    min_duration: float = 0.5,
) -> list[dict]:
    """Pick ``n_talkers`` utterances of speakers other than ``target_speaker`` from ``pool``.

    ``pool`` rows need ``speaker`` and ``duration``; distinct speakers are preferred (one
    utterance per speaker, round-robin over speakers), falling back to several utterances of
    a speaker when there are fewer speakers than talkers.
    """
    others = [r for r in pool if r["speaker"] != target_speaker]
    if not others:
        raise ReaviseError(
            f"babble for speaker {target_speaker!r}: no utterance of another speaker in the "
            "held-out (test/val) splits"
        )
    long_enough = [r for r in others if float(r.get("duration", 0.0)) >= min_duration]
    if not long_enough:
        raise ReaviseError(
            f"babble for speaker {target_speaker!r}: every held-out utterance of another speaker "
            f"is shorter than {min_duration:g} s"
        )
    by_speaker: dict[str, list[dict]] = {}
    for r in sorted(long_enough, key=lambda r: str(r["id"])):
        by_speaker.setdefault(str(r["speaker"]), []).append(r)
    speakers = sorted(by_speaker)
    order = rng.permutation(len(speakers))
    queues = {s: [by_speaker[s][i] for i in rng.permutation(len(by_speaker[s]))] for s in speakers}
    chosen: list[dict] = []
    while len(chosen) < n_talkers and any(queues.values()):
        for i in order:
            q = queues[speakers[i]]
            if q and len(chosen) < n_talkers:
                chosen.append(q.pop())
    return chosen


@register_noise("modulated")
def modulated_noise(
    n_samples: int, rng: np.random.Generator, sr: int = SAMPLE_RATE, **_
) -> np.ndarray:
    """Pink noise with slow sinusoidal amplitude modulation (0.5-4 Hz, depth 0.5-0.9).

    Non-stationary noise: the level fluctuates at syllable-like rates, which stresses a
    noise model (NMF) that assumes a fixed spectral dictionary.
    """
    t = np.arange(n_samples) / sr
    fm, depth = rng.uniform(0.5, 4.0), rng.uniform(0.5, 0.9)
    env = 1.0 + depth * np.sin(2 * np.pi * fm * t + rng.uniform(0, 2 * np.pi))
    return pink_noise(n_samples, rng) * env


@register_noise("car")
def car_noise(n_samples: int, rng: np.random.Generator, sr: int = SAMPLE_RATE, **_) -> np.ndarray:
    """Car-like cabin noise: low-passed brown noise plus engine harmonics with slow modulation.

    Engine firing frequency f0 = rpm/60 * cylinders/2 (a 4-stroke 4-cylinder at 1500-3000
    rpm gives 50-100 Hz; we draw 30-90 Hz) with harmonics k f0 at level 1/k, a +-3 % slow rpm
    drift (0.05-0.2 Hz) and 0.1-0.5 Hz amplitude modulation (road/throttle changes).
    """
    t = np.arange(n_samples) / sr
    rumble = brown_noise(n_samples, rng)
    sos = butter(2, rng.uniform(150.0, 300.0), btype="low", fs=sr, output="sos")
    rumble = sosfilt(sos, rumble)
    rumble /= np.sqrt(np.mean(rumble**2)) + 1e-12
    f0 = rng.uniform(30.0, 90.0)
    drift = 1.0 + 0.03 * np.sin(2 * np.pi * rng.uniform(0.05, 0.2) * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(f0 * drift) / sr  # instantaneous phase of the fundamental
    engine = sum(np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 7))
    engine /= np.sqrt(np.mean(engine**2)) + 1e-12
    env = 1.0 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t + rng.uniform(0, 2 * np.pi))
    return (rumble + 0.5 * engine) * env


@register_noise("hum")
def hum_noise(
    n_samples: int,
    rng: np.random.Generator,
    mains_hz: float | None = None,
    sr: int = SAMPLE_RATE,
    **_,
) -> np.ndarray:
    """Mains hum: ``mains_hz`` (50 or 60, drawn if None) and 9 harmonics at 1/k, plus broadband.

    The broadband part is white noise 30 dB below the tonal part (electrical hiss).
    """
    f0 = float(mains_hz) if mains_hz is not None else float(rng.choice([50.0, 60.0]))
    t = np.arange(n_samples) / sr
    tones = sum(
        np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k
        for k in range(1, 11)
        if k * f0 < sr / 2
    )
    tones /= np.sqrt(np.mean(tones**2)) + 1e-12
    return tones + 10 ** (-30 / 20) * rng.standard_normal(n_samples)


class NoiseFolder:
    """A folder of real noise recordings; segments are random and looped when too short."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_dir():
            raise InputError(f"{self.path}: noise folder does not exist or is not a directory")
        self.files = sorted(
            p for p in self.path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
        )
        if not self.files:
            exts = ", ".join(AUDIO_EXTENSIONS)
            raise InputError(f"{self.path}: noise folder has no audio files ({exts})")

    def choose(self, rng: np.random.Generator) -> Path:
        """Pick one recording."""
        return self.files[int(rng.integers(0, len(self.files)))]


@functools.lru_cache(maxsize=32)
def _load_noise_file(path: str) -> np.ndarray:
    """Read (and cache) a noise recording as float32 mono 16 kHz."""
    x = load_audio(path)
    x.setflags(write=False)
    return x


@register_noise("file")
def file_noise(
    n_samples: int,
    rng: np.random.Generator,
    noise_file: str | os.PathLike | None = None,
    noise_files: Sequence[str | os.PathLike] | None = None,
    **_,
) -> np.ndarray:
    """A random segment of a real recording (``noise_file``, or one drawn from ``noise_files``)."""
    if noise_file is None:
        if not noise_files:
            raise ReaviseError("noise type 'file' needs a noise folder (--noise-dir)")
        noise_file = noise_files[int(rng.integers(0, len(noise_files)))]
    x = _load_noise_file(str(noise_file))
    return _loop_segment(x, n_samples, int(rng.integers(0, len(x))))
