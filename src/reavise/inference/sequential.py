"""Inference helpers for sequence priors (``prior.framewise`` False: RVAE, DKF).

A sequence prior couples frames, through its decoder (RVAE: an LSTM over the latent
sequence) or its latent prior (DKF: p(z_t | z_{t-1})), so the posterior p(z | x) does not
factorise over frames: its E-steps work on the whole latent sequence.
"""

from __future__ import annotations

import math
from typing import Any

import torch


def sequential_log_prior(prior, ctx: Any):
    """``f(z) = sum over the latent dims of log p(z_t | z_<t, v)`` per frame [..., B, T],
    from the prior's ``log_prior`` (the standard normal's closed form otherwise)."""
    log_prior = getattr(prior, "log_prior", None)
    if log_prior is not None:
        return lambda z: log_prior(z, ctx)
    return lambda z: prior.prior_logp(z, ctx)


def langevin_e_step(
    prior,
    P: torch.Tensor,
    ctx: Any,
    nmf,
    state: dict,
    gen,
    *,
    n_steps: int,
    step_size: float,
    n_chains: int,
    prior_weight: float = 1.0,
    extra_noise: float = 0.0,
    grad_clip: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unadjusted Langevin dynamics on whole latent sequences, ``n_chains`` chains per utterance.

    Each step: z <- z + (eta/2) grad_z [log p(x|z) + w log p(z)] + sqrt(eta) eps, with the
    gradient through the whole sequence (decoder and prior couple frames); after the steps,
    z <- z + sqrt(extra_noise) eps' (the published LDEM's perturbation). The chains persist
    across EM iterations; their last states are the R = n_chains samples of the M-step.
    ``grad_clip`` > 0 clips each frame's gradient norm (0: no clipping, as published).
    """
    from .base import frame_loglik, speech_variance
    from .draws import as_draws

    z = state.get("chains")
    if z is None:  # the chains start at the encoder's mean (+ noise, drawn per chain)
        z0 = state["z"]
        z = z0.expand(n_chains, *z0.shape)
        if extra_noise > 0:
            z = z + math.sqrt(extra_noise) * as_draws(gen, z0).like(z0, torch.randn, (n_chains,))
    draws = as_draws(gen, state["z"])
    score_prior = sequential_log_prior(prior, ctx)
    WH = nmf.WH
    sq = math.sqrt(step_size)
    for _ in range(n_steps):
        z = z.detach().requires_grad_(True)
        logp = frame_loglik(P, speech_variance(prior, z, ctx), nmf, WH).sum()
        logp = logp + prior_weight * score_prior(z).sum()
        (grad,) = torch.autograd.grad(logp, z)
        if grad_clip > 0:
            norm = grad.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            grad = grad * torch.clamp(grad_clip / norm, max=1.0)
        noise = draws.like(state["z"], torch.randn, (n_chains,))
        z = (z + 0.5 * step_size * grad + sq * noise).detach()
    if extra_noise > 0:
        z = z + math.sqrt(extra_noise) * draws.like(state["z"], torch.randn, (n_chains,))
    state["chains"] = z
    with torch.no_grad():
        Vs = speech_variance(prior, z, ctx)
    return z, Vs
