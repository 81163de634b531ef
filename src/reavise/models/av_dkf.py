"""AV-DKF: the audio-visual deep Kalman filter speech prior (Golmakani, Sadeghi & Serizel,
ICASSP 2023, "A deep Kalman filter for audio-visual speech enhancement").

The A-DKF of ``dkf.py`` with the per-frame visual features v_t (``visual.py``, computed once
per utterance in ``context`` as for the other AV priors) entering its transition and decoder:
    p(z_t | z_{t-1}, v_t) = N(mu_t, diag(var_t)),  z_0 = 0,
        mu_t = (1 - a_t) * (A z_{t-1} + b) + a_t * m_t,  var_t = softplus(C relu(m_t) + d),
        a_t = sigmoid(L_a f_a(z_{t-1}, v_t)),  m_t = sigmoid(L_m f_m(z_{t-1}, v_t)),
    log sigma2_t = L_x f_x(z_t, v_t),
where each f is a ``layers.TwoStream`` (fusion config ``fusion`` at the sites ``fusion_at``,
concatenation elsewhere: f_a and f_m are the published gate / proposed-mean nets, linear +
ReLU, on [z_{t-1}; v_t]; f_x the published tanh MLP on [z_t; v_t]). The inference network
q(z_t | z_{t-1}, x_{t:T}, v_{t:T}) runs the backward LSTM over TwoStream(x, v) (the
spectrum stream fused with the video), combined with an MLP of z_{t-1} as in the A-DKF.

Frames with ``valid=False`` and missing video get zero visual features everywhere (the
fusion masks them), so no video is exactly all frames invalid; training with modality
dropout makes that case an audio-only DKF.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .av_base import AVContext, AVPriorBase, check_fusion, site_kind
from .base import SpeechPrior
from .dkf import DKF, DKFConfig, _act, named_mlp, run_posterior, shift_previous
from .layers import HeadDecoder, TwoStream, gaussian_kl, input_features, is_divergence, reduce_loss
from .registry import register_prior
from .visual import VisualConfig, VisualFrontend

#: the AV-DKF's fusion sites: the inference network, the decoder, the transition
AVDKF_SITES = ("encoder", "decoder", "prior")


@dataclass
class AVDKFConfig(DKFConfig, VisualConfig):
    """The DKF's sizes (``DKFConfig``), the visual front-end (``VisualConfig``), and fusion.

    ``dim_transition``: hidden size of the gate and proposed-mean nets (the published A-DKF's
    are z_dim wide; with the video beside z_{t-1} they get their own width).
    """

    dim_transition: int = 32
    #: "concat" | "gated" | "cross_attention" | "reliability" (``fusion.py``)
    fusion: str = "concat"
    #: where the fusion module is used ("encoder", "decoder", "prior" = the transition);
    #: other sites concatenate
    fusion_at: tuple[str, ...] = ("decoder", "prior")
    fusion_heads: int = 4
    fusion_window: int = 2
    #: let the inference network see the video (False: q(z | x) as the A-DKF's)
    encoder_video: bool = True

    def __post_init__(self):
        super().__post_init__()
        from ..errors import SettingError

        if self.dim_transition < 1:
            raise SettingError("dim_transition", f"must be positive, got {self.dim_transition}")
        if not self.dense_z_x:
            raise SettingError("dense_z_x", "must list at least one layer size")


@register_prior("av-dkf", AVDKFConfig)
class AVDKF(AVPriorBase):
    """Deep Kalman filter conditioned on the video: p(z_t|z_{t-1}, v_t), p(s_t|z_t, v_t)."""

    framewise = False
    standard_prior = False
    #: the A-DKF's (``dkf.DKF.inference_defaults``: pSGLD Langevin EM, one step per iteration)
    inference_defaults = DKF.inference_defaults
    config: AVDKFConfig

    def __init__(self, config: AVDKFConfig):
        # AVPriorBase.__init__ checks the AV-VAE's ``hidden``, which this prior does not have
        SpeechPrior.__init__(self)
        self.config = c = config
        check_fusion(c)
        act = c.activation
        _act(act)  # unknown activation: an error here
        self.visual = VisualFrontend(c)
        dv = c.visual_dim
        heads, win = c.fusion_heads, c.fusion_window
        # inference network
        if c.dense_x_gx:
            self.enc_x = TwoStream(site_kind(c, "encoder"), c.x_dim, dv if c.encoder_video else 0,
                                   list(c.dense_x_gx), act, heads, win, bidirectional=True)  # fmt: skip
            dim_x = c.dense_x_gx[-1]
        else:
            self.enc_x = None
            dim_x = c.x_dim
        self.rnn_gx = nn.LSTM(dim_x, c.dim_rnn_gx, c.num_rnn_gx, batch_first=True, bidirectional=c.bidir_gx)
        self.mlp_ztm1_g = named_mlp([c.z_dim, *c.dense_ztm1_g, c.dim_rnn_gx], act, last="linear_last")
        self.mlp_g_z = named_mlp([c.dim_rnn_gx, *c.dense_g_z], act)
        dim_g = c.dense_g_z[-1] if c.dense_g_z else c.dim_rnn_gx
        self.inf_mean = nn.Linear(dim_g, c.z_dim)
        self.inf_logvar = nn.Linear(dim_g, c.z_dim)
        # transition p(z_t | z_{t-1}, v_t)
        kind = site_kind(c, "prior")
        self.gate_in = TwoStream(kind, c.z_dim, dv, [c.dim_transition], "relu", heads, win)
        self.gate_out = nn.Linear(c.dim_transition, c.z_dim)
        self.prop_in = TwoStream(kind, c.z_dim, dv, [c.dim_transition], "relu", heads, win)
        self.prop_out = nn.Linear(c.dim_transition, c.z_dim)
        self.prior_mean = nn.Linear(c.z_dim, c.z_dim)
        self.prior_logvar = nn.Sequential(nn.ReLU(), nn.Linear(c.z_dim, c.z_dim), nn.Softplus())
        # decoder p(s_t | z_t, v_t)
        self.dec = TwoStream(site_kind(c, "decoder"), c.z_dim, dv, list(c.dense_z_x), act, heads, win)
        self.gen_logvar = nn.Linear(c.dense_z_x[-1], c.x_dim)

    def _streams(self, like: torch.Tensor, ctx: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return self._ctx(ctx).streams(like, self.config.visual_dim)

    # --- inference network ------------------------------------------------------------
    def _enc_x(self, power: torch.Tensor, ctx: Any):
        """The spectrum stream fused with the video, [B, T, dim] and its fusion weights."""
        x = input_features(power, self.config.input_transform)
        if self.enc_x is None:
            return x, None
        if not self.config.encoder_video:
            return self.enc_x(x, x.new_zeros(*x.shape[:-1], 0), None)
        feat, valid = self._streams(power, ctx)
        return self.enc_x(x, feat, valid)

    def infer(self, power: torch.Tensor, ctx: Any = None, eps: torch.Tensor | None = None):
        """q(z|x, v) run forward in time: (z, mean, logvar), each [B, T, D]; z_{t-1} feeds
        the next frame: mean_t + eps_t exp(logvar_t / 2) with ``eps``, else mean_t."""
        return run_posterior(self, self._enc_x(power, ctx)[0], eps)

    def encode(self, power: torch.Tensor, ctx: Any = None):
        _, mean, logvar = self.infer(power, ctx)
        return mean, logvar

    # --- generative model ---------------------------------------------------------------
    def _dec_hidden(self, z: torch.Tensor, ctx: Any):
        feat, valid = self._streams(z, ctx)
        return self.dec(z, feat, valid)

    def decoder(self, ctx: Any = None) -> HeadDecoder:
        """Frame-wise given the video: log sigma2_t = gen_logvar(f_x(z_t, v_t))."""
        return HeadDecoder(lambda z: self._dec_hidden(z, ctx)[0], self.gen_logvar)

    def transition(self, z_prev: torch.Tensor, ctx: Any = None, weights: bool = False):
        """(mean, log-variance) of p(z_t | z_{t-1} = z_prev, v_t) for z_prev [..., B, T, D]
        (frame t of ``ctx``'s video beside frame t of ``z_prev``); ``weights``: also the
        gate net's fusion weights."""
        feat, valid = self._streams(z_prev, ctx)
        hg, w = self.gate_in(z_prev, feat, valid)
        prop = torch.sigmoid(self.prop_out(self.prop_in(z_prev, feat, valid)[0]))
        gate = torch.sigmoid(self.gate_out(hg))
        if self.config.transition == "gated":
            mean = torch.lerp(self.prior_mean(z_prev), prop, gate)  # (1 - a) A z + a m
        else:
            mean = self.prior_mean(prop)
        out = (mean, torch.log(self.prior_logvar(prop)))
        return (*out, w) if weights else out

    def prior(self, z_like: torch.Tensor, ctx: Any = None):
        """p(z_t | z_{t-1}, v_t) for every frame of the sequence ``z_like`` [..., B, T, D]."""
        return self.transition(shift_previous(z_like), ctx)

    def loss(self, power, ctx=None, frame_mask=None, beta: float = 1.0):
        """Negative ELBO per frame: the KL of q(z_t|z_{t-1}, x, v) to p(z_t|z_{t-1}, v_t) at
        the sampled z_{t-1} (as the A-DKF's training)."""
        eps = torch.randn(*power.shape[:-1], self.config.z_dim, device=power.device, dtype=power.dtype)
        return self.loss_with(power, ctx, eps, frame_mask, beta)

    def loss_with(self, power, ctx, eps, frame_mask=None, beta: float = 1.0):
        """``loss`` with the reparameterisation draws ``eps`` [B, T, D] given (tests)."""
        z, mu, logvar = self.infer(power, ctx, eps)
        pmu, plogvar = self.prior(z, ctx)
        kl = gaussian_kl(mu, logvar, pmu, plogvar)
        return reduce_loss(is_divergence(power, self.decode(z, ctx)), kl, frame_mask, beta)

    def modality_weights(self, z, ctx=None, power=None):
        """Per-frame (audio, visual) weights of the decoder ("dec"), the transition's gate
        net ("pri") and, given the (noisy) ``power`` and a video-aware encoder, the inference
        network ("enc")."""
        out = {"dec": self._dec_hidden(z, ctx)[1], "pri": self.transition(shift_previous(z), ctx, True)[2]}
        if power is not None and self.config.encoder_video and self.enc_x is not None:
            out["enc"] = self._enc_x(power, ctx)[1]
        return out


__all__ = ["AVDKF", "AVDKFConfig", "AVContext"]
