"""The audio fallback (``models/fallback.py``, ``reavise combine``): the AV part on frames with
lips, the audio-only part on the others; without video it is the audio prior, with lips on
every frame the AV prior; the fast path decodes each part on its own frames."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from avsynth import av_batch, tiny_config
from conftest import run_cli
from reavise.enhance import find_valid, load_valid
from reavise.errors import CheckpointError, InputError
from reavise.inference import build_algorithm, fastpath
from reavise.models import build_prior
from reavise.models.checkpoint import load_checkpoint, save_checkpoint
from reavise.models.fallback import combine


def _parts(fusion: str = "concat"):
    torch.manual_seed(0)
    av = build_prior("av-cvae", tiny_config(fusion=fusion))
    audio = build_prior("a-vae", dict(x_dim=tiny_config()["x_dim"], z_dim=2, hidden=[8]))
    return av, audio


@pytest.fixture
def combined(tmp_path):
    av, audio = _parts()
    save_checkpoint(tmp_path / "av.pt", av)
    save_checkpoint(tmp_path / "audio.pt", audio)
    combine(tmp_path / "av.pt", tmp_path / "audio.pt", tmp_path / "fb.pt")
    m = load_checkpoint(tmp_path / "fb.pt", check_x_dim=False).double()
    return m, av.double().eval(), audio.double().eval()


def _video(valid_frames=None):
    g = torch.Generator().manual_seed(2)
    P, v = av_batch(2, 7, g)
    valid = torch.ones(2, 7, dtype=torch.bool)
    if valid_frames == "some":
        valid[0, 1:4] = False
        valid[1, 6] = False
    elif valid_frames == "none":
        valid[:] = False
    return P.double(), v.double(), valid


def test_combine_round_trips_both_parts_weights(combined):
    m, av, audio = combined
    for part, ref in ((m.av, av), (m.audio, audio)):
        sd, want = part.state_dict(), ref.state_dict()
        assert sd.keys() == want.keys()
        assert all(torch.equal(sd[k], want[k]) for k in sd)


def test_each_frame_gets_its_own_parts_decoder_encoder_and_prior(combined):
    m, av, audio = combined
    P, v, valid = _video("some")
    ctx, actx = m.context(v, valid), av.context(v, valid)
    z = torch.randn(3, 2, 7, 2, dtype=torch.float64)
    with torch.no_grad():
        got = m.decode(z, ctx)
        want_av, want_a = av.decode(z, actx), audio.decode(z)
        # each part decodes its own rows only: equal up to float rounding
        assert torch.allclose(got[:, valid], want_av[:, valid], rtol=0, atol=1e-13)
        assert torch.allclose(got[:, ~valid], want_a[:, ~valid], rtol=0, atol=1e-13)
        assert not torch.allclose(want_av[:, ~valid], want_a[:, ~valid])  # the parts differ there
        mu, lv = m.encode(P, ctx)
        mu_av, _ = av.encode(P, actx)
        mu_a, lv_a = audio.encode(P)
        assert torch.equal(mu[valid], mu_av[valid]) and torch.equal(mu[~valid], mu_a[~valid])
        assert torch.equal(lv[~valid], lv_a[~valid])
        pm, plv = m.prior(z[0], ctx)
        assert torch.equal(pm[~valid], torch.zeros_like(pm[~valid]))  # N(0, I) without lips
        assert torch.equal(pm[valid], av.prior(z[0], actx)[0][valid])
        assert not torch.equal(plv[valid], torch.zeros_like(plv[valid]))
        w = m.modality_weights(z[0], ctx)["dec"]
        assert torch.equal(w[~valid], torch.tensor([1.0, 0.0], dtype=w.dtype).expand_as(w[~valid]))


def test_a_part_without_a_per_frame_bias_runs_on_all_frames_and_gives_its_rows():
    """A gated-fusion AV part (a HeadDecoder: no bias to cut to a subset of frames)."""
    av, audio = _parts("gated")
    m = build_prior("audio-fallback", {"av_model": "av-cvae", "av_config": tiny_config(fusion="gated"),
                                       "audio_config": {"hidden": [8]}}).double().eval()  # fmt: skip
    m.av.load_state_dict(av.state_dict())
    m.audio.load_state_dict(audio.state_dict())
    _, v, valid = _video("some")
    ctx = m.context(v, valid)
    assert fastpath.describe(m, ctx) == "frame-select"
    z = torch.randn(2, 7, 2, dtype=torch.float64)
    off = torch.randn(2, 7, m.av.config.x_dim, dtype=torch.float64)
    with torch.no_grad():
        got = fastpath.log2_variance(m, ctx, off)(z)
        want_av = m.av.decode(z, m.av.context(v, valid))
        assert torch.allclose(got[valid], (off + want_av / math.log(2.0))[valid], atol=1e-10)
        assert torch.allclose(got, off + m.decode(z, ctx) / math.log(2.0), atol=1e-10)


@pytest.mark.parametrize("fusion", ["concat", "gated"])
def test_mixed_decoder_runs_each_part_on_its_frames_with_the_gradients_of_a_per_frame_choice(fusion):
    """Under autograd (VEM's E-step) the mixed decoder decodes each part on its own frames only
    (a concat part cut to its rows, a gated part run on all frames and indexed): the values
    and the gradients of a per-frame choice between the two full decoders, samples leading."""
    m = build_prior("audio-fallback", {"av_model": "av-cvae", "av_config": tiny_config(fusion=fusion),
                                       "audio_config": {"hidden": [8]}}).double().eval()  # fmt: skip
    _, v, valid = _video("some")
    ctx = m.context(v, valid)
    z = torch.randn(3, 2, 7, 2, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 7, m.av.config.x_dim, dtype=torch.float64)
    got = m.decode(z, ctx)
    (g_got,) = torch.autograd.grad((got * w).sum(), z)
    want = torch.where(valid[..., None], m.av.decode(z, ctx), m.audio.decode(z))
    (g_want,) = torch.autograd.grad((want * w).sum(), z)
    assert torch.allclose(got, want, atol=1e-12) and torch.allclose(g_got, g_want, atol=1e-12)
    assert g_got[:, ~valid].abs().sum() > 0 and g_got[:, valid].abs().sum() > 0


def test_an_em_run_computes_the_lips_share_of_decoder_and_prior_once(combined, monkeypatch):
    """In an EM run (eval, frozen parameters) the AV part's per-frame decoder bias and p(z|v)
    are computed once per context, not at every E-step, with the same numbers."""
    from reavise.models import av_base

    m, _, _ = combined
    P, v, valid = _video("some")
    calls = []
    conditioned = av_base.TwoStream.conditioned
    monkeypatch.setattr(av_base.TwoStream, "conditioned",
                        lambda self, *a: calls.append(1) or conditioned(self, *a))  # fmt: skip
    kept = _enhance(m, P, m.context(v, valid))
    assert len(calls) == 1
    monkeypatch.setattr(av_base.AVPriorBase, "_per_context", lambda self, ctx, key, make: make())
    assert torch.equal(kept, _enhance(m, P, m.context(v, valid)))
    assert len(calls) > 3  # once per E-step and more without it
    # while training (or with parameters to train) nothing is kept
    monkeypatch.undo()
    ctx = m.context(v, valid)
    assert m.av.decoder(ctx) is not m.av.decoder(ctx)
    m.requires_grad_(False)
    assert m.av.decoder(ctx) is m.av.decoder(ctx)
    m.requires_grad_(True)


@pytest.mark.parametrize("frames", ["some", "all", "none"])
def test_fast_path_runs_each_part_on_its_frames_with_the_decoders_numbers(combined, frames):
    m, _, _ = combined
    _, v, valid = _video(frames)
    ctx = m.context(v, valid)
    expected = {"some": "frame-select", "all": "folded-mlp", "none": "folded-mlp"}[frames]
    assert fastpath.describe(m, ctx) == expected
    z = torch.randn(2, 7, 2, dtype=torch.float64)
    off = torch.randn(2, 7, m.av.config.x_dim, dtype=torch.float64)
    with torch.no_grad():
        got = fastpath.log2_variance(m, ctx, off)(z)
        assert torch.allclose(got, off + m.decode(z, ctx) / math.log(2.0), atol=1e-10)


def _enhance(prior, P, ctx, seed=3):
    X = torch.sqrt(P) * torch.exp(2j * torch.pi * torch.rand(P.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    algo = build_algorithm("mcem", max_iter=3, n_mh=6, burn_in=3, native=False)
    return algo.run(prior, X, ctx=ctx, seed=seed).speech


def test_without_lips_it_enhances_as_the_audio_prior_and_with_lips_as_the_av_prior(combined):
    m, av, audio = combined
    P, v, valid = _video()
    no_video = _enhance(m, P, m.context(None, None))
    assert torch.allclose(no_video, _enhance(audio, P, None), rtol=1e-9, atol=1e-12)
    none_valid = _enhance(m, P, m.context(v, torch.zeros_like(valid)))
    assert torch.allclose(none_valid, no_video, rtol=1e-9, atol=1e-12)
    lips = _enhance(m, P, m.context(v, valid))
    assert torch.allclose(lips, _enhance(av, P, av.context(v, valid)), rtol=1e-9, atol=1e-12)
    assert not torch.allclose(lips, no_video, rtol=1e-3)


def test_training_loss_is_the_sum_of_both_parts_and_reaches_both(combined):
    m, _, _ = combined
    m.train()
    P, v, valid = _video("some")
    torch.manual_seed(5)
    out = m.loss(P, m.context(v, valid))
    torch.manual_seed(5)
    a = m.av.loss(P, m.av.context(v, valid))
    b = m.audio.loss(P, None)
    assert torch.allclose(out["loss"], a["loss"] + b["loss"])
    out["loss"].backward()
    assert m.av.dec_logvar.weight.grad.abs().sum() > 0 and m.audio.dec_logvar.weight.grad.abs().sum() > 0


def test_combine_refuses_parts_of_the_wrong_kind_in_one_line(tmp_path):
    av, audio = _parts()
    save_checkpoint(tmp_path / "av.pt", av)
    save_checkpoint(tmp_path / "audio.pt", audio)
    save_checkpoint(tmp_path / "z3.pt", build_prior("a-vae", dict(x_dim=tiny_config()["x_dim"], z_dim=3, hidden=[8])))
    cases = [(("audio.pt", "audio.pt"), "does not take video"), (("av.pt", "av.pt"), "takes video"),
             (("av.pt", "z3.pt"), "differ in z_dim")]  # fmt: skip
    for (a, b), msg in cases:
        with pytest.raises(CheckpointError, match=msg):
            combine(tmp_path / a, tmp_path / b, tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()
    combine(tmp_path / "av.pt", tmp_path / "audio.pt", tmp_path / "fb.pt")
    with pytest.raises(CheckpointError, match="already an audio-fallback"):
        combine(tmp_path / "fb.pt", tmp_path / "audio.pt", tmp_path / "out.pt")


def test_combine_command_writes_a_loadable_prior_and_refuses_bad_input(tmp_path, monkeypatch, capsys):
    av, audio = _parts()
    save_checkpoint(tmp_path / "av.pt", av)
    save_checkpoint(tmp_path / "audio.pt", audio)
    code, out, err = run_cli(monkeypatch, capsys, "combine", tmp_path / "av.pt", tmp_path / "audio.pt", tmp_path / "fb.pt")
    assert code == 0, err
    assert "av-cvae on frames with lips, a-vae on the others" in out
    assert load_checkpoint(tmp_path / "fb.pt", check_x_dim=False).registry_name == "audio-fallback"
    code, _, err = run_cli(monkeypatch, capsys, "combine", tmp_path / "audio.pt", tmp_path / "audio.pt", tmp_path / "x.pt")
    assert code == 2 and "does not take video" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.pt").exists()


def test_enhance_reads_a_mixture_sets_validity_mask(tmp_path):
    (tmp_path / "lips").mkdir()
    (tmp_path / "valid").mkdir()
    lips = tmp_path / "lips" / "u1.npy"
    np.save(lips, np.zeros((5, 67, 67), np.uint8))
    assert find_valid(lips) is None
    np.save(tmp_path / "valid" / "u1.npy", np.array([1, 1, 0, 0, 1], bool))
    assert find_valid(lips) == tmp_path / "valid" / "u1.npy"
    assert load_valid(find_valid(lips), 5).tolist() == [True, True, False, False, True]
    with pytest.raises(InputError, match="5 values for 6 lips frames"):
        load_valid(find_valid(lips), 6)
    beside = tmp_path / "talk_lips.npy"
    np.save(tmp_path / "talk_valid.npy", np.ones(3, bool))
    assert find_valid(beside) == tmp_path / "talk_valid.npy"


def test_reavise_train_trains_both_parts_of_a_fallback_prior(tmp_path):
    """``model: audio-fallback`` through the real training loop (lips corpus, corruptions):
    both parts leave their initial weights and the exported file loads as one prior."""
    from reavise.train import TrainConfig, train
    from test_lipreader import _tiny_corpus

    corpus = _tiny_corpus(tmp_path / "c")
    av_cfg = dict(x_dim=513, z_dim=4, hidden=[16], roi_size=16, visual_dim=8, visual_hidden=16)
    cfg = TrainConfig(model="audio-fallback", model_config={"av_model": "av-cvae", "av_config": av_cfg,
                                                             "audio_config": {"hidden": [16]}},
                      epochs=2, batch_size=8, chunk=8, examples_per_epoch=32, lr=3e-3, seed=0,
                      modality_dropout=0.3, visual_corruption=0.3)  # fmt: skip
    path = train(corpus, tmp_path / "run", cfg, progress=False)
    m = load_checkpoint(path)
    assert m.registry_name == "audio-fallback" and m.audio.config.z_dim == 4
    one = load_checkpoint(train(corpus, tmp_path / "one", dataclasses.replace(cfg, epochs=1), progress=False))
    for part in ("av", "audio"):  # the second epoch moved both parts
        w, w1 = getattr(m, part).dec_logvar.weight, getattr(one, part).dec_logvar.weight
        assert w.shape == w1.shape and not torch.allclose(w, w1)
