import json

import numpy as np
import pytest
import torch

from conftest import write
from reavise.models.checkpoint import load_checkpoint
from reavise.train import TrainConfig, train


@pytest.fixture(scope="module")
def wav_folder(tmp_path_factory):
    """Twelve 2-second speech-like clean files (harmonic complexes with envelopes)."""
    d = tmp_path_factory.mktemp("clean")
    rng = np.random.default_rng(0)
    for i in range(12):
        t = np.arange(32000) / 16000
        f0 = rng.uniform(90, 220) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.3, 1.5) * t))
        ph = 2 * np.pi * np.cumsum(f0) / 16000
        formant = rng.uniform(500, 2500)
        x = sum(np.sin(k * ph) * np.exp(-((k * f0.mean() - formant) ** 2) / 8e5) for k in range(1, 40))
        env = np.clip(np.sin(2 * np.pi * rng.uniform(1.5, 3.5) * t), 0, None)
        write(d / f"utt{i:02d}.wav", (0.5 * x * env / np.abs(x * env).max()).astype(np.float32))
    return d


def _cfg(**kw):
    base = dict(
        model="a-vae",
        model_config={"z_dim": 8, "hidden": [64]},
        epochs=3,
        batch_size=64,
        lr=3e-3,
        seed=0,
        examples_per_epoch=1024,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_training_decreases_loss_exports_and_resumes(wav_folder, tmp_path):
    out = tmp_path / "run"
    path = train(wav_folder, out, _cfg(), progress=False)
    summary = json.loads((out / "train.json").read_text())
    assert np.isfinite(summary["best_val_loss"])
    import csv

    rows = list(csv.DictReader(open(out / "logs" / "version_0" / "metrics.csv")))
    val = [float(r["val_loss"]) for r in rows if r.get("val_loss")]
    assert len(val) == 3 and val[-1] < val[0]
    model = load_checkpoint(path)
    assert model.config.z_dim == 8
    assert (out / "last.ckpt").exists()
    # resume: more epochs continue from last.ckpt (epoch counter carries on)
    train(wav_folder, out, _cfg(epochs=4), progress=False)
    summary2 = json.loads((out / "train.json").read_text())
    assert summary2["epochs_run"] == 4
    rows = list(csv.DictReader(open(out / "logs" / "version_1" / "metrics.csv")))
    epochs = {int(r["epoch"]) for r in rows if r.get("val_loss")}
    assert epochs == {3}


def test_training_is_deterministic(wav_folder, tmp_path):
    a = load_checkpoint(train(wav_folder, tmp_path / "a", _cfg(epochs=1), progress=False))
    b = load_checkpoint(train(wav_folder, tmp_path / "b", _cfg(epochs=1), progress=False))
    for (k, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(p, q), k


def test_tensorboard_logger_and_bad_logger(wav_folder, tmp_path):
    from reavise.errors import ReaviseError

    train(wav_folder, tmp_path / "tb", _cfg(epochs=1, logger="tensorboard"), progress=False)
    assert list((tmp_path / "tb" / "tb").rglob("events.out.tfevents.*"))
    with pytest.raises(ReaviseError, match="logger must be one of csv, tensorboard"):
        train(wav_folder, tmp_path / "x", _cfg(epochs=1, logger="wandb"), progress=False)
