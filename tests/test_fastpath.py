"""The narrow prior interface and ``reavise.inference.fastpath``: every registered prior's
fast paths give its decoder's numbers, wrappers keep or lose a path visibly, and the EM loop
passes diagnostics back explicitly."""

import math

import pytest
import torch

from avsynth import av_batch, tiny_config
from reavise.inference import build_algorithm, fastpath
from reavise.inference.switch import state_posterior
from reavise.models import PRIORS, SpeechPrior, build_prior
from reavise.models.base import ModalitySwitch
from reavise.models.fusion import FUSIONS
from reavise.models.layers import ConditionedMLPDecoder, HeadDecoder, MLPDecoder

SEQ = {"rvae": dict(x_dim=16, z_dim=3, dim_rnn_g_x=8, dim_rnn_g_z=8, dim_rnn_h=8),
       "dkf": dict(x_dim=16, z_dim=3, dense_x_gx=[8], dim_rnn_gx=8, dense_z_x=[8])}  # fmt: skip
#: sequence priors with video: their sizes beside tiny_config's visual ones
SEQ_AV = {"av-dkf": dict(z_dim=3, dense_x_gx=[8], dim_rnn_gx=8, dense_z_x=[8], dim_transition=8)}


def _prior(name: str):
    torch.manual_seed(0)
    if name == "audio-fallback":  # lips on some frames only: each part decodes its own frames
        m = build_prior(name, {"av_model": "av-cvae", "av_config": tiny_config()}).double().eval()
        _, v = av_batch(2, 6, torch.Generator().manual_seed(0))
        valid = torch.ones(2, 6, dtype=torch.bool)
        valid[0, 1:4] = False
        valid[1, 5] = False
        return m, m.context(v.double(), valid)
    if name in SEQ:
        return build_prior(name, SEQ[name]).double().eval(), None
    if PRIORS.get(name).uses_video:
        cfg = tiny_config()
        if name in SEQ_AV:
            cfg = {k: v for k, v in cfg.items() if k != "hidden"} | SEQ_AV[name]
        m = build_prior(name, cfg).double().eval()
        g = torch.Generator().manual_seed(0)
        _, v = av_batch(2, 6, g)
        return m, m.context(v.double(), torch.ones(2, 6, dtype=torch.bool))
    return build_prior(name, dict(x_dim=16, z_dim=2, hidden=[8])).double().eval(), None


#: the path each registered prior is expected to get (a new prior must be listed here)
EXPECTED = {"a-vae": "folded-mlp", "min-vae": "folded-mlp", "av-vae": "folded-mlp",
            "av-cvae": "folded-mlp", "switching": "plain", "rvae": "plain", "dkf": "plain",
            "av-dkf": "split-head", "audio-fallback": "frame-select"}  # fmt: skip


def test_every_registered_prior_has_an_expected_path():
    assert sorted(EXPECTED) == PRIORS.names()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fast_paths_equal_the_plain_decoder(name):
    m, ctx = _prior(name)
    assert fastpath.describe(m, ctx) == EXPECTED[name]
    z = torch.randn(3, 2, 6, m.z_dim, dtype=torch.float64)
    want = m.decode(z, ctx)
    assert want.shape[-1] == (getattr(m.config, "x_dim", None) or m.av.config.x_dim)  # fallback: its parts
    off = torch.randn(*want.shape[1:], dtype=torch.float64)
    with torch.no_grad():
        got = fastpath.log2_variance(m, ctx, off)(z[0])
    assert torch.allclose(got, off + want[0] / math.log(2.0), atol=1e-10)
    split = fastpath.decoder_split(m, ctx)
    if EXPECTED[name] in ("plain", "frame-select"):  # frame-select: two output layers
        assert split is None
    else:
        h = split.hidden(z)
        assert torch.allclose(h @ split.weight.t() + split.bias, want, atol=1e-12)
        if split.tanh_layer is not None:  # hidden(z) is exactly tanh(W1 z + b1)
            W1, b1 = split.tanh_layer
            assert torch.allclose(h, torch.tanh(z @ W1.t() + b1), atol=1e-12)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_prior_scorer_differences_equal_log_prior_differences(name):
    m, ctx = _prior(name)
    z1, z2 = torch.randn(2, 3, 2, 6, m.z_dim, dtype=torch.float64).unbind(0)
    score = fastpath.prior_scorer(m, ctx, z1)
    want = fastpath.log_prior(m, z1, ctx) - fastpath.log_prior(m, z2, ctx)
    assert torch.allclose(score(z1) - score(z2), want, atol=1e-10)
    mu, logvar = m.prior(z1, ctx)  # against torch.distributions
    ref = torch.distributions.Normal(mu * torch.ones_like(z1), torch.exp(0.5 * logvar)).log_prob(z1)
    assert torch.allclose(fastpath.log_prior(m, z1, ctx), ref.sum(-1), atol=1e-10)


class _Forwarding(SpeechPrior):
    """A wrapper that forwards the narrow interface (as a user's subclass or adapter would)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.config = inner.config

    def encode(self, power, ctx=None):
        return self.inner.encode(power, ctx)

    def decoder(self, ctx=None):
        return self.inner.decoder(ctx)


class _Scaled(_Forwarding):
    """A wrapper that changes the decoder's output: it cannot keep the folded path."""

    def decoder(self, ctx=None):
        inner = self.inner.decoder(ctx)
        return lambda z: inner(z) + 1.0


def test_a_forwarding_wrapper_keeps_the_path_and_a_changing_one_falls_back_correctly(caplog):
    m, _ = _prior("a-vae")
    assert fastpath.describe(_Forwarding(m)) == "folded-mlp"
    scaled = _Scaled(m)
    assert fastpath.describe(scaled) == "plain"
    z = torch.randn(2, 5, 2, dtype=torch.float64)
    off = torch.zeros(2, 5, 16, dtype=torch.float64)
    with caplog.at_level("DEBUG", logger="reavise.inference.fastpath"), torch.no_grad():
        got = fastpath.log2_variance(scaled, None, off)(z)
    assert torch.allclose(got, (m.decode(z) + 1.0) / math.log(2.0), atol=1e-12)
    assert "_Scaled" in caplog.text and "decoded as is" in caplog.text
    assert fastpath.decoder_split(scaled, None) is None


def test_decoders_show_their_structure():
    m, ctx = _prior("av-cvae")  # concatenation: the lips folded into the first layer
    assert isinstance(m.decoder(ctx), ConditionedMLPDecoder)
    assert isinstance(_prior("a-vae")[0].decoder(), MLPDecoder)
    gated = build_prior("av-cvae", tiny_config(fusion="gated"))
    assert isinstance(gated.decoder(gated.context(None, None)), HeadDecoder)


#: the decoder path of the AV priors by fusion: pass-through fusions fold the lips in
FUSION_PATH = {"concat": "folded-mlp", "frame_attention": "folded-mlp", "gated": "split-head",
               "cross_attention": "split-head", "reliability": "split-head"}  # fmt: skip


def test_every_fusion_has_an_expected_decoder_path():
    assert sorted(FUSION_PATH) == sorted(FUSIONS)


@pytest.mark.parametrize("kind", sorted(FUSION_PATH))
@pytest.mark.parametrize("name", ["av-vae", "av-cvae"])
@pytest.mark.parametrize("video", ["valid", "some-invalid", "none"])
def test_every_fusion_decoder_equals_its_two_stream_forward(kind, name, video):
    """The decoder view (folded lips or not) and the fast paths give what the fused MLP
    itself computes from [z; v], with and without (valid) video, z with sample dims."""
    torch.manual_seed(1)
    m = build_prior(name, tiny_config(fusion=kind, hidden=[16, 8])).double().eval()
    g = torch.Generator().manual_seed(3)
    _, v = av_batch(2, 6, g)
    valid = torch.ones(2, 6, dtype=torch.bool)
    if video == "some-invalid":
        valid[0, 2:4] = False
    ctx = m.context(None if video == "none" else v.double(), valid)
    z = torch.randn(3, 2, 6, m.z_dim, dtype=torch.float64)
    with torch.no_grad():
        want = m.dec_logvar(m._dec_hidden(z, ctx)[0])
        assert torch.allclose(m.decode(z, ctx), want, atol=1e-12)
        assert fastpath.describe(m, ctx) == FUSION_PATH[kind]
        off = torch.randn(3, 2, 6, m.config.x_dim, dtype=torch.float64)
        got = fastpath.log2_variance(m, ctx, off)(z)
        assert torch.allclose(got, off + want / math.log(2.0), atol=1e-10)
        split = fastpath.decoder_split(m, ctx)
        assert torch.allclose(split.hidden(z) @ split.weight.t() + split.bias, want, atol=1e-12)


def test_switch_posterior_is_explicit_and_matches_a_plain_forward_backward():
    """The EM side scores each state's decoder; the model's forward-backward gives q(m). Checked
    against a brute-force sum over all switch sequences of a 4-frame chain."""
    torch.manual_seed(0)
    m = build_prior("switching", tiny_config()).double().eval()
    assert isinstance(m, ModalitySwitch)
    g = torch.Generator().manual_seed(0)
    P, v = av_batch(1, 4, g)
    P = P.double()
    ctx = m.context(v.double(), torch.ones(1, 4, dtype=torch.bool))
    from reavise.inference.nmf import init_nmf

    nmf = init_nmf(P, 2, g)
    z = torch.randn(3, 1, 4, 2, dtype=torch.float64)
    q = state_posterior(m, ctx, P, nmf, z, torch.ones(1, 4, dtype=torch.float64))
    # brute force: log-evidence per frame and state, Markov prior, all 2^4 sequences
    from reavise.inference.likelihood import frame_loglik

    with torch.no_grad():
        e = torch.stack([torch.logsumexp(frame_loglik(P, torch.exp(lv), nmf), 0) - math.log(3)
                         for lv in m.state_log_variances(z, ctx)], -1)[0]  # fmt: skip
    c = m.config
    want = torch.zeros(4, 2, dtype=torch.float64)
    total = 0.0
    for seq in range(16):
        s = [(seq >> t) & 1 for t in range(4)]
        lp = math.log(c.switch_prior if s[0] else 1 - c.switch_prior)
        lp += sum(math.log(c.switch_stay if s[t] == s[t - 1] else 1 - c.switch_stay) for t in range(1, 4))
        w = math.exp(lp + float(sum(e[t, s[t]] for t in range(4))))
        total += w
        for t in range(4):
            want[t, s[t]] += w
    assert torch.allclose(q[0], want / total, atol=1e-9)
    # the run hands it back, and the caller's context is left as it was
    X = torch.sqrt(P) * torch.exp(2j * torch.pi * torch.rand(P.shape, dtype=torch.float64))
    res = build_algorithm("mcem", max_iter=2, n_mh=4, burn_in=2).run(m, X, ctx=ctx)
    assert res.info["switch"].shape == (1, 4) and ctx.switch is None
    assert set(res.info["modality_weights"]) == {"dec_av"}


def test_enhance_hands_back_each_utterances_modality_weights():
    import numpy as np

    from reavise.inference import enhance_waveforms
    from reavise.inference.pipeline import VideoInput

    torch.manual_seed(0)
    m = build_prior("av-cvae", dict(z_dim=2, hidden=[16], visual_dim=4, visual_hidden=8,
                                    roi_size=8, fusion="gated")).eval()  # fmt: skip
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (8000, 12000)]
    videos = [VideoInput(rng.random((k, 8, 8)).astype(np.float32), 25.0) for k in (13, 19)]
    out = enhance_waveforms(m, build_algorithm("vem", max_iter=2), waves, videos)
    for u, n in zip(out, (8000, 12000), strict=True):
        T = 1 + n // 256  # STFT frames of the utterance (hop 256)
        w = u.info["modality_weights"]
        assert set(w) == {"dec", "enc", "pri"}
        assert w["pri"].shape[-2:] == (T, 2) and np.allclose(w["pri"].sum(-1), 1, atol=1e-5)
        assert float(np.ptp(w["pri"][..., 1])) > 0  # gated: the weights vary over frames
