import pytest
import torch

from avsynth import av_batch, tiny_config, train_tiny
from reavise.errors import ReaviseError
from reavise.inference import build_algorithm
from reavise.inference.fastpath import log_prior, prior_scorer
from reavise.models import FUSIONS, build_prior
from reavise.models.checkpoint import load_checkpoint, save_checkpoint

AV = ["av-vae", "av-cvae", "min-vae", "switching"]
VARIANTS = [(n, {}) for n in AV] + [
    (n, {"fusion": f}) for n in ("av-vae", "av-cvae") for f in FUSIONS if f != "concat"
] + [
    ("av-cvae", {"fusion": "reliability", "fusion_at": ["encoder", "decoder", "prior"]}),
    ("av-vae", {"visual_frontend": "cnn", "fusion": "cross_attention"}),
    ("switching", {"fusion": "reliability"}),
    ("av-cvae", {"visual_input": "embedding", "embedding_dim": 12, "fusion": "gated"}),
]


def _inputs(cfg: dict, B: int = 4, T: int = 8):
    g = torch.Generator().manual_seed(0)
    P, v = av_batch(B, T, g)
    if cfg.get("visual_input") == "embedding":
        v = torch.randn(B, T, cfg["embedding_dim"], generator=g)
    valid = torch.ones(B, T, dtype=torch.bool)
    valid[1, 5:] = False
    return P, v, valid


@pytest.mark.parametrize("name, extra", VARIANTS)
def test_every_model_trains_with_decreasing_loss(name, extra):
    torch.manual_seed(0)
    cfg = tiny_config(**extra)
    m = build_prior(name, cfg)
    assert m.uses_video
    P, v, valid = _inputs(cfg)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        out = m.loss(P, m.context(v, valid))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["loss"].detach()))
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    ctx = m.context(v, valid)
    w = m.modality_weights(m.encode(P, ctx)[0], ctx, P)
    assert w, "every AV model reports modality weights"
    for x in w.values():
        assert torch.allclose(x.sum(-1), torch.ones(()), atol=1e-5)


@pytest.mark.parametrize("name, extra", VARIANTS)
def test_save_load_round_trip(name, extra, tmp_path):
    torch.manual_seed(1)
    cfg = tiny_config(**extra)
    m = build_prior(name, cfg).eval()
    m2 = load_checkpoint(save_checkpoint(tmp_path / "m.pt", m), check_x_dim=False)
    P, v, valid = _inputs(cfg)
    c1, c2 = m.context(v, valid), m2.context(v, valid)
    z = torch.randn(3, 4, 8, 2)
    assert torch.equal(m.encode(P, c1)[0], m2.encode(P, c2)[0])
    assert torch.equal(m.decode(z, c1), m2.decode(z, c2))
    assert torch.equal(m.prior(z, c1)[0] * torch.ones_like(z), m2.prior(z, c2)[0] * torch.ones_like(z))


@pytest.mark.parametrize("name, extra", VARIANTS[:4] + [("av-cvae", {"fusion": "cross_attention"})])
@pytest.mark.parametrize("algo", ["mcem", "vem", "langevin"])
def test_em_runs_with_and_without_video(name, extra, algo):
    torch.manual_seed(0)
    cfg = tiny_config(**extra)
    m = build_prior(name, cfg).eval()
    P, v, valid = _inputs(cfg, B=2, T=10)
    X = torch.sqrt(P) * torch.exp(2j * torch.pi * torch.rand(P.shape)) + 0.1
    kw = {"n_mh": 4, "burn_in": 2} if algo == "mcem" else {}
    a = build_algorithm(algo, max_iter=3, **kw)
    for ctx in (m.context(v, valid), m.context(None, None), m.context(v, torch.zeros_like(valid))):
        res = a.run(m, X, ctx=ctx, frame_mask=torch.ones(2, 10))
        assert res.speech.shape == X.shape and torch.isfinite(res.speech.abs()).all()
        assert torch.isfinite(res.cost).all()


@pytest.mark.parametrize("name", ["av-vae", "av-cvae", "switching"])
def test_all_invalid_video_equals_missing_video(name):
    torch.manual_seed(0)
    m = build_prior(name, tiny_config(fusion="reliability")).eval()
    _, v, valid = _inputs(tiny_config())
    z = torch.randn(4, 8, 2)
    off = m.context(v, torch.zeros_like(valid))
    none = m.context(None, None)
    assert torch.allclose(m.decode(z, off), m.decode(z, none), atol=1e-5)
    mu, logvar = m.prior(z, off)
    assert torch.all(mu == 0) and torch.all(logvar == 0)  # audio-only N(0, I) prior


def test_av_cvae_em_scores_z_with_the_video_conditioned_prior():
    """AV-CVAE's prior is learned: log p(z|v) must use it, not log N(0, I) (MCEM, Langevin EM)."""
    torch.manual_seed(0)
    m = build_prior("av-cvae", tiny_config()).eval()
    assert not m.standard_prior
    _, v, valid = _inputs(tiny_config())
    ctx = m.context(v, valid)
    z = torch.randn(3, 4, 8, 2)
    mu, logvar = m.prior(z, ctx)
    ref = torch.distributions.Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(-1)
    assert torch.allclose(log_prior(m, z, ctx), ref, atol=1e-4)
    assert not torch.allclose(log_prior(m, z, ctx), log_prior(m, z, m.context(None, None)))


@pytest.mark.parametrize("name", ["av-vae", "av-cvae"])
def test_decoder_video_false_gives_an_audio_only_decoder(name):
    torch.manual_seed(0)
    m = build_prior(name, tiny_config(fusion="cross_attention", decoder_video=False)).eval()
    P, v, valid = _inputs(tiny_config())
    z = torch.randn(2, 4, 8, 2)
    assert torch.equal(m.decode(z, m.context(v, valid)), m.decode(z, m.context(None, None)))
    m.train()
    m.loss(P, m.context(v, valid))["loss"].backward()  # still trains (encoder/prior see video)
    assert m.visual.frame[1].weight.grad is not None


def test_fusion_weights_are_not_stale_after_an_utterance_without_video():
    torch.manual_seed(0)
    m = build_prior("av-cvae", tiny_config(fusion="gated")).eval()
    _, v, valid = _inputs(tiny_config())
    z = torch.randn(4, 8, 2)
    ctx = m.context(v, valid)
    assert set(m.modality_weights(z, ctx)) == {"pri", "dec"}
    none = m.context(None, None)
    assert set(m.modality_weights(z, none)) == {"dec"}  # the prior network did not run


def test_min_vae_encode_prefers_visual_encoder_where_video_is_valid():
    torch.manual_seed(0)
    m = build_prior("min-vae", tiny_config()).eval()
    P, v, valid = _inputs(tiny_config())
    ctx = m.context(v, valid)
    mu, _ = m.encode(P, ctx)
    vmu, _ = m.encode_visual(ctx)
    amu, _ = m.encode_audio(P)
    assert torch.equal(mu[valid], vmu[valid]) and torch.equal(mu[~valid], amu[~valid])
    assert torch.equal(m.encode(P, m.context(None, None))[0], amu)


def test_cnn_frontend_is_cheap_on_full_size_roi():
    import time

    m = build_prior("av-vae", {"visual_frontend": "cnn"}).eval()
    v = torch.rand(1, 300, 67, 67)
    with torch.no_grad():
        t = time.perf_counter()
        f = m.context(v, None).feat
        dt = time.perf_counter() - t
    assert f.shape == (1, 300, 32) and dt < 2.0


def test_switch_posterior_favours_av_decoder_when_video_matches():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    m = build_prior("switching", tiny_config())
    train_tiny(m, 400, p_drop=0.0, p_corrupt=0.0)
    m.eval()
    P, v = av_batch(2, 40, torch.Generator().manual_seed(9))
    g = torch.Generator().manual_seed(3)
    S = torch.sqrt(P) * torch.exp(2j * torch.pi * torch.rand(P.shape, generator=g))
    X = S + 0.3 * P.mean().sqrt() * torch.randn(P.shape, generator=g, dtype=torch.cfloat)
    ok = torch.ones(2, 40, dtype=torch.bool)
    a = build_algorithm("mcem", max_iter=5)
    match = a.run(m, X, ctx=m.context(v, ok)).info["switch"]
    wrong = a.run(m, X, ctx=m.context(v.flip(1), ok)).info["switch"]
    for q in (match, wrong):
        assert q.shape == (2, 40) and (q >= 0).all() and (q <= 1).all()
    assert float(match.mean()) > 0.8 and float(match.mean()) > float(wrong.mean()) + 0.3
    none = a.run(m, X, ctx=m.context(None, None)).info["switch"]
    assert torch.all(none == 0)  # no video: the audio-only decoder


def test_bad_configs_are_clear_errors():
    from reavise.errors import ReaviseError

    with pytest.raises(ReaviseError, match="unknown fusion"):
        build_prior("av-vae", {"fusion": "sum"})
    with pytest.raises(ReaviseError, match="fusion_at"):
        build_prior("av-cvae", {"fusion_at": ["everywhere"]})
    with pytest.raises(ReaviseError, match="embedding_dim"):
        build_prior("av-vae", {"visual_input": "embedding"})
    m = build_prior("av-vae", tiny_config())
    with pytest.raises(ReaviseError, match="16x16"):
        m.context(torch.rand(1, 3, 20, 20), None)


def test_prior_scorer_matches_prior_logp_up_to_a_constant():
    torch.manual_seed(0)
    _, v, valid = _inputs(tiny_config())
    z1, z2 = torch.randn(2, 3, 4, 8, 2).unbind(0)
    for name, cfg in (("a-vae", dict(x_dim=16, z_dim=2, hidden=[32])), ("av-cvae", tiny_config())):
        m = build_prior(name, cfg).eval()
        ctx = m.context(v, valid) if m.uses_video else None
        score = prior_scorer(m, ctx, z1)
        # differences (all that MH and Langevin use) agree with the full log-density
        want = log_prior(m, z1, ctx) - log_prior(m, z2, ctx)
        assert torch.allclose(score(z1) - score(z2), want, atol=1e-4)
        assert not torch.allclose(want, torch.zeros_like(want))


def test_em_can_start_from_the_video_prior():
    torch.manual_seed(0)
    m = build_prior("av-cvae", tiny_config()).eval()
    P, v, valid = _inputs(tiny_config())
    ctx = m.context(v, valid)
    gen = torch.Generator().manual_seed(0)
    start = lambda init, prior=m, c=ctx: build_algorithm("mcem", init=init).init_latent(prior, P, c, gen).z  # noqa: E731
    enc, pri, lips = start("encoder"), start("prior"), start("lips")
    assert torch.allclose(pri, m.prior(enc, ctx)[0] * torch.ones_like(enc))
    assert not torch.allclose(pri, enc)
    assert torch.all(pri[1, 5:] == 0)  # frames without video: the N(0, I) prior's mean
    # "lips": the prior's mean where it has lips, the encoder's where p(z|v) is N(0, I)
    assert torch.equal(lips[valid], pri[valid]) and torch.equal(lips[~valid], enc[~valid])
    # without video, or with an audio-only prior, "lips" is the encoder's start
    assert torch.equal(start("lips", c=m.context(None, None)), start("encoder", c=m.context(None, None)))
    a = build_prior("a-vae", {"x_dim": tiny_config()["x_dim"], "z_dim": 2, "hidden": [8]}).eval()
    assert torch.equal(start("lips", a, None), start("encoder", a, None))
    with pytest.raises(ReaviseError, match="init must be one of"):
        build_algorithm("vem", init="zeros")


@pytest.mark.parametrize("fallback", [False, True])
def test_an_av_utterance_gets_the_same_output_whatever_its_batch(fallback):
    """Lips with a validity mask through a CNN front-end with a temporal convolution: an
    utterance's enhanced speech is bit-identical alone and in a padded batch of three (1
    thread). Computing the features of the whole padded batch at once changed them by ~1e-7
    (the convolutions round differently with the number of frames) and, near the end of a
    shorter utterance, by the zero frames of the padding that the temporal convolution saw."""
    import numpy as np

    from reavise.inference.pipeline import VideoInput, enhance_waveforms

    torch.manual_seed(0)
    av_cfg = {"x_dim": 513, "z_dim": 4, "hidden": [64], "visual_frontend": "cnn", "visual_dim": 8}
    if fallback:
        prior = build_prior("audio-fallback", {"av_model": "av-cvae", "av_config": av_cfg,
                                               "audio_config": {"hidden": [64]}})  # fmt: skip
    else:
        prior = build_prior("av-cvae", av_cfg)
    prior.eval()
    rng = np.random.default_rng(1)
    waves, videos = [], []
    for i, s in enumerate((1.0, 2.0, 1.6)):
        n = int(s * 16000)
        t = np.arange(n, dtype=np.float32)
        waves.append((0.1 * rng.standard_normal(n) + np.sin(t * 0.05 * (i + 1))).astype(np.float32))
        frames = rng.random((int(s * 25), 16, 16)).astype(np.float32)
        valid = rng.random(len(frames)) > 0.3
        videos.append(VideoInput(frames, 25.0, valid))
    algorithm = build_algorithm("mcem", max_iter=3, int8_decoder=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        alone = [enhance_waveforms(prior, algorithm, [w], [v], seed=5)[0].speech for w, v in zip(waves, videos, strict=True)]
        batched = [u.speech for u in enhance_waveforms(prior, algorithm, waves, videos, seed=5)]
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(alone, batched, strict=True):
        assert a.shape == b.shape and np.array_equal(a, b)
