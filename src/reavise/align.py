"""Audio-video alignment: map video frames (any fps) onto STFT frames.

STFT frame ``n`` is centred at time ``n * hop / sr`` (centred STFT, 62.5 frames/s with hop
256 at 16 kHz); video frame ``k`` covers time ``k / fps`` (frame start = sample time, the
TCD-TIMIT convention). Each STFT frame takes the linear interpolation of the two video
frames around its time, clamped at the ends. Every model and data path uses this one map.
"""

from __future__ import annotations

import numpy as np
import torch

from .audio import DEFAULT_STFT, STFTConfig


def stft_frame_times(n_stft: int, cfg: STFTConfig = DEFAULT_STFT) -> np.ndarray:
    """Centre time in seconds of each STFT frame."""
    return np.arange(n_stft, dtype=np.float64) * cfg.hop / cfg.sample_rate


def video_to_stft_weights(
    n_video: int, fps: float, n_stft: int, cfg: STFTConfig = DEFAULT_STFT
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each STFT frame: (left video index, right video index, weight of the right one)."""
    if n_video < 1:
        raise ValueError("need at least one video frame")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    pos = stft_frame_times(n_stft, cfg) * fps  # fractional video-frame index
    pos = np.clip(pos, 0.0, n_video - 1)
    left = np.floor(pos).astype(np.int64)
    right = np.minimum(left + 1, n_video - 1)
    w = (pos - left).astype(np.float32)
    return left, right, w


def align_video_to_stft(frames, fps: float, n_stft: int, cfg: STFTConfig = DEFAULT_STFT):
    """Resample per-frame video data ``frames`` [T_v, ...] to ``n_stft`` STFT frames.

    Works on numpy arrays and torch tensors (gradients flow through torch inputs).
    """
    left, right, w = video_to_stft_weights(len(frames), fps, n_stft, cfg)
    if isinstance(frames, torch.Tensor):
        li = torch.as_tensor(left, device=frames.device)
        ri = torch.as_tensor(right, device=frames.device)
        wt = torch.as_tensor(w, device=frames.device, dtype=frames.dtype)
        wt = wt.reshape(-1, *([1] * (frames.dim() - 1)))
        return frames[li] * (1 - wt) + frames[ri] * wt
    frames = np.asarray(frames)
    wt = w.reshape(-1, *([1] * (frames.ndim - 1)))
    out = frames[left].astype(np.float32) * (1 - wt) + frames[right].astype(np.float32) * wt
    return out


def align_mask_to_stft(mask: np.ndarray, fps: float, n_stft: int, cfg: STFTConfig = DEFAULT_STFT) -> np.ndarray:
    """A per-video-frame validity mask mapped to STFT frames: valid only if both neighbours are."""
    left, right, _ = video_to_stft_weights(len(mask), fps, n_stft, cfg)
    mask = np.asarray(mask, dtype=bool)
    return mask[left] & mask[right]
