"""Fusion of an audio-side stream and a visual stream, frame by frame.

Common interface (every module): ``fuse(audio [..., B, T, Da], visual [B, T, Dv], valid [B, T])
-> (fused [..., B, T, out_dim], weights [..., B, T, 2])`` where ``weights[..., 0]`` is the
audio weight and ``weights[..., 1]`` the visual weight (they sum to one). The audio side may
carry leading sample dimensions (z samples in the EM E-steps); the visual side broadcasts.
Frames with ``valid=False`` never contribute visual information. The weights are returned,
never kept: a prior passes them on explicitly (``SpeechPrior.modality_weights``).

Kinds: ``concat`` (AV-VAE, Sadeghi et al. 2020), ``gated`` (gated multimodal unit, Arevalo et
al. 2017), ``cross_attention`` (local-window multi-head attention, Vaswani et al. 2017; as
in AV speech separation/recognition, e.g. Afouras et al. 2018), ``reliability`` (product of
per-modality Gaussian experts, Hinton 2002; Wu & Goodman 2018, with per-frame learned
uncertainties), ``frame_attention`` (per-frame visual weights from the lips alone, over
local temporal self-attention: reliability weighting at the cost of concatenation).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ReaviseError
from ..registry import Registry

#: every fusion module by name (``build_fusion``)
FUSIONS = Registry("fusion")


def _valid(valid: torch.Tensor | None, visual: torch.Tensor) -> torch.Tensor:
    if valid is None:
        return torch.ones(visual.shape[:-1], dtype=torch.bool, device=visual.device)
    return valid.to(torch.bool)


class Fusion(nn.Module):
    """Base class: ``forward`` = ``fuse``, (fused features, per-frame modality weights).

    A *pass-through* fusion (``passthrough = True``) leaves the audio-side stream as it is and
    appends a visual part that depends on the visual stream alone: ``fuse(a, v) = [a;
    visual_part(v)]``. The layer after it is then linear in a plus a per-frame term computed
    once per utterance (``layers.TwoStream.conditioned``), so the EM decodes such a prior
    about as fast as the audio-only one.
    """

    out_dim: int
    passthrough = False

    def visual_part(self, visual, valid=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Pass-through fusions: (visual features [B, T, Dp], weights [B, T, 2])."""
        raise NotImplementedError

    def fuse(self, audio, visual, valid=None) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, audio, visual, valid=None):
        return self.fuse(audio, visual, valid)


class PassThroughFusion(Fusion):
    """A pass-through fusion: ``fuse(a, v) = [a; visual_part(v)]``, its weights broadcast
    over the audio side's leading sample dims."""

    passthrough = True

    def fuse(self, audio, visual, valid=None):
        v, w = self.visual_part(visual, valid)
        lead = audio.shape[:-1]
        return torch.cat([audio, v.expand(*lead, v.shape[-1])], -1), w.expand(*lead, 2)


@FUSIONS.register("concat")
class ConcatFusion(PassThroughFusion):
    """[a; v] with invalid visual frames zeroed; reports fixed 0.5/0.5 weights."""

    def __init__(self, da: int, dv: int, **_):
        super().__init__()
        self.out_dim = da + dv

    def visual_part(self, visual, valid=None):
        m = _valid(valid, visual)
        w = torch.full((*visual.shape[:-1], 2), 0.5, dtype=visual.dtype, device=visual.device)
        return visual * m[..., None].to(visual.dtype), w


@FUSIONS.register("gated")
class GatedFusion(Fusion):
    """h = g * a' + (1 - g) * v' with a per-frame, per-feature gate g = sigmoid(W [a'; v']).

    The gated multimodal unit (Arevalo et al. 2017); invalid frames force g = 1 (audio only).
    """

    def __init__(self, da: int, dv: int, dim: int, **_):
        super().__init__()
        self.out_dim = dim
        self.pa = nn.Linear(da, dim)
        self.pv = nn.Linear(dv, dim)
        self.gate = nn.Linear(2 * dim, dim)

    def fuse(self, audio, visual, valid=None):
        m = _valid(valid, visual)[..., None]
        a = torch.tanh(self.pa(audio))
        v = torch.tanh(self.pv(visual)).expand_as(a)
        g = torch.sigmoid(self.gate(torch.cat([a, v], -1)))
        g = torch.where(m, g, torch.ones_like(g))
        fused = g * a + (1 - g) * v
        wa = g.mean(-1, keepdim=True)
        return fused, torch.cat([wa, 1 - wa], -1)


def _windows(x: torch.Tensor, radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x [..., T, D] -> neighbours [..., T, 2r+1, D] and in-range mask [T, 2r+1]."""
    T = x.shape[-2]
    off = torch.arange(-radius, radius + 1, device=x.device)
    idx = torch.arange(T, device=x.device)[:, None] + off[None, :]
    inside = (idx >= 0) & (idx < T)
    return x[..., idx.clamp(0, T - 1), :], inside


class _LocalAttention(nn.Module):
    """Multi-head attention of each query frame over a window of key frames (+ optional self key).

    softmax_k(q_t . k_k / sqrt(d_h)) over keys k in {self} U {t-r..t+r}, masked keys excluded.
    Returns the attended values and the attention mass on the windowed (other-modality) keys.
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ReaviseError(f"fusion dim {dim} not divisible by {heads} heads")
        self.h, self.dh = heads, dim // heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)

    def forward(self, query, context, ctx_mask, radius: int, self_key: bool):
        # query [..., B, T, d]; context [..., B, T, d]; ctx_mask [B, T] bool
        h, dh = self.h, self.dh
        if self_key and not bool(ctx_mask.any()):
            # no valid key anywhere (missing video, or an audio-only decoder): the softmax puts
            # all its mass on the self key, exactly, so skip the windows (MCEM decodes often)
            return self.o(self.v(query)), query.new_zeros(query.shape[:-1])
        q = self.q(query).unflatten(-1, (h, dh))  # [..., B, T, h, dh]
        kw, inside = _windows(self.k(context), radius)  # [..., B, T, K, d]
        vw, _ = _windows(self.v(context), radius)
        mw, _ = _windows(ctx_mask[..., None], radius)  # [B, T, K, 1]
        keep = mw[..., 0] & inside  # [B, T, K]
        kw, vw = kw.unflatten(-1, (h, dh)), vw.unflatten(-1, (h, dh))
        scores = (q.unsqueeze(-3) * kw).sum(-1) / math.sqrt(dh)  # [..., B, T, K, h]
        scores = scores.masked_fill(~keep[..., None], float("-inf"))
        if self_key:
            ks = self.k(query).unflatten(-1, (h, dh))
            vs = self.v(query).unflatten(-1, (h, dh))
            s_self = (q * ks).sum(-1).unsqueeze(-2) / math.sqrt(dh)  # [..., B, T, 1, h]
            att = torch.softmax(torch.cat([s_self, scores], -2), dim=-2)  # self key first
            a_self, a_win = att[..., :1, :], att[..., 1:, :]
            out = a_self.transpose(-1, -2) * vs + (a_win.unsqueeze(-1) * vw).sum(-3)
            mass = a_win.sum(-2).mean(-1)
        else:
            # a query with no valid key attends to nothing (zero output)
            none = ~keep.any(-1)  # [B, T]
            att = torch.softmax(scores.masked_fill(none[..., None, None], 0.0), dim=-2)
            att = att * (~none)[..., None, None].to(att.dtype)
            out = (att.unsqueeze(-1) * vw).sum(-3)
            mass = att.sum(-2).mean(-1)
        out = out.flatten(-2)  # [..., B, T, d]
        return self.o(out), mass


@FUSIONS.register("cross_attention")
class CrossAttentionFusion(Fusion):
    """Audio queries attend over [own frame; visual frames t-r..t+r]; residual + layer norm.

    The attention mass put on the visual keys is the visual weight, so a frame whose video is
    judged useless keeps its own audio feature. With ``bidirectional`` (encoder only, where the
    audio is observed) the visual stream is first refined by attending over the audio window.
    Invalid visual frames are masked out of the keys.
    """

    def __init__(self, da: int, dv: int, dim: int, heads: int = 4, window: int = 2,
                 bidirectional: bool = False, **_):
        super().__init__()
        self.out_dim = dim
        self.radius = window
        self.pa = nn.Linear(da, dim)
        self.pv = nn.Linear(dv, dim)
        self.av = _LocalAttention(dim, heads)
        self.norm = nn.LayerNorm(dim)
        self.va = _LocalAttention(dim, heads) if bidirectional else None
        self.norm_v = nn.LayerNorm(dim) if bidirectional else None

    def fuse(self, audio, visual, valid=None):
        m = _valid(valid, visual)
        a = self.pa(audio)
        v = self.pv(visual)
        if self.va is not None:
            # reverse direction: video frames attend over the (always valid) audio window
            amask = torch.ones_like(m)
            dv, _ = self.va(v, a, amask, self.radius, self_key=False)
            v = self.norm_v(v + dv)
        att, mass = self.av(a, v, m, self.radius, self_key=True)
        fused = self.norm(a + att)
        mass = mass.clamp(0.0, 1.0)[..., None]
        return fused, torch.cat([1 - mass, mass], -1)


@FUSIONS.register("reliability")
class ReliabilityFusion(Fusion):
    """Product of per-modality Gaussian experts with learned per-frame uncertainties.

    Each stream m in {audio, visual} gives a feature mean mu_m and a log-variance l_m (one per
    frame, predicted from that stream alone). The product of N(mu_m, e^{l_m} I) is Gaussian with
    mean sum_m w_m mu_m, w_m = softmax_m(-l_m) (precision weighting; Hinton 2002; Wu & Goodman
    2018). An occluded or noisy mouth raises l_v (learned from pixels under visual-corruption
    augmentation); an invalid frame has l_v = +inf, i.e. visual weight exactly 0.
    """

    def __init__(self, da: int, dv: int, dim: int, **_):
        super().__init__()
        self.out_dim = 2 * dim
        self.pa = nn.Linear(da, dim)
        self.pv = nn.Linear(dv, dim)
        self.ua = nn.Sequential(nn.Linear(da, dim), nn.Tanh(), nn.Linear(dim, 1))
        self.uv = nn.Sequential(nn.Linear(dv, dim), nn.Tanh(), nn.Linear(dim, 1))
        for head in (self.ua, self.uv):  # start from equal weights (0.5 / 0.5)
            nn.init.zeros_(head[-1].weight)
            nn.init.zeros_(head[-1].bias)

    def log_variances(self, audio, visual, valid=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-frame log-variances (l_a [..., B, T, 1], l_v [B, T, 1]; +inf where invalid)."""
        m = _valid(valid, visual)[..., None]
        la = self.ua(audio).clamp(-10, 10)
        lv = self.uv(visual).clamp(-10, 10)
        return la, lv.masked_fill(~m, float("inf"))

    def fuse(self, audio, visual, valid=None):
        a = torch.tanh(self.pa(audio))
        if not bool(_valid(valid, visual).any()):
            # no valid video frame: the visual expert has l_v = +inf, so w = (1, 0) exactly and
            # the visual half is 0; skip the uncertainty heads (MCEM decodes often)
            w = torch.cat([torch.ones_like(a[..., :1]), torch.zeros_like(a[..., :1])], -1)
            return torch.cat([2 * a, torch.zeros_like(a)], -1), w
        v = torch.tanh(self.pv(visual)).expand_as(a)
        la, lv = self.log_variances(audio, visual, valid)
        w = torch.softmax(torch.cat([-la, (-lv).expand_as(la)], -1), -1)  # [..., B, T, 2]
        # precision-weighted streams, kept side by side (scaled so 0.5/0.5 is the identity):
        # a convex sum of the two means made training collapse onto one stream, since the
        # streams live in different feature spaces; side by side the next layer reads both.
        fused = torch.cat([2 * w[..., :1] * a, 2 * w[..., 1:] * v], -1)
        return fused, w


@FUSIONS.register("frame_attention")
class FrameAttentionFusion(PassThroughFusion):
    """Per-frame modality attention from the visual stream: [a; w_v(t) v'_t].

    The visual features first attend over their neighbours (local multi-head self-attention
    over frames t-window..t+window, invalid frames masked out of the keys, residual + layer
    norm: temporal context, as av-dkf's transformer over lip embeddings), then a small head
    scores each frame's reliability: w_v(t) = sigmoid(s(v'_t)), exactly 0 where the frame is
    invalid, w_a = 1 - w_v. The audio-side stream passes through unweighted: the visual
    weight decides how much of the lips reaches the next layer, frame by frame, so a mouth
    the head judges unreliable (learned from pixels under visual-corruption training) leaves
    an audio-only model. The weights depend on the video alone, not on z: computed once per
    utterance, they cost nothing on the EM's hot path (``Fusion.passthrough``), unlike the
    gated and cross-attention fusions, which are recomputed for every z sample.
    """

    def __init__(self, da: int, dv: int, dim: int, heads: int = 4, window: int = 2, **_):
        super().__init__()
        self.out_dim = da + dim
        self.radius = window
        self.pv = nn.Linear(dv, dim)
        self.att = _LocalAttention(dim, heads)
        self.norm = nn.LayerNorm(dim)
        self.score = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 1))
        nn.init.zeros_(self.score[-1].weight)
        nn.init.constant_(self.score[-1].bias, 2.0)  # start by trusting the lips (w_v 0.88)

    def visual_part(self, visual, valid=None):
        m = _valid(valid, visual)
        v = self.pv(visual)
        dv, _ = self.att(v, v, m, self.radius, self_key=False)
        v = self.norm(v + dv)
        wv = torch.sigmoid(self.score(v)) * m[..., None].to(v.dtype)
        return wv * torch.tanh(v), torch.cat([1 - wv, wv], -1)


def build_fusion(kind: str, da: int, dv: int, dim: int, heads: int = 4, window: int = 2,
                 bidirectional: bool = False) -> Fusion:
    """Instantiate fusion ``kind`` for an audio stream of ``da`` and a visual stream of ``dv``."""
    cls = FUSIONS.get(kind)  # an unknown kind: one error listing the known ones
    return cls(da, dv, dim=dim, heads=heads, window=window, bidirectional=bidirectional)
