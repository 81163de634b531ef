"""A-VAE: the frame-wise audio-only VAE speech prior (Leglaive et al. 2018, MLSP)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .base import SpeechPrior
from .layers import MLPDecoder, input_features, mlp
from .registry import register_prior


@dataclass
class AVAEConfig:
    """Sizes of the A-VAE; defaults are the published ones (513 -> 128 tanh -> 16)."""

    x_dim: int = 513
    z_dim: int = 16
    hidden: tuple[int, ...] = (128,)
    activation: str = "tanh"
    input_transform: str = "power"


@register_prior("a-vae", AVAEConfig)
class AVAE(SpeechPrior):
    """Encoder q(z|s) and decoder log sigma2(z), applied to each STFT frame independently."""

    def __init__(self, config: AVAEConfig):
        super().__init__()
        self.config = config
        h = list(config.hidden)
        self.enc = mlp([config.x_dim, *h], config.activation)
        self.enc_mean = nn.Linear(h[-1], config.z_dim)
        self.enc_logvar = nn.Linear(h[-1], config.z_dim)
        self.dec = mlp([config.z_dim, *reversed(h)], config.activation)
        self.dec_logvar = nn.Linear(h[0], config.x_dim)

    def encode(self, power: torch.Tensor, ctx: Any = None):
        h = self.enc(input_features(power, self.config.input_transform))
        return self.enc_mean(h), self.enc_logvar(h)

    def decoder(self, ctx: Any = None) -> MLPDecoder:
        return MLPDecoder(self.dec, self.dec_logvar, self.config.activation)
