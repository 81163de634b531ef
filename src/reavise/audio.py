"""Audio front-end: reading, mono/resampling, batched STFT/iSTFT, atomic WAV writing.

The STFT convention is the field's (Leglaive et al. 2018; Sadeghi et al. 2020): 16 kHz,
64 ms sine window (1024 samples), hop 256 (25 %), 513 frequency bins.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

from .errors import InputError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class STFTConfig:
    """STFT parameters; the defaults are the published AV-VAE/RVAE ones."""

    n_fft: int = 1024
    hop: int = 256
    sample_rate: int = SAMPLE_RATE

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate / self.hop


DEFAULT_STFT = STFTConfig()

_window_cache: dict[tuple[int, str, torch.dtype], torch.Tensor] = {}


def sine_window(n: int, device: torch.device | str = "cpu", dtype=torch.float32) -> torch.Tensor:
    """Sine window w[n] = sin(pi (n + 1/2) / N); its square sums to N/2 at 75 % overlap."""
    key = (n, str(device), dtype)
    if key not in _window_cache:
        k = torch.arange(n, dtype=torch.float64)
        _window_cache[key] = torch.sin(math.pi * (k + 0.5) / n).to(device=device, dtype=dtype)
    return _window_cache[key]


def stft(x: torch.Tensor, cfg: STFTConfig = DEFAULT_STFT) -> torch.Tensor:
    """Complex STFT of waveforms ``x`` [..., samples] -> [..., frames, bins] (time-major)."""
    shape = x.shape[:-1]
    flat = x.reshape(-1, x.shape[-1])
    win = sine_window(cfg.n_fft, x.device, x.dtype)
    X = torch.stft(flat, cfg.n_fft, cfg.hop, window=win, center=True, return_complex=True)
    X = X.transpose(-1, -2)  # [B, T, F]
    return X.reshape(*shape, X.shape[-2], X.shape[-1])


def istft(X: torch.Tensor, length: int | None = None, cfg: STFTConfig = DEFAULT_STFT) -> torch.Tensor:
    """Inverse of :func:`stft`: [..., frames, bins] -> [..., samples]."""
    shape = X.shape[:-2]
    flat = X.reshape(-1, X.shape[-2], X.shape[-1]).transpose(-1, -2)
    win = sine_window(cfg.n_fft, X.device, X.real.dtype)
    x = torch.istft(flat, cfg.n_fft, cfg.hop, window=win, center=True, length=length)
    return x.reshape(*shape, x.shape[-1])


def power_spectrogram(x: torch.Tensor, cfg: STFTConfig = DEFAULT_STFT) -> torch.Tensor:
    """|STFT|^2 [..., frames, bins], the input of every speech prior."""
    return stft(x, cfg).abs().square()


def num_frames(n_samples: int, cfg: STFTConfig = DEFAULT_STFT) -> int:
    """Number of STFT frames for ``n_samples`` samples (centred frames)."""
    return n_samples // cfg.hop + 1


def peak_normalize(x: np.ndarray | torch.Tensor, eps: float = 1e-12):
    """Scale so that max |x| = 1, as the published priors expect; returns (x, scale)."""
    peak = float(np.max(np.abs(x))) if isinstance(x, np.ndarray) else float(x.abs().max())
    scale = 1.0 / max(peak, eps)
    return x * scale, scale


def resample(x: np.ndarray, sr_in: int, sr_out: int = SAMPLE_RATE) -> np.ndarray:
    """High-quality resampling (soxr, VHQ)."""
    if sr_in == sr_out:
        return x
    return soxr.resample(x, sr_in, sr_out, quality="VHQ").astype(np.float32)


def load_audio(
    path: str | os.PathLike,
    sample_rate: int = SAMPLE_RATE,
    min_samples: int = DEFAULT_STFT.n_fft,
    warn=None,
) -> np.ndarray:
    """Read any soundfile-readable file as float32 mono at ``sample_rate``.

    Stereo is downmixed and other rates resampled (with a note through ``warn``); a file
    that is unreadable, empty, silent, non-finite or shorter than one STFT frame raises
    :class:`InputError` with a one-line message naming the file.
    """
    path = Path(path)
    note = warn or (lambda msg: log.warning(msg))
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not an audio file")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError/RuntimeError/TypeError
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        msg = msg.rsplit(": ", 1)[-1].strip().rstrip(".")  # libsndfile: "Error opening 'x': why."
        raise InputError(f"{path}: not a readable audio file ({msg})") from None
    if data.size == 0:
        raise InputError(f"{path}: empty audio (0 samples)")
    if not np.all(np.isfinite(data)):
        raise InputError(f"{path}: audio contains NaN or infinite samples")
    if data.shape[1] > 1:
        note(f"{path}: {data.shape[1]} channels, downmixed to mono")
        data = data.mean(axis=1, keepdims=True)
    x = data[:, 0]
    if sr != sample_rate:
        note(f"{path}: sample rate {sr} Hz, resampled to {sample_rate} Hz")
        x = resample(x, sr, sample_rate)
    if x.shape[0] < min_samples:
        raise InputError(
            f"{path}: too short ({x.shape[0]} samples at {sample_rate} Hz; "
            f"need at least {min_samples}, one STFT frame)"
        )
    peak = float(np.max(np.abs(x)))
    if peak == 0.0:
        raise InputError(f"{path}: audio is all zeros (silent)")
    if np.mean(np.abs(x) >= 0.999 * peak) > 1e-3 and peak >= 0.99:
        note(f"{path}: audio looks clipped (many samples at full scale)")
    return np.ascontiguousarray(x, dtype=np.float32)


def atomic_write(path: str | os.PathLike, write_fn, suffix: str | None = None) -> Path:
    """Write through ``write_fn(tmp_path)`` to a temp file beside ``path``, then rename.

    A crash or Ctrl-C never leaves a half-written ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix or path.suffix)
    os.close(fd)
    try:
        write_fn(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_wav(path: str | os.PathLike, x: np.ndarray | torch.Tensor, sample_rate: int = SAMPLE_RATE) -> Path:
    """Atomically write a mono float waveform as 16-bit PCM WAV (clipped to [-1, 1])."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.clip(np.asarray(x, dtype=np.float32).reshape(-1), -1.0, 1.0)
    return atomic_write(path, lambda tmp: sf.write(tmp, x, sample_rate, subtype="PCM_16", format="WAV"))
