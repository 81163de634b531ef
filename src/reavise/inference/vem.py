"""VEM: variational EM with a Gaussian q(z) = N(m, diag(s2)) per frame.

The E-step maximises the ELBO  E_q[log p(x|z)] - KL(q(z) || p(z|v))  over (m, log s2) with
Adam and the reparameterisation trick; q is initialised by the prior's encoder on the noisy
power spectrogram (as in Sadeghi & Alameda-Pineda 2021, Leglaive et al. 2020). The M-step
uses R samples from q.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import validate as V
from ..models.base import gaussian_kl
from .base import EMAlgorithm, EMConfig, frame_loglik, register_algorithm, speech_variance
from .draws import as_draws


@dataclass
class VEMConfig(EMConfig):
    max_iter: int = 100
    n_samples: int = 1
    #: gradient steps on q per EM iteration
    n_grad: int = 1
    lr: float = 0.2
    #: reparameterised samples per gradient step
    n_mc: int = 1

    def __post_init__(self):
        super().__post_init__()
        V.at_least(self, "n_grad", 1)
        V.positive(self, "lr")
        V.at_least(self, "n_mc", 1)


@register_algorithm("vem", VEMConfig)
class VEM(EMAlgorithm):
    config: VEMConfig

    def init_latent(self, prior, P, ctx, gen):
        state = super().init_latent(prior, P, ctx, gen)
        m = state["z"].clone().requires_grad_(True)
        logv = state["logvar"].clone().requires_grad_(True)
        state["q"] = (m, logv)
        state["opt"] = torch.optim.Adam([m, logv], lr=self.config.lr)
        return state

    def e_step(self, prior, P, ctx, nmf, state, gen):
        cfg = self.config
        m, logv = state["q"]
        opt = state["opt"]
        for _ in range(cfg.n_grad):
            eps = as_draws(gen, m).like(m, torch.randn, (cfg.n_mc,))
            z = m + eps * torch.exp(0.5 * logv)
            loglik = frame_loglik(P, speech_variance(prior, z, ctx), nmf).mean(0)  # [B, T]
            pm, plogv = prior.prior(m, ctx)
            kl = gaussian_kl(m, logv, pm, plogv)  # closed form, per frame
            loss = -(loglik - kl).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            eps = as_draws(gen, m).like(m, torch.randn, (cfg.n_samples,))
            z = m + eps * torch.exp(0.5 * logv)
            Vs = speech_variance(prior, z, ctx)
        return z.detach(), Vs
