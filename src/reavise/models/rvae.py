"""RVAE: the recurrent VAE speech prior (Leglaive, Alameda-Pineda, Girin & Horaud, ICASSP 2020).

Generative model: z_t ~ N(0, I) independently, and the speech variance of every frame depends
on the whole latent sequence through an LSTM (bidirectional in the non-causal model):
    h = LSTM_h(z_1..T),  log sigma2_t = W h_t + b.
Inference network: q(z_t | z_{t-1}, x) = N(mu_t, diag(exp(logvar_t))) with
    g^x = backward LSTM over the power spectrogram (bidirectional in the non-causal model),
    g^z_t = forward LSTM over z_1..z_{t-1},  [mu_t, logvar_t] = linear([g^x_t, g^z_t]).
Module names and layouts are those of the published DVAE code (``rnn_g_x``, ``rnn_g_z``,
``inf_mean``, ``inf_logvar``, ``rnn_h``, ``gen_logvar``), so a published state_dict loads as is.
The published models have no dense layers around the LSTMs (``dense_* =`` empty).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .base import SpeechPrior
from .layers import gaussian_kl, input_features, is_divergence, reduce_loss
from .registry import register_prior


@dataclass
class RVAEConfig:
    """Sizes of the RVAE; defaults are the published non-causal model (WSJ0, z_dim 16)."""

    x_dim: int = 513
    z_dim: int = 16
    dim_rnn_g_x: int = 128
    num_rnn_g_x: int = 1
    #: bidirectional LSTM over x in the encoder (non-causal); False: backward LSTM only
    bidir_g_x: bool = True
    dim_rnn_g_z: int = 128
    num_rnn_g_z: int = 1
    dim_rnn_h: int = 128
    num_rnn_h: int = 1
    #: bidirectional decoder LSTM (non-causal); False: causal decoder
    bidir_h: bool = True
    input_transform: str = "power"


def flat_batch(z: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    """z [..., B, T, D] as [N, T, D] (N = product of the leading dims), and the lead shape."""
    lead = tuple(z.shape[:-2])
    return z.reshape(-1, *z.shape[-2:]), lead


def lstm_step(lstm: nn.LSTM, x: torch.Tensor, state: list[tuple[torch.Tensor, torch.Tensor]]):
    """One time step of a (unidirectional, multi-layer) ``nn.LSTM`` written out: x [N, in].

    Returns the top layer's output [N, H] and the new per-layer (h, c) states."""
    new = []
    inp = x
    for layer, (h, c) in enumerate(state):
        w_ih = getattr(lstm, f"weight_ih_l{layer}")
        w_hh = getattr(lstm, f"weight_hh_l{layer}")
        b = getattr(lstm, f"bias_ih_l{layer}") + getattr(lstm, f"bias_hh_l{layer}")
        gates = torch.addmm(b, inp, w_ih.t()) + h @ w_hh.t()
        i, f, g, o = gates.chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        new.append((h, c))
        inp = h
    return inp, new


def backward_lstm(lstm: nn.LSTM, x: torch.Tensor) -> torch.Tensor:
    """The published encoders' ``flip(LSTM(flip(x)))`` over time (x [N, T, F], batch first)."""
    out, _ = lstm(torch.flip(x, [1]))
    return torch.flip(out, [1])


@register_prior("rvae", RVAEConfig)
class RVAE(SpeechPrior):
    """Recurrent VAE: standard normal p(z), LSTM decoder over the whole latent sequence."""

    framewise = False
    #: settings of the EM algorithms for this prior where not given (``inference.sequential``):
    #: Langevin EM as the published LDEM (1 step of eta 0.01 per EM iteration, prior term
    #: weighted 2 as in its loss, the extra perturbation after each E-step, NMF rank 8, no
    #: gradient clipping: grad_clip 1e30), on one chain with the perturbation's variance 0.02 (measured on
    #: ntcd-timit-sample: docs/sequential.md)
    inference_defaults = {
        "langevin": {"n_steps": 1, "n_samples": 1, "step_size": 0.01, "n_chains": 1,
                     "prior_weight": 2.0, "extra_noise": 0.02, "nmf_rank": 8, "grad_clip": 1e30},
        # the published MALA EM: 10 steps (5 kept) of eta 0.01, tamed drift, prior weight 2,
        # frame-wise acceptance, a perturbation of variance 0.01 after each E-step
        "mala": {"n_steps": 10, "n_samples": 5, "step_size": 0.01, "prior_weight": 2.0,
                 "tamed": True, "acceptance": "frame", "extra_noise": 0.01, "nmf_rank": 8},
    }  # fmt: skip
    standard_prior = True

    def __init__(self, config: RVAEConfig):
        super().__init__()
        self.config = config
        c = config
        dx = 2 if c.bidir_g_x else 1
        dh = 2 if c.bidir_h else 1
        self.rnn_g_x = nn.LSTM(c.x_dim, c.dim_rnn_g_x, c.num_rnn_g_x, batch_first=True,
                               bidirectional=c.bidir_g_x)  # fmt: skip
        self.rnn_g_z = nn.LSTM(c.z_dim, c.dim_rnn_g_z, c.num_rnn_g_z, batch_first=True)
        self.inf_mean = nn.Linear(dx * c.dim_rnn_g_x + c.dim_rnn_g_z, c.z_dim)
        self.inf_logvar = nn.Linear(dx * c.dim_rnn_g_x + c.dim_rnn_g_z, c.z_dim)
        self.rnn_h = nn.LSTM(c.z_dim, c.dim_rnn_h, c.num_rnn_h, batch_first=True,
                             bidirectional=c.bidir_h)  # fmt: skip
        self.gen_logvar = nn.Linear(dh * c.dim_rnn_h, c.x_dim)

    # --- inference network ------------------------------------------------------------
    def infer(self, power: torch.Tensor, eps: torch.Tensor | None = None):
        """q(z|x) run forward in time: (z, mean, logvar), each [B, T, D].

        z_{t-1} feeds the recurrence: z_t = mean_t + eps_t exp(logvar_t / 2) when ``eps``
        [B, T, D] is given (training, sampling), else z_t = mean_t (deterministic)."""
        c = self.config
        g_x = backward_lstm(self.rnn_g_x, input_features(power, c.input_transform))
        B, T, _ = g_x.shape
        zeros = g_x.new_zeros(B, c.dim_rnn_g_z)
        state = [(zeros, zeros)] * c.num_rnn_g_z
        z_t = g_x.new_zeros(B, c.z_dim)
        Wm, Wv = self.inf_mean, self.inf_logvar
        Hx = g_x.shape[-1]
        # the g^x part of the output layers for every frame at once
        mx = g_x @ Wm.weight[:, :Hx].t() + Wm.bias
        vx = g_x @ Wv.weight[:, :Hx].t() + Wv.bias
        Wm_z, Wv_z = Wm.weight[:, Hx:].t(), Wv.weight[:, Hx:].t()
        zs, means, logvars = [], [], []
        for t in range(T):
            g_z, state = lstm_step(self.rnn_g_z, z_t, state)
            m = mx[:, t] + g_z @ Wm_z
            lv = vx[:, t] + g_z @ Wv_z
            z_t = m if eps is None else m + eps[:, t] * torch.exp(0.5 * lv)
            zs.append(z_t)
            means.append(m)
            logvars.append(lv)
        return torch.stack(zs, 1), torch.stack(means, 1), torch.stack(logvars, 1)

    def encode(self, power: torch.Tensor, ctx: Any = None):
        _, mean, logvar = self.infer(power)
        return mean, logvar

    # --- generative model ---------------------------------------------------------------
    def decoder(self, ctx: Any = None):
        return self._generate

    def _generate(self, z: torch.Tensor) -> torch.Tensor:
        """log sigma2 of every frame from the whole latent sequence z [..., B, T, D]."""
        zz, lead = flat_batch(z)
        h, _ = self.rnn_h(zz)
        out = self.gen_logvar(h)
        return out.reshape(*lead, *out.shape[-2:])

    def loss(self, power, ctx=None, frame_mask=None, beta: float = 1.0):
        """Negative ELBO per frame with the sampled z_{t-1} fed to the encoder."""
        eps = torch.randn(*power.shape[:-1], self.config.z_dim, device=power.device, dtype=power.dtype)
        z, mu, logvar = self.infer(power, eps)
        zero = torch.zeros((), device=z.device, dtype=z.dtype)
        kl = gaussian_kl(mu, logvar, zero, zero)
        return reduce_loss(is_divergence(power, self.decode(z, ctx)), kl, frame_mask, beta)
