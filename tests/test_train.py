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


# --------------------------------------------------------------------------- exact resume


def _weights(path):
    """The prior's weights in a reavise checkpoint (model.pt) or a Lightning one (last.ckpt)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return ckpt["state_dict"]


def _assert_same_weights(a, b):
    wa, wb = _weights(a), _weights(b)
    assert list(wa) == list(wb)
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


@pytest.fixture(scope="module")
def uninterrupted(wav_folder, tmp_path_factory):
    """Four epochs in one go: what every interrupted/resumed run below must reproduce."""
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    train(wav_folder, out, _cfg(epochs=4), progress=False)
    return out


def _summary(out):
    return json.loads((out / "train.json").read_text())


def test_resume_after_an_interruption_is_exact(wav_folder, uninterrupted, tmp_path, caplog):
    out = tmp_path / "run"
    train(wav_folder, out, _cfg(epochs=2), progress=False)  # "interrupted" after epoch 2
    with caplog.at_level("WARNING", logger="reavise.train"):
        train(wav_folder, out, _cfg(epochs=4), progress=False)
    assert "resuming with changed settings epochs 2 -> 4" in caplog.text
    _assert_same_weights(uninterrupted / "last.ckpt", out / "last.ckpt")
    _assert_same_weights(uninterrupted / "model.pt", out / "model.pt")
    assert _summary(out)["best_val_loss"] == _summary(uninterrupted)["best_val_loss"]
    assert _summary(out)["epochs_run"] == 4


def test_rerun_with_other_settings_is_refused(wav_folder, tmp_path):
    from reavise.errors import ReaviseError

    out = tmp_path / "run"
    train(wav_folder, out, _cfg(epochs=1), progress=False)
    before = (out / "last.ckpt").read_bytes()
    cases = [
        (dict(lr=1e-3), "lr 0.003 -> 0.001"),
        (dict(batch_size=32), "batch_size 64 -> 32"),
        (dict(seed=1), "seed 0 -> 1"),
        (dict(model_config={"z_dim": 4, "hidden": [64]}), "model_config"),
    ]
    for change, expected in cases:
        with pytest.raises(ReaviseError) as err:
            train(wav_folder, out, _cfg(epochs=2, **change), progress=False)
        msg = str(err.value)
        assert expected in msg and "--restart" in msg and "\n" not in msg, msg
        assert "epochs" not in msg  # the budget is not a refusal
    # other data (a subset of the folder) is refused too
    other = tmp_path / "other"
    other.mkdir()
    for p in sorted(wav_folder.glob("*.wav"))[:8]:
        (other / p.name).write_bytes(p.read_bytes())
    with pytest.raises(ReaviseError, match=r"data .* -> .*other"):
        train(other, out, _cfg(epochs=2), progress=False)
    assert (out / "last.ckpt").read_bytes() == before  # nothing was touched
    # the same settings spelled differently (explicit defaults) are the same run
    train(wav_folder, out, _cfg(epochs=2, model_config={"z_dim": 8, "hidden": [64], "x_dim": 513}),
          progress=False)  # fmt: skip
    assert _summary(out)["epochs_run"] == 2
    # resume=False (--restart) starts over
    train(wav_folder, out, _cfg(epochs=1, lr=1e-3), resume=False, progress=False)
    assert _summary(out)["epochs_run"] == 1
    assert not (out / "prev.ckpt").exists()


def test_moved_run_folder_resumes_from_its_own_checkpoint(wav_folder, uninterrupted, tmp_path):
    first = tmp_path / "first"
    train(wav_folder, first, _cfg(epochs=1), progress=False)
    assert str(first).encode() not in (first / "last.ckpt").read_bytes()  # no folder path inside
    moved = tmp_path / "moved"
    first.rename(moved)
    train(wav_folder, moved, _cfg(epochs=2), progress=False)
    train(wav_folder, moved, _cfg(epochs=4), progress=False)
    assert sorted(p.name for p in moved.glob("*.ckpt")) == ["last.ckpt", "prev.ckpt"]
    import csv

    for version, epoch in (("version_1", 1), ("version_2", {2, 3})):
        rows = list(csv.DictReader(open(moved / "logs" / version / "metrics.csv")))
        epochs = {int(r["epoch"]) for r in rows if r.get("val_loss")}
        assert epochs == (epoch if isinstance(epoch, set) else {epoch}), (version, epochs)
    _assert_same_weights(uninterrupted / "last.ckpt", moved / "last.ckpt")


def test_truncated_checkpoint_falls_back_then_starts_over(wav_folder, uninterrupted, tmp_path, caplog):
    out = tmp_path / "run"
    train(wav_folder, out, _cfg(epochs=3), progress=False)
    last = out / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    with caplog.at_level("WARNING", logger="reavise.train"):
        train(wav_folder, out, _cfg(epochs=4), progress=False)
    lines = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(lines) == 1 and "truncated?" in lines[0] and "resuming from" in lines[0]
    assert "prev.ckpt (epoch 2)" in lines[0]
    _assert_same_weights(uninterrupted / "last.ckpt", out / "last.ckpt")  # epochs 2 and 3 redone
    # nothing readable at all: a warning and a fresh start (the same seed: the same run)
    for name in ("last.ckpt", "prev.ckpt"):
        (out / name).write_bytes(b"not a checkpoint")
    caplog.clear()
    with caplog.at_level("WARNING", logger="reavise.train"):
        train(wav_folder, out, _cfg(epochs=4), progress=False)
    assert "starting over" in caplog.text
    _assert_same_weights(uninterrupted / "last.ckpt", out / "last.ckpt")


def test_finished_early_stopped_run_is_not_extended(wav_folder, tmp_path):
    """A run that stopped early resumes into nothing, as the uninterrupted run trains no further."""
    out = tmp_path / "run"
    cfg = _cfg(epochs=30, lr=1e-12, patience=1)  # lr ~0: val loss only wobbles; stops early
    train(wav_folder, out, cfg, progress=False)
    n = _summary(out)["epochs_run"]
    assert n < 30
    before = (out / "last.ckpt").read_bytes()
    train(wav_folder, out, cfg, progress=False)
    assert _summary(out)["epochs_run"] == n
    assert (out / "last.ckpt").read_bytes() == before  # no epoch was run
    # a larger patience is a bigger budget: training goes on
    train(wav_folder, out, _cfg(epochs=n + 1, lr=1e-12, patience=30), progress=False)
    assert _summary(out)["epochs_run"] == n + 1


@pytest.mark.slow
def test_sigkilled_training_resumes_exactly(wav_folder, uninterrupted, tmp_path):
    """kill -9 of a real `train` process mid-run, then resume: the uninterrupted weights."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    # the child sleeps after each epoch's checkpoint, so that the kill lands mid-run
    code = (
        "import sys, time; import reavise.train as t; save = t.save_resume_checkpoint; "
        "t.save_resume_checkpoint = lambda *a: (save(*a), time.sleep(0.5)); "
        f"t.train(sys.argv[1], sys.argv[2], t.TrainConfig(**{dict(vars(_cfg(epochs=4)))!r}), "
        "progress=False)"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", code, str(wav_folder), str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (out / "last.ckpt").exists() and time.monotonic() < deadline:
            assert proc.poll() is None, "training ended before it could be killed"
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = torch.load(out / "last.ckpt", weights_only=True)["reavise"]["next_epoch"]
    assert 1 <= killed_at < 4
    train(wav_folder, out, _cfg(epochs=4), progress=False)
    _assert_same_weights(uninterrupted / "last.ckpt", out / "last.ckpt")
