"""Visual corruption for training audio-visual priors (modality dropout, occlusion, noise).

A prior that sees unreliable video during training learns to down-weight it; half of the
corrupted frames keep ``valid=True`` so the model must also recognise corruption from the
pixels, not only from the mask (test-time occlusions are often not flagged).
"""

from __future__ import annotations

import torch


def corrupt_video(
    video: torch.Tensor,
    valid: torch.Tensor | None,
    p_drop: float,
    p_corrupt: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Randomly drop whole videos and corrupt runs of frames in a batch [B, T, H, W]."""
    B, T = video.shape[:2]
    dev = video.device
    valid = torch.ones(B, T, dtype=torch.bool, device=dev) if valid is None else valid.clone()
    video = video.clone()
    if p_drop > 0:
        drop = torch.rand(B, device=dev, generator=generator) < p_drop
        video[drop] = 0.0
        valid[drop] = False
    if p_corrupt > 0:
        which = torch.rand(B, device=dev, generator=generator) < p_corrupt
        for b in torch.nonzero(which).flatten().tolist():
            # a contiguous run covering 30-100 % of the example
            n = max(1, int(T * (0.3 + 0.7 * float(torch.rand(1, generator=generator)))))
            s = int(torch.randint(0, T - n + 1, (1,), generator=generator))
            kind = int(torch.randint(0, 3, (1,), generator=generator))
            seg = video[b, s : s + n]
            if kind == 0:  # occluding patch over the mouth (centre 60 % of the ROI)
                H, W = seg.shape[-2:]
                h0, w0 = int(H * 0.2), int(W * 0.2)
                shade = float(torch.rand(1, generator=generator))
                seg[..., h0 : H - h0, w0 : W - w0] = shade
            elif kind == 1:  # heavy pixel noise
                noise = torch.randn(seg.shape, device=dev, generator=generator) * 0.5
                video[b, s : s + n] = (seg + noise).clamp(0, 1)
            else:  # blank frames
                video[b, s : s + n] = 0.0
            if bool(torch.rand(1, generator=generator) < 0.5):
                valid[b, s : s + n] = False
    return video, valid
