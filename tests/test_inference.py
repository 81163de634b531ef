import numpy as np
import pytest
import torch

from reavise.errors import ReaviseError
from reavise.inference import build_algorithm, enhance_waveforms
from reavise.inference.draws import BatchDraws
from reavise.inference.mcem import MCEMState
from reavise.inference.nmf import init_nmf, m_step, neg_log_likelihood
from reavise.metrics import si_sdr
from reavise.models.checkpoint import import_published, load_checkpoint


def _cost(nmf, P, Vs, mask):
    Vx = nmf.g[..., None] * Vs + nmf.WH
    return float((neg_log_likelihood(P, Vx).mean(0) * mask).sum())


def test_nmf_m_step_never_increases_the_cost():
    # each multiplicative update is a majorise-minimise step: the cost is non-increasing
    g = torch.Generator().manual_seed(0)
    P = torch.rand(2, 30, 513, generator=g, dtype=torch.float64) ** 3
    Vs = torch.rand(4, 2, 30, 513, generator=g, dtype=torch.float64) + 0.01
    mask = torch.ones(2, 30, dtype=torch.float64)
    mask[1, 20:] = 0
    nmf = init_nmf(P, 5, g)
    costs = [_cost(nmf, P, Vs, mask)]
    for _ in range(15):
        nmf, reported = m_step(nmf, P, Vs, mask)
        # the reported cost is the per-frame cost at the incoming parameters
        assert float((reported * mask.sum(-1)).sum()) == pytest.approx(costs[-1], rel=1e-9)
        costs.append(_cost(nmf, P, Vs, mask))
    assert all(b <= a + 1e-6 * abs(a) for a, b in zip(costs, costs[1:], strict=False))
    assert costs[-1] < costs[0] - 1.0
    assert torch.isfinite(nmf.H).all() and torch.isfinite(nmf.g).all()


@pytest.mark.parametrize("native", [False, True])
def test_a_gain_the_prior_overrides_stops_at_the_floor(native, monkeypatch):
    """A frame whose power is far below the speech variance the prior insists on: each M-step
    divides its gain by up to 1e10, down to 0 in float32 without the floor (then log g is
    -inf and the next E-step's variances NaN, as once seen on a GRID mixture); with it the
    gain stops at GAIN_FLOOR and the other frames' gains are untouched by the floor."""
    import reavise.inference.nmf as nmf_mod

    g = torch.Generator().manual_seed(1)
    P = torch.rand(1, 6, 64, generator=g) + 0.1
    P[0, 3] = 1e-30  # a silent frame
    Vs = torch.full((2, 1, 6, 64), 1e3)
    mask = torch.ones(1, 6)

    def run():
        nmf = init_nmf(P, 3, torch.Generator().manual_seed(0))
        nmf.g[0, 3] = 1e-30
        return m_step(nmf, P, Vs, mask, native=native)[0]

    floored = run()
    assert floored.g[0, 3] == pytest.approx(nmf_mod.GAIN_FLOOR, rel=1e-6)
    assert torch.isfinite(torch.log(floored.g)).all()
    monkeypatch.setattr(nmf_mod, "GAIN_FLOOR", 0.0)
    free = run()
    assert free.g[0, 3] < 1.2e-38  # what the floor prevents: a denormal on its way to 0
    keep = [0, 1, 2, 4, 5]
    assert torch.equal(free.g[0, keep], floored.g[0, keep]) and torch.equal(free.W, floored.W)


def test_unknown_algorithm_and_setting():
    with pytest.raises(ReaviseError, match="unknown algorithm"):
        build_algorithm("gibbs")
    with pytest.raises(ReaviseError, match="unknown settings"):
        build_algorithm("mcem", n_steps=3)
    with pytest.raises(ReaviseError, match="'mcem': burn_in must be smaller than n_mh"):
        build_algorithm("mcem", n_mh=10, burn_in=10)
    with pytest.raises(ReaviseError, match="prior_weight must be positive"):
        build_algorithm("mcem", prior_weight=0)


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    from conftest import SHARED

    src = SHARED / "reference-checkpoints" / "a-vae" / "A-VAE.pt"
    if not src.exists():
        pytest.skip("../shared/data not present")
    return load_checkpoint(import_published(src, tmp_path_factory.mktemp("ck") / "a.pt"))


def _sample():
    from conftest import SHARED
    from reavise.audio import load_audio

    d = SHARED / "ntcd-timit-sample"
    return load_audio(d / "noisy.wav"), load_audio(d / "clean.wav")


@pytest.mark.parametrize(
    "algo, kw, min_gain",
    [("vem", {}, 7.0), ("mcem", {}, 7.0), ("langevin", {}, 7.0)],
)
def test_published_prior_improves_real_sample(published, algo, kw, min_gain):
    noisy, clean = _sample()
    res = enhance_waveforms(published, build_algorithm(algo, **kw), [noisy], seed=0)[0]
    gain = si_sdr(res.speech, clean) - si_sdr(noisy, clean)
    assert gain >= min_gain, f"{algo}: SI-SDR gain {gain:.2f} dB"
    assert res.cost[-1] < res.cost[0]
    # speech + noise estimates add back to the input (Wiener split of the STFT)
    assert np.allclose(res.speech + res.noise, noisy, atol=2e-4)


def test_determinism_and_batched_padding(published):
    noisy, _ = _sample()
    algo = build_algorithm("mcem", max_iter=5)
    a = enhance_waveforms(published, algo, [noisy], seed=3)[0].speech
    b = enhance_waveforms(published, algo, [noisy], seed=3)[0].speech
    c = enhance_waveforms(published, algo, [noisy], seed=4)[0].speech
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    short = noisy[: len(noisy) // 2]
    out = enhance_waveforms(published, algo, [noisy, short], seed=3)
    assert len(out[0].speech) == len(noisy) and len(out[1].speech) == len(short)
    assert all(np.isfinite(o.speech).all() for o in out)
    # the padded utterance gets the output it gets alone (own draws, STFT and masking)
    alone = enhance_waveforms(published, algo, [short], seed=3)[0].speech
    assert si_sdr(out[1].speech, alone) > 60.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_gpu_matches_cpu_quality(published):
    noisy, clean = _sample()
    algo = build_algorithm("vem")
    cpu = enhance_waveforms(published, algo, [noisy], seed=0)[0].speech
    gpu = enhance_waveforms(published.to("cuda"), algo, [noisy], device="cuda", seed=0)[0].speech
    published.to("cpu")
    assert abs(si_sdr(cpu, clean) - si_sdr(gpu, clean)) < 0.5


def _reference_mh(prior, P, nmf, z, eps, log_u, burn_in, gamma=1.0):
    """The E-step as published, written plainly: full log p(x|z) + gamma log p(z), two decodes."""
    from reavise.inference.base import frame_loglik, speech_variance
    from reavise.inference.fastpath import log_prior

    def logp(z):
        return frame_loglik(P, speech_variance(prior, z, None), nmf) + gamma * log_prior(prior, z)

    kept = []
    for step in range(eps.shape[0]):
        z_new = z + eps[step]
        accept = log_u[step] < logp(z_new) - logp(z)
        z = torch.where(accept[..., None], z_new, z)
        if step >= burn_in:
            kept.append(z)
    zs = torch.stack(kept)
    return zs, speech_variance(prior, zs, None)


@pytest.mark.parametrize("gamma", [1.0, 3.0])
def test_mcem_e_step_equals_the_plain_metropolis_hastings_reference(gamma):
    """The fast E-step (log1p/exp2 form, tracked sigma2, cached prior) makes the same moves."""
    from reavise.inference.mcem import MCEM, MCEMConfig
    from reavise.models import build_prior

    torch.manual_seed(0)
    prior = build_prior("a-vae", {"x_dim": 33, "z_dim": 3, "hidden": [16]}).double().eval()
    g = torch.Generator().manual_seed(1)
    P = torch.rand(2, 12, 33, generator=g, dtype=torch.float64) ** 2
    nmf = init_nmf(P, 4, g)
    nmf.g = torch.rand(2, 12, generator=g, dtype=torch.float64) + 0.5
    z0 = torch.randn(2, 12, 3, generator=g, dtype=torch.float64)
    cfg = MCEMConfig(n_mh=12, burn_in=5, proposal_var=0.1, prior_weight=gamma)
    state = MCEMState(z=z0.clone())
    draws = BatchDraws([7, 8], [12, 12], 12)
    zs, Vs = MCEM(cfg).e_step(prior, P, None, nmf, state, draws)
    # the same draws, in the same order, for the reference: each utterance its own stream
    eps, log_u = [], []
    for seed in (7, 8):
        g2 = torch.Generator().manual_seed(seed)
        eps.append(torch.randn((12, 12, 3), generator=g2, dtype=torch.float64))
        log_u.append(torch.rand((12, 12), generator=g2, dtype=torch.float64).log())
    eps = torch.stack(eps, 1) * cfg.proposal_var**0.5
    log_u = torch.stack(log_u, 1)
    ref_z, ref_V = _reference_mh(prior, P, nmf, z0, eps, log_u, cfg.burn_in, gamma)
    assert zs.shape == (7, 2, 12, 3)
    assert torch.equal(zs, ref_z)
    assert torch.allclose(Vs, ref_V, rtol=1e-10)
    moved = (zs[1:] != zs[:-1]).any(-1).double().mean()
    assert 0.1 < moved < 0.9  # some proposals accepted, some rejected
    # the cost it hands to the M-step is the one the M-step would compute itself
    _, own = m_step(nmf, P, Vs, torch.ones(2, 12, dtype=torch.float64))
    _, given = m_step(nmf, P, Vs, torch.ones(2, 12, dtype=torch.float64), state.frame_cost)
    assert torch.allclose(own, given, rtol=1e-10)
    assert torch.equal(state.Vs, Vs[-1]) and torch.equal(state.z, zs[-1])


@pytest.fixture(scope="module")
def tiny_prior():
    from reavise.models import build_prior

    torch.manual_seed(0)
    return build_prior("a-vae", {"z_dim": 4, "hidden": [16]}).eval()


def _three_utterances():
    rng = np.random.default_rng(0)
    t = np.arange(9000) / 16000
    tone = 0.5 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > 0)
    return [(tone[:n] + 0.1 * rng.standard_normal(n)).astype(np.float32) for n in (5000, 9000, 7000)]


def _near(a: np.ndarray, b: np.ndarray) -> bool:
    # equal up to float rounding (a 1-thread run is bit-equal; threads change summation order)
    return a.shape == b.shape and si_sdr(a, b) > 60.0


@pytest.mark.parametrize(
    "algo, kw",
    [("mcem", {}), ("mcem", {"native": False}), ("vem", {}), ("langevin", {}),
     ("mcem", {"tol": 0.004, "max_iter": 12})],
)  # fmt: skip
def test_an_utterance_gets_the_same_output_whatever_its_batch(tiny_prior, algo, kw):
    """Per-utterance generators, STFTs and stopping: batch composition changes nothing."""
    algorithm = build_algorithm(algo, **{"max_iter": 4, **kw})
    waves = _three_utterances()
    alone = [enhance_waveforms(tiny_prior, algorithm, [w], seed=5)[0] for w in waves]
    together = enhance_waveforms(tiny_prior, algorithm, waves, seed=5)
    reordered = enhance_waveforms(tiny_prior, algorithm, [waves[2], waves[0], waves[1]], seed=5)
    pair = enhance_waveforms(tiny_prior, algorithm, [waves[1], waves[0]], seed=5)
    for i, ref in enumerate(alone):
        assert _near(together[i].speech, ref.speech), i
        assert together[i].n_iter == ref.n_iter and len(together[i].cost) == ref.n_iter
        np.testing.assert_allclose(together[i].cost, ref.cost, rtol=1e-5)
    assert _near(reordered[1].speech, alone[0].speech)
    assert _near(reordered[2].speech, alone[1].speech)
    assert _near(reordered[0].speech, alone[2].speech)
    assert _near(pair[0].speech, alone[1].speech) and _near(pair[1].speech, alone[0].speech)
    # and the seed still matters
    other = enhance_waveforms(tiny_prior, algorithm, [waves[0]], seed=6)[0].speech
    assert si_sdr(other, alone[0].speech) < 60.0
    if kw.get("tol"):  # stopped per utterance, not when the slowest did
        assert len({r.n_iter for r in alone}) > 1


def test_batch_draws_of_one_utterance_are_one_generator_stream():
    from reavise.inference.draws import derived_seed

    d = BatchDraws([3, 3], [4, 6], 6)
    x = d.frames(torch.randn, (2,), (5,), fill=7.0)
    ref = torch.randn((2, 4, 5), generator=torch.Generator().manual_seed(3))
    assert torch.equal(x[:, 0, :4], ref) and bool((x[:, 0, 4:] == 7.0).all())
    assert torch.equal(x[:, 1], torch.randn((2, 6, 5), generator=torch.Generator().manual_seed(3)))
    assert derived_seed(11, 0) == 11 and len({derived_seed(11, k) for k in range(50)}) == 50
