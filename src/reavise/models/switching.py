"""The switching VAE (Sadeghi & Alameda-Pineda, ICASSP 2021): audio-only and audio-visual
decoders sharing one latent space, chosen per frame by a Markov switch m_t."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ReaviseError
from .av_base import AVContext, AVPriorBase, FusedConfig, site_kind
from .fusion import FUSIONS
from .layers import (
    TwoStream,
    input_features,
    is_divergence,
    kl_to_standard_normal,
    mlp,
    reduce_loss,
    reparameterise,
)
from .registry import register_prior


@dataclass
class SwitchingConfig(FusedConfig):
    """Switching VAE: audio-only and audio-visual decoders sharing z, per-frame switch m_t."""

    #: prior probability of the AV decoder (training mixture weight and EM initial state)
    switch_prior: float = 0.5
    #: Markov prior P(m_t = m_{t-1}) (``switch_markov=False``: independent frames)
    switch_stay: float = 0.9
    switch_markov: bool = True


@register_prior("switching", SwitchingConfig)
class SwitchingVAE(AVPriorBase):
    """Switching VAE (Sadeghi & Alameda-Pineda, ICASSP 2021), trained as one model.

    p(s_t|z_t, v_t, m_t) = CN(0, sigma2_A(z_t)) if m_t = A, CN(0, sigma2_AV(z_t, v_t)) if m_t = AV,
    z_t ~ N(0, I), m a Markov chain. Training (clean speech) uses the ELBO with q(m) = p(m):
    (1-pi) recon_A + pi recon_AV + KL, so both decoders share the latent space of one audio
    encoder q(z|s). At test time the EM loop (``reavise.inference.switch``, through the
    ``ModalitySwitch`` methods below) computes q(m_t) by forward-backward from each decoder's
    likelihood of x_t under the current NMF noise model; ``decode`` returns the moment-matched
    variance of the per-frame mixture, sigma2 = q_AV sigma2_AV + (1 - q_AV) sigma2_A (exact
    when q is 0 or 1).
    """

    config: SwitchingConfig

    def __init__(self, config: SwitchingConfig):
        super().__init__(config)
        c = config
        if not 0.0 < c.switch_prior < 1.0:
            raise ReaviseError(f"switch_prior must be in (0, 1), got {c.switch_prior}")
        if not 0.0 < c.switch_stay < 1.0:
            raise ReaviseError(f"switch_stay must be in (0, 1), got {c.switch_stay}")
        if c.fusion not in FUSIONS:
            raise ReaviseError(f"unknown fusion {c.fusion!r}; known: {', '.join(FUSIONS)}")
        h = list(c.hidden)
        rh = list(reversed(h))
        self.enc = mlp([c.x_dim, *h], c.activation)
        self.enc_mean = nn.Linear(h[-1], c.z_dim)
        self.enc_logvar = nn.Linear(h[-1], c.z_dim)
        self.dec_a = mlp([c.z_dim, *rh], c.activation)
        self.dec_a_logvar = nn.Linear(rh[-1], c.x_dim)
        self.dec_av = TwoStream(site_kind(c, "decoder"), c.z_dim, c.visual_dim, rh, c.activation,
                                c.fusion_heads, c.fusion_window)  # fmt: skip
        self.dec_av_logvar = nn.Linear(rh[-1], c.x_dim)

    def encode(self, power, ctx=None):
        h = self.enc(input_features(power, self.config.input_transform))
        return self.enc_mean(h), self.enc_logvar(h)

    def decode_audio(self, z):
        return self.dec_a_logvar(self.dec_a(z))

    def _av_hidden(self, z, ctx):
        feat, valid = self._ctx(ctx).streams(z, self.config.visual_dim)
        return self.dec_av(z, feat, valid)

    def decode_av(self, z, ctx):
        return self.dec_av_logvar(self._av_hidden(z, ctx)[0])

    def _q(self, ctx: AVContext, like: torch.Tensor) -> torch.Tensor:
        """Current q(m_t = AV) [B, T]: the EM posterior, else the prior (0 without video)."""
        if ctx.switch is not None:
            return ctx.switch
        _, valid = ctx.streams(like, self.config.visual_dim)
        return self.config.switch_prior * valid.to(like.dtype)

    def decoder(self, ctx=None):
        ctx = self._ctx(ctx)

        def mixture(z):
            la = self.decode_audio(z)
            lav = self.decode_av(z, ctx)
            q = self._q(ctx, z)[..., None].clamp(1e-6, 1 - 1e-6)
            # log(q e^{l_AV} + (1-q) e^{l_A}): moment-matched Gaussian of the two-decoder mixture
            return torch.logaddexp(torch.log(q) + lav, torch.log1p(-q) + la)

        return mixture

    def modality_weights(self, z, ctx=None, power=None):
        return {"dec_av": self._av_hidden(z, ctx)[1]}

    # --- ModalitySwitch: the per-frame state (A, AV) for the EM loop ---------------------
    def state_log_variances(self, z, ctx) -> list[torch.Tensor]:
        return [self.decode_audio(z), self.decode_av(z, ctx)]

    def state_posterior(self, log_evidence: torch.Tensor, ctx) -> torch.Tensor:
        """q(m) [B, T, 2] by forward-backward (or per frame) from the log-evidence of (A, AV);
        frames without video take the audio decoder."""
        c = self.config
        e = log_evidence
        _, valid = self._ctx(ctx).streams(e, c.visual_dim)
        e[..., 1] = e[..., 1].masked_fill(~valid, float("-inf"))  # no video -> audio decoder
        prior = torch.tensor([1 - c.switch_prior, c.switch_prior], dtype=e.dtype, device=e.device)
        if c.switch_markov:
            return forward_backward(e, torch.log(prior), c.switch_stay)
        return torch.softmax(e + torch.log(prior), -1)

    def with_state_posterior(self, ctx, q: torch.Tensor | None) -> AVContext:
        return dataclasses.replace(self._ctx(ctx), switch=None if q is None else q[..., 1])

    def loss(self, power, ctx=None, frame_mask=None, beta=1.0):
        ctx = self._ctx(ctx)
        mu, logvar = self.encode(power, ctx)
        z = reparameterise(mu, logvar)
        ra = is_divergence(power, self.decode_audio(z))
        rav = is_divergence(power, self.decode_av(z, ctx))
        _, valid = ctx.streams(power, self.config.visual_dim)
        pi = self.config.switch_prior * valid.to(ra.dtype)
        kl = kl_to_standard_normal(mu, logvar)
        return reduce_loss((1 - pi) * ra + pi * rav, kl, frame_mask, beta)


def forward_backward(loge: torch.Tensor, logp0: torch.Tensor, stay: float) -> torch.Tensor:
    """Posterior marginals of a 2-state HMM: log-emissions [B, T, 2] -> q [B, T, 2] (log-space)."""
    T = loge.shape[1]
    logA = torch.tensor([[math.log(stay), math.log(1 - stay)], [math.log(1 - stay), math.log(stay)]],
                        dtype=loge.dtype, device=loge.device)
    alpha = torch.empty_like(loge)
    a = logp0 + loge[:, 0]
    alpha[:, 0] = a
    for t in range(1, T):
        a = torch.logsumexp(a[..., :, None] + logA, -2) + loge[:, t]
        alpha[:, t] = a
    beta = torch.zeros_like(loge)
    b = torch.zeros_like(loge[:, 0])
    for t in range(T - 2, -1, -1):
        b = torch.logsumexp(logA + (loge[:, t + 1] + b)[..., None, :], -1)
        beta[:, t] = b
    return torch.softmax(alpha + beta, -1)
