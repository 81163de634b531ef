"""AV-CVAE (Sadeghi et al. 2020, IEEE/ACM TASLP, Sec. III-C): a learned prior p(z|v)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .av_base import FusedAV, FusedConfig, site_kind
from .layers import TwoStream
from .registry import register_prior


@dataclass
class AVCVAEConfig(FusedConfig):
    """AV-CVAE: as AV-VAE plus a learned prior p(z|v) = N(mu(v), diag exp(l(v)))."""


@register_prior("av-cvae", AVCVAEConfig)
class AVCVAE(FusedAV):
    """Conditional VAE (Sadeghi et al. 2020, TASLP, Sec. III-C): prior network p(z|v).

    The prior network fuses a learned no-video token with the visual features; its output is
    multiplied by the validity mask, so frames without video have the standard-normal prior.
    """

    #: p(z|v) is learned: MCEM and Langevin EM must score z with it, not with the N(0, I)
    #: fast path, or the video only reaches the EM through the decoder.
    standard_prior = False

    def __init__(self, config: AVCVAEConfig):
        super().__init__(config)
        c = config
        h = list(c.hidden)
        self.pri = TwoStream(site_kind(c, "prior"), 0, c.visual_dim, h, c.activation,
                             c.fusion_heads, c.fusion_window)
        self.pri_mean = nn.Linear(h[-1], c.z_dim)
        self.pri_logvar = nn.Linear(h[-1], c.z_dim)

    def _prior_hidden(self, z_like, ctx):
        feat, valid = ctx.streams(z_like, self.config.visual_dim)
        h, w = self.pri(None, feat, valid)
        return h, w, valid

    def prior(self, z_like, ctx=None):
        ctx = self._ctx(ctx)
        if ctx.feat is None:
            return super().prior(z_like, ctx)
        return self._per_context(ctx, "prior", lambda: self._prior_of(z_like, ctx))

    def _prior_of(self, z_like, ctx):
        h, _, valid = self._prior_hidden(z_like, ctx)
        m = valid[..., None].to(h.dtype)
        return self.pri_mean(h) * m, self.pri_logvar(h) * m

    def modality_weights(self, z, ctx=None, power=None):
        """As the AV-VAE's, plus the prior network's where there is video (it does not run
        without)."""
        out = super().modality_weights(z, ctx, power)
        c = self._ctx(ctx)
        if c.feat is not None:
            out["pri"] = self._prior_hidden(z, c)[1]
        return out
