"""Inference helpers for sequence priors (``prior.framewise`` False: RVAE, DKF).

A sequence prior couples frames, through its decoder (RVAE: an LSTM over the latent
sequence) or its latent prior (DKF: p(z_t | z_{t-1})), so the posterior p(z | x) does not
factorise over frames: its E-steps work on the whole latent sequence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from . import fastpath
from .state import EStepState

#: pSGLD's RMS decay and the floor of its preconditioner (``langevin_e_step``)
PSGLD_DECAY = 0.99
PSGLD_EPS = 1e-8


@dataclass
class SequenceChains(EStepState):
    """Whole-sequence Langevin chains across E-steps: their states [C, B, T, D], the last
    decoder forward pass (leaf, log sigma2) kept for the next gradient, pSGLD's RMS average."""

    chains: torch.Tensor | None = None
    forward: tuple[torch.Tensor, torch.Tensor] | None = None
    rms: torch.Tensor | None = None


def langevin_e_step(
    prior,
    P: torch.Tensor,
    ctx: Any,
    nmf,
    state: SequenceChains,
    gen,
    *,
    n_steps: int,
    step_size: float,
    n_chains: int,
    prior_weight: float = 1.0,
    extra_noise: float = 0.0,
    grad_clip: float = 0.0,
    precondition: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unadjusted Langevin dynamics on whole latent sequences, ``n_chains`` chains per utterance.

    Each step: z <- z + (eta/2) grad_z [log p(x|z) + w log p(z)] + sqrt(eta) eps, with the
    gradient through the whole sequence (decoder and prior couple frames); after the steps,
    z <- z + sqrt(extra_noise) eps' (the published LDEM's perturbation). The chains persist
    across EM iterations; their last states are the R = n_chains samples of the M-step.
    ``grad_clip`` > 0 clips each frame's gradient norm (0: no clipping, as published).
    ``precondition``: pSGLD (Li et al. 2016, the A-DKF's published E-step): each coordinate's
    step and noise scaled by 1 / G, G = sqrt(RMS average of its squared gradients, decay
    0.99, kept across E-steps) + 1e-8: z <- z + (eta/2) grad / G + sqrt(eta / G) eps.

    The decoder runs once per step: the forward pass that gives the M-step its sigma2(z) is
    kept (with its graph) for the next E-step's gradient, whose likelihood part is written out:
    d log p(x|z) / d log sigma2 = g sigma2 (P - V) / V^2 with V = g sigma2 + WH.
    """
    from .draws import as_draws

    z = state.chains
    if z is None:  # the chains start at the encoder's mean (+ noise, drawn per chain)
        z0 = state.z
        z = z0.expand(n_chains, *z0.shape)
        if extra_noise > 0:
            z = z + math.sqrt(extra_noise) * as_draws(gen, z0).like(z0, torch.randn, (n_chains,))
    draws = as_draws(gen, state.z)
    score_prior = fastpath.prior_scorer(prior, ctx, state.z)
    standard = prior.standard_prior
    WH = nmf.WH
    g = nmf.g[..., None]
    sq = math.sqrt(step_size)
    fwd, state.forward = state.forward, None
    for _ in range(n_steps):
        if fwd is None:
            leaf = z.detach().requires_grad_(True)
            with torch.enable_grad():
                fwd = (leaf, prior.decode(leaf, ctx))
        leaf, logv = fwd
        with torch.no_grad():
            s = torch.exp(logv.detach()).mul_(g)
            V = s + WH
            dl = s.mul_(P - V).div_(V.square_())  # d log p(x|z) / d log sigma2
        with torch.enable_grad():
            if standard:
                (grad,) = torch.autograd.grad(logv, leaf, dl)
                grad = grad.sub_(leaf.detach(), alpha=prior_weight)
            else:
                lp = score_prior(leaf).sum() * prior_weight
                (grad,) = torch.autograd.grad((logv, lp), leaf, (dl, None))
        if 0 < grad_clip < 1e30:  # 1e30: no clipping
            norm = grad.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            grad = grad * torch.clamp(grad_clip / norm, max=1.0)
        noise = draws.like(state.z, torch.randn, (n_chains,))
        if precondition:
            v = state.rms
            v = (1 - PSGLD_DECAY) * grad.square() if v is None else v.mul_(PSGLD_DECAY).addcmul_(grad, grad, value=1 - PSGLD_DECAY)
            state.rms = v
            G = v.sqrt().add_(PSGLD_EPS)
            z = (leaf.detach() + 0.5 * step_size * grad / G + torch.sqrt(step_size / G) * noise).detach()
        else:
            z = (leaf.detach() + 0.5 * step_size * grad + sq * noise).detach()
        fwd = None
    if extra_noise > 0:
        z = z + math.sqrt(extra_noise) * draws.like(state.z, torch.randn, (n_chains,))
    state.chains = z
    leaf = z.detach().requires_grad_(True)
    with torch.enable_grad():
        logv = prior.decode(leaf, ctx)
    state.forward = (leaf, logv)
    return z, torch.exp(logv.detach())


def sequence_settings(algorithm, prior):
    """``algorithm``'s config for a run with the sequence prior ``prior``: the settings the
    prior recommends for this algorithm (``prior.inference_defaults[algorithm.name]``, e.g.
    the published LDEM's for the RVAE) in place of the defaults, except those given
    explicitly (``build_algorithm``'s overrides, ``--set``)."""
    import dataclasses

    wanted = dict(getattr(prior, "inference_defaults", {}).get(algorithm.name, {}))
    explicit = getattr(algorithm, "explicit", frozenset())
    fields = {f.name for f in dataclasses.fields(algorithm.config)}
    keep = {k: v for k, v in wanted.items() if k in fields and k not in explicit}
    return dataclasses.replace(algorithm.config, **keep) if keep else algorithm.config
