"""AV-VAE (Sadeghi et al. 2020, IEEE/ACM TASLP, Sec. III-B): video in encoder and decoder."""

from __future__ import annotations

from dataclasses import dataclass

from .av_base import FusedAV, FusedConfig
from .registry import register_prior


@dataclass
class AVVAEConfig(FusedConfig):
    """AV-VAE (Sadeghi et al. 2020): video in encoder and decoder, prior N(0, I)."""


@register_prior("av-vae", AVVAEConfig)
class AVVAE(FusedAV):
    """AV-VAE: q(z|s, v), p(s|z, v), p(z) = N(0, I) (Sadeghi et al. 2020, TASLP, Sec. III-B)."""
