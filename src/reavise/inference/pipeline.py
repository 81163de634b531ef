"""Waveforms in, enhanced waveforms out: normalise, STFT, batch with padding, EM, iSTFT."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..align import align_mask_to_stft, align_video_to_stft
from ..audio import DEFAULT_STFT, istft, num_frames, stft


@dataclass
class VideoInput:
    """Lips of one utterance: frames [T_v, H, W] in 0..1, fps, optional validity [T_v]."""

    frames: np.ndarray
    fps: float
    valid: np.ndarray | None = None


@dataclass
class EnhancedUtterance:
    speech: np.ndarray
    noise: np.ndarray
    cost: np.ndarray
    n_iter: int
    converged: bool


def batch_video(
    videos: list[VideoInput | None], n_stft: list[int], T: int, device
) -> tuple[torch.Tensor, torch.Tensor] | tuple[None, None]:
    """Align each utterance's lips to its STFT frames and pad to [B, T, H, W] + valid [B, T]."""
    if all(v is None for v in videos):
        return None, None
    ref = next(v for v in videos if v is not None)
    H, W = ref.frames.shape[1:]
    out = np.zeros((len(videos), T, H, W), dtype=np.float32)
    valid = np.zeros((len(videos), T), dtype=bool)
    for i, (v, n) in enumerate(zip(videos, n_stft, strict=True)):
        if v is None:
            continue
        out[i, :n] = align_video_to_stft(v.frames, v.fps, n)
        mask = np.ones(len(v.frames), bool) if v.valid is None else v.valid
        valid[i, :n] = align_mask_to_stft(mask, v.fps, n)
    return torch.from_numpy(out).to(device), torch.from_numpy(valid).to(device)


def enhance_waveforms(
    prior,
    algorithm,
    waves: list[np.ndarray],
    videos: list[VideoInput | None] | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    progress=None,
) -> list[EnhancedUtterance]:
    """Enhance several utterances in one batched EM run.

    Each waveform is peak-normalised (the priors were trained so), enhanced, and scaled back.
    """
    if videos is None:
        videos = [None] * len(waves)
    scales = [1.0 / max(float(np.max(np.abs(w))), 1e-12) for w in waves]
    lengths = [len(w) for w in waves]
    n_stft = [num_frames(n, DEFAULT_STFT) for n in lengths]
    T = max(n_stft)
    L = max(lengths)
    x = np.zeros((len(waves), L), dtype=np.float32)
    for i, (w, s) in enumerate(zip(waves, scales, strict=True)):
        x[i, : len(w)] = w * s
    X = stft(torch.from_numpy(x).to(device))[:, :T]
    mask = torch.zeros(len(waves), T, device=device)
    for i, n in enumerate(n_stft):
        mask[i, :n] = 1.0
        X[i, n:] = 0  # frames past the end only saw padding
    video, valid = batch_video(videos, n_stft, T, device)
    ctx = prior.context(video, valid) if prior.uses_video else None
    res = algorithm.run(prior, X, ctx=ctx, frame_mask=mask, seed=seed, progress=progress)
    speech = istft(res.speech, length=L).cpu().numpy()
    noise = istft(res.noise, length=L).cpu().numpy()
    cost = res.cost.cpu().numpy()
    return [
        EnhancedUtterance(
            speech=speech[i, : lengths[i]] / scales[i],
            noise=noise[i, : lengths[i]] / scales[i],
            cost=cost[:, i],
            n_iter=res.n_iter,
            converged=res.converged,
        )
        for i in range(len(waves))
    ]
