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
