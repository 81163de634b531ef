"""Tiny synthetic audio-visual data where the video determines the spectrum (for AV tests)."""

from __future__ import annotations

import torch

K, F, S = 4, 32, 16


def templates() -> torch.Tensor:
    return 2 * torch.randn(K, F, generator=torch.Generator().manual_seed(123))


def av_batch(B: int, T: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Power [B, T, F] = exp(sum_k a_k template_k) * noise; video [B, T, S, S] shows a_k as bars."""
    a = torch.rand(B, T, K, generator=g)
    v = torch.full((B, T, S, S), 0.1)
    for c in range(K):
        v[..., 3 * c + 2 : 3 * c + 4, 2:14] = 0.1 + 0.8 * a[..., c, None, None]
    P = torch.exp(a @ templates()) * torch.exp(0.2 * torch.randn(B, T, F, generator=g))
    return P, v


def tiny_config(**kw) -> dict:
    base = dict(x_dim=F, z_dim=2, hidden=[32], visual_hidden=32, visual_dim=8, roi_size=S,
                input_transform="log")
    base.update(kw)
    return base


def train_tiny(model, steps: int, lr: float = 3e-3, p_drop: float = 0.1, p_corrupt: float = 0.5,
               seed: int = 0) -> list[float]:
    """Adam on synthetic batches with visual corruption augmentation; returns the losses."""
    from reavise.models.augment import corrupt_video

    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        P, v = av_batch(16, 8, g)
        v, valid = corrupt_video(v, None, p_drop, p_corrupt, g)
        out = model.loss(P, model.context(v, valid))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["loss"].detach()))
    return losses
