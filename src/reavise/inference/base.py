"""One interface for every EM algorithm: only the E-step (how z is sampled) differs.

Each EM iteration draws R samples of z from (an approximation of) p(z | x, v) with the
current noise parameters, then updates the NMF noise model and gains (``nmf.m_step``). The
speech estimate is the posterior-mean Wiener filter (Sadeghi et al. 2020, eq. 21):
    s_hat_ft = E_z[ g_t sigma2_f(z_t) / (g_t sigma2_f(z_t) + (WH)_ft) ] x_ft.
Everything is batched over utterances [B] and frames [T]; padded frames are masked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .. import validate as V
from ..errors import ReaviseError
from ..registry import Registry
from .draws import BatchDraws
from .likelihood import frame_loglik, speech_variance
from .nmf import NMFState, init_nmf, m_step
from .sequential import sequence_settings
from .state import EStepState
from .switch import has_switch, state_posterior

__all__ = ["ALGORITHMS", "EMAlgorithm", "EMConfig", "EMResult", "EStepState", "build_algorithm",
           "frame_loglik", "register_algorithm", "speech_variance"]  # fmt: skip

#: every EM algorithm by name: ``(class, config dataclass)``
ALGORITHMS = Registry("algorithm")
INITS = ("encoder", "prior", "lips")


def register_algorithm(name: str, config_cls: type):
    """Class decorator: make an EM algorithm buildable by name (``ALGORITHMS``)."""

    def deco(cls):
        ALGORITHMS.add(name, cls, config_cls)
        cls.name = name
        return cls

    return deco


def build_algorithm(name: str, **overrides: Any) -> EMAlgorithm:
    """Instantiate algorithm ``name`` with config overrides (unknown keys are an error)."""
    try:
        algorithm = ALGORITHMS.build(name, overrides)
        algorithm.explicit = frozenset(overrides)  # what a prior's inference_defaults keep
        return algorithm
    except ReaviseError:
        raise
    except ValueError as exc:  # a check across settings outside the dataclass's own
        raise ReaviseError(f"algorithm {name!r}: {exc}") from None


@dataclass
class EMConfig:
    """Settings shared by every algorithm."""

    max_iter: int = 100
    #: stop when the relative change of the cost is below tol for every utterance (0: never)
    tol: float = 0.0
    nmf_rank: int = 10
    #: number of z samples used by the M-step and the final Wiener filter
    n_samples: int = 10
    #: where z starts: "encoder" (q(z|x, v) on the noisy power, as published), "prior" (the
    #: mean of p(z|v): the video alone, which the noise cannot corrupt; N(0, I) -> 0) or
    #: "lips" (the mean of p(z|v) on the frames where the prior has lips, the encoder's where
    #: p(z|v) is N(0, I): no lips, no video, an audio-only prior)
    init: str = "encoder"
    #: use the fused C kernels of ``reavise.native`` (MCEM's E-step, the NMF M-step) for CPU
    #: float32 runs when they can be built; False: torch code only (same algorithm and draws)
    native: bool = True

    def __post_init__(self):
        """Types and ranges of every setting (SettingError naming the key)."""
        V.check_fields(self)
        V.at_least(self, "max_iter", 1)
        V.at_least(self, "tol", 0)
        V.at_least(self, "nmf_rank", 1)
        V.at_least(self, "n_samples", 1)
        V.one_of(self, "init", INITS)


@dataclass
class EMResult:
    """Spectral outputs of one batched run; [B, T, F] complex, cost [iters, B]."""

    speech: torch.Tensor
    noise: torch.Tensor
    cost: torch.Tensor
    n_iter: int
    converged: bool
    nmf: NMFState
    z: torch.Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)
    #: per utterance: the iteration it stopped at (tol) and whether it converged
    n_iters: list[int] = field(default_factory=list)
    converged_each: list[bool] = field(default_factory=list)


class EMAlgorithm:
    """Monte Carlo / variational EM with an NMF noise model; subclasses define the E-step."""

    name: str = ""
    #: the E-step's state between iterations
    state_class: type[EStepState] = EStepState

    def __init__(self, config: EMConfig):
        self.config = config

    # --- to implement -----------------------------------------------------------------
    def init_latent(self, prior, P: torch.Tensor, ctx: Any, gen: BatchDraws) -> EStepState:
        """E-step state before the first iteration: ``config.init`` (encoder or prior mean)."""
        with torch.no_grad():
            mu, logvar = prior.encode(P, ctx)
            if self.config.init != "encoder":
                pm, plv = (t + torch.zeros_like(mu) for t in prior.prior(mu, ctx))
                if self.config.init == "prior":
                    mu, logvar = pm, plv
                else:  # "lips": frames where p(z|v) is exactly N(0, I) keep the encoder's start
                    lips = ((pm != 0) | (plv != 0)).any(-1, keepdim=True)
                    mu, logvar = torch.where(lips, pm, mu), torch.where(lips, plv, logvar)
        return self.state_class(z=mu, logvar=logvar)

    def e_step(
        self, prior, P: torch.Tensor, ctx: Any, nmf: NMFState, state: EStepState, gen: BatchDraws
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (z samples [R, B, T, D], speech variances sigma2(z) [R, B, T, F]).

        Every random draw goes through ``gen`` (per utterance, at its own length)."""
        raise NotImplementedError

    # --- shared loop ------------------------------------------------------------------
    def run(
        self,
        prior,
        X: torch.Tensor,
        ctx: Any = None,
        frame_mask: torch.Tensor | None = None,
        seed: int = 0,
        progress=None,
        seeds: list[int] | None = None,
    ) -> EMResult:
        """Enhance STFTs ``X`` [B, T, F] (complex) with speech prior ``prior``.

        ``frame_mask`` [B, T] marks each utterance's real frames (a prefix; the rest is
        padding). Utterance b draws its random numbers from its own generator seeded with
        ``seeds[b]`` (default: ``seed`` for all), at its own length (:class:`BatchDraws`), and
        with ``tol`` it stops at its own iteration: its result does not depend on the other
        utterances of the batch, their order or the padding.
        """
        if not getattr(prior, "framewise", True) and not getattr(self, "_own_config", None):
            # a sequence prior's own defaults
            self._own_config, self.config = self.config, sequence_settings(self, prior)
            try:
                return self.run(prior, X, ctx, frame_mask, seed, progress, seeds)
            finally:
                self.config, self._own_config = self._own_config, None
        cfg = self.config
        device = X.device
        P = X.abs().square()
        B, T, _ = P.shape
        mask = (
            torch.ones(B, T, device=device, dtype=P.dtype)
            if frame_mask is None
            else frame_mask.to(P.dtype)
        )
        lengths = [int(n) for n in mask.count_nonzero(-1).tolist()]
        gen = BatchDraws([seed] * B if seeds is None else seeds, lengths, T, device)
        req = [p.requires_grad for p in prior.parameters()]
        prior.requires_grad_(False)
        try:
            nmf = init_nmf(P, cfg.nmf_rank, gen)
            # a prior with a per-frame modality switch: its posterior q(m), explicit here
            switch = has_switch(prior)
            q = None
            if switch:
                ctx = prior.with_state_posterior(ctx, None)  # the caller's context is untouched
            state = self.init_latent(prior, P, ctx, gen)
            costs = []
            stop = _Stopping(B, cfg.tol, device)
            it = 0
            for it in range(1, cfg.max_iter + 1):
                z, Vs = self.e_step(prior, P, ctx, nmf, state, gen)
                frame_cost, state.frame_cost = state.frame_cost, None
                with torch.no_grad():
                    nmf, cost = m_step(nmf, P, Vs, mask, frame_cost, native=cfg.native)
                if switch:
                    q = state_posterior(prior, ctx, P, nmf, z, mask)
                    ctx = prior.with_state_posterior(ctx, q)
                    state.Vs = None  # cached speech variances are stale
                costs.append(cost)
                if progress is not None:
                    progress(it, cost)
                newly = stop.update(it, costs)
                if newly.any():  # their result is the one they would have stopped with alone
                    with torch.no_grad():
                        stop.keep(newly, _wiener_gain(nmf, Vs))
                if stop.all_done:
                    break
            with torch.no_grad():
                gain = stop.merge(_wiener_gain(nmf, Vs))
                speech = gain * X
                noise = X - speech
                info = diagnostics(prior, z, ctx, P, q)
        finally:
            for p, r in zip(prior.parameters(), req, strict=True):
                p.requires_grad_(r)
        return EMResult(
            speech=speech,
            noise=noise,
            cost=torch.stack(costs),
            n_iter=it,
            converged=stop.all_done,
            nmf=nmf,
            z=z,
            info=info,
            n_iters=stop.n_iters(it),
            converged_each=stop.done.tolist(),
        )


def diagnostics(prior, z: torch.Tensor, ctx: Any, P: torch.Tensor, q: torch.Tensor | None) -> dict:
    """What a run reports beside the speech: the modality weights of each fusion site at the
    last samples z ("modality_weights": site -> [..., B, T, 2]) and a switch's posterior
    q(m_t = audio-visual) ("switch": [B, T])."""
    info: dict[str, Any] = {}
    if q is not None:
        info["switch"] = q[..., -1]
    if prior.uses_video:
        weights = prior.modality_weights(z.detach(), ctx, P)
        if weights:
            info["modality_weights"] = {k: w.detach() for k, w in weights.items()}
    return info


def _wiener_gain(nmf: NMFState, Vs: torch.Tensor) -> torch.Tensor:
    """Posterior-mean Wiener gain E_z[g sigma2 / (g sigma2 + WH)] [B, T, F].

    The mean over samples is summed one sample at a time: ``Tensor.mean(0)`` groups the
    sum differently with the tensor's shape, so an utterance's gain would round differently
    with what it is batched with."""
    g, WH = nmf.g[..., None], nmf.WH
    gain = torch.zeros_like(WH)
    for v in Vs:
        gV = g * v
        gain.add_(gV.div_(gV + WH))
    return gain.div_(Vs.shape[0])


class _Stopping:
    """Per-utterance stopping on the relative cost change (``tol``); keeps the gains of the
    utterances that stopped while the others go on."""

    def __init__(self, B: int, tol: float, device):
        self.tol = tol
        self.done = torch.zeros(B, dtype=torch.bool, device=device)
        self.stopped_at = [0] * B
        self.gain: torch.Tensor | None = None

    def update(self, it: int, costs: list[torch.Tensor]) -> torch.Tensor:
        """Mark (and return) the utterances whose cost changed by less than tol just now."""
        if self.tol <= 0 or it < 2:
            return torch.zeros_like(self.done)
        rel = (costs[-2] - costs[-1]).abs() / costs[-2].abs().clamp_min(1e-12)
        newly = (rel < self.tol) & ~self.done
        for b in newly.nonzero().flatten().tolist():
            self.stopped_at[b] = it
        self.done |= newly
        return newly

    @property
    def all_done(self) -> bool:
        return bool(self.done.all())

    def keep(self, rows: torch.Tensor, gain: torch.Tensor) -> None:
        if self.gain is None:
            self.gain = torch.zeros_like(gain)
        self.gain[rows] = gain[rows]

    def merge(self, gain: torch.Tensor) -> torch.Tensor:
        """The final gain, with the kept rows of the utterances that stopped earlier."""
        if self.gain is None:
            return gain
        return torch.where(self.done[:, None, None], self.gain, gain)

    def n_iters(self, last: int) -> list[int]:
        return [s or last for s in self.stopped_at]
