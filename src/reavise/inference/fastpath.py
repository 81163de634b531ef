"""Faster ways to run a prior's decoder and latent prior inside the EM loops.

A prior only implements the narrow interface of ``reavise.models.base.SpeechPrior``. This
module recognises what it can accelerate from what the prior returns, never from its layer
names or its class, and falls back to the plain call otherwise:

* ``decoder(ctx)`` returning a ``layers.MLPDecoder`` with tanh (the A-VAE, MIN-VAE): the
  folded decoder of :func:`log2_variance` (tanh's affine part, the log2 e scale and the
  E-step's offset folded into the weights), and the int8 output layer of MCEM
  (:func:`decoder_split`, ``reavise.native.Int8Decoder``, with the tanh layer computed in C);
* a ``layers.ConditionedMLPDecoder`` (AV-VAE, AV-CVAE with concat or frame_attention in the
  decoder: the lips folded into a per-frame bias of the first layer): folded like the A-VAE's,
  with that bias; int8 output layer over its hidden map;
* a ``layers.HeadDecoder`` (AV-VAE, AV-CVAE with gated or cross-attention fusion): the int8
  output layer over the hidden map;
* a ``layers.FrameSelectDecoder`` (the audio fallback with lips in some frames only): each
  of its two decoders on its own frames, each by the path above that it gets (no int8
  output layer);
* ``standard_prior``: log p(z) = -|z|^2 / 2 without calling ``prior``; a frame-wise prior's
  p(z|v) is computed once per E-step (:func:`prior_scorer`), a sequence prior's at each call.

A prior whose decoder is none of these (a wrapper that changes the output, the switching
VAE's mixture, an LSTM decoder) is decoded as it is; :func:`describe` says which path a prior
gets and a fall-back is logged once per prior class, so no path is lost silently.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..models.layers import (
    LOG2_E,
    LOG_2PI,
    ConditionedMLPDecoder,
    FrameSelectDecoder,
    HeadDecoder,
    MLPDecoder,
)

log = logging.getLogger(__name__)
_reported: set[str] = set()


@dataclass
class DecoderSplit:
    """The decoder cut before its output layer: log sigma2(z) = weight @ hidden(z) + bias."""

    hidden: Callable[[torch.Tensor], torch.Tensor]  # z [..., B, T, D] -> [..., B, T, H]
    weight: torch.Tensor  # [F, H]
    bias: torch.Tensor  # [F]
    #: (W1 [H, D], b1 [H] or per frame [B, T, H]) when hidden(z) is exactly tanh(W1 z + b1)
    #: (values in [-1, 1])
    tanh_layer: tuple[torch.Tensor, torch.Tensor] | None = None


def describe(prior, ctx: Any = None) -> str:
    """The decoder path ``prior`` gets: "folded-mlp", "split-head", "frame-select" or "plain"."""
    dec = prior.decoder(ctx)
    if isinstance(dec, FrameSelectDecoder):
        return "frame-select"
    if _foldable(dec):
        return "folded-mlp"
    if isinstance(dec, (MLPDecoder, ConditionedMLPDecoder, HeadDecoder)):
        return "split-head"
    return "plain"


def _plain(prior, dec) -> None:
    """Say once per prior class that its decoder runs as it is (no faster path)."""
    name = type(prior).__name__
    if name not in _reported:
        _reported.add(name)
        log.debug("%s: decoder %s has no faster path here, decoded as is", name, type(dec).__name__)


def decoder_split(prior, ctx: Any) -> DecoderSplit | None:
    """log sigma2(z, v) as ``weight @ hidden(z) + bias`` for this context (MCEM's int8
    products), or None where the decoder does not end in a recognised linear layer."""
    dec = prior.decoder(ctx)
    if isinstance(dec, MLPDecoder):
        lins = [m for m in dec.body if isinstance(m, nn.Linear)]
        tanh = dec.activation == "tanh" and len(lins) == 1
        return DecoderSplit(
            dec.body, dec.out.weight, dec.out.bias, (lins[0].weight, lins[0].bias) if tanh else None
        )
    if isinstance(dec, ConditionedMLPDecoder):  # the first layer with a per-frame bias
        one = dec.activation == "tanh" and not any(isinstance(m, nn.Linear) for m in dec.mlp.rest)
        tanh = (dec.mlp.weight, dec.mlp.bias) if one else None
        return DecoderSplit(dec.mlp, dec.out.weight, dec.out.bias, tanh)
    if isinstance(dec, HeadDecoder):
        return DecoderSplit(dec.hidden, dec.out.weight, dec.out.bias)
    if not isinstance(dec, FrameSelectDecoder):  # that one has two output layers: float32 path
        _plain(prior, dec)
    return None


def log2_variance(prior, ctx: Any, offset: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """``f(z) = offset + log2 sigma2(z, v)`` for z [B, T, D]; ``offset`` [B, T, F].

    For samplers that decode many z against the same context. A tanh ``MLPDecoder`` (outside
    autograd) runs folded: tanh(u) = 2 sigmoid(2u) - 1, so each tanh layer becomes a sigmoid
    when the 2 is folded into the layer before (W, b -> 2W, 2b) and the affine part into the
    layer after (W, b -> 2W, b - W 1); the output layer also takes the log2 e scale and
    ``offset`` (added inside the matrix product): three passes over [T, F] fewer per decode.
    """
    dec = prior.decoder(ctx)
    if not isinstance(dec, (MLPDecoder, ConditionedMLPDecoder, HeadDecoder, FrameSelectDecoder)):
        _plain(prior, dec)
    if torch.is_grad_enabled():
        return lambda z: torch.add(offset, dec(z), alpha=LOG2_E)
    return _log2_of(dec, offset)


def _foldable(dec) -> bool:
    """A tanh MLP whose layers :func:`_folded` can fold."""
    return isinstance(dec, (MLPDecoder, ConditionedMLPDecoder)) and dec.activation == "tanh"


def _log2_of(dec, offset: torch.Tensor) -> Callable[..., torch.Tensor]:
    """``offset + log2 sigma2(z)`` by the fastest way ``dec`` allows (outside autograd), as
    ``f(z, out=None)``: ``out``, a contiguous [N, F] tensor with one row per frame of z, takes
    the result in place (the frame-select path writes each part into its slice of a buffer)."""
    if isinstance(dec, FrameSelectDecoder):
        return _frame_select(dec, offset)
    if _foldable(dec):
        return _folded(dec, offset)

    def f(z: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        if out is None:
            return torch.add(offset, dec(z), alpha=LOG2_E)
        return torch.add(offset.reshape(out.shape), dec(z).reshape(out.shape), alpha=LOG2_E, out=out)

    return f


def _frame_select(dec: FrameSelectDecoder, offset: torch.Tensor) -> Callable[..., torch.Tensor]:
    """:func:`log2_variance` of a per-frame choice of two decoders. The frames are put in an
    order where each decoder's are contiguous (one gather of z, [N, D]); each decoder (folded
    where it can be) writes its rows into its own slice of one buffer, and one gather puts the
    rows back in place: no scatter per part (with two threads the two index copies of [N, F]
    cost as much as a third of the decode)."""
    F = offset.shape[-1]
    flat = offset.reshape(-1, F)
    parts = dec.parts()
    perm, inv = dec.order(parts)
    runs, start = [], 0
    for idx, sub in parts:
        stop = start + idx.numel()
        runs.append((slice(start, stop), _log2_of(sub, flat.index_select(0, idx)[None])))
        start = stop

    def f(z: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        zp = z.reshape(-1, z.shape[-1]).index_select(0, perm)
        buf = torch.empty_like(flat)
        for rows, g in runs:
            g(zp[rows][None], out=buf[rows])
        if out is None:
            return buf.index_select(0, inv).view(offset.shape)
        return torch.index_select(buf, 0, inv, out=out)

    return f


def _folded(dec, offset: torch.Tensor) -> Callable[..., torch.Tensor]:
    """The folded tanh MLP of :func:`log2_variance` (outside autograd)."""
    if isinstance(dec, ConditionedMLPDecoder):
        # first layer: z W^T + c with c the per-frame bias [B, T, H] (the lips) or [H]
        first = [(dec.mlp.weight, dec.mlp.bias)]
        rest = [m for m in dec.mlp.rest if isinstance(m, nn.Linear)]
    else:
        lin = [m for m in dec.body if isinstance(m, nn.Linear)]
        first, rest = [(lin[0].weight, lin[0].bias)], lin[1:]
    layers = first + [(m.weight, m.bias) for m in [*rest, dec.out]]
    Ws, bs = [], []
    for i, (W, b) in enumerate(layers):  # W [out, in], b [out] (the first: [..., out])
        if i > 0:  # its input is tanh = 2 s - 1
            b = b - W.sum(1)
            W = 2.0 * W
        scale = 2.0 if i < len(layers) - 1 else LOG2_E  # into sigmoid(2u), or into log2
        Ws.append((W * scale).t().contiguous())
        bs.append(b * scale)
    F = offset.shape[-1]
    out_base = (offset + bs[-1]).reshape(-1, F)
    W0, b0 = Ws[0], bs[0]
    per_frame = b0.dim() > 1
    b0_rows = b0.reshape(-1, b0.shape[-1]) if per_frame else b0

    def f(z: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        if per_frame and z.shape[:-1] != b0.shape[:-1]:  # leading sample dimensions
            h = torch.matmul(z, W0).add_(b0).sigmoid_().reshape(-1, W0.shape[1])
        else:  # one frame per bias row (or one bias): a single addmm
            h = torch.addmm(b0_rows, z.reshape(-1, z.shape[-1]), W0).sigmoid_()
        for W, b in zip(Ws[1:-1], bs[1:-1], strict=True):
            h = torch.addmm(b, h, W).sigmoid_()
        if out is not None:
            return torch.addmm(out_base, h, Ws[-1], out=out)
        return torch.addmm(out_base, h, Ws[-1]).view(offset.shape)

    return f


def log_prior(prior, z: torch.Tensor, ctx: Any = None) -> torch.Tensor:
    """log p(z|v) summed over the latent dimension: [..., B, T] (a sequence prior: log
    p(z_t | z_<t, v) per frame)."""
    if prior.standard_prior:
        return -0.5 * (z.square().sum(-1) + z.shape[-1] * LOG_2PI)
    mu, logvar = prior.prior(z, ctx)
    return -0.5 * ((z - mu).square() * torch.exp(-logvar) + logvar + LOG_2PI).sum(-1)


def prior_scorer(prior, ctx: Any, like: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """``f(z) = log p(z|v)`` up to an additive constant, for samplers that score many z.

    N(0, I): -|z|^2 / 2. A frame-wise prior's p(z|v) does not depend on z: it is computed
    once here (``like``, a latent [..., B, T, D], gives the shape), not at every step. A
    sequence prior's p(z_t | z_<t) is recomputed for each z."""
    if prior.standard_prior:
        return lambda z: torch.linalg.vecdot(z, z).mul_(-0.5)
    if not prior.framewise:
        return lambda z: log_prior(prior, z, ctx)
    mu, logvar = prior.prior(like, ctx)
    mu = mu.detach() if isinstance(mu, torch.Tensor) else mu
    prec = torch.exp(-logvar).detach()
    return lambda z: -0.5 * ((z - mu).square() * prec).sum(-1)
