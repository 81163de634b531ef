"""What the audio-visual priors share: the context, the configs, the visual front-end, and
the fused encoder/decoder of the AV-VAE family.

All share a visual front-end (``visual.py``, features computed once per utterance in
``context``) and, where an audio-side stream meets the visual stream, a fusion module
(``fusion.py``, config ``fusion``, through ``layers.TwoStream``): in the encoder q(z|s, v) the
audio stream is the spectrum, in the decoder p(s|z, v) it is z (the only "audio" there at test
time), and in the latent prior p(z|v) it is a learned "no-video" token, so an unreliable mouth
makes the prior fall back towards a video-independent one. Frames with ``valid=False`` (or
missing video) get no visual information anywhere; the conditional priors are then exactly
N(0, I), the audio-only prior.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import ReaviseError
from .base import SpeechPrior
from .fusion import FUSIONS
from .layers import ConditionedMLPDecoder, HeadDecoder, TwoStream, input_features
from .visual import VisualConfig, VisualFrontend

SITES = ("encoder", "decoder", "prior")


@dataclass
class AVContext:
    """Per-utterance-batch conditioning: visual features [B, T, Dv] and validity [B, T].

    ``feat`` is None when the video is missing. ``switch`` holds the switching model's
    posterior q(m_t = AV) [B, T] during an EM run (``with_state_posterior``).
    """

    feat: torch.Tensor | None
    valid: torch.Tensor | None
    switch: torch.Tensor | None = None
    extra: dict = field(default_factory=dict)

    def streams(self, like: torch.Tensor, dv: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(features [B, T, Dv], valid [B, T]) for an audio stream ``like`` [..., B, T, d]."""
        if self.feat is None:
            B, T = like.shape[-3], like.shape[-2]
            z = torch.zeros(B, T, dv, device=like.device, dtype=like.dtype)
            return z, torch.zeros(B, T, dtype=torch.bool, device=like.device)
        valid = self.valid
        if valid is None:
            valid = torch.ones(self.feat.shape[:-1], dtype=torch.bool, device=self.feat.device)
        return self.feat, valid.to(torch.bool)


@dataclass
class AVCommonConfig(VisualConfig):
    """Sizes shared by the AV priors (defaults close to the published AV-VAE: z 32, 128 tanh)."""

    x_dim: int = 513
    z_dim: int = 32
    hidden: tuple[int, ...] = (128,)
    activation: str = "tanh"
    input_transform: str = "power"


@dataclass
class FusedConfig(AVCommonConfig):
    """Fusion settings of the AV-VAE / AV-CVAE (``fusion`` replaces concatenation)."""

    #: "concat" | "gated" | "cross_attention" | "reliability"
    fusion: str = "concat"
    #: where the fusion module is used; other sites concatenate. The encoder is left out by
    #: default: with attention fusion there, tiny models collapsed onto the spectrum stream.
    fusion_at: tuple[str, ...] = ("decoder", "prior")
    fusion_heads: int = 4
    #: cross_attention: visual frames t-window..t+window seen by audio frame t
    fusion_window: int = 2
    #: condition the decoder p(s|z, v) on the video (published AV-VAE/AV-CVAE: True). False
    #: keeps the decoder audio-only, p(s|z), so the video acts through q(z|s, v) and (AV-CVAE)
    #: the prior p(z|v) alone and the model without video is a plain A-VAE.
    decoder_video: bool = True


def check_fusion(c: FusedConfig) -> None:
    """A known fusion kind and known sites (one-line errors)."""
    if c.fusion not in FUSIONS:
        raise ReaviseError(f"unknown fusion {c.fusion!r}; known: {', '.join(FUSIONS)}")
    bad = sorted(set(c.fusion_at) - set(SITES))
    if bad:
        raise ReaviseError(f"fusion_at: unknown sites {bad}; known: {list(SITES)}")


def site_kind(c: FusedConfig, site: str) -> str:
    """The fusion used at ``site``: the configured one there, concatenation elsewhere."""
    return c.fusion if site in c.fusion_at else "concat"


class AVPriorBase(SpeechPrior):
    """Visual front-end + context; subclasses define encoder/decoder/prior."""

    uses_video = True
    config: AVCommonConfig

    def __init__(self, config: AVCommonConfig):
        super().__init__()
        self.config = config
        if not config.hidden:
            raise ReaviseError("hidden must list at least one layer size")
        self.visual = VisualFrontend(config)

    def context(self, video: torch.Tensor | None, valid: torch.Tensor | None) -> AVContext:
        if video is None:
            return AVContext(None, None)
        # in eval mode the features are constants of the EM run (no graph kept across E-steps)
        with torch.set_grad_enabled(self.training and torch.is_grad_enabled()):
            feat = self.visual(video.to(next(self.parameters()).dtype))
        if valid is None:
            valid = torch.ones(feat.shape[:-1], dtype=torch.bool, device=feat.device)
        # missing frames carry no information: zero features (the fusion also masks them)
        feat = feat * valid[..., None].to(feat.dtype)
        return AVContext(feat, valid.to(torch.bool))

    def batch_context(self, video, valid, lengths) -> AVContext:
        """Each utterance's features from its own frames only ([1, n_b]), zero-padded to the
        batch: the front-end's convolutions round differently with the number of frames they
        get, and a temporal convolution would see the padding (while training: ``context``)."""
        if video is None or self.training:
            return self.context(video, valid)
        parts = [self.context(video[b : b + 1, :n], None if valid is None else valid[b : b + 1, :n])
                 for b, n in enumerate(lengths)]  # fmt: skip
        B, T = video.shape[:2]
        feat = parts[0].feat.new_zeros(B, T, parts[0].feat.shape[-1])
        mask = torch.zeros(B, T, dtype=torch.bool, device=feat.device)
        for b, (n, part) in enumerate(zip(lengths, parts, strict=True)):
            feat[b, :n] = part.feat[0]
            mask[b, :n] = part.valid[0]
        return AVContext(feat, mask)

    def _ctx(self, ctx: Any) -> AVContext:
        return ctx if isinstance(ctx, AVContext) else AVContext(None, None)

    def _per_context(self, ctx: AVContext, key: str, make):
        """``make()`` computed once per context and kept in it, where it is a constant: in
        eval mode with no parameter to train (an EM run), the lips' share of the decoder and
        of p(z|v) depends on the context alone, so it is not recomputed at every E-step
        (frame attention's local attention, the prior network). Whether the parameters are
        frozen is asked once per context (at its first use in the run)."""
        if self.training or ctx.feat is None:
            return make()
        kept = ctx.extra.get("per_context")
        if kept is None:
            if any(p.requires_grad for p in self.parameters()):
                return make()
            kept = ctx.extra["per_context"] = {}
        hit = kept.get((id(self), key))
        if hit is not None and hit[0] is ctx.feat and hit[1] is ctx.valid:
            return hit[2]
        out = make()
        kept[(id(self), key)] = (ctx.feat, ctx.valid, out)
        return out


class FusedAV(AVPriorBase):
    """Encoder q(z|s, v) and decoder p(s|z, v) with a fusion module at each (AV-VAE, AV-CVAE)."""

    config: FusedConfig

    def __init__(self, config: FusedConfig):
        super().__init__(config)
        c = config
        check_fusion(c)
        h, dv = list(c.hidden), c.visual_dim
        self.enc = TwoStream(site_kind(c, "encoder"), c.x_dim, dv, h, c.activation,
                             c.fusion_heads, c.fusion_window, bidirectional=True)
        self.enc_mean = nn.Linear(h[-1], c.z_dim)
        self.enc_logvar = nn.Linear(h[-1], c.z_dim)
        rh = list(reversed(h))
        self.dec = TwoStream(site_kind(c, "decoder"), c.z_dim, dv, rh, c.activation,
                             c.fusion_heads, c.fusion_window)
        self.dec_logvar = nn.Linear(rh[-1], c.x_dim)

    def _enc_hidden(self, power, ctx):
        feat, valid = self._ctx(ctx).streams(power, self.config.visual_dim)
        return self.enc(input_features(power, self.config.input_transform), feat, valid)

    def encode(self, power, ctx=None):
        h, _ = self._enc_hidden(power, ctx)
        return self.enc_mean(h), self.enc_logvar(h)

    def _dec_hidden(self, z, ctx):
        ctx = self._ctx(ctx) if self.config.decoder_video else AVContext(None, None)
        feat, valid = ctx.streams(z, self.config.visual_dim)
        return self.dec(z, feat, valid)

    def decoder(self, ctx=None) -> HeadDecoder | ConditionedMLPDecoder:
        """With a pass-through fusion (concat, frame_attention) the lips are folded into a
        per-frame bias of the first layer once here (``TwoStream.conditioned``), so the EM
        decodes as fast as an A-VAE; other fusions run for every z."""
        if self.dec.passthrough:
            c = self._ctx(ctx) if self.config.decoder_video else AVContext(None, None)
            return self._per_context(
                c, "decoder", lambda: ConditionedMLPDecoder(self.dec.conditioned(c.feat, c.valid), self.dec_logvar)
            )
        return HeadDecoder(lambda z: self._dec_hidden(z, ctx)[0], self.dec_logvar)

    def modality_weights(self, z, ctx=None, power=None):
        """The decoder's weights for ``z`` and, given the (noisy) ``power``, the encoder's."""
        out = {"dec": self._dec_hidden(z, ctx)[1]}
        if power is not None:
            out["enc"] = self._enc_hidden(power, ctx)[1]
        return out
