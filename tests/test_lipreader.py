"""The pretrained visual front-end: lip reader shapes and learning, its checkpoint, and AV
priors that carry it (``visual_frontend: pretrained``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from reavise.errors import CheckpointError, ReaviseError
from reavise.models import build_prior
from reavise.models.checkpoint import load_checkpoint, save_checkpoint
from reavise.models.lipreader import (
    AugmentConfig,
    LipReader,
    LipReaderConfig,
    LipReaderTrainConfig,
    augment_rois,
    envelope_targets,
    load_lipreader,
    mel_filterbank,
    save_lipreader,
    train_lipreader,
)

SMALL = dict(roi_size=16, input_size=16, channels=(4, 8), embed_dim=16, temporal_kernel=3,
             dilations=(1,), n_mels=4, dropout=0.0)  # fmt: skip


def _mouths(openness: torch.Tensor, size: int = 16) -> torch.Tensor:
    """[B, T] openness in 0..1 -> [B, T, size, size] frames: a dark ellipse that opens."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    h = 0.1 + 0.6 * openness[..., None, None]
    inside = (xx / 0.7) ** 2 + (yy / h) ** 2 <= 1
    return torch.where(inside, 0.15, 0.7).float()


def test_shapes_and_frozen_values_do_not_depend_on_mode():
    torch.manual_seed(0)
    m = LipReader(LipReaderConfig(**SMALL))
    v = torch.rand(2, 7, 16, 16)
    assert m(v).shape == (2, 7, 16)
    assert m.predict(v).shape == (2, 7, 5)
    m67 = LipReader(LipReaderConfig())
    assert m67(torch.rand(1, 3, 67, 67)).shape == (1, 3, 64)
    with pytest.raises(ReaviseError, match="B, T, H, W"):
        m(torch.rand(7, 16, 16))
    m.eval()
    a = m(v)
    m.train()
    torch.testing.assert_close(m(v), a)  # no batch norm, no dropout here: same in both modes


def test_learns_a_synthetic_lips_to_envelope_mapping():
    """Envelope = a fixed function of mouth openness; the loss falls well below the mean
    predictor's and the prediction tracks the openness."""
    torch.manual_seed(0)
    m = LipReader(LipReaderConfig(**SMALL))
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    w = torch.tensor([1.0, -0.5, 2.0, 0.3])

    def batch(n=16, t=8):
        o = torch.rand(n, t)
        y = o[..., None] * w
        return _mouths(o), (y - 0.5 * w) / (0.3 * w.abs()), o

    losses = []
    for _ in range(150):
        v, y, _ = batch()
        mel, _ = m.heads(m(v))
        loss = ((mel - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    v, y, o = batch(32)
    with torch.no_grad():
        mel, _ = m.heads(m(v))
    mse = float(((mel - y) ** 2).mean())
    var = float(y.var())
    assert np.mean(losses[:10]) > 3 * np.mean(losses[-10:])
    assert mse < 0.1 * var
    corr = np.corrcoef(mel[..., 2].flatten().numpy(), o.flatten().numpy())[0, 1]
    assert corr > 0.95


def test_targets_and_augmentation():
    fb = mel_filterbank(8)
    assert fb.shape == (513, 8)
    np.testing.assert_allclose(fb.sum(0), 1.0, rtol=1e-5)
    # loud frames active, near-silent ones not; the log floor holds per utterance
    power = np.full((10, 513), 1e-9, np.float32)
    power[3:7] = 1.0
    logmel, act = envelope_targets(power, np.array([0, 10]), 8, vad_db=30)
    assert act.tolist() == [False] * 3 + [True] * 4 + [False] * 3
    np.testing.assert_allclose(logmel[4], 0.0, atol=1e-4)
    assert logmel.min() >= -80.0 - 1e-4
    v = torch.rand(3, 4, 16, 16)
    g = torch.Generator().manual_seed(0)
    a = augment_rois(v, AugmentConfig(), g)
    assert a.shape == v.shape and 0 <= float(a.min()) and float(a.max()) <= 1
    assert not torch.allclose(a, v)
    none = AugmentConfig(shift=0, scale=0, rotate=0, brightness=0, contrast=0, blur=0)
    torch.testing.assert_close(augment_rois(v, none, g), v, atol=1e-5, rtol=0)


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(1)
    m = LipReader(LipReaderConfig(**SMALL, mel_mean=(0.0,) * 4, mel_std=(1.0,) * 4)).eval()
    path = save_lipreader(tmp_path / "lr.pt", m, {"step": 3})
    back = load_lipreader(path)
    assert back.cfg == m.cfg and back.extra["step"] == 3
    v = torch.rand(1, 5, 16, 16)
    torch.testing.assert_close(back.predict(v), m.predict(v))
    (tmp_path / "bad.pt").write_bytes(b"nope")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_lipreader(tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="no such"):
        load_lipreader(tmp_path / "missing.pt")


def _av_config(path: Path, **kw) -> dict:
    return dict(x_dim=513, z_dim=4, hidden=[16], roi_size=16, visual_dim=8,
                visual_frontend="pretrained", frontend_path=str(path), **kw)  # fmt: skip


@pytest.mark.parametrize("model", ["av-cvae", "av-vae"])
def test_prior_carries_the_front_end_and_loads_without_its_file(tmp_path, model):
    torch.manual_seed(2)
    lr = LipReader(LipReaderConfig(**SMALL))
    lr_path = save_lipreader(tmp_path / "lr.pt", lr)
    prior = build_prior(model, _av_config(lr_path))
    # the lip reader's weights are in the prior's state dict, frozen
    for k, v in lr.state_dict().items():
        torch.testing.assert_close(prior.state_dict()[f"visual.lipreader.{k}"], v)
    assert not any(p.requires_grad for p in prior.visual.lipreader.parameters())
    assert prior.config.frontend_config["embed_dim"] == 16
    prior.train()
    assert not prior.visual.lipreader.training  # frozen: kept in eval mode
    power = torch.rand(2, 6, 513) + 0.1
    video = torch.rand(2, 6, 16, 16)
    out = prior.loss(power, prior.context(video, None))
    out["loss"].backward()
    assert prior.visual.frame[0].weight.grad is not None
    ck = save_checkpoint(tmp_path / "prior.pt", prior.eval())
    lr_path.unlink()  # the trained prior must not need the front-end file any more
    back = load_checkpoint(ck, check_x_dim=False)
    ctx_a, ctx_b = prior.context(video, None), back.context(video, None)
    torch.testing.assert_close(back.decode(torch.zeros(2, 6, 4), ctx_b), prior.decode(torch.zeros(2, 6, 4), ctx_a))
    torch.testing.assert_close(ctx_b.feat, ctx_a.feat)


def test_trainable_front_end_and_bad_settings(tmp_path):
    lr_path = save_lipreader(tmp_path / "lr.pt", LipReader(LipReaderConfig(**SMALL)))
    prior = build_prior("av-cvae", _av_config(lr_path, frontend_trainable=True, frontend_features="prediction"))
    assert all(p.requires_grad for p in prior.visual.lipreader.parameters())
    assert prior.visual.frame[0].in_features == 5
    with pytest.raises(ReaviseError, match="frontend_path"):
        build_prior("av-cvae", dict(visual_frontend="pretrained", roi_size=16))
    with pytest.raises(ReaviseError, match="16x16 ROIs, the prior 67"):
        build_prior("av-cvae", dict(visual_frontend="pretrained", frontend_path=str(lr_path)))
    with pytest.raises(ReaviseError, match="frontend_features"):
        build_prior("av-cvae", _av_config(lr_path, frontend_features="pixels"))


def _tiny_corpus(root: Path, n: int = 6) -> Path:
    """A corpus whose loudness follows the mouth opening: the lip reader can learn it."""
    from reavise.audio import write_wav
    from reavise.data.manifest import write_manifest
    from reavise.lips import save_lips

    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        T = 40  # video frames at 25 fps: 1.6 s
        o = np.clip(np.sin(np.linspace(0, rng.uniform(4, 9), T)) * 0.5 + 0.5, 0, 1)
        frames = _mouths(torch.from_numpy(o).float()[None], 16)[0].numpy()
        sr = 16000
        env = np.interp(np.arange(int(T / 25 * sr)) / sr, np.arange(T) / 25, o) ** 2 + 1e-3
        x = 0.5 * env * rng.standard_normal(len(env))
        split = "val" if i == n - 1 else "train"
        for kind in ("audio", "lips"):
            (root / kind / "s").mkdir(parents=True, exist_ok=True)
        write_wav(root / "audio" / "s" / f"u{i}.wav", x.astype(np.float32))
        save_lips(root / "lips" / "s" / f"u{i}.npy", frames)
        rows.append({"id": f"u{i}", "speaker": "s", "split": split, "text": "", "fps": 25.0,
                     "audio": f"audio/s/u{i}.wav", "lips": f"lips/s/u{i}.npy", "valid": None,
                     "duration": T / 25, "n_video_frames": T})
    write_manifest(root, rows)
    (root / "corpus.json").write_text(json.dumps({"kind": "test", "version": 1}))
    return root


def test_train_lipreader_end_to_end(tmp_path):
    corpus = _tiny_corpus(tmp_path / "c")
    cfg = LipReaderTrainConfig(model={**SMALL, "n_mels": 8}, chunk=16, batch_size=8, steps=120,
                               eval_every=40, lr=5e-3, patience=0, max_minutes=1.0)
    path = train_lipreader(corpus, tmp_path / "run", cfg, progress=False)
    summary = json.loads((tmp_path / "run" / "lipreader.json").read_text())
    hist = summary["history"]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert summary["best_val_loss"] < 1.2  # envelope MSE + 0.5 BCE; the mean predictor gives ~1.35
    m = load_lipreader(path)
    assert len(m.cfg.mel_mean) == 8 and m.extra["val"]["loss"] == summary["best_val_loss"]


def test_cli_registers_lipreader_train():
    from typer.testing import CliRunner

    from reavise.cli import _register, app

    _register()
    res = CliRunner().invoke(app, ["lipreader", "train", "--help"])
    assert res.exit_code == 0 and "--seed" in res.output


GRID = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "grid-s1"


@pytest.mark.skipif(not GRID.is_dir(), reason="needs ../shared/data/grid-s1")
def test_real_grid_rois_feed_the_front_end():
    """A real GRID s1 video through the project's ROI extraction into a lip reader."""
    from reavise.video import extract_mouth_rois_from_video

    video = sorted((GRID / "video").glob("*.mp4"))[0]
    rois, valid, fps = extract_mouth_rois_from_video(video)
    assert fps == pytest.approx(25.0) and valid.mean() > 0.9
    rois = torch.from_numpy(np.asarray(rois[:20], np.float32))
    m = LipReader(LipReaderConfig()).eval()
    assert m.predict(rois[None]).shape == (1, len(rois), 41)
