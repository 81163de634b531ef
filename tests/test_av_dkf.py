"""AV-DKF (audio-visual deep Kalman filter): a plain written-out forward, gradients of the
loss, the sequential E-steps against written-out loops with the same draws, no video = all
frames invalid, checkpoint round trips, the EM algorithms and the config errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn.functional import softplus

from reavise.errors import ReaviseError, SettingError
from reavise.inference import build_algorithm
from reavise.inference.fastpath import log_prior
from reavise.inference.nmf import NMFState
from reavise.inference.sequential import SequenceChains, langevin_e_step
from reavise.models import FUSIONS, build_prior
from reavise.models.checkpoint import load_checkpoint, save_checkpoint

B, T, F, D, S = 2, 7, 7, 3, 8
TINY = dict(x_dim=F, z_dim=D, dense_x_gx=[6], dim_rnn_gx=5, dense_ztm1_g=[4], dense_g_z=[4],
            dense_z_x=[4, 6], visual_dim=2, visual_hidden=5, roi_size=S, dim_transition=5,
            fusion="concat")  # fmt: skip


def _tiny(seed: int = 0, **kw):
    torch.manual_seed(seed)
    m = build_prior("av-dkf", {**TINY, **kw}).double().eval()
    with torch.no_grad():  # larger weights than the default init: the recurrences matter
        for p in m.parameters():
            p.mul_(2.0)
    return m


def _inputs(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    P = torch.rand(B, T, F, generator=g, dtype=torch.float64) + 0.05
    video = torch.rand(B, T, S, S, generator=g, dtype=torch.float64)
    valid = torch.ones(B, T, dtype=torch.bool)
    valid[1, 4:] = False
    return P, video, valid


# --- the model written out (concatenation everywhere, one utterance) --------------------------
def _lin(sd, name, x):
    return x @ sd[f"{name}.weight"].T + sd[f"{name}.bias"]


def reference(sd, P, video, valid, z, eps=None):
    """(features, encoder mean / sampled chain, q's (mean, logvar), transition (mean, logvar)
    at ``z``, decoder log-variance at ``z``) for P [T, F], video [T, S, S], valid [T]."""
    h = torch.relu(_lin(sd, "visual.frame.1", (video.flatten(-2) - 0.5) * 2.0))
    v = torch.tanh(_lin(sd, "visual.frame.3", h)) * valid[:, None].double()
    xg = torch.tanh(_lin(sd, "enc_x.post.0", torch.cat([P, v], -1)))
    H = sd["rnn_gx.weight_hh_l0"].shape[1]
    lstm = nn.LSTM(xg.shape[-1], H).double()
    lstm.load_state_dict({k[7:]: w for k, w in sd.items() if k.startswith("rnn_gx.")})
    g = torch.flip(lstm(torch.flip(xg[:, None], [0]))[0], [0])[:, 0]
    z_t = torch.zeros(D, dtype=P.dtype)
    zs, means, logvars = [], [], []
    for t in range(P.shape[0]):
        a = torch.tanh(_lin(sd, "mlp_ztm1_g.linear_last", torch.tanh(_lin(sd, "mlp_ztm1_g.linear0", z_t))))
        hg = torch.tanh(_lin(sd, "mlp_g_z.linear0", (a + g[t]) / 2))
        m, lv = _lin(sd, "inf_mean", hg), _lin(sd, "inf_logvar", hg)
        z_t = m if eps is None else m + eps[t] * torch.exp(0.5 * lv)
        zs.append(z_t)
        means.append(m)
        logvars.append(lv)

    def transition(z):
        zp = torch.cat([torch.zeros_like(z[..., :1, :]), z[..., :-1, :]], -2)
        zv = torch.cat([zp, v.expand(*zp.shape[:-1], v.shape[-1])], -1)
        gate = torch.sigmoid(_lin(sd, "gate_out", torch.relu(_lin(sd, "gate_in.post.0", zv))))
        prop = torch.sigmoid(_lin(sd, "prop_out", torch.relu(_lin(sd, "prop_in.post.0", zv))))
        pm = (1 - gate) * _lin(sd, "prior_mean", zp) + gate * prop
        return pm, torch.log(softplus(_lin(sd, "prior_logvar.1", torch.relu(prop))))

    def decode(z):
        zv = torch.cat([z, v.expand(*z.shape[:-1], v.shape[-1])], -1)
        h = torch.tanh(_lin(sd, "dec.post.2", torch.tanh(_lin(sd, "dec.post.0", zv))))
        return _lin(sd, "gen_logvar", h)

    q = (torch.stack(means), torch.stack(logvars))
    return v, torch.stack(zs), q, transition, decode


def test_forward_matches_the_plain_reference():
    m = _tiny()
    sd = m.state_dict()
    P, video, valid = _inputs()
    ctx = m.context(video, valid)
    z = torch.randn(4, B, T, D, dtype=torch.float64)
    mean, logvar = m.encode(P, ctx)
    pm, plv = m.prior(z, ctx)
    logv = m.decode(z, ctx)
    assert mean.shape == logvar.shape == (B, T, D) and logv.shape == (4, B, T, F) and pm.shape == z.shape
    for b in range(B):
        v, zmean, (qm, qlv), transition, decode = reference(sd, P[b], video[b], valid[b], z[:, b])
        assert torch.allclose(ctx.feat[b], v, atol=1e-12)
        assert torch.allclose(mean[b], zmean, atol=1e-10) and torch.allclose(mean[b], qm, atol=1e-10)
        assert torch.allclose(logvar[b], qlv, atol=1e-10)
        rpm, rplv = transition(z[:, b])
        assert torch.allclose(pm[:, b], rpm, atol=1e-10) and torch.allclose(plv[:, b], rplv, atol=1e-10)
        assert torch.allclose(logv[:, b], decode(z[:, b]), atol=1e-10)
    want = -0.5 * ((z - pm) ** 2 * torch.exp(-plv) + plv + math.log(2 * math.pi)).sum(-1)
    assert torch.allclose(log_prior(m, z, ctx), want, atol=1e-12)
    # the video matters: other lips, other transition and decoder (and only on valid frames)
    ctx2 = m.context(torch.rand(B, T, S, S, dtype=torch.float64), valid)
    assert (m.decode(z, ctx2) - logv)[:, 0].abs().max() > 1e-3
    assert (m.prior(z, ctx2)[0] - pm)[:, 0].abs().max() > 1e-3
    assert torch.equal(m.decode(z, ctx2)[:, 1, 4:], logv[:, 1, 4:])
    assert m.framewise is False and m.standard_prior is False and m.uses_video


def test_loss_matches_the_reference_and_its_gradient_checks():
    m = _tiny()
    sd = m.state_dict()
    P, video, valid = _inputs()
    ctx = m.context(video, valid)
    eps = torch.randn(B, T, D, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    out = m.loss_with(P, ctx, eps)
    rec = kl = 0.0
    for b in range(B):
        _, z, (mu, lv), transition, decode = reference(sd, P[b], video[b], valid[b], None, eps[b])
        pm, plv = transition(z)
        kl = kl + 0.5 * (plv - lv + (torch.exp(lv) + (mu - pm) ** 2) * torch.exp(-plv) - 1).sum()
        ld = decode(z)
        rec = rec + (ld + P[b] * torch.exp(-ld) - torch.log(P[b] + 1e-10) - 1).sum()
    n = B * T
    assert torch.allclose(out["recon"], rec / n, atol=1e-10) and torch.allclose(out["kl"], kl / n, atol=1e-10)
    assert torch.allclose(out["loss"], (rec + kl) / n, atol=1e-10)
    # gradients of the loss: w.r.t. the spectrum, the visual features and a weight of each part
    Pg = P.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda P: m.loss_with(P, ctx, eps)["loss"], (Pg,), fast_mode=True)
    feat = ctx.feat.clone().requires_grad_(True)
    from reavise.models.av_base import AVContext

    assert torch.autograd.gradcheck(lambda f: m.loss_with(P, AVContext(f, valid), eps)["loss"], (feat,), fast_mode=True)
    names = ["enc_x.post.0.weight", "gate_in.post.0.weight", "prop_out.bias", "dec.post.0.weight",
             "rnn_gx.weight_hh_l0", "prior_logvar.1.weight"]  # fmt: skip
    wrap = _LossOf(m)
    params = dict(wrap.named_parameters())
    ws = tuple(params[f"m.{k}"].detach().clone().requires_grad_(True) for k in names)

    def loss_at(*ws):
        over = {f"m.{k}": w for k, w in zip(names, ws, strict=True)}
        return torch.func.functional_call(wrap, {**params, **over}, (P, ctx, eps))

    assert torch.autograd.gradcheck(loss_at, ws, fast_mode=True)


class _LossOf(nn.Module):
    """The loss as a module's forward (for ``torch.func.functional_call``)."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, P, ctx, eps):
        return self.m.loss_with(P, ctx, eps, beta=0.7)["loss"]


def test_training_step_gives_every_trainable_parameter_a_gradient():
    torch.manual_seed(0)
    m = build_prior("av-dkf", {**TINY, "fusion": "gated", "fusion_at": ["encoder", "decoder", "prior"]})
    P, video, valid = _inputs()
    out = m.loss(P.float(), m.context(video.float(), valid))
    assert torch.isfinite(out["loss"]) and out["kl"] > 0
    out["loss"].backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_no_video_equals_all_frames_invalid():
    m = _tiny()
    P, video, _ = _inputs()
    none, invalid = m.context(None, None), m.context(video, torch.zeros(B, T, dtype=torch.bool))
    z = torch.randn(3, B, T, D, dtype=torch.float64)
    eps = torch.randn(B, T, D, dtype=torch.float64)
    for a, b in [(m.encode(P, none), m.encode(P, invalid)), (m.prior(z, none), m.prior(z, invalid))]:
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.equal(m.decode(z, none), m.decode(z, invalid))
    assert torch.equal(m.loss_with(P, none, eps)["loss"], m.loss_with(P, invalid, eps)["loss"])
    X = torch.randn(B, T, F, dtype=torch.complex128)
    alg = build_algorithm("langevin", max_iter=3)
    r1, r2 = alg.run(m, X, ctx=none, seed=4), alg.run(m, X, ctx=invalid, seed=4)
    assert torch.equal(r1.speech, r2.speech)


# --- the sequential E-steps with the same draws ---------------------------------------------
def _nmf(seed=3):
    g = torch.Generator().manual_seed(seed)
    return NMFState(torch.rand(B, 2, F, generator=g, dtype=torch.float64),
                    torch.rand(B, T, 2, generator=g, dtype=torch.float64),
                    torch.rand(B, T, generator=g, dtype=torch.float64) + 0.5)  # fmt: skip


def _sequence_case():
    """The tiny AV-DKF (frozen), its inputs and context, a noise model, a starting z and each
    utterance's reference model: what the sequence E-step tests start from."""
    m = _tiny().requires_grad_(False)
    P, video, valid = _inputs()
    sd = m.state_dict()
    refs = [reference(sd, P[b], video[b], valid[b], None) for b in range(B)]
    z0 = torch.randn(B, T, D, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    return m, P, m.context(video, valid), _nmf(), z0, refs


def _frame_log_target(ref, P_b, nmf, b, z, w):
    """log p(x_t|z_t) + w log p(z_t | z_{t-1}, v_t) per frame of utterance b, written out from
    the reference model (z [..., T, D] -> [..., T])."""
    _, _, _, transition, decode = ref
    V = nmf.g[b, :, None] * torch.exp(decode(z)) + nmf.H[b] @ nmf.W[b]
    pm, plv = transition(z)
    lp = -0.5 * ((z - pm) ** 2 * torch.exp(-plv) + plv + math.log(2 * math.pi)).sum(-1)
    return -(torch.log(V) + P_b / V).sum(-1) + w * lp


@pytest.mark.parametrize("precondition", [False, True])
def test_langevin_e_step_matches_a_plain_loop(precondition):
    """Unadjusted (pSGLD with ``precondition``) Langevin on whole sequences, the target written
    out from the reference model: log p(x|z) + w log p(z_t | z_{t-1}, v_t)."""
    m, P, ctx, nmf, z0, refs = _sequence_case()
    C, eta, w, extra = 3, 0.02, 1.5, 0.01
    kw = dict(n_steps=3, step_size=eta, n_chains=C, prior_weight=w, extra_noise=extra, precondition=precondition)
    state = SequenceChains(z=z0)
    zs, Vs = langevin_e_step(m, P, ctx, nmf, state, torch.Generator().manual_seed(5), **kw)

    def logpi(z):  # z [C, B, T, D]
        return sum(_frame_log_target(refs[b], P[b], nmf, b, z[:, b], w).sum() for b in range(B))

    gen = torch.Generator().manual_seed(5)
    z = z0.expand(C, B, T, D) + math.sqrt(extra) * torch.randn(C, B, T, D, generator=gen, dtype=torch.float64)
    rms = None
    for _ in range(3):
        z = z.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(logpi(z), z)
        noise = torch.randn(C, B, T, D, generator=gen, dtype=torch.float64)
        if precondition:
            rms = 0.01 * g**2 if rms is None else 0.99 * rms + 0.01 * g**2
            G = torch.sqrt(rms) + 1e-8
            z = (z + eta / 2 * g / G + torch.sqrt(eta / G) * noise).detach()
        else:
            z = (z + eta / 2 * g + math.sqrt(eta) * noise).detach()
    z = z + math.sqrt(extra) * torch.randn(C, B, T, D, generator=gen, dtype=torch.float64)
    assert torch.allclose(zs, z, atol=1e-10), (zs - z).abs().max()
    want = torch.stack([refs[b][4](z[:, b]) for b in range(B)], 1)
    assert torch.allclose(Vs, torch.exp(want), atol=1e-10)
    assert torch.equal(state.chains, zs)


def test_mala_sequence_e_step_matches_a_plain_mala():
    """MALA with one accept/reject of each utterance's whole sequence (``acceptance=sequence``),
    the target from the reference model."""
    from reavise.inference.mala import MALAEM, MALAConfig, MALAState

    m, P, ctx, nmf, z0, refs = _sequence_case()
    n, eta, w = 6, 0.5, 1.5
    cfg = MALAConfig(n_steps=n, n_samples=2, step_size=eta, prior_weight=w, acceptance="sequence", tamed=False)
    zs, _ = MALAEM(cfg).e_step(m, P, ctx, nmf, MALAState(z=z0.clone()), torch.Generator().manual_seed(3))

    def logpi(z):  # [B, T]
        return torch.stack([_frame_log_target(refs[b], P[b], nmf, b, z[b], w) for b in range(B)])

    def drift(z):
        z = z.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(logpi(z).sum(), z)
        return eta / 2 * g

    gen = torch.Generator().manual_seed(3)
    eps = torch.randn(n, B, T, D, generator=gen, dtype=torch.float64)
    u = torch.rand(n, B, T, generator=gen, dtype=torch.float64)
    z, kept, moved = z0, [], []
    for s in range(n):
        zn = z + drift(z) + math.sqrt(eta) * eps[s]
        fwd = torch.distributions.Normal(z + drift(z), math.sqrt(eta)).log_prob(zn).sum(-1)
        back = torch.distributions.Normal(zn + drift(zn), math.sqrt(eta)).log_prob(z).sum(-1)
        la = (logpi(zn) - logpi(z) + back - fwd).sum(-1)
        acc = torch.log(u[s][:, 0]) < la
        moved.append(acc)
        z = torch.where(acc[:, None, None], zn, z).detach()
        kept.append(z)
    assert torch.allclose(zs, torch.stack(kept[-2:]), atol=1e-9), (zs - torch.stack(kept[-2:])).abs().max()
    moved = torch.stack(moved)
    assert moved.any() and not moved.all()  # both branches taken


# --- EM runs, checkpoints, errors -------------------------------------------------------------
@pytest.mark.parametrize("algo", ["langevin", "mcem", "vem", "mala"])
def test_em_runs_with_video_same_seed_same_output(algo):
    torch.manual_seed(0)
    m = build_prior("av-dkf", TINY).eval()
    P, video, valid = _inputs()
    ctx = m.context(video.float(), valid)
    X = torch.randn(B, T, F, dtype=torch.complex64, generator=torch.Generator().manual_seed(7))
    mask = torch.ones(B, T)
    mask[1, 6:] = 0
    alg = build_algorithm(algo, max_iter=3)
    a = alg.run(m, X, ctx=ctx, frame_mask=mask, seed=3)
    b = alg.run(m, X, ctx=ctx, frame_mask=mask, seed=3)
    assert torch.equal(a.speech, b.speech) and torch.isfinite(a.speech).all()
    c = alg.run(m, X, ctx=m.context(None, None), frame_mask=mask, seed=3)
    assert not torch.equal(a.speech, c.speech)  # the video changes the estimate
    if algo == "langevin":  # the A-DKF's pSGLD defaults apply to the AV-DKF too
        from reavise.inference.sequential import sequence_settings

        cfg = sequence_settings(build_algorithm("langevin"), m)
        assert cfg.precondition and cfg.n_steps == 1 and cfg.nmf_rank == 8


@pytest.mark.parametrize("extra", [{}, {"fusion": "reliability", "fusion_at": ["encoder", "decoder", "prior"]},
                                   {"fusion": "cross_attention", "fusion_heads": 2, "dim_transition": 6, "encoder_video": False}])  # fmt: skip
def test_checkpoint_round_trip(extra, tmp_path):
    torch.manual_seed(0)
    m = build_prior("av-dkf", {**TINY, **extra})
    P, video, valid = _inputs()
    P, video = P.float(), video.float()
    m.loss(P, m.context(video, valid))["loss"].backward()
    path = save_checkpoint(tmp_path / "m.pt", m)
    m2 = load_checkpoint(path, check_x_dim=False)
    assert m2.registry_name == "av-dkf" and m2.config == m.eval().config
    z = torch.randn(2, B, T, D)
    with torch.no_grad():
        c1, c2 = m.context(video, valid), m2.context(video, valid)
        assert torch.equal(m2.decode(z, c2), m.decode(z, c1))
        assert torch.equal(m2.prior(z, c2)[0], m.prior(z, c1)[0])
        assert torch.equal(m2.encode(P, c2)[0], m.encode(P, c1)[0])
    w = m.modality_weights(z, c1, P)
    assert set(w) == ({"dec", "pri"} if extra.get("encoder_video") is False else {"dec", "pri", "enc"})
    assert w["dec"].shape == (2, B, T, 2)


def test_bad_configs_are_one_line_errors():
    with pytest.raises(ReaviseError, match="unknown fusion 'nope'"):
        build_prior("av-dkf", {**TINY, "fusion": "nope"})
    with pytest.raises(ReaviseError, match="fusion_at: unknown sites"):
        build_prior("av-dkf", {**TINY, "fusion_at": ["decoder", "lips"]})
    with pytest.raises(SettingError, match="dim_transition"):
        build_prior("av-dkf", {**TINY, "dim_transition": 0})
    with pytest.raises(SettingError, match="transition"):
        build_prior("av-dkf", {**TINY, "transition": "linear"})
    with pytest.raises(SettingError, match="dense_z_x"):
        build_prior("av-dkf", {**TINY, "dense_z_x": []})
    assert set(FUSIONS) >= {"concat", "gated"}


def test_the_audio_only_dkf_is_unchanged():
    """The A-DKF keeps its published layout (516,641 parameters at the default sizes)."""
    m = build_prior("dkf", {})
    assert sum(p.numel() for p in m.parameters()) == 516_641 and not m.uses_video
