"""MCEM: Monte Carlo EM with a Metropolis-Hastings E-step (Leglaive et al. 2018; Sadeghi et al. 2020).

Random-walk proposal z' = z + sqrt(var) eps, accepted frame by frame with probability
min(1, p(x_t|z'_t) p(z'_t|v) / (p(x_t|z_t) p(z_t|v))) — exact for frame-wise priors, where the
posterior factorises over frames. Fully vectorised over utterances and frames: the only
Python loop is over the MH steps. The current sample's log-likelihood is kept between
steps, so each step decodes once (the published code decodes twice); the kept samples are
decoded together at the end of the E-step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .base import EMAlgorithm, EMConfig, frame_loglik, register_algorithm, speech_variance


@dataclass
class MCEMConfig(EMConfig):
    """Defaults are the published setting: 40 MH steps of which 30 burn-in, variance 0.01."""

    n_mh: int = 40
    burn_in: int = 30
    proposal_var: float = 0.01

    def __post_init__(self):
        self.n_samples = self.n_mh - self.burn_in
        if self.n_samples < 1:
            raise ValueError("n_mh must exceed burn_in")


@register_algorithm("mcem", MCEMConfig)
class MCEM(EMAlgorithm):
    config: MCEMConfig

    def e_step(self, prior, P, ctx, nmf, state, gen):
        cfg = self.config
        z = state["z"]
        std = math.sqrt(cfg.proposal_var)
        WH = nmf.WH  # fixed during the E-step
        samples = []
        with torch.no_grad():
            # all randomness of this E-step in two calls: proposals and acceptance thresholds
            eps = torch.randn((cfg.n_mh, *z.shape), generator=gen, device=z.device, dtype=z.dtype)
            eps.mul_(std)
            log_u = torch.rand(
                (cfg.n_mh, *z.shape[:-1]), generator=gen, device=z.device, dtype=z.dtype
            ).log_()
            # the noise model changed in the M-step: the current log-likelihood is recomputed once
            logp = frame_loglik(P, speech_variance(prior, z, ctx), nmf, WH) + prior.prior_logp(z, ctx)
            for step in range(cfg.n_mh):
                z_new = z + eps[step]
                logp_new = frame_loglik(P, speech_variance(prior, z_new, ctx), nmf, WH)
                logp_new += prior.prior_logp(z_new, ctx)
                accept = log_u[step] < (logp_new - logp)
                z = torch.where(accept[..., None], z_new, z)
                logp = torch.where(accept, logp_new, logp)
                if step >= cfg.burn_in:
                    samples.append(z)
            zs = torch.stack(samples)
            # one batched decode of the kept samples (cheaper than tracking sigma2 per step)
            Vs = speech_variance(prior, zs, ctx)
        state["z"] = z
        return zs, Vs
