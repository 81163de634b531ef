"""The interface every speech prior implements, so every inference algorithm works with it.

A prior models clean-speech STFT coefficients s_ft ~ CN(0, sigma2_f(z_t, v)) with latent
z_t (Leglaive et al. 2018; Sadeghi et al. 2020). Shapes are time-major: power [B, T, F],
latents [..., B, T, D] (leading sample dimensions allowed), video [B, T, H, W] already
aligned to STFT frames (``reavise.align``) with a validity mask [B, T].
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

LOG_2PI = math.log(2 * math.pi)
LOG2_E = 1.0 / math.log(2.0)


@dataclass
class DecoderSplit:
    """The decoder cut before its output layer: log sigma2(z) = weight @ hidden(z) + bias."""

    hidden: Callable[[torch.Tensor], torch.Tensor]  # z [..., B, T, D] -> [..., B, T, H]
    weight: torch.Tensor  # [F, H]
    bias: torch.Tensor  # [F]
    #: (W1 [H, D], b1 [H]) when hidden(z) is exactly tanh(W1 z + b1) (values in [-1, 1])
    tanh_layer: tuple[torch.Tensor, torch.Tensor] | None = None


class SpeechPrior(nn.Module):
    """Base class: encoder q(z|s, v), decoder p(s|z, v), latent prior p(z|v)."""

    registry_name: str = ""
    uses_video: bool = False
    #: True when the model treats frames independently (MH may accept per frame exactly).
    framewise: bool = True
    #: True when p(z|v) is the standard normal (fast path in ``prior_scorer``/``prior_logp``).
    standard_prior: bool = True

    config: Any

    # --- what inference needs -------------------------------------------------------
    def context(self, video: torch.Tensor | None, valid: torch.Tensor | None) -> Any:
        """Precompute the conditioning (visual features) once per utterance batch.

        ``video`` [B, T, H, W] in 0..1 aligned to STFT frames or None (missing video);
        ``valid`` [B, T] bool, False where the mouth is missing/occluded.
        """
        return None

    def encode(self, power: torch.Tensor, ctx: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior q(z|s, v): (mean, log-variance), each [B, T, D]."""
        raise NotImplementedError

    def decode(self, z: torch.Tensor, ctx: Any = None) -> torch.Tensor:
        """Log-variance of speech, log sigma2(z, v): [..., B, T, F] for z [..., B, T, D]."""
        raise NotImplementedError

    def prior(self, z_like: torch.Tensor, ctx: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent prior p(z|v): (mean, log-variance) broadcastable to ``z_like``.

        The default is the standard normal of the plain VAE.
        """
        zero = torch.zeros((), device=z_like.device, dtype=z_like.dtype)
        return zero, zero

    def log2_variance_fn(self, ctx: Any, offset: torch.Tensor):
        """``f(z) = offset + log2 sigma2(z, v)`` for z [B, T, D]; ``offset`` [B, T, F].

        For samplers that decode many z against the same context: a model may fold the
        offset and the log2 scale into its output layer (see ``AVAE``); this default simply
        rescales ``decode``.
        """
        return lambda z: torch.add(offset, self.decode(z, ctx), alpha=LOG2_E)

    def decoder_split(self, ctx: Any) -> DecoderSplit | None:
        """log sigma2(z, v) as ``weight @ hidden(z) + bias`` for this context, for samplers
        that run the output layer their own way (MCEM's int8 products); None: not split."""
        return None

    def prior_scorer(self, ctx: Any, like: torch.Tensor):
        """``f(z) = log p(z|v)`` up to an additive constant, with p(z|v) computed once.

        For samplers that score many z against the same video (MCEM, Langevin EM): the
        prior network runs here, not at every step. ``like`` is a latent [..., B, T, D].
        """
        if self.standard_prior:
            return lambda z: torch.linalg.vecdot(z, z).mul_(-0.5)
        mu, logvar = self.prior(like, ctx)
        mu = mu.detach() if isinstance(mu, torch.Tensor) else mu
        prec = torch.exp(-logvar).detach()
        return lambda z: -0.5 * ((z - mu).square() * prec).sum(-1)

    def prior_logp(self, z: torch.Tensor, ctx: Any = None) -> torch.Tensor:
        """log p(z|v) summed over the latent dimension: [..., B, T]."""
        if self.standard_prior:
            return -0.5 * (z.square().sum(-1) + z.shape[-1] * LOG_2PI)
        mu, logvar = self.prior(z, ctx)
        return -0.5 * (((z - mu) ** 2) * torch.exp(-logvar) + logvar + LOG_2PI).sum(-1)

    # --- optional hooks (defaults: no-ops) -----------------------------------------------
    def fusion_weights(self) -> dict[str, torch.Tensor]:
        """Per-frame (audio, visual) weights [..., B, T, 2] of each fusion site, last forward."""
        return {}

    def em_begin(self, ctx: Any) -> None:
        """Called by the EM loop before the first iteration (reset per-run latent state)."""

    def em_update(self, ctx: Any, P: torch.Tensor, nmf: Any, z: torch.Tensor, mask: torch.Tensor) -> bool:
        """Called after each M-step with the E-step's z samples; True if ``decode`` changed.

        The switching prior updates its per-frame switch posterior here.
        """
        return False

    def em_info(self, ctx: Any) -> dict[str, Any]:
        """Extra outputs stored in ``EMResult.info`` at the end of a run (e.g. switch posterior)."""
        return {}

    @property
    def z_dim(self) -> int:
        return self.config.z_dim

    # --- training ---------------------------------------------------------------------
    def loss(
        self,
        power: torch.Tensor,
        ctx: Any = None,
        frame_mask: torch.Tensor | None = None,
        beta: float = 1.0,
    ) -> dict[str, torch.Tensor]:
        """Negative ELBO per frame: Itakura-Saito reconstruction + beta * KL.

        With s ~ CN(0, v), -log p(s|z) = sum_f log v_f + |s_f|^2 / v_f (+ const), which is
        the IS divergence between |s|^2 and v up to terms constant in v (Fevotte et al. 2009).
        """
        mu, logvar = self.encode(power, ctx)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        pmu, plogvar = self.prior(z, ctx)
        kl = gaussian_kl(mu, logvar, pmu, plogvar)
        return reduce_loss(is_divergence(power, self.decode(z, ctx)), kl, frame_mask, beta)


def is_divergence(power: torch.Tensor, log_v: torch.Tensor) -> torch.Tensor:
    """Itakura-Saito divergence per frame between |s|^2 and v = exp(log_v): [..., B, T].

    With s ~ CN(0, v), -log p(s|z) = sum_f log v_f + |s_f|^2 / v_f (+ const); subtracting
    log|s|^2 + 1 gives the IS divergence, zero for a perfect fit (Fevotte et al. 2009).
    """
    return (log_v + power * torch.exp(-log_v) - torch.log(power + 1e-10) - 1).sum(-1)


def gaussian_kl(
    mu: torch.Tensor, logvar: torch.Tensor, pmu: torch.Tensor, plogvar: torch.Tensor
) -> torch.Tensor:
    """KL(N(mu, e^logvar) || N(pmu, e^plogvar)) summed over the last (latent) dimension."""
    return 0.5 * (
        plogvar - logvar + (torch.exp(logvar) + (mu - pmu) ** 2) * torch.exp(-plogvar) - 1
    ).sum(-1)


def reduce_loss(
    recon: torch.Tensor, kl: torch.Tensor, frame_mask: torch.Tensor | None, beta: float
) -> dict[str, torch.Tensor]:
    """Masked means over frames of the reconstruction and KL terms; loss = recon + beta KL."""
    if frame_mask is None:
        frame_mask = torch.ones_like(recon, dtype=torch.bool)
    m = frame_mask.to(recon.dtype)
    n = m.sum().clamp_min(1.0)
    recon_m = (recon * m).sum() / n
    kl_m = (kl * m).sum() / n
    return {"loss": recon_m + beta * kl_m, "recon": recon_m, "kl": kl_m}


def input_features(power: torch.Tensor, transform: str) -> torch.Tensor:
    """Encoder input from the power spectrogram: raw power (published models) or log power."""
    if transform == "power":
        return power
    if transform == "log":
        return torch.log(power + 1e-8)
    raise ValueError(f"unknown input transform {transform!r} (power, log)")


class Tanh(nn.Module):
    """tanh(x) computed as 2 sigmoid(2x) - 1: the same function (absolute error < 3e-7 in
    float32) but about 4x faster than ``torch.tanh`` on CPU (measured 18 vs 79 us for a
    301 x 128 tensor, 1 thread), and the decoder's tanh is on the MCEM hot path."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(x * 2.0)
        if torch.is_grad_enabled() and s.requires_grad:
            return s * 2.0 - 1.0  # autograd needs sigmoid's output unchanged
        return s.mul_(2.0).sub_(1.0)


def mlp(sizes: list[int] | tuple[int, ...], activation: str) -> nn.Sequential:
    """Dense layers with an activation after each (the published VAEs use tanh)."""
    acts = {"tanh": Tanh, "relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU}
    if activation not in acts:
        raise ValueError(f"unknown activation {activation!r}; known: {sorted(acts)}")
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(a, b), acts[activation]()]
    return nn.Sequential(*layers)
