"""Sequence priors (RVAE, DKF): published layouts, plain reference forwards, gradients,
import round trips and the sequential Langevin E-step against a written-out loop."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from reavise.errors import CheckpointError
from reavise.inference.fastpath import log_prior
from reavise.inference.sequential import SequenceChains
from reavise.models import build_prior
from reavise.models.checkpoint import import_published, load_checkpoint, save_checkpoint

TINY_RVAE = {"x_dim": 7, "z_dim": 3, "dim_rnn_g_x": 5, "dim_rnn_g_z": 4, "dim_rnn_h": 6}
TINY_DKF = {"x_dim": 7, "z_dim": 3, "dense_x_gx": (6,), "dim_rnn_gx": 5, "dense_ztm1_g": (4,),
            "dense_g_z": (4,), "dense_z_x": (4, 6)}  # fmt: skip


# --- plain reference implementations (sequence-first, as the published code) -------------
def _lstm(sd, name, bidir, x):
    """The published nn.LSTM [T, N, in] with the weights ``name.*`` of ``sd``."""
    H = sd[f"{name}.weight_hh_l0"].shape[1]
    lstm = nn.LSTM(sd[f"{name}.weight_ih_l0"].shape[1], H, 1, bidirectional=bidir).to(x.dtype)
    lstm.load_state_dict({k[len(name) + 1 :]: v for k, v in sd.items() if k.startswith(name + ".")})
    return lstm, lstm(x)[0]


def rvae_reference(sd, P, z):
    """The DVAE RVAE written out: (encoder mean with z_{t-1} = mean_{t-1}, decoder log-variance)
    for P [T, F] and z [T, D] of one utterance."""
    x = P[:, None]
    _, gx_inv = _lstm(sd, "rnn_g_x", True, torch.flip(x, [0]))
    g_x = torch.flip(gx_inv, [0])
    lstm_z, _ = _lstm(sd, "rnn_g_z", False, torch.zeros(1, 1, sd["rnn_g_z.weight_ih_l0"].shape[1], dtype=P.dtype))
    H = sd["rnn_g_z.weight_hh_l0"].shape[1]
    h = c = torch.zeros(1, 1, H, dtype=P.dtype)
    z_t = torch.zeros(1, sd["inf_mean.weight"].shape[0], dtype=P.dtype)
    means = []
    for t in range(P.shape[0]):
        _, (h, c) = lstm_z(z_t[None], (h, c))
        cat = torch.cat([g_x[t], h[0]], -1)
        z_t = cat @ sd["inf_mean.weight"].T + sd["inf_mean.bias"]
        means.append(z_t[0])
    _, hz = _lstm(sd, "rnn_h", True, z[:, None])
    logv = hz[:, 0] @ sd["gen_logvar.weight"].T + sd["gen_logvar.bias"]
    return torch.stack(means), logv


def _lin(sd, name, x):
    return x @ sd[f"{name}.weight"].T + sd[f"{name}.bias"]


def dkf_reference(sd, P, z):
    """The av-dkf A-DKF written out: (encoder mean with z_{t-1} = mean_{t-1}, transition
    (mean, logvar) for z, decoder log-variance) for one utterance P [T, F], z [T, D]."""
    xg = torch.tanh(_lin(sd, "mlp_x_gx.linear0", P))
    _, g_inv = _lstm(sd, "rnn_gx", False, torch.flip(xg[:, None], [0]))
    g = torch.flip(g_inv, [0])[:, 0]
    z_t = torch.zeros(sd["inf_mean.weight"].shape[0], dtype=P.dtype)
    means = []
    for t in range(P.shape[0]):
        a = torch.tanh(_lin(sd, "mlp_ztm1_g.linear_last", torch.tanh(_lin(sd, "mlp_ztm1_g.linear0", z_t))))
        h = torch.tanh(_lin(sd, "mlp_g_z.linear0", (a + g[t]) / 2))
        z_t = _lin(sd, "inf_mean", h)
        means.append(z_t)
    zp = torch.cat([torch.zeros_like(z[:1]), z[:-1]])
    prop = torch.sigmoid(_lin(sd, "mlp_z_prop.linear2", torch.relu(_lin(sd, "mlp_z_prop.linear1", zp))))
    gate = torch.sigmoid(_lin(sd, "mlp_gate.linear2", torch.relu(_lin(sd, "mlp_gate.linear1", zp))))
    pm = (1 - gate) * _lin(sd, "prior_mean", zp) + gate * prop
    plv = torch.log(nn.functional.softplus(_lin(sd, "prior_logvar.1", torch.relu(prop))))
    h = z
    n = 0
    while f"mlp_z_x.linear{n}.weight" in sd:
        h = torch.tanh(_lin(sd, f"mlp_z_x.linear{n}", h))
        n += 1
    return torch.stack(means), (pm, plv), _lin(sd, "gen_logvar", h)


def _tiny(name, values, seed=0):
    torch.manual_seed(seed)
    m = build_prior(name, values).double().eval()
    with torch.no_grad():  # larger weights than the default init: the recurrences matter
        for p in m.parameters():
            p.mul_(3.0)
    return m


def test_rvae_matches_the_plain_reference():
    m = _tiny("rvae", TINY_RVAE)
    sd = m.state_dict()
    P = torch.rand(2, 9, 7, dtype=torch.float64)
    z = torch.randn(2, 9, 3, dtype=torch.float64)
    mean, logvar = m.encode(P)
    logv = m.decode(z)
    assert mean.shape == logvar.shape == (2, 9, 3) and logv.shape == (2, 9, 7)
    for b in range(2):
        ref_mean, ref_logv = rvae_reference(sd, P[b], z[b])
        assert torch.allclose(mean[b], ref_mean, atol=1e-10)
        assert torch.allclose(logv[b], ref_logv, atol=1e-10)
    # the decoder is not frame-wise: changing the last frame changes the first frame's variance
    z2 = z.clone()
    z2[:, -1] += 1.0
    assert (m.decode(z2)[:, 0] - logv[:, 0]).abs().max() > 1e-6
    assert m.framewise is False and m.standard_prior is True


def test_dkf_matches_the_plain_reference():
    m = _tiny("dkf", TINY_DKF)
    sd = m.state_dict()
    P = torch.rand(2, 9, 7, dtype=torch.float64)
    z = torch.randn(2, 9, 3, dtype=torch.float64)
    mean, _ = m.encode(P)
    pm, plv = m.prior(z)
    logv = m.decode(z)
    for b in range(2):
        ref_mean, (ref_pm, ref_plv), ref_logv = dkf_reference(sd, P[b], z[b])
        assert torch.allclose(mean[b], ref_mean, atol=1e-10)
        assert torch.allclose(pm[b], ref_pm, atol=1e-10)
        assert torch.allclose(plv[b], ref_plv, atol=1e-10)
        assert torch.allclose(logv[b], ref_logv, atol=1e-10)
    lp = log_prior(m, z)
    want = -0.5 * ((z - pm) ** 2 * torch.exp(-plv) + plv + math.log(2 * math.pi)).sum(-1)
    assert lp.shape == (2, 9) and torch.allclose(lp, want, atol=1e-12)
    # leading sample dims broadcast
    zz = torch.randn(4, 2, 9, 3, dtype=torch.float64)
    assert torch.allclose(log_prior(m, zz)[2], log_prior(m, zz[2]), atol=1e-12)
    assert m.framewise is False and m.standard_prior is False


@pytest.mark.parametrize("name,values", [("rvae", TINY_RVAE), ("dkf", TINY_DKF)])
def test_gradients_of_decode_and_log_prior(name, values):
    m = _tiny(name, values)
    z = torch.randn(1, 5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: m.decode(z), (z,))
    assert torch.autograd.gradcheck(lambda z: log_prior(m, z), (z,))
    P = torch.rand(1, 5, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda P: m.encode(P)[0], (P,))


@pytest.mark.parametrize("name,values", [("rvae", TINY_RVAE), ("dkf", TINY_DKF)])
def test_train_step_shapes_and_checkpoint_round_trip(name, values, tmp_path):
    torch.manual_seed(0)
    m = build_prior(name, values)
    P = torch.rand(3, 6, 7)
    out = m.loss(P, frame_mask=torch.ones(3, 6, dtype=torch.bool))
    assert torch.isfinite(out["loss"]) and out["kl"] > 0
    out["loss"].backward()
    for pname, p in m.named_parameters():
        if name == "dkf" and pname.startswith("mlp_gate") and values.get("transition") == "normal":
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname
    z = torch.randn(2, 3, 6, 3)
    assert m.decode(z).shape == (2, 3, 6, 7)
    pm, plv = m.prior(z)
    assert torch.broadcast_shapes(pm.shape, z.shape) == z.shape
    assert log_prior(m, z).shape == (2, 3, 6)
    path = save_checkpoint(tmp_path / "m.pt", m)
    m2 = load_checkpoint(path, check_x_dim=False)
    with torch.no_grad():
        assert torch.equal(m2.decode(z), m.eval().decode(z))
        assert torch.equal(m2.encode(P)[0], m.encode(P)[0])


def test_synthetic_published_layouts_import(tmp_path):
    """A published-layout state_dict (same keys as reavise's modules) imports to the same
    weights; the DKF's activation comes from the config.ini beside it."""
    for name, values, layout in [("rvae", {**TINY_RVAE, "x_dim": 513}, "RVAE"),
                                 ("dkf", {**TINY_DKF, "x_dim": 513}, "A-DKF")]:  # fmt: skip
        torch.manual_seed(1)
        m = build_prior(name, values)
        d = tmp_path / name
        d.mkdir()
        torch.save(dict(m.state_dict()), d / "pub.pt")
        lines = []
        imp = load_checkpoint(import_published(d / "pub.pt", d / "r.pt", report=lines.append))
        assert f"found the published {layout} layout" in lines[0]
        assert imp.config == m.config
        for k, v in m.state_dict().items():
            assert torch.equal(imp.state_dict()[k], v), k
    # activation and transition from config.ini
    d = tmp_path / "dkf"
    (d / "config.ini").write_text("[Network]\nactivation = relu\ninference = normal\n")
    imp = load_checkpoint(import_published(d / "pub.pt", d / "r2.pt"))
    assert imp.config.activation == "relu" and imp.config.transition == "normal"


def test_unknown_layout_names_missing_keys(tmp_path):
    m = build_prior("rvae", {**TINY_RVAE, "x_dim": 513})
    sd = dict(m.state_dict())
    del sd["rnn_h.weight_ih_l0"], sd["gen_logvar.weight"]
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"closest: RVAE, missing keys rnn_h.weight_ih_l0, gen_logvar.weight"):
        import_published(tmp_path / "bad.pt", tmp_path / "x.pt")
    torch.save({"foo": torch.zeros(2)}, tmp_path / "foo.pt")
    with pytest.raises(CheckpointError, match="not a published A-VAE, RVAE or A-DKF"):
        import_published(tmp_path / "foo.pt", tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


def test_cli_says_which_layout_and_refuses_unknown(tmp_path, monkeypatch, capsys):
    from conftest import run_cli

    m = build_prior("dkf", {**TINY_DKF, "x_dim": 513})
    torch.save(dict(m.state_dict()), tmp_path / "pub.pt")
    code, out, _ = run_cli(monkeypatch, capsys, "import-checkpoint", tmp_path / "pub.pt", tmp_path / "d.pt")
    assert code == 0 and "found the published A-DKF layout" in out
    sd = dict(m.state_dict())
    del sd["prior_mean.weight"]
    torch.save(sd, tmp_path / "bad.pt")
    code, _, err = run_cli(monkeypatch, capsys, "import-checkpoint", tmp_path / "bad.pt", tmp_path / "e.pt")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and "missing keys prior_mean.weight" in lines[0]


@pytest.mark.parametrize("layout,name,sub", [("RVAE", "rvae", "rvae/RVAE.pt"), ("A-DKF", "dkf", "a-dkf/A-DKF.pt")])
def test_import_real_published_layouts(shared_data, tmp_path, layout, name, sub):
    src = shared_data / "reference-checkpoints" / sub
    lines = []
    m = load_checkpoint(import_published(src, tmp_path / "m.pt", report=lines.append)).double()
    assert lines[0].startswith(f"found the published {layout} layout (with the config.ini")
    assert m.registry_name == name and m.checkpoint_extra["layout"] == layout
    sd = {k: v.double() for k, v in torch.load(src, map_location="cpu", weights_only=True).items()}
    for k, v in sd.items():
        assert torch.equal(m.state_dict()[k], v), k
    torch.manual_seed(0)
    P = torch.rand(12, 513, dtype=torch.float64) * 0.01
    z = torch.randn(12, 16, dtype=torch.float64)
    with torch.no_grad():
        if name == "rvae":
            ref_mean, ref_logv = rvae_reference(sd, P, z)
        else:
            ref_mean, _, ref_logv = dkf_reference(sd, P, z)
        assert torch.allclose(m.encode(P[None])[0][0], ref_mean, atol=1e-9)
        assert torch.allclose(m.decode(z[None])[0], ref_logv, atol=1e-9)
    if name == "dkf":
        assert sum(p.numel() for p in m.parameters()) == 516_641


# --- the sequential Langevin E-step ----------------------------------------------------------
def test_sequential_langevin_e_step_matches_a_plain_loop():
    """Same draws (one generator), same numbers as the update written out."""
    from reavise.inference.nmf import NMFState
    from reavise.inference.sequential import langevin_e_step

    m = _tiny("dkf", TINY_DKF).requires_grad_(False)
    B, T, F, C = 2, 6, 7, 3
    torch.manual_seed(3)
    P = torch.rand(B, T, F, dtype=torch.float64)
    nmf = NMFState(torch.rand(B, 2, F, dtype=torch.float64), torch.rand(B, T, 2, dtype=torch.float64),
                   torch.rand(B, T, dtype=torch.float64) + 0.5)  # fmt: skip
    z0 = torch.randn(B, T, 3, dtype=torch.float64)
    kw = dict(n_steps=2, step_size=0.01, n_chains=C, prior_weight=2.0, extra_noise=0.01)
    state = SequenceChains(z=z0)
    zs, Vs = langevin_e_step(m, P, None, nmf, state, torch.Generator().manual_seed(5), **kw)
    # the plain loop
    gen = torch.Generator().manual_seed(5)
    z = z0.expand(C, B, T, 3) + 0.1 * torch.randn(C, B, T, 3, generator=gen, dtype=torch.float64)
    for _ in range(2):
        z = z.detach().requires_grad_(True)
        V = nmf.g[..., None] * torch.exp(m.decode(z)) + nmf.H @ nmf.W
        pm, plv = m.prior(z)
        logp = -(torch.log(V) + P / V).sum() - 2.0 * 0.5 * ((z - pm) ** 2 * torch.exp(-plv) + plv).sum()
        (g,) = torch.autograd.grad(logp, z)
        z = (z + 0.005 * g + 0.1 * torch.randn(C, B, T, 3, generator=gen, dtype=torch.float64)).detach()
    z = z + 0.1 * torch.randn(C, B, T, 3, generator=gen, dtype=torch.float64)
    assert torch.allclose(zs, z, atol=1e-12)
    assert torch.allclose(Vs, torch.exp(m.decode(z)), atol=1e-12)
    assert torch.equal(state.chains, zs)


def test_sequence_prior_brings_its_langevin_defaults_unless_set():
    from reavise.inference import build_algorithm
    from reavise.inference.sequential import sequence_settings

    m = build_prior("rvae", TINY_RVAE)
    cfg = sequence_settings(build_algorithm("langevin"), m)
    assert (cfg.n_steps, cfg.n_chains, cfg.prior_weight, cfg.extra_noise, cfg.nmf_rank) == (1, 1, 2.0, 0.02, 8)
    cfg = sequence_settings(build_algorithm("langevin", nmf_rank=4, n_steps=3), m)
    assert (cfg.n_steps, cfg.nmf_rank, cfg.prior_weight) == (3, 4, 2.0)
    # frame-wise priors keep the algorithm's own config
    alg = build_algorithm("langevin")
    assert sequence_settings(alg, build_prior("a-vae")) is alg.config


@pytest.mark.parametrize("name,values", [("rvae", TINY_RVAE), ("dkf", TINY_DKF)])
def test_langevin_em_runs_on_sequence_priors_same_seed_same_output(name, values):
    from reavise.inference import build_algorithm

    torch.manual_seed(0)
    m = build_prior(name, values).eval()
    X = torch.randn(2, 12, 7, dtype=torch.complex64)
    mask = torch.ones(2, 12)
    mask[1, 9:] = 0
    alg = build_algorithm("langevin", max_iter=4, n_chains=2)
    a = alg.run(m, X, frame_mask=mask, seed=3)
    b = alg.run(m, X, frame_mask=mask, seed=3)
    assert torch.equal(a.speech, b.speech) and torch.isfinite(a.speech).all()
    assert a.z.shape == (2, 2, 12, 3) and a.cost.shape == (4, 2)
    assert alg.config.n_chains == 2 and alg.config.nmf_rank == 10  # restored after the run
