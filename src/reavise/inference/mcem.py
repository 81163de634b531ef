"""MCEM: Monte Carlo EM with a Metropolis-Hastings E-step (Leglaive et al. 2018; Sadeghi et al. 2020).

Random-walk proposal z' = z + sqrt(var) eps, accepted frame by frame with probability
min(1, p(x_t|z'_t) p(z'_t|v) / (p(x_t|z_t) p(z_t|v))) — exact for frame-wise priors, where the
posterior factorises over frames. Fully vectorised over utterances and frames: the only
Python loop is over the MH steps. The current sample's log-likelihood is kept between
steps, so each step decodes once (the published code decodes twice), and the kept samples'
sigma2 are tracked rather than decoded again. docs/inference.md lists the other savings.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Protocol

import torch

from .. import native as native_kernels
from .. import validate as V
from ..errors import SettingError
from . import fastpath
from .base import EMAlgorithm, EMConfig, register_algorithm
from .draws import as_draws
from .state import EStepState

log = logging.getLogger(__name__)
INT8_MODES = ("auto", True, False)


@dataclass
class MCEMConfig(EMConfig):
    """Defaults are the published setting: 40 MH steps of which 30 burn-in, variance 0.01."""

    n_mh: int = 40
    burn_in: int = 30
    proposal_var: float = 0.01
    #: exponent gamma on the latent prior in the MH target p(x|z) p(z|v)^gamma (1: the published
    #: posterior). gamma > 1 sharpens p(z|v) by 1/gamma in variance: a heuristic knob that trusts
    #: the prior (e.g. the lips) more than the noisy likelihood.
    prior_weight: float = 1.0
    #: with the native kernels and a prior that splits its decoder (``decoder_split``: A-VAE,
    #: MIN-VAE, AV-VAE, AV-CVAE), run the decoder's output layer as exact int8 products of
    #: 14-bit fixed-point operands (``reavise.native.Int8Decoder``): log-variance error ~1e-4.
    #: "auto": where this machine runs them faster than float32 (``native.decoder_path``: CPU
    #: flags, else a cached few-ms measurement); True: always (if torch has them); False: never
    int8_decoder: bool | str = "auto"

    def __post_init__(self):
        self.int8_decoder = int8_mode(self.int8_decoder)  # before the type check: "true" -> True
        super().__post_init__()
        V.at_least(self, "n_mh", 1)
        V.at_least(self, "burn_in", 0)
        if self.burn_in >= self.n_mh:
            raise SettingError("burn_in", f"must be smaller than n_mh ({self.n_mh}), got {self.burn_in}")
        V.positive(self, "proposal_var")
        V.positive(self, "prior_weight")
        self.n_samples = self.n_mh - self.burn_in


@dataclass
class MCEMState(EStepState):
    """MCEM's state: the chain (``z``, ``Vs`` of the base) and, for the run, the decoder with
    int8 output-layer products (its quantised weights)."""

    int8_decoder: native_kernels.Int8Decoder | None = None


@register_algorithm("mcem", MCEMConfig)
class MCEM(EMAlgorithm):
    """The E-step: ``n_mh`` random-walk Metropolis-Hastings steps per frame, the last
    ``n_samples`` kept. The loop is written once (:meth:`e_step`); the per-step arithmetic is a
    backend's: :class:`TorchMH` (torch ops) or :class:`NativeMH` (``reavise.native``'s fused
    kernels, chosen for CPU float32 runs with ``native``)."""

    config: MCEMConfig
    state_class = MCEMState

    def e_step(self, prior, P, ctx, nmf, state: MCEMState, gen):
        cfg = self.config
        with torch.inference_mode():
            # WH and g are fixed during the E-step. With y = g sigma2(z) / WH (speech-to-noise
            # ratio) and V = g sigma2 + WH = WH (1 + y), the frame's negative log-likelihood is
            #   -log p(x_t|z_t) = sum_f [log V + P/V] = sum_f [log1p(y) + (P/WH) / (1 + y)] + c_t
            # with c_t = sum_f log WH independent of z: it cancels in the MH ratio. This costs
            # exp2 + log1p per bin instead of exp + log (measured 2.3x cheaper on CPU, 1 thread),
            # and log2 y = log2 sigma2(z) + log2(g / WH) comes out of the decoder's last matmul
            # (``fastpath.log2_variance``).
            terms = _noise_terms(P, nmf)
            score_prior = self._prior_scorer(prior, ctx, state.z)
            if cfg.native and native_kernels.usable(state.z, P):
                mh: MHBackend = NativeMH(self, prior, ctx, nmf, terms, score_prior, state)
            else:
                mh = TorchMH(self, prior, ctx, terms, score_prior)
            eps, log_u = self._draws(state.z, gen)
            mh.start(state.z, state.Vs, log_u)
            for step in range(cfg.n_mh):
                r = step - cfg.burn_in
                if r == 0 and step > 0:
                    # sigma2 is tracked only for kept samples: the current state's is computed
                    # once here (cheaper than a [B, T, F] select at every burn-in step)
                    mh.refresh()
                mh.step(step, r, eps[step])
            zs, Vs, mean_energy = mh.finish()
            # Monte Carlo cost -E_z[log p(x|z)] per frame at these parameters (for the M-step)
            log2_wh = terms[1]
            state.frame_cost = log2_wh.sum(-1).mul_(math.log(2.0)).add_(mean_energy)
        state.z = mh.z
        state.Vs = Vs[-1]
        return zs, Vs

    def _draws(self, z: torch.Tensor, gen) -> tuple[torch.Tensor, torch.Tensor]:
        """All randomness of one E-step in two draws per utterance, the same for both E-steps:
        proposal steps eps [n_mh, B, T, D] and log acceptance thresholds log u [n_mh, B, T]
        (``gen``: :class:`~reavise.inference.draws.BatchDraws`, each utterance its own)."""
        cfg = self.config
        gen = as_draws(gen, z)  # a plain torch.Generator: one stream for the batch
        eps = gen.like(z, torch.randn, (cfg.n_mh,)).mul_(math.sqrt(cfg.proposal_var))
        log_u = gen.frames(torch.rand, (cfg.n_mh,), tuple(z.shape[2:-1]), z.dtype, fill=0.5)
        return eps, log_u.log_()

    def _prior_scorer(self, prior, ctx, z: torch.Tensor):
        """gamma log p(z|v) up to a constant (``prior_weight`` gamma), p(z|v) computed once."""
        score = fastpath.prior_scorer(prior, ctx, z)
        gamma = self.config.prior_weight
        return score if gamma == 1.0 else (lambda z: score(z).mul_(gamma))

    @staticmethod
    def _int8_decoder(prior, ctx, z, state, mode: bool | str = "auto") -> native_kernels.Int8Decoder | None:
        """The prior's decoder with int8 output-layer products (quantised weights kept in
        ``state`` for the run), or None: ``mode`` False, the prior does not split its decoder,
        or ("auto") this machine runs the float32 product faster (``native.decoder_path``)."""
        if mode is False:
            return None
        split = fastpath.decoder_split(prior, ctx)
        # _int_mm takes inner sizes (hidden, 2 x hidden) in multiples of 8
        if split is None or split.weight.shape[1] % 8:
            return None
        if not _int8_wanted(mode, *split.weight.shape[::-1]):
            return None
        N = z.numel() // z.shape[-1]
        dec = state.int8_decoder
        if dec is None or dec.P1.shape[0] != N:
            dec = state.int8_decoder = native_kernels.Int8Decoder(split, N)
        else:
            dec.rebind(split)  # the same weights; the context (a per-frame bias) may be new
        return dec


def int8_mode(value) -> bool | str:
    """``MCEMConfig.int8_decoder`` as "auto", True or False (strings from YAML or the CLI
    accepted); anything else is a SettingError naming the setting."""
    if isinstance(value, str):
        value = {"auto": "auto", "true": True, "false": False}.get(value.strip().lower(), value)
    if value not in INT8_MODES or (value != "auto" and not isinstance(value, bool)):
        raise SettingError("int8_decoder", f"must be auto, true or false, got {value!r}")
    return value


_warned_forced = False


def _int8_wanted(mode: bool | str, hidden: int, bins: int) -> bool:
    """Whether the int8 output layer runs: "auto" asks ``decoder_path``; True needs only
    ``torch._int_mm`` (said once when it is missing)."""
    global _warned_forced
    if mode == "auto":
        return native_kernels.decoder_path(hidden, bins).chosen == "int8"
    if native_kernels.int8_gemm_available():
        return True
    if not _warned_forced:
        log.warning("int8_decoder=true, but this torch has no CPU torch._int_mm: float32 decoder")
        _warned_forced = True
    return False


def _noise_terms(P: torch.Tensor, nmf) -> tuple[torch.Tensor, ...]:
    """(WH, log2 WH, log2(g / WH), P / WH) for an E-step, in which WH and g are fixed.

    WH is floored at 1e-30 (it underflows to 0 in padded frames, where P = 0) so that
    y = g sigma2 / WH stays finite; sigma2 = y WH / g is exact whatever the floor."""
    WH = nmf.WH.clamp_min(1e-30)
    log2_wh = torch.log2(WH)
    return WH, log2_wh, torch.log2(nmf.g)[..., None] - log2_wh, P / WH


# --- the two backends of the MH loop ------------------------------------------------------
class MHBackend(Protocol):
    """The per-step arithmetic of MCEM's E-step (:meth:`MCEM.e_step` runs the loop).

    ``start`` takes the chain's state (z [B, T, D], its sigma2 from the last E-step or None)
    and the log acceptance thresholds [n_mh, B, T]; ``step`` proposes z + eps, accepts or
    rejects each frame and, from step ``burn_in`` on (kept index r >= 0), records the sample;
    ``refresh`` recomputes the current state's sigma2 at the first kept step; ``finish``
    gives (z samples [R, B, T, D], their sigma2 [R, B, T, F], mean energy per frame [B, T]).
    """

    z: torch.Tensor

    def start(self, z: torch.Tensor, Vs: torch.Tensor | None, log_u: torch.Tensor) -> None: ...

    def refresh(self) -> None: ...

    def step(self, step: int, r: int, eps: torch.Tensor) -> None: ...

    def finish(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...


class TorchMH:
    """MH steps in torch ops: y = g sigma2 / WH and each frame's energy are tracked."""

    def __init__(self, algo: MCEM, prior, ctx, terms, score_prior):
        self.R = algo.config.n_samples
        _, _, self.log2_c, self.Q = terms
        self.log2_y = fastpath.log2_variance(prior, ctx, self.log2_c)
        self.score_prior = score_prior

    def snr(self, z: torch.Tensor) -> torch.Tensor:
        # exponent capped below float32's 2^128 (reached only if g sigma2 / WH > 1e37)
        return self.log2_y(z).clamp_max_(124.0).exp2_()

    def energy(self, y: torch.Tensor) -> torch.Tensor:  # -log p(x_t|z_t) - c_t   [B, T]
        return torch.addcdiv(torch.log1p(y), self.Q, y + 1.0).sum(-1)

    def start(self, z, Vs, log_u):
        self.z, self.log_u = z, log_u
        # the current state's sigma2 is carried over from the last E-step (the noise model
        # changed in the M-step, so its likelihood is recomputed, but not its decode)
        self.y = self.snr(z) if Vs is None else torch.exp2(self.log2_c).mul_(Vs)
        self.e = self.energy(self.y)
        self.logp = self.score_prior(z).sub_(self.e)  # log p(x|z) + log p(z|v), up to constants
        # kept samples are written in place (no stacking copy)
        R = self.R
        self.zs = z.new_empty((R, *z.shape))
        self.ys = self.y.new_empty((R, *self.y.shape))
        self.es = self.e.new_empty((R, *self.e.shape))

    def refresh(self):
        self.y = self.snr(self.z)
        self.e = self.energy(self.y)

    def step(self, step, r, eps):
        z = self.z
        z_new = z + eps
        y_new = self.snr(z_new)
        e_new = self.energy(y_new)
        logp_new = self.score_prior(z_new).sub_(e_new)
        accept = self.log_u[step] < (logp_new - self.logp)
        self.logp = torch.where(accept, logp_new, self.logp)
        # lerp with a 0/1 weight selects exactly (finite inputs) and is ~3x faster than
        # torch.where with a broadcast condition on CPU
        acc = accept.to(z.dtype)[..., None]
        if r < 0:
            self.z = torch.lerp(z, z_new, acc)
            return
        self.z = torch.lerp(z, z_new, acc, out=self.zs[r])
        self.y = torch.lerp(self.y, y_new, acc, out=self.ys[r])
        self.e = torch.where(accept, e_new, self.e, out=self.es[r])

    def finish(self):
        mean_energy = self.es.mean(0)
        Vs = self.ys.mul_(torch.exp2(self.log2_c.neg_()))  # back from y to sigma2 = y WH / g
        return self.zs, Vs, mean_energy


class NativeMH:
    """MH steps with their per-bin work in ``reavise.native``'s fused kernels.

    Same target, proposals and uniform draws as :class:`TorchMH`, so with
    ``int8_decoder=False`` it takes the same decisions up to float rounding of the energies
    (~1e-7 relative). Per step the decoder runs (its output layer as int8 products where
    ``fastpath.decoder_split`` splits it, see ``Int8Decoder``; p(z|v) in torch for a
    non-standard prior), then one kernel call computes the frames' energies, accepts or
    rejects, and writes the kept samples' sigma2.
    """

    def __init__(self, algo: MCEM, prior, ctx, nmf, terms, score_prior, state: MCEMState):
        cfg = algo.config
        self.R = cfg.n_samples
        WH, _, log2_c, Q = terms  # see MCEM.e_step for the energy
        self.log2_c = log2_c
        self.Q = Q.contiguous()
        self.scale = (WH / nmf.g[..., None]).contiguous()  # sigma2 = y WH / g
        self.gamma = cfg.prior_weight
        self.score_prior = score_prior
        self.standard = prior.standard_prior  # then the kernel scores -gamma |z|^2 / 2 itself
        self.dec = algo._int8_decoder(prior, ctx, state.z, state, cfg.int8_decoder)
        if self.dec is not None:
            self.base = (log2_c + self.dec.bias_log2).contiguous()
        else:
            self.log2_y = fastpath.log2_variance(prior, ctx, log2_c)

    def u_of(self, z: torch.Tensor) -> torch.Tensor:
        if self.dec is not None:
            self.dec.products(z)
            return self.dec.dequant(self.base)
        return self.log2_y(z).contiguous()

    def prior_of(self, z: torch.Tensor) -> torch.Tensor | None:
        return None if self.standard else self.score_prior(z).contiguous()

    def start(self, z, Vs, log_u):
        z = self.z = z.contiguous().clone()  # updated in place by the kernel
        u = self.u_of(z) if Vs is None else torch.log2(Vs).add_(self.log2_c)
        Q = self.Q
        self.vs_cur = torch.empty_like(Q)
        # the stepper keeps raw pointers: every tensor it is given lives as long as self
        e = self.e = native_kernels.energy(u, Q, self.scale, self.vs_cur)
        logp = self.logp = self.score_prior(z).sub_(e).contiguous()
        self.log_u = log_u
        self.zs = z.new_empty((self.R, *z.shape))
        self.Vs_out = Q.new_empty((self.R, *Q.shape))
        self.e_sum = torch.zeros_like(e)
        self.z_new = torch.empty_like(z)
        self.mh = native_kernels.MHStepper(
            Q, self.scale, log_u, z, logp, e, self.vs_cur, self.Vs_out, self.e_sum, self.gamma
        )

    def refresh(self):
        native_kernels.energy(self.u_of(self.z), self.Q, self.scale, self.vs_cur)

    def step(self, step, r, eps):
        z, z_new = self.z, self.z_new
        if self.dec is not None:  # the hidden layer adds eps and writes z_new
            self.dec.products(z, eps, z_new)
            self.mh.step_int8(step, r, self.dec, self.base, z_new, self.prior_of(z_new))
        else:
            torch.add(z, eps, out=z_new)
            self.mh(step, r, self.u_of(z_new), z_new, self.prior_of(z_new))
        if r >= 0:
            self.zs[r].copy_(z)

    def finish(self):
        return self.zs, self.Vs_out, self.e_sum.div_(self.R)
