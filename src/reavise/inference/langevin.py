"""Langevin EM (LDEM): the E-step runs unadjusted Langevin dynamics on z.

z <- z + (eta/2) grad_z log p(x, z | v) + sqrt(eta) eps    (Roberts & Tweedie 1996;
used for speech enhancement by Sadeghi & Serizel, 2023). The chain persists across EM
iterations; the last R states are the samples of the M-step. Gradients of the per-frame
log-likelihood are clipped in norm for stability of the unadjusted chain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .. import validate as V
from ..errors import SettingError
from . import fastpath
from .base import EMAlgorithm, EMConfig, frame_loglik, register_algorithm, speech_variance
from .draws import as_draws
from .sequential import SequenceChains, langevin_e_step


@dataclass
class LangevinConfig(EMConfig):
    n_steps: int = 5
    n_samples: int = 1
    step_size: float = 1e-2
    grad_clip: float = 100.0
    #: sequence priors only (``prior.framewise`` False; ``inference.sequential``): parallel
    #: whole-sequence chains (their states are the M-step's samples), exponent of p(z) in the
    #: target, variance of the extra perturbation after each E-step (the published LDEM's).
    #: A sequence prior brings its own defaults for these (``inference_defaults``).
    n_chains: int = 1
    prior_weight: float = 1.0
    extra_noise: float = 0.0
    #: sequence priors only: pSGLD (RMS-preconditioned steps, the published A-DKF E-step)
    precondition: bool = False

    def __post_init__(self):
        super().__post_init__()
        V.at_least(self, "n_steps", 1)
        V.positive(self, "step_size")
        V.positive(self, "grad_clip")
        V.at_least(self, "n_chains", 1)
        V.positive(self, "prior_weight")
        V.at_least(self, "extra_noise", 0)
        if self.n_samples > self.n_steps:
            raise SettingError(
                "n_samples", f"must be at most n_steps ({self.n_steps}), got {self.n_samples}"
            )


@register_algorithm("langevin", LangevinConfig)
class LangevinEM(EMAlgorithm):
    config: LangevinConfig
    state_class = SequenceChains  # its chain fields are used by sequence priors only

    def e_step(self, prior, P, ctx, nmf, state, gen):
        cfg = self.config
        if not prior.framewise:  # whole-sequence chains (RVAE, DKF)
            return langevin_e_step(
                prior, P, ctx, nmf, state, gen, n_steps=cfg.n_steps, step_size=cfg.step_size,
                n_chains=cfg.n_chains, prior_weight=cfg.prior_weight,
                extra_noise=cfg.extra_noise, grad_clip=cfg.grad_clip,
                precondition=cfg.precondition,
            )  # fmt: skip
        z = state.z
        eta = cfg.step_size
        samples = []
        WH = nmf.WH
        score_prior = fastpath.prior_scorer(prior, ctx, z)  # p(z|v) computed once per E-step
        for step in range(cfg.n_steps):
            z = z.detach().requires_grad_(True)
            logp = frame_loglik(P, speech_variance(prior, z, ctx), nmf, WH) + score_prior(z)
            (grad,) = torch.autograd.grad(logp.sum(), z)
            # per-frame gradient norm clipping keeps the unadjusted chain from diverging
            norm = grad.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            grad = grad * torch.clamp(cfg.grad_clip / norm, max=1.0)
            noise = as_draws(gen, z).like(z)
            z = (z + 0.5 * eta * grad + math.sqrt(eta) * noise).detach()
            if step >= cfg.n_steps - cfg.n_samples:
                samples.append(z)
        state.z = z
        zs = torch.stack(samples)
        with torch.no_grad():
            Vs = speech_variance(prior, zs, ctx)
        return zs, Vs
