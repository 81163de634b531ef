import numpy as np
import pytest
import torch

from reavise.errors import ReaviseError
from reavise.inference import build_algorithm, enhance_waveforms
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


def test_unknown_algorithm_and_setting():
    with pytest.raises(ReaviseError, match="unknown algorithm"):
        build_algorithm("gibbs")
    with pytest.raises(ReaviseError, match="unknown settings"):
        build_algorithm("mcem", n_steps=3)


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
    # the padded utterance is enhanced as well as alone (masking keeps padding out)
    alone = enhance_waveforms(published, algo, [short], seed=3)[0].speech
    assert abs(si_sdr(out[1].speech, short) - si_sdr(alone, short)) < 1.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_gpu_matches_cpu_quality(published):
    noisy, clean = _sample()
    algo = build_algorithm("vem")
    cpu = enhance_waveforms(published, algo, [noisy], seed=0)[0].speech
    gpu = enhance_waveforms(published.to("cuda"), algo, [noisy], device="cuda", seed=0)[0].speech
    published.to("cpu")
    assert abs(si_sdr(cpu, clean) - si_sdr(gpu, clean)) < 0.5
