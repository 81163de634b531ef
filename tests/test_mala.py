"""MALA EM: the E-step against a plain written-out MALA (same draws, same numbers), per frame
and per sequence, and its settings."""

import math

import pytest
import torch

from reavise.errors import SettingError
from reavise.inference import build_algorithm
from reavise.inference.mala import MALAEM, MALAConfig, MALAState
from reavise.inference.nmf import NMFState
from reavise.models import build_prior


def _setup(name):
    torch.manual_seed(0)
    if name == "rvae":
        m = build_prior("rvae", dict(x_dim=7, z_dim=3, dim_rnn_g_x=6, dim_rnn_g_z=6, dim_rnn_h=6))
    else:
        m = build_prior("a-vae", dict(x_dim=7, z_dim=3, hidden=[8]))
    m = m.double().eval().requires_grad_(False)
    B, T, F = 2, 6, 7
    P = torch.rand(B, T, F, dtype=torch.float64)
    nmf = NMFState(torch.rand(B, 2, F, dtype=torch.float64), torch.rand(B, T, 2, dtype=torch.float64),
                   torch.rand(B, T, dtype=torch.float64) + 0.5)  # fmt: skip
    return m, P, nmf, torch.randn(B, T, 3, dtype=torch.float64)


def _plain(m, P, nmf, z, gen, n, eta, w, per_frame, tamed):
    """MALA written out: log pi = sum_f -(log V + P/V) + w log N(z; 0, I), drift (eta/2) grad."""

    def logpi(z):
        V = nmf.g[..., None] * torch.exp(m.decode(z)) + nmf.H @ nmf.W
        return -(torch.log(V) + P / V).sum(-1) + w * torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)

    def drift(z):
        z = z.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(logpi(z).sum(), z)
        if tamed:
            g = g / (1 + eta / 2 * g.flatten(1).norm(dim=1))[:, None, None]
        return eta / 2 * g

    eps = torch.randn(n, *z.shape, generator=gen, dtype=torch.float64)
    u = torch.rand(n, *z.shape[:2], generator=gen, dtype=torch.float64)
    kept = []
    for s in range(n):
        zn = z + drift(z) + math.sqrt(eta) * eps[s]
        fwd = torch.distributions.Normal(z + drift(z), math.sqrt(eta)).log_prob(zn).sum(-1)
        back = torch.distributions.Normal(zn + drift(zn), math.sqrt(eta)).log_prob(z).sum(-1)
        la = logpi(zn) - logpi(z) + back - fwd
        if per_frame:
            acc = torch.log(u[s]) < la
        else:
            acc = (torch.log(u[s][:, :1]) < la.sum(-1, keepdim=True)).expand_as(la)
        z = torch.where(acc[..., None], zn, z).detach()
        kept.append(z)
    return torch.stack(kept)


@pytest.mark.parametrize("name,acceptance,tamed,eta", [
    ("a-vae", "auto", False, 0.2), ("a-vae", "frame", True, 0.2),
    ("rvae", "auto", False, 0.6), ("rvae", "frame", True, 0.2)])  # fmt: skip
def test_mala_e_step_equals_a_plain_mala(name, acceptance, tamed, eta):
    m, P, nmf, z0 = _setup(name)
    cfg = MALAConfig(n_steps=4, n_samples=2, step_size=eta, prior_weight=1.5, acceptance=acceptance,
                     tamed=tamed)  # fmt: skip
    zs, Vs = MALAEM(cfg).e_step(m, P, None, nmf, MALAState(z=z0.clone()), torch.Generator().manual_seed(3))
    per_frame = acceptance == "frame" or m.framewise
    want = _plain(m, P, nmf, z0, torch.Generator().manual_seed(3), 4, eta, 1.5, per_frame, tamed)
    assert torch.allclose(zs, want[-2:], atol=1e-10), (zs - want[-2:]).abs().max()
    assert torch.allclose(Vs, torch.exp(m.decode(want[-2:])), atol=1e-10)
    moved = (want[1:] != want[:-1]).any(-1)  # [steps, B, T]: the frame's state changed
    if not per_frame:
        moved = moved.any(-1)  # [steps, B]: the utterance's sequence was accepted
    assert moved.any() and not moved.all()  # some proposals accepted, some not: both branches


def test_mala_enhances_and_its_settings_are_checked():
    m, P, _, _ = _setup("a-vae")
    X = torch.sqrt(P) * torch.exp(2j * torch.pi * torch.rand(P.shape, dtype=torch.float64))
    res = build_algorithm("mala", max_iter=3).run(m, X)
    assert res.speech.shape == X.shape and torch.isfinite(res.cost).all()
    with pytest.raises(SettingError, match="acceptance"):
        build_algorithm("mala", acceptance="chain")
    with pytest.raises(SettingError, match="n_samples"):
        build_algorithm("mala", n_steps=2, n_samples=3)
