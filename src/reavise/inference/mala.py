"""MALA EM: the E-step runs the Metropolis-adjusted Langevin algorithm on z.

Proposal z' = z + (eta/2) grad log pi(z) + sqrt(eta) eps with pi(z) = p(x|z) p(z|v)^w, accepted
with probability min(1, pi(z') q(z|z') / (pi(z) q(z'|z))), q(a|b) = N(a; b + (eta/2) grad log
pi(b), eta I) (Roberts & Tweedie 1996; MALA EM for speech enhancement with an RVAE prior:
Sadeghi & Serizel, ICASSP 2024). The correction makes the chain exact where Langevin EM's
is not. A frame-wise prior accepts each frame on its own (its posterior factorises over
frames); a sequence prior (``framewise=False``: RVAE, DKF) accepts each utterance's whole
latent sequence, with the gradient through the whole sequence. The chain persists across EM
iterations; its last ``n_samples`` states are the M-step's samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .. import validate as V
from ..errors import SettingError
from . import fastpath
from .base import EMAlgorithm, EMConfig, register_algorithm
from .draws import as_draws
from .likelihood import frame_loglik
from .state import EStepState


@dataclass
class MALAConfig(EMConfig):
    n_steps: int = 5
    n_samples: int = 1
    step_size: float = 1e-2
    #: exponent w of the latent prior in the target p(x|z) p(z|v)^w (1: the posterior)
    prior_weight: float = 1.0
    #: "frame": each frame accepts on its own (exact for frame-wise priors; for a sequence
    #: prior the published approximation); "sequence": each utterance's whole latent sequence;
    #: "auto": frame for frame-wise priors, sequence otherwise
    acceptance: str = "auto"
    #: tamed gradient g / (1 + (eta/2) |g|), |g| the norm over the utterance (Brosse et al.
    #: 2019): keeps the drift bounded where the gradient is huge (the published MALA EM)
    tamed: bool = False
    #: variance of a perturbation of the chain at its start and after each E-step (the
    #: published MALA EM's, as Langevin EM's ``extra_noise``)
    extra_noise: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        V.at_least(self, "n_steps", 1)
        V.positive(self, "step_size")
        V.positive(self, "prior_weight")
        V.one_of(self, "acceptance", ("auto", "frame", "sequence"))
        V.at_least(self, "extra_noise", 0)
        if self.n_samples > self.n_steps:
            raise SettingError(
                "n_samples", f"must be at most n_steps ({self.n_steps}), got {self.n_samples}"
            )


def frame_mask_of(draws, P: torch.Tensor) -> torch.Tensor:
    """[B, T] 1 on each utterance's own frames (the draws know the lengths), else all ones."""
    B, T = P.shape[0], P.shape[1]
    lengths = getattr(draws, "lengths", None)
    if lengths is None:
        return torch.ones(B, T, dtype=P.dtype, device=P.device)
    return (torch.arange(T, device=P.device)[None] < torch.tensor(lengths, device=P.device)[:, None]).to(P.dtype)


@dataclass
class MALAState(EStepState):
    started: bool = False


@register_algorithm("mala", MALAConfig)
class MALAEM(EMAlgorithm):
    config: MALAConfig
    state_class = MALAState

    def _drift(self, grad: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(eta/2) grad, tamed per utterance if asked."""
        half = 0.5 * self.config.step_size
        if not self.config.tamed:
            return half * grad
        norm = (grad.square().sum(-1) * mask).sum(-1).sqrt()[:, None, None]  # [B, 1, 1]
        return half * grad / (1.0 + half * norm)

    def _target(self, prior, P, ctx, nmf, z, score):
        """(log pi per frame [B, T], its gradient in z, log sigma2(z)) at z [B, T, D];
        ``score``: ``fastpath.prior_scorer`` of this E-step."""
        w = self.config.prior_weight
        with torch.enable_grad():
            leaf = z.detach().requires_grad_(True)
            logv = prior.decode(leaf, ctx)
            lp = frame_loglik(P, torch.exp(logv), nmf) + w * score(leaf)
            (grad,) = torch.autograd.grad(lp.sum(), leaf)
        return lp.detach(), grad, logv.detach()

    def e_step(self, prior, P, ctx, nmf, state, gen):
        cfg = self.config
        eta = cfg.step_size
        draws = as_draws(gen, state.z)
        mask = frame_mask_of(draws, P)
        z = state.z.detach()
        if cfg.extra_noise > 0 and not state.started:  # the chain starts near the encoder's mean
            z = z + math.sqrt(cfg.extra_noise) * draws.like(z)
        state.started = True
        per_frame = cfg.acceptance == "frame" or (cfg.acceptance == "auto" and prior.framewise)
        score = fastpath.prior_scorer(prior, ctx, z)  # p(z|v) once per E-step (frame-wise priors)
        lp, grad, logv = self._target(prior, P, ctx, nmf, z, score)  # the noise model changed: anew
        eps = draws.like(z, torch.randn, (cfg.n_steps,))
        log_u = draws.frames(torch.rand, (cfg.n_steps,), (), z.dtype, fill=0.5).log_()
        samples, variances = [], []
        for step in range(cfg.n_steps):
            mean = z + self._drift(grad, mask)
            z_new = mean + math.sqrt(eta) * eps[step]
            lp_new, grad_new, logv_new = self._target(prior, P, ctx, nmf, z_new, score)
            mean_back = z_new + self._drift(grad_new, mask)
            # log q(z | z') - log q(z' | z) per frame
            log_q = ((z_new - mean).square().sum(-1) - (z - mean_back).square().sum(-1)) / (2 * eta)
            log_alpha = (lp_new - lp + log_q) * mask  # padded frames: no evidence
            if per_frame:  # each frame accepts on its own
                accept = log_u[step] < log_alpha
            else:  # the whole sequence of each utterance, one uniform (its first frame's)
                accept = (log_u[step][:, :1] < log_alpha.sum(-1, keepdim=True)).expand_as(lp)
            acc = accept[..., None]
            z = torch.where(acc, z_new, z)
            if per_frame and not prior.framewise:
                # frames of a sequence prior accepted apart: the target and its gradient at
                # the mixed sequence are not the frames' mix; computed anew
                lp, grad, logv = self._target(prior, P, ctx, nmf, z, score)
            else:
                grad = torch.where(acc, grad_new, grad)
                logv = torch.where(acc, logv_new, logv)
                lp = torch.where(accept, lp_new, lp)
            if step >= cfg.n_steps - cfg.n_samples:
                samples.append(z)
                variances.append(torch.exp(logv))
        if cfg.extra_noise > 0:
            z = z + math.sqrt(cfg.extra_noise) * draws.like(z)
        state.z = z
        return torch.stack(samples), torch.stack(variances)
