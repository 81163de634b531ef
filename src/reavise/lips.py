"""Mouth-ROI (lips) arrays: one on-disk format, plus reading the NTCD-TIMIT layout.

reavise stores lips as ``.npy`` uint8 [T, 67, 67] (row-major frames, 0..255 = 0..1) and
works with float32 [T, H, W] in 0..1. The published NTCD-TIMIT/AV-VAE files are float
(4489, T), each column one 67x67 image stored column-major: ``frame = a[:, t].reshape(67, 67).T``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .audio import atomic_write
from .errors import InputError

ROI_SIZE = 67
#: frame rate assumed for a lips ``.npy`` (the published NTCD-TIMIT/AV-VAE convention)
VIDEO_FPS = 30.0
#: the other common rate (GRID, LRS3): tried when the lips do not fit the audio at 30 fps
ALT_FPS = 25.0
#: lips/audio duration mismatch tolerated (seconds) before an input is rejected
AV_TOLERANCE_S = 0.25


def load_lips(path: str | os.PathLike, roi_size: int = ROI_SIZE) -> np.ndarray:
    """Read a lips file as float32 [T, H, W] in 0..1, accepting both layouts."""
    path = Path(path)
    try:
        a = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputError(f"{path}: no such lips file") from None
    except Exception as exc:
        raise InputError(f"{path}: not a readable .npy lips file ({exc})") from None
    if a.size == 0:
        raise InputError(f"{path}: lips array is empty")
    if a.dtype.kind not in "buif":
        raise InputError(f"{path}: lips array has dtype {a.dtype}; expected uint8 or float in 0..1")
    if a.ndim == 2 and a.shape[0] == roi_size * roi_size:
        # NTCD-TIMIT layout: (H*W, T), column-major images.
        a = a.T.reshape(-1, roi_size, roi_size).transpose(0, 2, 1)
    elif a.ndim != 3:
        raise InputError(f"{path}: lips array has shape {a.shape}; expected [T, H, W] or ({roi_size * roi_size}, T)")
    if a.dtype == np.uint8:
        out = a.astype(np.float32) / 255.0
    else:
        out = a.astype(np.float32)
    if not np.all(np.isfinite(out)):
        raise InputError(f"{path}: lips array contains NaN or infinite values")
    if out.min() < -1e-3 or out.max() > 1 + 1e-3:
        raise InputError(f"{path}: lips values outside 0..1 (min {out.min():.3g}, max {out.max():.3g})")
    return np.ascontiguousarray(out)


def save_lips(path: str | os.PathLike, frames: np.ndarray) -> Path:
    """Atomically save float [T, H, W] frames in 0..1 as uint8 .npy."""
    frames = np.asarray(frames)
    if frames.ndim != 3:
        raise ValueError(f"lips frames must be [T, H, W], got {frames.shape}")
    q = np.clip(np.round(frames * 255.0), 0, 255).astype(np.uint8)
    return atomic_write(path, lambda tmp: np.save(tmp, q), suffix=".npy")


def lips_fps(
    path: Path, n_frames: int, audio: Path, seconds: float, fps: float | None = None, warn=None
) -> float:
    """The frame rate at which ``n_frames`` lips frames (file ``path``) span ``seconds`` of ``audio``.

    ``fps`` given: that rate, or InputError if it does not fit. Not given: 30 fps (the
    convention); else 25 fps (GRID, LRS3) with a note through ``warn``; else InputError
    naming both rates.
    """

    def fits(rate: float) -> bool:
        return abs(n_frames / rate - seconds) <= AV_TOLERANCE_S

    if fps is not None:
        if not fits(fps):
            raise InputError(
                f"{path}: lips last {n_frames / fps:.2f} s ({n_frames} frames at {fps:g} fps) "
                f"but {audio.name} lasts {seconds:.2f} s"
            )
        return fps
    if fits(VIDEO_FPS):
        return VIDEO_FPS
    if fits(ALT_FPS):
        if warn is not None:
            warn(
                f"{path}: {n_frames} lips frames fit {audio.name} ({seconds:.2f} s) at "
                f"{ALT_FPS:g} fps, not {VIDEO_FPS:g}: using {ALT_FPS:g} fps (--lips-fps sets it)"
            )
        return ALT_FPS
    raise InputError(
        f"{path}: lips last {n_frames / VIDEO_FPS:.2f} s at {VIDEO_FPS:g} fps or "
        f"{n_frames / ALT_FPS:.2f} s at {ALT_FPS:g} fps ({n_frames} frames) but {audio.name} "
        f"lasts {seconds:.2f} s (--lips-fps sets the rate)"
    )
