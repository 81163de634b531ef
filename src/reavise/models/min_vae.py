"""MIN-VAE: a mixture of inference networks (Sadeghi & Alameda-Pineda 2021, IEEE TSP)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ReaviseError
from .av_base import AVCommonConfig, AVPriorBase
from .layers import (
    MLPDecoder,
    input_features,
    is_divergence,
    kl_to_standard_normal,
    mlp,
    reduce_loss,
    reparameterise,
)
from .registry import register_prior


@dataclass
class MINVAEConfig(AVCommonConfig):
    """MIN-VAE: audio encoder q(z|s) and visual encoder q(z|v) mixed with weight ``mix_visual``."""

    #: prior probability pi that a frame's posterior comes from the visual encoder
    mix_visual: float = 0.5


@register_prior("min-vae", MINVAEConfig)
class MINVAE(AVPriorBase):
    """Mixture of inference networks (Sadeghi & Alameda-Pineda 2021, IEEE TSP).

    Generative model p(s|z) p(z) audio-only; posterior q(z|s, v) = (1-pi) q_a(z|s) + pi q_v(z|v)
    with a per-frame indicator c. Taking q(c) = p(c) gives the ELBO
        L = (1-pi) ELBO(q_a) + pi ELBO(q_v),
    which trains both encoders into one latent space (pi = 0 where the video is invalid).
    At test time ``encode`` uses the visual encoder where the video is valid: the inference
    starts from z predicted from the lips, not from the noisy spectrum.
    """

    def __init__(self, config: MINVAEConfig):
        super().__init__(config)
        c = config
        if not 0.0 <= c.mix_visual <= 1.0:
            raise ReaviseError(f"mix_visual must be in [0, 1], got {c.mix_visual}")
        h = list(c.hidden)
        self.enc = mlp([c.x_dim, *h], c.activation)
        self.enc_mean = nn.Linear(h[-1], c.z_dim)
        self.enc_logvar = nn.Linear(h[-1], c.z_dim)
        self.venc = mlp([c.visual_dim, *h], c.activation)
        self.venc_mean = nn.Linear(h[-1], c.z_dim)
        self.venc_logvar = nn.Linear(h[-1], c.z_dim)
        self.dec = mlp([c.z_dim, *reversed(h)], c.activation)
        self.dec_logvar = nn.Linear(h[0], c.x_dim)

    def encode_audio(self, power, ctx=None):
        h = self.enc(input_features(power, self.config.input_transform))
        return self.enc_mean(h), self.enc_logvar(h)

    def encode_visual(self, ctx):
        h = self.venc(ctx.feat)
        return self.venc_mean(h), self.venc_logvar(h)

    def encode(self, power, ctx=None):
        mu, logvar = self.encode_audio(power)
        ctx = self._ctx(ctx)
        if ctx.feat is None:
            return mu, logvar
        vmu, vlogvar = self.encode_visual(ctx)
        m = ctx.valid[..., None]
        return torch.where(m, vmu, mu), torch.where(m, vlogvar, logvar)

    def decoder(self, ctx=None) -> MLPDecoder:
        return MLPDecoder(self.dec, self.dec_logvar, self.config.activation)

    def modality_weights(self, z, ctx=None, power=None):
        """(audio, visual) weight of the encoder that ``encode`` uses in each frame."""
        ctx = self._ctx(ctx)
        if ctx.feat is None:
            return {}
        pi = ctx.valid.to(z.dtype)
        return {"mixture": torch.stack([1 - pi, pi], -1)}

    def _elbo_frames(self, power, mu, logvar) -> tuple[torch.Tensor, torch.Tensor]:
        """(IS reconstruction, KL to N(0, I)) per frame [B, T] for posterior (mu, logvar)."""
        z = reparameterise(mu, logvar)
        return is_divergence(power, self.decode(z)), kl_to_standard_normal(mu, logvar)

    def loss(self, power, ctx=None, frame_mask=None, beta=1.0):
        ctx = self._ctx(ctx)
        la = self._elbo_frames(power, *self.encode_audio(power))
        pi = torch.zeros_like(la[0])
        lv = (torch.zeros_like(pi), torch.zeros_like(pi))
        if ctx.feat is not None and self.config.mix_visual > 0:
            lv = self._elbo_frames(power, *self.encode_visual(ctx))
            pi = self.config.mix_visual * ctx.valid.to(pi.dtype)
        recon = (1 - pi) * la[0] + pi * lv[0]
        kl = (1 - pi) * la[1] + pi * lv[1]
        return reduce_loss(recon, kl, frame_mask, beta)
