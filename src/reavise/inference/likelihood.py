"""The observation model x = s + n with s ~ CN(0, g sigma2(z)), n ~ CN(0, WH): per-frame
log-likelihood for the E-steps."""

from __future__ import annotations

from typing import Any

import torch

from .nmf import NMFState, neg_log_likelihood


def speech_variance(prior, z: torch.Tensor, ctx: Any) -> torch.Tensor:
    """sigma2(z) = exp(decoder log-variance)."""
    return torch.exp(prior.decode(z, ctx))


def frame_loglik(P: torch.Tensor, Vs: torch.Tensor, nmf: NMFState, WH=None) -> torch.Tensor:
    """log p(x_t | z_t) per frame up to a constant, for speech variances Vs [..., B, T, F]."""
    Vx = torch.addcmul(nmf.WH if WH is None else WH, nmf.g[..., None], Vs)
    return -neg_log_likelihood(P, Vx)
