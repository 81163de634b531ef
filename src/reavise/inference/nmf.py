"""NMF noise variance model and its multiplicative M-step updates, batched over utterances.

Observation model (Leglaive et al. 2018, eq. 4-6; Sadeghi et al. 2020, eq. 9):
    x_ft = sqrt(g_t) s_ft + b_ft,  s_ft ~ CN(0, sigma2_f(z_t)),  b_ft ~ CN(0, (WH)_ft),
so x_ft | z_t ~ CN(0, V_ft) with V = g sigma2 + WH. The M-step maximises the Monte Carlo
estimate of E_z[log p(x|z)] with the multiplicative updates of Leglaive et al. 2018 (eq. 15-17),
each a majorise-minimise step of the Itakura-Saito NMF (Fevotte & Idier 2011):
    W <- W * [ (H^T (P * sum_r V_r^-2)) / (H^T sum_r V_r^-1) ]^(1/2)
    H <- H * [ ((P * sum_r V_r^-2) W^T) / ((sum_r V_r^-1) W^T) ]^(1/2)
    g_t <- g_t * [ sum_{f,r} P sigma2_r V_r^-2 / sum_{f,r} sigma2_r V_r^-1 ]^(1/2)
Shapes are time-major: P, WH [B, T, F]; H [B, T, K]; W [B, K, F]; g [B, T]; speech
variances of R samples [R, B, T, F].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import native as native_kernels

EPS = 1e-10
#: floor of the gains g after every M-step. The multiplicative update can drive a frame's
#: gain down geometrically (by up to EPS per iteration) when the prior insists on speech the
#: frame does not hold; left alone it reaches 0 in float32 (seen after ~90 MCEM iterations on
#: a GRID mixture with the gated AV prior), log g turns -inf and the E-step's speech
#: variances NaN. At 1e-20 the frame's speech g sigma2 is nil; healthy runs stay far above it
#: (lowest seen: 5e-14) and compute exactly what they did without the floor. W and H may
#: underflow to 0 (unused components do): the E-step floors WH itself.
GAIN_FLOOR = 1e-20


@dataclass
class NMFState:
    W: torch.Tensor  # [B, K, F]
    H: torch.Tensor  # [B, T, K]
    g: torch.Tensor  # [B, T]

    @property
    def WH(self) -> torch.Tensor:
        return self.H @ self.W


def init_nmf(P: torch.Tensor, rank: int, generator=None) -> NMFState:
    """Random positive W, H (uniform, as the published code) and unit gains.

    ``generator``: a ``torch.Generator`` (one stream for the whole batch), or a
    :class:`~reavise.inference.draws.BatchDraws` (each utterance's W, then H, from its own
    stream: the same numbers whatever else is in the batch; H is 0.5 in padded frames)."""
    from .draws import as_draws

    B, T, F = P.shape
    draws = as_draws(generator, P)
    W = draws.per_utterance(torch.rand, (rank, F), P.dtype).clamp_min(EPS)
    H = draws.frames(torch.rand, (), (rank,), P.dtype, fill=0.5).clamp_min(EPS)
    g = torch.ones(B, T, device=P.device, dtype=P.dtype)
    return NMFState(W, H, g)


def m_step(
    state: NMFState,
    P: torch.Tensor,
    Vs: torch.Tensor,
    mask: torch.Tensor,
    frame_cost: torch.Tensor | None = None,
    native: bool = True,
) -> tuple[NMFState, torch.Tensor]:
    """One round of the W, H, g updates given speech-variance samples ``Vs`` [R, B, T, F].

    ``mask`` [B, T] (float 0/1) removes padded frames from every sum. Also returns the
    Monte Carlo cost -E_z[log p(x|z)] per utterance and frame at the incoming parameters
    (the value the M-step decreases), from quantities the update needs anyway, or from
    ``frame_cost`` [B, T] when the E-step already has it (MCEM does; saves R log passes).

    The sums over samples are accumulated one sample at a time into [B, T, F] buffers: an
    [R, B, T, F] temporary per operation would leave the cache on every pass (measured
    2.7x slower for R=10 on 2 CPU cores). With ``native`` (and CPU float32 tensors) the
    C kernel of ``reavise.native`` runs the same updates, one pass per frame each.
    """
    m = mask.unsqueeze(-1)  # [B, T, 1]
    Pm = P * m
    W, H, g = state.W, state.H, state.g
    R = Vs.shape[0]

    def sums(W, H, g, with_log: bool = False):
        # A = P * sum_r V_r^-2, Bm = sum_r V_r^-1 (masked); optionally sum_r log V_r^-1
        WH = H @ W
        A, Bm = torch.zeros_like(P), torch.zeros_like(P)
        log_inv = torch.zeros_like(P) if with_log else None
        for r in range(R):
            inv = torch.addcmul(WH, g[..., None], Vs[r]).reciprocal_()
            A.addcmul_(inv, inv)
            Bm.add_(inv)
            if log_inv is not None:
                log_inv.add_(torch.log(inv))
        return A.mul_(Pm), Bm.mul_(m), log_inv

    if frame_cost is None:
        A, Bm, log_inv = sums(W, H, g, with_log=True)
        # cost = mean_r sum_f log V + P / V, with log V = -log(1/V)
        frame_cost = (Bm * P - log_inv * m).sum(-1) / R
    else:
        A = Bm = None
    cost = (frame_cost * mask).sum(-1) / mask.sum(-1).clamp_min(1.0)
    if native and native_kernels.usable(P, Vs, W, H, g, mask):
        # the same three updates in one pass per frame each (reavise.native)
        W, H, g = native_kernels.nmf_step(
            W.contiguous(), H.contiguous(), g.contiguous(), Vs.contiguous(), Pm.contiguous(),
            mask.contiguous(),
        )  # fmt: skip
        return _floored(W, H, g), cost
    if A is None:
        A, Bm, _ = sums(W, H, g)
    W = W * torch.sqrt(_time_sum(H, A, mask) / _time_sum(H, Bm, mask).clamp_min(EPS)).clamp_min(EPS)
    A, Bm, _ = sums(W, H, g)
    Wt = W.transpose(1, 2)
    H = H * torch.sqrt((A @ Wt) / (Bm @ Wt).clamp_min(EPS)).clamp_min(EPS)
    WH = H @ W
    # sum_r sigma2_r V_r^-2 and sum_r sigma2_r V_r^-1 accumulated per bin, reduced once
    NV, DV = torch.zeros_like(P), torch.zeros_like(P)
    for r in range(R):
        inv = torch.addcmul(WH, g[..., None], Vs[r]).reciprocal_()
        v_inv = Vs[r] * inv
        DV.add_(v_inv)
        NV.addcmul_(v_inv, inv)
    num = torch.linalg.vecdot(NV, Pm)
    den = DV.sum(-1) * mask
    ratio = torch.where(mask > 0, num / den.clamp_min(EPS), torch.ones_like(num))
    g = g * torch.sqrt(ratio).clamp_min(EPS)
    return _floored(W, H, g), cost


def _floored(W: torch.Tensor, H: torch.Tensor, g: torch.Tensor) -> NMFState:
    """The M-step's result with g >= GAIN_FLOOR (in place)."""
    return NMFState(W, H, g.clamp_min_(GAIN_FLOOR))


def _time_sum(H: torch.Tensor, A: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """H^T A [B, K, F]: the sum over frames, each utterance over its own frames only.

    A batched product over the padded length splits the sum over frames differently with
    the batch (its shape), so an utterance's rounding, and through MH its samples, would
    depend on what it was batched with; one product per utterance, over its own frames,
    is the product it gets alone."""
    if H.shape[0] == 1:
        return H.transpose(1, 2) @ A
    return torch.cat(
        [H[b : b + 1, :n].transpose(1, 2) @ A[b : b + 1, :n] for b, n in enumerate(native_kernels.valid_lengths(mask))]
    )


def neg_log_likelihood(P: torch.Tensor, Vx: torch.Tensor) -> torch.Tensor:
    """-log p(x|z) per frame, up to a constant: sum_f log V + P / V.  [..., B, T]"""
    return (torch.log(Vx) + P / Vx).sum(-1)
