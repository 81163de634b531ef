"""Shipped priors (reavise.pretrained): name resolution, and each one enhances speech."""

from __future__ import annotations

import numpy as np
import pytest

from reavise.errors import CheckpointError
from reavise.pretrained import SHIPPED, resolve, shipped


def test_resolve_prefers_an_existing_file(tmp_path):
    f = tmp_path / "a-vae-synth"  # a file named like a shipped prior wins over it
    f.write_bytes(b"x")
    assert resolve(str(f)) == f
    assert resolve("a-vae-synth", base=tmp_path) == f


def test_resolve_names_a_shipped_prior():
    p = resolve("a-vae-synth")
    assert p.is_file() and p.name == SHIPPED["a-vae-synth"]
    assert set(shipped()) == set(SHIPPED)  # every listed prior is in the install


def test_resolve_unknown_is_one_line_error(tmp_path):
    with pytest.raises(CheckpointError) as exc:
        resolve("nope.pt", base=tmp_path)
    msg = str(exc.value)
    assert "\n" not in msg and "nope.pt: no such file" in msg and "a-vae-synth" in msg


@pytest.fixture(scope="module")
def mixture():
    """A 2-3 s synthetic utterance of an unseen seed (the priors were trained on seed 1) + lips,
    in white noise at 0 dB."""
    from reavise.data.mix import mix
    from reavise.data.noise import make_noise
    from reavise.data.synth import synthesize_utterance

    utt, lips, _ = synthesize_utterance(seed=7, index=0, n_speakers=4, min_seconds=2.0,
                                        max_seconds=3.0)  # fmt: skip
    clean = utt.audio.astype(np.float64)
    m = mix(clean, make_noise("white", len(clean), 0).astype(np.float64), 0.0)
    return m.noisy.astype(np.float32), m.clean.astype(np.float32), lips


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_prior_enhances_synthetic_speech(name, mixture):
    from reavise.inference import build_algorithm, enhance_waveforms
    from reavise.inference.pipeline import VideoInput
    from reavise.metrics import si_sdr
    from reavise.models.checkpoint import load_checkpoint

    noisy, clean, lips = mixture
    prior = load_checkpoint(resolve(name))
    video = VideoInput(lips, 30.0) if prior.uses_video else None
    est = enhance_waveforms(prior, build_algorithm("mcem", max_iter=15), [noisy], [video])[0]
    gain = si_sdr(est.speech, clean) - si_sdr(noisy, clean)
    assert gain > 5.0, f"{name}: SI-SDR improvement {gain:.2f} dB"


def test_demo_config_names_the_shipped_priors():
    """configs/quick.yaml (make demo) trains nothing: its models resolve to the shipped files."""
    from pathlib import Path

    from reavise.bench.config import load_config

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "quick.yaml")
    assert [(m.checkpoint, m.train) for m in cfg.models] == [
        (resolve("a-vae-synth"), None), (resolve("av-cvae-synth"), None)
    ]


@pytest.mark.parametrize("name, fusion", [("grid-s1-av-concat", "concat"), ("grid-s1-av-attention", "frame_attention")])
def test_grid_priors_carry_their_lip_reader_and_use_the_lips(name, fusion):
    """The shipped GRID-s1 AV priors load from their own file (the lip reader inside), and
    their p(z|v) follows the lips where they are valid and is N(0, I) where not; frames
    without lips are decoded by the shipped A-VAE itself (the audio fallback)."""
    import torch

    from reavise.models.checkpoint import load_checkpoint

    m = load_checkpoint(resolve(name))
    assert m.registry_name == "audio-fallback" and m.av.registry_name == "av-cvae"
    c = m.av.config
    assert c.fusion == fusion and c.visual_frontend == "pretrained" and not c.frontend_trainable
    g = torch.Generator().manual_seed(0)
    video = torch.rand(1, 40, 67, 67, generator=g)
    valid = torch.ones(1, 40, dtype=torch.bool)
    valid[0, 20:] = False
    ctx = m.context(video, valid)
    with torch.no_grad():
        mu, logvar = m.prior(torch.zeros(1, 40, m.z_dim), ctx)
    assert mu[0, :20].abs().max() > 1e-3 and torch.all(mu[0, 20:] == 0) and torch.all(logvar[0, 20:] == 0)
    a_vae = load_checkpoint(resolve("grid-s1-a-vae"))
    assert a_vae.registry_name == "a-vae" and a_vae.z_dim == m.z_dim
    sd, want = m.audio.state_dict(), a_vae.state_dict()
    assert sd.keys() == want.keys() and all(torch.equal(sd[k], want[k]) for k in sd)
    z = torch.randn(1, 40, m.z_dim, generator=g)
    with torch.no_grad():
        assert torch.equal(m.decode(z, ctx)[0, 20:], a_vae.decode(z)[0, 20:])
