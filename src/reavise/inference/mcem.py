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

import torch

from .. import native as native_kernels
from .. import validate as V
from ..errors import SettingError
from .base import EMAlgorithm, EMConfig, register_algorithm
from .draws import as_draws

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


@register_algorithm("mcem", MCEMConfig)
class MCEM(EMAlgorithm):
    config: MCEMConfig

    def e_step(self, prior, P, ctx, nmf, state, gen):
        if self.config.native and native_kernels.usable(state["z"], P):
            return self._e_step_native(prior, P, ctx, nmf, state, gen)
        cfg = self.config
        z = state["z"]
        R = cfg.n_samples
        with torch.inference_mode():
            # WH and g are fixed during the E-step. With y = g sigma2(z) / WH (speech-to-noise
            # ratio) and V = g sigma2 + WH = WH (1 + y), the frame's negative log-likelihood is
            #   -log p(x_t|z_t) = sum_f [log V + P/V] = sum_f [log1p(y) + (P/WH) / (1 + y)] + c_t
            # with c_t = sum_f log WH independent of z: it cancels in the MH ratio. This costs
            # exp2 + log1p per bin instead of exp + log (measured 2.3x cheaper on CPU, 1 thread),
            # and log2 y = log2 sigma2(z) + log2(g / WH) comes out of the decoder's last matmul
            # (``log2_variance_fn``).
            WH, log2_wh, log2_c, Q = _noise_terms(P, nmf)
            log2_y = prior.log2_variance_fn(ctx, log2_c)
            score_prior = self._prior_scorer(prior, ctx, z)

            def snr(z: torch.Tensor) -> torch.Tensor:
                # exponent capped below float32's 2^128 (reached only if g sigma2 / WH > 1e37)
                return log2_y(z).clamp_max_(124.0).exp2_()

            def energy(y: torch.Tensor) -> torch.Tensor:  # -log p(x_t|z_t) - c_t   [B, T]
                return torch.addcdiv(torch.log1p(y), Q, y + 1.0).sum(-1)

            eps, log_u = self._draws(z, gen)
            # the current state's sigma2 is carried over from the last E-step (the noise model
            # changed in the M-step, so its likelihood is recomputed, but not its decode)
            Vs = state.get("Vs")
            y = snr(z) if Vs is None else torch.exp2(log2_c).mul_(Vs)
            e = energy(y)
            logp = score_prior(z).sub_(e)  # log p(x|z) + log p(z|v), up to constants
            # kept samples are written in place (no stacking copy)
            zs = z.new_empty((R, *z.shape))
            ys = y.new_empty((R, *y.shape))
            es = e.new_empty((R, *e.shape))
            for step in range(cfg.n_mh):
                r = step - cfg.burn_in
                if r == 0 and step > 0:
                    # y is tracked only for kept samples: decoding the current state once here
                    # is cheaper than a [B, T, F] select at every burn-in step
                    y = snr(z)
                    e = energy(y)
                z_new = z + eps[step]
                y_new = snr(z_new)
                e_new = energy(y_new)
                logp_new = score_prior(z_new).sub_(e_new)
                accept = log_u[step] < (logp_new - logp)
                logp = torch.where(accept, logp_new, logp)
                # lerp with a 0/1 weight selects exactly (finite inputs) and is ~3x faster than
                # torch.where with a broadcast condition on CPU
                acc = accept.to(z.dtype)[..., None]
                if r < 0:
                    z = torch.lerp(z, z_new, acc)
                    continue
                z = torch.lerp(z, z_new, acc, out=zs[r])
                y = torch.lerp(y, y_new, acc, out=ys[r])
                e = torch.where(accept, e_new, e, out=es[r])
            # Monte Carlo cost -E_z[log p(x|z)] per frame at these parameters (for the M-step)
            state["frame_cost"] = log2_wh.sum(-1).mul_(math.log(2.0)).add_(es.mean(0))
            Vs = ys.mul_(torch.exp2(log2_c.neg_()))  # back from y to sigma2 = y WH / g
        state["z"] = z
        state["Vs"] = Vs[-1]
        return zs, Vs

    def _e_step_native(self, prior, P, ctx, nmf, state, gen):
        """The E-step above with its per-bin work in ``reavise.native``'s fused kernels.

        Same target, proposals and uniform draws, so with ``int8_decoder=False`` it takes the
        same decisions as the torch code up to float rounding of the energies (~1e-7 relative).
        Per MH step the decoder runs (its output layer as int8 products when the prior splits
        its decoder, see ``Int8Decoder``; p(z|v) in torch for a non-standard prior), then one
        kernel call computes the frames' energies, accepts or rejects, and writes the kept
        samples' sigma2.
        """
        cfg = self.config
        z = state["z"]
        R = cfg.n_samples
        with torch.inference_mode():
            WH, log2_wh, log2_c, Q = _noise_terms(P, nmf)  # see e_step for the energy
            Q = Q.contiguous()
            scale = (WH / nmf.g[..., None]).contiguous()  # sigma2 = y WH / g
            gamma = cfg.prior_weight
            score_prior = self._prior_scorer(prior, ctx, z)
            standard = prior.standard_prior  # then the kernel scores -gamma |z|^2 / 2 itself

            dec = self._int8_decoder(prior, ctx, z, state, cfg.int8_decoder)
            if dec is not None:
                base = (log2_c + dec.bias_log2).contiguous()

                def u_of(z: torch.Tensor) -> torch.Tensor:
                    dec.products(z)
                    return dec.dequant(base)
            else:
                log2_y = prior.log2_variance_fn(ctx, log2_c)

                def u_of(z: torch.Tensor) -> torch.Tensor:
                    return log2_y(z).contiguous()

            def prior_of(z: torch.Tensor) -> torch.Tensor | None:
                return None if standard else score_prior(z).contiguous()

            eps, log_u = self._draws(z, gen)
            z = z.contiguous().clone()  # updated in place by the kernel
            Vs = state.get("Vs")
            u = u_of(z) if Vs is None else torch.log2(Vs).add_(log2_c)
            vs_cur = torch.empty_like(Q)
            e = native_kernels.energy(u, Q, scale, vs_cur)
            logp = score_prior(z).sub_(e).contiguous()
            zs = z.new_empty((R, *z.shape))
            Vs_out = Q.new_empty((R, *Q.shape))
            e_sum = torch.zeros_like(e)
            z_new = torch.empty_like(z)
            mh = native_kernels.MHStepper(Q, scale, log_u, z, logp, e, vs_cur, Vs_out, e_sum, gamma)
            for step in range(cfg.n_mh):
                r = step - cfg.burn_in
                if r == 0 and step > 0:
                    # the current state's sigma2 (tracked only for kept samples, as in e_step)
                    native_kernels.energy(u_of(z), Q, scale, vs_cur)
                if dec is not None:  # the hidden layer adds eps and writes z_new
                    dec.products(z, eps[step], z_new)
                    mh.step_int8(step, r, dec, base, z_new, prior_of(z_new))
                else:
                    torch.add(z, eps[step], out=z_new)
                    mh(step, r, u_of(z_new), z_new, prior_of(z_new))
                if r >= 0:
                    zs[r].copy_(z)
            state["frame_cost"] = log2_wh.sum(-1).mul_(math.log(2.0)).add_(e_sum.div_(R))
        state["z"] = z
        state["Vs"] = Vs_out[-1]
        return zs, Vs_out

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
        score = prior.prior_scorer(ctx, z)
        gamma = self.config.prior_weight
        return score if gamma == 1.0 else (lambda z: score(z).mul_(gamma))

    @staticmethod
    def _int8_decoder(prior, ctx, z, state, mode: bool | str = "auto") -> native_kernels.Int8Decoder | None:
        """The prior's decoder with int8 output-layer products (quantised weights kept in
        ``state`` for the run), or None: ``mode`` False, the prior does not split its decoder,
        or ("auto") this machine runs the float32 product faster (``native.decoder_path``)."""
        if mode is False:
            return None
        split = prior.decoder_split(ctx)
        # _int_mm takes inner sizes (hidden, 2 x hidden) in multiples of 8
        if split is None or split.weight.shape[1] % 8:
            return None
        if not _int8_wanted(mode, *split.weight.shape[::-1]):
            return None
        N = z.numel() // z.shape[-1]
        dec = state.get("int8_decoder")
        if dec is None or dec.P1.shape[0] != N:
            dec = state["int8_decoder"] = native_kernels.Int8Decoder(split, N)
        else:
            dec.split = split  # the same weights; the context may be new
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
