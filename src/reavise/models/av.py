"""Audio-visual speech priors: AV-VAE, AV-CVAE, MIN-VAE and the switching VAE.

All share a visual front-end (``visual.py``, features computed once per utterance in
``context``) and, where an audio-side stream meets the visual stream, a fusion module
(``fusion.py``, config ``fusion``): in the encoder q(z|s, v) the audio stream is the
spectrum, in the decoder p(s|z, v) it is z (the only "audio" there at test time), and in the
latent prior p(z|v) it is a learned "no-video" token, so an unreliable mouth makes the prior
fall back towards a video-independent one. Frames with ``valid=False`` (or missing video)
get no visual information anywhere; the conditional priors are then exactly N(0, I), the
audio-only prior.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import ReaviseError
from .base import DecoderSplit, SpeechPrior, input_features, is_divergence, mlp, reduce_loss
from .fusion import FUSIONS, Fusion, build_fusion
from .registry import register_prior
from .vae import mlp_decoder_split
from .visual import VisualConfig, VisualFrontend

SITES = ("encoder", "decoder", "prior")


@dataclass
class AVContext:
    """Per-utterance-batch conditioning: visual features [B, T, Dv] and validity [B, T].

    ``feat`` is None when the video is missing. ``switch`` holds the switching model's
    posterior q(m_t = AV) [B, T] during an EM run.
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


class TwoStream(nn.Module):
    """An MLP over fuse(audio stream, visual stream): hidden sizes ``sizes`` -> out [..., sizes[-1]].

    concat: MLP([a; v]) exactly as the AV-VAE (Sadeghi et al. 2020). Otherwise the audio stream
    is first projected to sizes[0] (with activation), fused with the visual features into
    sizes[0], and the remaining layers follow. ``da=0`` makes the audio stream a learned token.
    """

    def __init__(self, kind: str, da: int, dv: int, sizes: list[int], act: str, heads: int,
                 window: int, bidirectional: bool = False):
        super().__init__()
        self.kind = kind
        self.null = nn.Parameter(torch.zeros(sizes[0])) if da == 0 else None
        if kind == "concat":
            self.pre = None
            self.fusion = build_fusion("concat", max(da, 0), dv, 0)
            self.post = mlp([da + dv, *sizes], act)
        else:
            self.pre = mlp([da, sizes[0]], act) if da > 0 else None
            self.fusion = build_fusion(kind, sizes[0], dv, sizes[0], heads, window, bidirectional)
            out = self.fusion.out_dim
            if len(sizes) > 1:
                self.post = mlp([out, *sizes[1:]], act)
            else:  # one hidden layer: map the fused features back to its size if needed
                self.post = mlp([out, sizes[0]], act) if out != sizes[0] else nn.Identity()

    def forward(self, audio: torch.Tensor | None, visual, valid):
        if self.null is not None:
            B, T = visual.shape[:2]
            if self.kind == "concat":
                audio = visual.new_zeros(B, T, 0)
            else:
                audio = self.null.expand(B, T, -1)
        elif self.pre is not None:
            audio = self.pre(audio)
        fused, w = self.fusion(audio, visual, valid)
        return self.post(fused), w


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
        # a new utterance batch: forget the modality weights of the previous one, so a site
        # that is skipped now (AV-CVAE's prior without video) reports nothing, not stale weights
        for mod in self.modules():
            if isinstance(mod, Fusion):
                mod.last_weights = None
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

    def _ctx(self, ctx: Any) -> AVContext:
        return ctx if isinstance(ctx, AVContext) else AVContext(None, None)

    def fusion_weights(self) -> dict[str, torch.Tensor]:
        """(audio, visual) weights [..., B, T, 2] of each fusion site at its last forward pass."""
        out = {}
        for name, mod in self.named_modules():
            w = getattr(mod, "last_weights", None)
            if w is not None and name.endswith("fusion"):
                out[name.removesuffix(".fusion")] = w
        return out


class _FusedAV(AVPriorBase):
    """Encoder q(z|s, v) and decoder p(s|z, v) with a fusion module at each."""

    config: FusedConfig

    def __init__(self, config: FusedConfig):
        super().__init__(config)
        c = config
        if c.fusion not in FUSIONS:
            raise ReaviseError(f"unknown fusion {c.fusion!r}; known: {', '.join(FUSIONS)}")
        bad = sorted(set(c.fusion_at) - set(SITES))
        if bad:
            raise ReaviseError(f"fusion_at: unknown sites {bad}; known: {list(SITES)}")
        h, dv = list(c.hidden), c.visual_dim

        def kind(site: str) -> str:
            return c.fusion if site in c.fusion_at else "concat"

        self.enc = TwoStream(kind("encoder"), c.x_dim, dv, h, c.activation, c.fusion_heads,
                             c.fusion_window, bidirectional=True)
        self.enc_mean = nn.Linear(h[-1], c.z_dim)
        self.enc_logvar = nn.Linear(h[-1], c.z_dim)
        rh = list(reversed(h))
        self.dec = TwoStream(kind("decoder"), c.z_dim, dv, rh, c.activation, c.fusion_heads,
                             c.fusion_window)
        self.dec_logvar = nn.Linear(rh[-1], c.x_dim)

    def encode(self, power, ctx=None):
        feat, valid = self._ctx(ctx).streams(power, self.config.visual_dim)
        h, _ = self.enc(input_features(power, self.config.input_transform), feat, valid)
        return self.enc_mean(h), self.enc_logvar(h)

    def decode(self, z, ctx=None):
        return self.dec_logvar(self._dec_hidden(z, ctx))

    def _dec_hidden(self, z, ctx):
        ctx = self._ctx(ctx) if self.config.decoder_video else AVContext(None, None)
        feat, valid = ctx.streams(z, self.config.visual_dim)
        h, _ = self.dec(z, feat, valid)
        return h

    def decoder_split(self, ctx):
        return DecoderSplit(
            lambda z: self._dec_hidden(z, ctx), self.dec_logvar.weight, self.dec_logvar.bias
        )


@dataclass
class AVVAEConfig(FusedConfig):
    """AV-VAE (Sadeghi et al. 2020): video in encoder and decoder, prior N(0, I)."""


@register_prior("av-vae", AVVAEConfig)
class AVVAE(_FusedAV):
    """AV-VAE: q(z|s, v), p(s|z, v), p(z) = N(0, I) (Sadeghi et al. 2020, TASLP, Sec. III-B)."""


@dataclass
class AVCVAEConfig(FusedConfig):
    """AV-CVAE: as AV-VAE plus a learned prior p(z|v) = N(mu(v), diag exp(l(v)))."""


@register_prior("av-cvae", AVCVAEConfig)
class AVCVAE(_FusedAV):
    """Conditional VAE (Sadeghi et al. 2020, TASLP, Sec. III-C): prior network p(z|v).

    The prior network fuses a learned no-video token with the visual features; its output is
    multiplied by the validity mask, so frames without video have the standard-normal prior.
    """

    #: p(z|v) is learned: MCEM and Langevin EM must score z with it (``prior_scorer``), not with
    #: the N(0, I) fast path, or the video only reaches the EM through the decoder.
    standard_prior = False

    def __init__(self, config: AVCVAEConfig):
        super().__init__(config)
        c = config
        h = list(c.hidden)
        k = c.fusion if "prior" in c.fusion_at else "concat"
        self.pri = TwoStream(k, 0, c.visual_dim, h, c.activation, c.fusion_heads, c.fusion_window)
        self.pri_mean = nn.Linear(h[-1], c.z_dim)
        self.pri_logvar = nn.Linear(h[-1], c.z_dim)

    def prior(self, z_like, ctx=None):
        ctx = self._ctx(ctx)
        if ctx.feat is None:
            return super().prior(z_like, ctx)
        feat, valid = ctx.streams(z_like, self.config.visual_dim)
        h, _ = self.pri(None, feat, valid)
        m = valid[..., None].to(h.dtype)
        return self.pri_mean(h) * m, self.pri_logvar(h) * m


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
        self.last_weights: torch.Tensor | None = None

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

    def decode(self, z, ctx=None):
        return self.dec_logvar(self.dec(z))

    def decoder_split(self, ctx):
        return mlp_decoder_split(self.dec, self.dec_logvar, self.config.activation)

    def fusion_weights(self) -> dict[str, torch.Tensor]:
        return {} if self.last_weights is None else {"mixture": self.last_weights}

    def loss(self, power, ctx=None, frame_mask=None, beta=1.0):
        ctx = self._ctx(ctx)
        la = _elbo_frames(self, power, *self.encode_audio(power))
        pi = torch.zeros_like(la[0])
        lv = (torch.zeros_like(pi), torch.zeros_like(pi))
        if ctx.feat is not None and self.config.mix_visual > 0:
            lv = _elbo_frames(self, power, *self.encode_visual(ctx))
            pi = self.config.mix_visual * ctx.valid.to(pi.dtype)
        self.last_weights = torch.stack([1 - pi, pi], -1).detach()
        recon = (1 - pi) * la[0] + pi * lv[0]
        kl = (1 - pi) * la[1] + pi * lv[1]
        return reduce_loss(recon, kl, frame_mask, beta)


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
    encoder q(z|s). At test time ``em_update`` (called by the EM loop after each M-step)
    computes q(m_t) by forward-backward from each decoder's likelihood of x_t under the current
    NMF noise model; ``decode`` returns the moment-matched variance of the per-frame mixture,
    sigma2 = q_AV sigma2_AV + (1 - q_AV) sigma2_A (exact when q is 0 or 1).
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
        k = c.fusion if "decoder" in c.fusion_at else "concat"
        self.dec_av = TwoStream(k, c.z_dim, c.visual_dim, rh, c.activation, c.fusion_heads,
                                c.fusion_window)
        self.dec_av_logvar = nn.Linear(rh[-1], c.x_dim)

    def encode(self, power, ctx=None):
        h = self.enc(input_features(power, self.config.input_transform))
        return self.enc_mean(h), self.enc_logvar(h)

    def decode_audio(self, z):
        return self.dec_a_logvar(self.dec_a(z))

    def decode_av(self, z, ctx):
        feat, valid = self._ctx(ctx).streams(z, self.config.visual_dim)
        h, _ = self.dec_av(z, feat, valid)
        return self.dec_av_logvar(h)

    def _q(self, ctx: AVContext, like: torch.Tensor) -> torch.Tensor:
        """Current q(m_t = AV) [B, T]: the EM posterior, else the prior (0 without video)."""
        if ctx.switch is not None:
            return ctx.switch
        _, valid = ctx.streams(like, self.config.visual_dim)
        return self.config.switch_prior * valid.to(like.dtype)

    def decode(self, z, ctx=None):
        ctx = self._ctx(ctx)
        la = self.decode_audio(z)
        lav = self.decode_av(z, ctx)
        q = self._q(ctx, z)[..., None].clamp(1e-6, 1 - 1e-6)
        # log(q e^{l_AV} + (1-q) e^{l_A}): moment-matched Gaussian of the two-decoder mixture
        return torch.logaddexp(torch.log(q) + lav, torch.log1p(-q) + la)

    def switch_posterior(self, ctx) -> torch.Tensor | None:
        """q(m_t = AV) [B, T] from the last EM iteration (None before any)."""
        return self._ctx(ctx).switch

    # --- EM hooks (called by reavise.inference.base.EMAlgorithm.run) --------------------
    def em_begin(self, ctx) -> None:
        if isinstance(ctx, AVContext):
            ctx.switch = None

    def em_update(self, ctx, P, nmf, z, mask) -> bool:
        """Forward-backward for q(m) given z samples [R, B, T, D] and the NMF noise model."""
        from ..inference.base import frame_loglik

        if not isinstance(ctx, AVContext):
            return False
        c = self.config
        with torch.no_grad():
            zs = z if z.dim() == 4 else z.unsqueeze(0)
            R = zs.shape[0]
            lls = []
            for logv in (self.decode_audio(zs), self.decode_av(zs, ctx)):
                ll = frame_loglik(P, torch.exp(logv), nmf)  # [R, B, T]
                lls.append(torch.logsumexp(ll, 0) - torch.log(torch.tensor(float(R))))
            e = torch.stack(lls, -1)  # [B, T, 2] log-emissions (A, AV)
            _, valid = ctx.streams(zs, c.visual_dim)
            e = e * mask[..., None]  # padded frames: no evidence
            e[..., 1] = e[..., 1].masked_fill(~valid, float("-inf"))  # no video -> audio decoder
            prior = torch.tensor([1 - c.switch_prior, c.switch_prior], dtype=e.dtype, device=e.device)
            if c.switch_markov:
                q = _forward_backward(e, torch.log(prior), c.switch_stay)
            else:
                q = torch.softmax(e + torch.log(prior), -1)
            ctx.switch = q[..., 1]
        return True

    def em_info(self, ctx) -> dict:
        s = self.switch_posterior(ctx)
        return {} if s is None else {"switch": s}

    def loss(self, power, ctx=None, frame_mask=None, beta=1.0):
        ctx = self._ctx(ctx)
        mu, logvar = self.encode(power, ctx)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        ra = is_divergence(power, self.decode_audio(z))
        rav = is_divergence(power, self.decode_av(z, ctx))
        _, valid = ctx.streams(power, self.config.visual_dim)
        pi = self.config.switch_prior * valid.to(ra.dtype)
        kl = 0.5 * (torch.exp(logvar) + mu**2 - 1 - logvar).sum(-1)
        return reduce_loss((1 - pi) * ra + pi * rav, kl, frame_mask, beta)


def _forward_backward(loge: torch.Tensor, logp0: torch.Tensor, stay: float) -> torch.Tensor:
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


def _elbo_frames(model, power, mu, logvar) -> tuple[torch.Tensor, torch.Tensor]:
    """(IS reconstruction, KL to N(0, I)) per frame [B, T] for posterior (mu, logvar)."""
    z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
    kl = 0.5 * (torch.exp(logvar) + mu**2 - 1 - logvar).sum(-1)
    return is_divergence(power, model.decode(z)), kl
