"""The fused C kernels of reavise.native against float64 references and the torch code."""

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from reavise import native
from reavise.inference import fastpath
from reavise.inference.mcem import MCEMState
from reavise.inference.nmf import init_nmf, m_step

needs_native = pytest.mark.skipif(
    native.load() is None, reason=f"native kernels unavailable: {native.unavailable_reason()}"
)


def _energy_ref(u, Q):
    y = torch.exp2(u.double().clamp(-124, 124))
    return (torch.log1p(y) + Q.double() / (1 + y)).sum(-1)


@needs_native
def test_energy_matches_float64_over_the_whole_range():
    g = torch.Generator().manual_seed(0)
    u = torch.randn(3, 40, 513, generator=g) * 20  # y from 2^-80 to 2^80
    u[0, 0, :6] = torch.tensor([0.0, 1e-8, -1e-8, 124.0, 300.0, -300.0])
    Q = torch.rand(3, 40, 513, generator=g) * 5
    e = native.energy(u, Q)
    ref = _energy_ref(u, Q)
    assert e.shape == (3, 40)
    # float32 summation of 513 terms: relative error ~1e-7, absolute < 1e-3 on values ~1e3-1e4
    assert torch.allclose(e.double(), ref, rtol=2e-6, atol=1e-3)
    # known value: u = 0 everywhere gives y = 1: sum_f ln 2 + Q / 2
    e0 = native.energy(torch.zeros(1, 1, 513), torch.full((1, 1, 513), 0.5))
    assert float(e0) == pytest.approx(513 * (math.log(2) + 0.25), rel=1e-6)


@needs_native
def test_energy_writes_the_speech_variance_and_propagates_nan():
    g = torch.Generator().manual_seed(1)
    u = torch.randn(2, 7, 33, generator=g) * 10
    scale = torch.rand(2, 7, 33, generator=g) + 0.1
    vs = torch.empty_like(u)
    native.energy(u, torch.rand(2, 7, 33, generator=g), scale, vs)
    ref = torch.exp2(u.double()) * scale.double()
    assert torch.allclose(vs.double(), ref, rtol=3e-7)
    u[1, 3, 5] = float("nan")
    e = native.energy(u, torch.ones_like(u))
    assert torch.isnan(e[1, 3]) and torch.isfinite(e[0]).all() and torch.isfinite(e[1, :3]).all()


@needs_native
@pytest.mark.parametrize("standard", [True, False])
def test_mh_stepper_takes_the_metropolis_hastings_decisions(standard):
    """Accept iff log u < log target(z') - log target(z), with the kernel's own energies."""
    g = torch.Generator().manual_seed(2)
    B, T, F, D, n_mh = 2, 25, 33, 4, 6
    Q = torch.rand(B, T, F, generator=g) * 3
    scale = torch.rand(B, T, F, generator=g) + 0.5
    gamma = 1.7
    z = torch.randn(B, T, D, generator=g)
    u_state = torch.randn(B, T, F, generator=g)
    e = native.energy(u_state, Q)
    logp = (-0.5 * gamma * (z * z).sum(-1) - e).contiguous()
    log_u = torch.rand(n_mh, B, T, generator=g).log_()
    vs_cur = torch.rand(B, T, F, generator=g)
    vs_out = torch.empty(n_mh - 2, B, T, F)
    e_sum = torch.zeros(B, T)
    ref = {"z": z.clone(), "logp": logp.clone(), "e": e.clone(), "vs": vs_cur.clone()}
    mh = native.MHStepper(Q, scale, log_u, z, logp, e, vs_cur, vs_out, e_sum, gamma)
    ref_sum = torch.zeros(B, T)
    for step in range(n_mh):
        r = step - 2
        z_new = ref["z"] + 0.3 * torch.randn(B, T, D, generator=g)
        u = u_state + 0.1 * torch.randn(B, T, F, generator=g)
        prior = -0.5 * gamma * (z_new * z_new).sum(-1)
        mh(step, r, u, z_new, None if standard else (prior - 0.25).contiguous())
        if not standard:
            prior = prior - 0.25
        e_new = native.energy(u, Q)
        lp_new = prior - e_new
        acc = log_u[step] < lp_new - ref["logp"]
        ref["z"] = torch.where(acc[..., None], z_new, ref["z"])
        ref["logp"] = torch.where(acc, lp_new, ref["logp"])
        ref["e"] = torch.where(acc, e_new, ref["e"])
        u_state = torch.where(acc[..., None], u, u_state)
        if r >= 0:
            ref["vs"] = torch.where(acc[..., None], torch.exp2(u) * scale, ref["vs"])
            ref_sum += ref["e"]
            assert torch.allclose(vs_out[r], ref["vs"], rtol=1e-6)
        assert 0 < int(acc.sum()) < B * T  # both outcomes are exercised
        assert torch.equal(z, ref["z"])
        assert torch.allclose(logp, ref["logp"], rtol=1e-6, atol=1e-4)
        assert torch.equal(e, ref["e"])
    assert torch.allclose(e_sum, ref_sum, rtol=1e-6)


@needs_native
def test_native_m_step_matches_the_torch_m_step():
    g = torch.Generator().manual_seed(3)
    P = torch.rand(2, 30, 65, generator=g) ** 3
    Vs = torch.rand(5, 2, 30, 65, generator=g) + 0.01
    mask = torch.ones(2, 30)
    mask[1, 22:] = 0
    nmf = init_nmf(P, 4, g)
    fc = torch.rand(2, 30, generator=g)
    a, cost_a = m_step(nmf, P, Vs, mask, fc, native=True)
    b, cost_b = m_step(nmf, P, Vs, mask, fc, native=False)
    for x, y in ((a.W, b.W), (a.H, b.H), (a.g, b.g), (cost_a, cost_b)):
        assert torch.allclose(x, y, rtol=2e-5)
    assert torch.equal(a.g[1, 22:], nmf.g[1, 22:])  # padded frames keep their gain
    assert not torch.allclose(a.W, nmf.W)


@needs_native
def test_native_mcem_follows_the_torch_chain():
    """Same draws: the native E-step takes the torch code's decisions (up to float rounding)."""
    from reavise.inference.mcem import MCEM, MCEMConfig
    from reavise.models import build_prior

    torch.manual_seed(0)
    prior = build_prior("a-vae", {"x_dim": 65, "z_dim": 4, "hidden": [32]}).eval()
    g = torch.Generator().manual_seed(1)
    P = torch.rand(2, 40, 65, generator=g) ** 2
    nmf = init_nmf(P, 4, g)
    z0 = torch.randn(2, 40, 4, generator=g)
    out = {}
    for nat in (True, False):
        cfg = MCEMConfig(n_mh=15, burn_in=5, proposal_var=0.05, native=nat, int8_decoder=False)
        state = MCEMState(z=z0.clone())
        zs, Vs = MCEM(cfg).e_step(prior, P, None, nmf, state, torch.Generator().manual_seed(7))
        out[nat] = (zs, Vs, state)
    (zn, Vn, sn), (zt, Vt, st) = out[True], out[False]
    same = (zn == zt).all(-1)
    assert same.double().mean() > 0.97
    assert (zn[1:] != zn[:-1]).any(-1).double().mean() > 0.1  # the chain moves
    assert torch.allclose(Vn[same], Vt[same], rtol=1e-4)
    assert torch.allclose(sn.frame_cost, st.frame_cost, rtol=1e-4)
    assert torch.equal(sn.Vs, Vn[-1]) and torch.equal(sn.z, zn[-1])


def test_disabled_or_unbuildable_kernels_fall_back(monkeypatch, tmp_path):
    monkeypatch.setenv("REAVISE_NATIVE", "0")
    assert native.load() is None and not native.usable(torch.zeros(1))
    assert "REAVISE_NATIVE" in native.unavailable_reason()
    monkeypatch.delenv("REAVISE_NATIVE")
    # a compiler that fails: load() gives None with the reason, the caller keeps its torch code
    monkeypatch.setattr(native, "_tried", False)
    monkeypatch.setattr(native, "_lib", None)
    monkeypatch.setenv("REAVISE_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "false")
    assert native.load() is None
    assert native.unavailable_reason()
    assert not list(tmp_path.rglob("*.so"))  # nothing half-written left behind
    monkeypatch.setattr(native, "_tried", False)
    monkeypatch.setattr(native, "_error", None)


def test_non_float32_or_non_cpu_tensors_use_torch():
    assert not native.usable(torch.zeros(2, dtype=torch.float64))


def _tiny_avae(hidden=32, x_dim=65):
    from reavise.models import build_prior

    torch.manual_seed(0)
    return build_prior("a-vae", {"x_dim": x_dim, "z_dim": 4, "hidden": [hidden]}).eval()


@needs_native
def test_int8_decoder_products_are_exact_and_the_log_variance_close():
    prior = _tiny_avae()
    split = fastpath.decoder_split(prior, None)
    W1, b1 = split.tanh_layer
    g = torch.Generator().manual_seed(4)
    z = torch.randn(2, 30, 4, generator=g) * 1.5
    eps = torch.randn(2, 30, 4, generator=g)
    dec = native.Int8Decoder(split, n_frames=60)
    z_new = torch.empty_like(z)
    dec.products(z, eps, z_new)
    assert torch.equal(z_new, z + eps)
    # the limbs reconstruct the 14-bit hidden activation, and the int32 sums are exact
    hi, lo = dec.a2[:, :32].long(), dec.a2[:, 32:].long()
    assert torch.equal(dec.a1.long(), hi) and hi.abs().max() <= 127 and lo.abs().max() <= 64
    t = torch.tanh((z + eps).reshape(60, 4) @ W1.detach().t() + b1.detach())
    assert torch.allclose((128 * hi + lo).double() / native.QS, t.double(), atol=1e-4)
    assert torch.equal(dec.P1.long(), hi @ dec.B1.long())
    assert torch.equal(dec.P2.long(), dec.a2.long() @ dec.B2.long())
    # log2 sigma2 (+ an offset) against the float32 decoder: ~1e-4 where float32 gives ~1e-6
    offset = torch.randn(2, 30, 65, generator=g)
    u = dec.dequant((offset + dec.bias_log2).contiguous())
    with torch.no_grad():
        ref = offset.double() + prior.decode(z + eps).double() / math.log(2)
    err = (u.double() - ref).abs()
    assert err.max() < 2e-3 and err.square().mean().sqrt() < 3e-4


@needs_native
def test_int8_mh_step_equals_the_step_on_its_dequantised_variance():
    prior = _tiny_avae()
    g = torch.Generator().manual_seed(5)
    B, T, F, D, n_mh = 1, 40, 65, 4, 5
    dec = native.Int8Decoder(fastpath.decoder_split(prior, None), n_frames=B * T)
    Q = torch.rand(B, T, F, generator=g)
    scale = torch.rand(B, T, F, generator=g) + 0.5
    base = (torch.randn(B, T, F, generator=g) + dec.bias_log2).contiguous()
    log_u = torch.rand(n_mh, B, T, generator=g).log_()
    z0 = torch.randn(B, T, D, generator=g)
    dec.products(z0)
    e0 = native.energy(dec.dequant(base), Q)
    runs = []
    for mode in ("int8", "u"):
        z, e = z0.clone(), e0.clone()
        logp = (-0.5 * (z * z).sum(-1) - e).contiguous()
        vs_cur = torch.rand(B, T, F, generator=torch.Generator().manual_seed(0))
        vs_out, e_sum = torch.empty(3, B, T, F), torch.zeros(B, T)
        mh = native.MHStepper(Q, scale, log_u, z, logp, e, vs_cur, vs_out, e_sum, 1.0)
        steps = torch.Generator().manual_seed(9)
        for step in range(n_mh):
            eps = 0.2 * torch.randn(B, T, D, generator=steps)
            z_new = torch.empty_like(z)
            dec.products(z, eps, z_new)
            if mode == "int8":
                mh.step_int8(step, step - 2, dec, base, z_new)
            else:
                mh(step, step - 2, dec.dequant(base), z_new)
        runs.append((z, logp, e, vs_out, e_sum))
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(runs[0][0], z0)  # the chain moved


@needs_native
def test_mcem_uses_the_int8_decoder_only_where_it_applies():
    from reavise.inference.mcem import MCEM

    state = MCEMState(z=torch.zeros(1, 10, 4))
    z = state.z
    assert MCEM._int8_decoder(_tiny_avae(), None, z, state, True) is not None
    assert state.int8_decoder.P1.shape == (10, 72)  # 65 bins padded to a multiple of 8
    assert state.int8_decoder.rowscale is None  # the tanh layer: fixed scale, in C
    assert MCEM._int8_decoder(_tiny_avae(hidden=36), None, z, MCEMState(z=z), True) is None  # 36 % 8 != 0
    assert MCEM._int8_decoder(_tiny_avae(), None, z, MCEMState(z=z), False) is None


def _tiny_av(name="av-cvae", **kw):
    from reavise.models import build_prior

    torch.manual_seed(0)
    cfg = {"x_dim": 65, "z_dim": 4, "hidden": [32], "visual_dim": 8, "visual_hidden": 16,
           "roi_size": 12, "fusion": "cross_attention", **kw}  # fmt: skip
    return build_prior(name, cfg).eval()


@needs_native
@pytest.mark.parametrize("decoder_video", [True, False])
def test_int8_decoder_of_an_attention_prior_with_video(decoder_video):
    """Any split decoder (here cross-attention fusion with lips) gets per-frame scales."""
    from reavise.inference.mcem import MCEM

    prior = _tiny_av(decoder_video=decoder_video)
    g = torch.Generator().manual_seed(6)
    video = torch.rand(1, 30, 12, 12, generator=g)
    valid = torch.rand(1, 30, generator=g) > 0.3
    with torch.no_grad():
        ctx = prior.context(video, valid)
        z = torch.randn(1, 30, 4, generator=g)
        state = MCEMState(z=z)
        dec = MCEM._int8_decoder(prior, ctx, z, state, True)
        assert dec is not None and dec.rowscale is not None
        dec.products(z)
        offset = torch.randn(1, 30, 65, generator=g)
        u = dec.dequant((offset + dec.bias_log2).contiguous())
        ref = offset.double() + prior.decode(z, ctx).double() / math.log(2)
    err = (u.double() - ref).abs()
    assert err.max() < 5e-3 and err.square().mean().sqrt() < 1e-3
    assert torch.allclose(dec.rowscale, dec.split.hidden(z).abs().amax(-1).reshape(-1))


@needs_native
@pytest.mark.parametrize("fusion", ["concat", "frame_attention"])
def test_int8_decoder_of_a_pass_through_fusion_folds_the_lips_into_a_per_frame_bias(fusion):
    """concat / frame_attention: the C tanh layer with a per-frame bias (the lips), repeated
    over leading sample dims; a new context rebinds the bias."""
    from reavise.inference.mcem import MCEM

    prior = _tiny_av(fusion=fusion)
    g = torch.Generator().manual_seed(6)
    video = torch.rand(2, 30, 12, 12, generator=g)
    valid = torch.rand(2, 30, generator=g) > 0.3
    with torch.no_grad():
        state = MCEMState(z=torch.zeros(3, 2, 30, 4))
        for trial in range(2):  # the second context: other lips, the same state
            ctx = prior.context(video if trial == 0 else video.flip(1), valid)
            z = torch.randn(3, 2, 30, 4, generator=g)
            dec = MCEM._int8_decoder(prior, ctx, z, state, True)
            assert dec is not None and dec.rowscale is None and dec.bias_rows == 60
            dec.products(z)
            offset = torch.randn(3, 2, 30, 65, generator=g)
            u = dec.dequant((offset + dec.bias_log2).contiguous())
            ref = offset.double() + prior.decode(z, ctx).double() / math.log(2)
            err = (u.double() - ref).abs()
            assert err.max() < 2e-3 and err.square().mean().sqrt() < 3e-4, trial


@needs_native
def test_the_portable_build_passes_these_tests_too(tmp_path):
    """Without AVX-512 the kernels compile their plain C loops: run this file against them."""
    probe = subprocess.run(["cc", "-march=native", "-dM", "-E", "-x", "c", "/dev/null"],
                           capture_output=True, text=True)  # fmt: skip
    if "__AVX512F__" not in probe.stdout:
        pytest.skip("this CPU builds the portable code already")
    env = dict(os.environ, REAVISE_NATIVE_CFLAGS="-mno-avx512f", REAVISE_CACHE=str(tmp_path))
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__,
         "-k", "not portable_build"],
        env=env, capture_output=True, text=True, cwd=Path(__file__).parents[1],
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:]
    assert " passed" in res.stdout and " skipped" not in res.stdout.splitlines()[-1]
    assert len(list(tmp_path.rglob("*.so"))) == 1


@needs_native
@pytest.mark.parametrize("algo", ["mcem", "vem", "langevin"])
def test_native_outputs_do_not_depend_on_the_batch_exactly(algo):
    """With the native kernels an utterance's output is bit-identical alone and in a padded
    batch of three on 2 threads (a batched sum over frames or samples would round it
    differently with the batch's shape). The decoder is 64 wide: torch's AVX-512 sigmoid
    rounds the last (n mod 32) elements of each thread's share by another code path, so a
    hidden width that is not a multiple of 64 (16 here before) leaves ~1e-7 relative
    differences with the batch on such CPUs (docs/inference.md)."""
    from reavise.inference import build_algorithm
    from reavise.inference.pipeline import enhance_waveforms
    from reavise.models import build_prior

    torch.manual_seed(0)
    prior = build_prior("a-vae", {"z_dim": 4, "hidden": [64]}).eval()
    rng = np.random.default_rng(1)
    waves = [rng.standard_normal(int(s * 16000)).astype(np.float32) * np.float32(0.1) + np.sin(
        np.arange(int(s * 16000), dtype=np.float32) * np.float32(0.05 * (i + 1))
    ) for i, s in enumerate((1.0, 2.5, 1.6))]  # fmt: skip
    settings = {"int8_decoder": False} if algo == "mcem" else {}
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        algorithm = build_algorithm(algo, max_iter=2, **settings)
        alone = [enhance_waveforms(prior, algorithm, [w], seed=5)[0].speech for w in waves]
        batched = [u.speech for u in enhance_waveforms(prior, algorithm, waves, seed=5)]
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(alone, batched, strict=True):
        assert np.array_equal(a, b)
