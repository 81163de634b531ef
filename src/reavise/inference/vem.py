"""VEM: variational EM with a Gaussian q(z) = N(m, diag(s2)) per frame.

The E-step maximises the ELBO  E_q[log p(x|z)] - KL(q(z) || p(z|v))  over (m, log s2) with
Adam and the reparameterisation trick; q is initialised by the prior's encoder on the noisy
power spectrogram (as in Sadeghi & Alameda-Pineda 2021, Leglaive et al. 2020). The M-step
uses R samples from q.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .. import validate as V
from ..models.layers import gaussian_kl
from .base import (
    EMAlgorithm,
    EMConfig,
    frame_loglik,
    register_algorithm,
    speech_variance,
)
from .draws import as_draws
from .state import EStepState


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


class Adam:
    """Adam (Kingma & Ba 2015) on a few tensors, the arithmetic of ``torch.optim.Adam``'s
    default single-tensor update (betas 0.9, 0.999, eps 1e-8), op for op: the same numbers
    (``tests/test_vem_adam.py``).

    Written out because creating a ``torch.optim`` optimizer imports ``torch._dynamo``: 1.5-5 s
    of start-up, more than a short file's whole VEM run.
    """

    def __init__(self, params: list[torch.Tensor], lr: float,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):  # fmt: skip
        self.params, self.lr, self.betas, self.eps = list(params), float(lr), betas, float(eps)
        self.n_steps = 0
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter from its ``.grad``."""
        beta1, beta2 = self.betas
        self.n_steps += 1
        # torch keeps the step count as a float32 tensor and reads it back as a Python float
        step = float(self.n_steps)
        step_size = self.lr / (1 - beta1**step)
        bias_correction2_sqrt = (1 - beta2**step) ** 0.5
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq, strict=True):
            grad = p.grad
            m.lerp_(grad, 1 - beta1)
            v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = (v.sqrt() / bias_correction2_sqrt).add_(self.eps)
            p.addcdiv_(m, denom, value=-step_size)


@dataclass
class VEMState(EStepState):
    """q(z) = N(m, diag exp(logv)) (leaf tensors) and the Adam state that fits it."""

    q: tuple[torch.Tensor, torch.Tensor] | None = None
    opt: Any = None


@register_algorithm("vem", VEMConfig)
class VEM(EMAlgorithm):
    config: VEMConfig
    state_class = VEMState

    def init_latent(self, prior, P, ctx, gen):
        state = super().init_latent(prior, P, ctx, gen)
        m = state.z.clone().requires_grad_(True)
        logv = state.logvar.clone().requires_grad_(True)
        state.q = (m, logv)
        state.opt = Adam([m, logv], lr=self.config.lr)
        return state

    def e_step(self, prior, P, ctx, nmf, state: VEMState, gen):
        cfg = self.config
        m, logv = state.q
        opt = state.opt
        for _ in range(cfg.n_grad):
            eps = as_draws(gen, m).like(m, torch.randn, (cfg.n_mc,))
            z = m + eps * torch.exp(0.5 * logv)
            loglik = frame_loglik(P, speech_variance(prior, z, ctx), nmf).mean(0)  # [B, T]
            pm, plogv = prior.prior(m, ctx)
            kl = gaussian_kl(m, logv, pm, plogv)  # closed form, per frame
            loss = -(loglik - kl).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            eps = as_draws(gen, m).like(m, torch.randn, (cfg.n_samples,))
            z = m + eps * torch.exp(0.5 * logv)
            Vs = speech_variance(prior, z, ctx)
        return z.detach(), Vs
