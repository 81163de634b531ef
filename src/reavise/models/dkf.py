"""DKF: the deep Kalman filter speech prior (Krishnan et al. 2017; A-DKF of Golmakani,
Sadeghi & Serizel, ICASSP 2023).

Generative model, a Markov chain of latents with a frame-wise decoder:
    p(z_t | z_{t-1}) = N(mu_t, diag(var_t)),  z_0 = 0,
    gated transition:  mu_t = (1 - a_t) * (A z_{t-1} + b) + a_t * m_t,
                       a_t = gate(z_{t-1}),  m_t = prop(z_{t-1}),  var_t = softplus(C relu(m_t) + d),
    log sigma2_t = MLP(z_t)  (tanh layers, then a linear output layer).
Inference network: q(z_t | z_{t-1}, x_{t:T}) with a backward LSTM over an MLP of the power
spectrogram, combined with an MLP of z_{t-1}: g_t = (mlp(z_{t-1}) + g^x_t) / 2.
Module names are those of the published av-dkf code (``mlp_x_gx``, ``rnn_gx``,
``mlp_ztm1_g``, ``mlp_g_z``, ``inf_*``, ``mlp_gate``, ``mlp_z_prop``, ``prior_mean``,
``prior_logvar``, ``mlp_z_x``, ``gen_logvar``), so a published state_dict loads as is.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .base import SpeechPrior
from .layers import Tanh, gaussian_kl, input_features, is_divergence, reduce_loss
from .registry import register_prior
from .rvae import backward_lstm

TRANSITIONS = ("gated", "normal")


@dataclass
class DKFConfig:
    """Sizes of the DKF; defaults are the published A-DKF (NTCD-TIMIT, 516,641 parameters)."""

    x_dim: int = 513
    z_dim: int = 16
    activation: str = "tanh"
    dense_x_gx: tuple[int, ...] = (256,)
    dim_rnn_gx: int = 128
    num_rnn_gx: int = 1
    #: bidirectional encoder LSTM; False: backward in time (the published A-DKF)
    bidir_gx: bool = False
    dense_ztm1_g: tuple[int, ...] = (32,)
    dense_g_z: tuple[int, ...] = (32,)
    dense_z_x: tuple[int, ...] = (32, 64, 128, 256)
    #: "gated" (mean = gated mix of a linear map and a proposed mean) or "normal"
    transition: str = "gated"
    gate_layers: int = 2
    prop_layers: int = 2
    input_transform: str = "power"

    def __post_init__(self):
        if self.transition not in TRANSITIONS:
            from ..errors import SettingError

            raise SettingError("transition", f"must be one of {', '.join(TRANSITIONS)}, got {self.transition!r}")


def _act(name: str) -> nn.Module:
    acts = {"tanh": Tanh, "relu": nn.ReLU}
    if name not in acts:
        raise ValueError(f"unknown activation {name!r}; known: {sorted(acts)}")
    return acts[name]()


def named_mlp(sizes: list[int], activation: str, last: str | None = None) -> nn.Sequential:
    """Dense layers ``linear{n}`` + activation (the published naming); ``last``: the name of
    the final linear layer instead (``linear_last``). Fewer than two sizes: the identity."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    n_lin = len(sizes) - 1
    for n, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        name = last if (last and n == n_lin - 1) else f"linear{n}"
        layers[name] = nn.Linear(a, b)
        layers[f"activation{n}"] = _act(activation)
    if not layers:
        layers["identity"] = nn.Identity()
    return nn.Sequential(layers)


def _transition_mlp(z_dim: int, n_layers: int) -> nn.Sequential:
    """linear1, ReLU, ..., linear{n}, Sigmoid (the published gate and proposed-mean nets)."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for i in range(1, n_layers + 1):
        layers[f"linear{i}"] = nn.Linear(z_dim, z_dim)
        layers[f"relu{i}" if i < n_layers else "sigmoid"] = nn.ReLU() if i < n_layers else nn.Sigmoid()
    return nn.Sequential(layers)


def shift_previous(z: torch.Tensor) -> torch.Tensor:
    """z_{t-1} for every frame (z_0 = 0): [..., T, D] -> [..., T, D]."""
    return torch.cat([torch.zeros_like(z[..., :1, :]), z[..., :-1, :]], -2)


def run_posterior(m: nn.Module, xg: torch.Tensor, eps: torch.Tensor | None):
    """The DKF inference network after its input MLP, for any model with the DKF's posterior
    layers (``rnn_gx``, ``mlp_ztm1_g``, ``mlp_g_z``, ``inf_mean``, ``inf_logvar``; DKF, AV-DKF):
    the encoder LSTM over ``xg`` [B, T, H], then q(z_t | z_{t-1}, g_t) forward in time.
    Returns (z, mean, logvar), each [B, T, D]; z_t = mean_t + eps_t exp(logvar_t / 2) with
    ``eps``, else mean_t."""
    c = m.config
    if c.bidir_gx:
        g, _ = m.rnn_gx(xg)
        fwd, bwd = g.split(c.dim_rnn_gx, -1)
        gx, parts = fwd + bwd, 3.0
    else:
        gx, parts = backward_lstm(m.rnn_gx, xg), 2.0
    B, T, _ = gx.shape
    z_t = gx.new_zeros(B, c.z_dim)
    zs, means, logvars = [], [], []
    for t in range(T):
        h = m.mlp_g_z((m.mlp_ztm1_g(z_t) + gx[:, t]) / parts)
        mean, lv = m.inf_mean(h), m.inf_logvar(h)
        z_t = mean if eps is None else mean + eps[:, t] * torch.exp(0.5 * lv)
        zs.append(z_t)
        means.append(mean)
        logvars.append(lv)
    return torch.stack(zs, 1), torch.stack(means, 1), torch.stack(logvars, 1)


@register_prior("dkf", DKFConfig)
class DKF(SpeechPrior):
    """Deep Kalman filter: Markov latent prior p(z_t|z_{t-1}), frame-wise MLP decoder."""

    framewise = False
    #: settings of the EM algorithms for this prior where not given (``inference.sequential``):
    #: Langevin EM with pSGLD steps as the published A-DKF's LDEM (eta = 2 x its lr 5e-3, NMF
    #: rank 8, no gradient clipping: grad_clip 1e30), one step per EM iteration (measured on
    #: ntcd-timit-sample: docs/sequential.md)
    inference_defaults = {
        "langevin": {"n_steps": 1, "n_samples": 1, "step_size": 0.01, "n_chains": 1,
                     "prior_weight": 1.0, "extra_noise": 0.0, "precondition": True, "nmf_rank": 8,
                     "grad_clip": 1e30},
    }  # fmt: skip
    standard_prior = False

    def __init__(self, config: DKFConfig):
        super().__init__()
        self.config = config
        c = config
        act = c.activation
        _act(act)  # unknown activation: an error here
        self.mlp_x_gx = named_mlp([c.x_dim, *c.dense_x_gx], act)
        dim_x = c.dense_x_gx[-1] if c.dense_x_gx else c.x_dim
        self.rnn_gx = nn.LSTM(dim_x, c.dim_rnn_gx, c.num_rnn_gx, batch_first=True,
                              bidirectional=c.bidir_gx)  # fmt: skip
        self.mlp_ztm1_g = named_mlp([c.z_dim, *c.dense_ztm1_g, c.dim_rnn_gx], act, last="linear_last")
        self.mlp_g_z = named_mlp([c.dim_rnn_gx, *c.dense_g_z], act)
        dim_g = c.dense_g_z[-1] if c.dense_g_z else c.dim_rnn_gx
        self.inf_mean = nn.Linear(dim_g, c.z_dim)
        self.inf_logvar = nn.Linear(dim_g, c.z_dim)
        self.mlp_gate = _transition_mlp(c.z_dim, c.gate_layers)
        self.mlp_z_prop = _transition_mlp(c.z_dim, c.prop_layers)
        self.prior_mean = nn.Linear(c.z_dim, c.z_dim)
        self.prior_logvar = nn.Sequential(nn.ReLU(), nn.Linear(c.z_dim, c.z_dim), nn.Softplus())
        self.mlp_z_x = named_mlp([c.z_dim, *c.dense_z_x], act)
        self.gen_logvar = nn.Linear(c.dense_z_x[-1] if c.dense_z_x else c.z_dim, c.x_dim)

    # --- inference network ------------------------------------------------------------
    def infer(self, power: torch.Tensor, eps: torch.Tensor | None = None):
        """q(z|x) run forward in time: (z, mean, logvar), each [B, T, D]; z_{t-1} feeds the
        next frame: mean_t + eps_t exp(logvar_t / 2) with ``eps``, else mean_t."""
        return run_posterior(self, self.mlp_x_gx(input_features(power, self.config.input_transform)), eps)

    def encode(self, power: torch.Tensor, ctx: Any = None):
        _, mean, logvar = self.infer(power)
        return mean, logvar

    # --- generative model ---------------------------------------------------------------
    def decoder(self, ctx: Any = None):
        """Frame by frame, but the published layer names (not an ``MLPDecoder``)."""
        return lambda z: self.gen_logvar(self.mlp_z_x(z))

    def transition(self, z_prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log-variance) of p(z_t | z_{t-1} = z_prev), frame by frame."""
        prop = self.mlp_z_prop(z_prev)
        if self.config.transition == "gated":
            gate = self.mlp_gate(z_prev)
            mean = torch.lerp(self.prior_mean(z_prev), prop, gate)  # (1 - a) A z + a m
        else:
            mean = self.prior_mean(prop)
        return mean, torch.log(self.prior_logvar(prop))

    def prior(self, z_like: torch.Tensor, ctx: Any = None):
        """p(z_t | z_{t-1}) for every frame of the sequence ``z_like`` [..., B, T, D]."""
        return self.transition(shift_previous(z_like))

    def loss(self, power, ctx=None, frame_mask=None, beta: float = 1.0):
        """Negative ELBO per frame: the KL of q(z_t|z_{t-1}, x) to p(z_t|z_{t-1}) at the
        sampled z_{t-1} (as the published training)."""
        eps = torch.randn(*power.shape[:-1], self.config.z_dim, device=power.device, dtype=power.dtype)
        z, mu, logvar = self.infer(power, eps)
        pmu, plogvar = self.prior(z, ctx)
        kl = gaussian_kl(mu, logvar, pmu, plogvar)
        return reduce_loss(is_divergence(power, self.decode(z, ctx)), kl, frame_mask, beta)
