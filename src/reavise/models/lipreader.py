"""A visual front-end pretrained on clean audio-visual speech: lips -> speech envelope.

The published AV-DKF conditions its prior on a lip-reading network pretrained on LRW; with
one talker's 45 minutes of video a prior that learns its visual features from the ELBO alone
over-fits them (issue 12). :class:`LipReader` is trained beforehand, on the *clean* speech
of the same corpus (no noisy pairs: the unsupervised recipe holds), to predict from the mouth
ROIs of the STFT frames around t

* the clean log-mel envelope of frame t (``n_mels`` bands, standardised per band), and
* voice activity (frame energy within ``vad_db`` of the utterance's loudest frame).

Architecture: each ROI [H, W] in 0..1 is standardised (per frame) and resized to ``input_size`` (area), passed through
strided 3x3 convolutions (``channels``) and one linear layer to ``embed_dim``; residual
dilated temporal convolutions (replicate padding) over neighbouring frames follow (lip
motion); two linear heads give the envelope and the activity logit. No batch norm: the
network computes the same in train and eval mode (dropout aside), so a frozen copy inside a
prior needs no special care.

Training (:func:`train_lipreader`, ``reavise lipreader train``) samples chunks of ``chunk``
STFT frames from the corpus' frame store (``reavise.data.dataset``: lips interpolated to
STFT frames exactly as the priors see them), with augmentation per chunk (small shifts,
scale, brightness/contrast, blur), Adam with weight decay, and keeps the weights of the best
held-out (``val`` split) loss; the file is written atomically. A prior uses it through
``visual_frontend: pretrained`` (``models/visual.py``), which copies its weights into the
prior's own state dict.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, ReaviseError
from ..registry import load_dataclass

FORMAT = "reavise-lipreader"
FORMAT_VERSION = 1


@dataclass
class LipReaderConfig:
    """Architecture of the lip reader (stored in its checkpoint and in priors that use it)."""

    roi_size: int = 67
    #: ROIs are resized (area) to input_size x input_size before the CNN
    input_size: int = 32
    channels: tuple[int, ...] = (16, 32, 64)
    embed_dim: int = 64
    temporal_kernel: int = 5
    #: dilations of the residual temporal convolutions (one layer each)
    dilations: tuple[int, ...] = (1, 2)
    n_mels: int = 40
    dropout: float = 0.1
    #: standardise each frame (zero mean, unit variance) before the CNN: real ROIs are
    #: low-contrast grey faces whose lighting varies between recordings
    standardize: bool = True
    #: standardisation of the log-mel targets (filled in by training; len n_mels)
    mel_mean: tuple[float, ...] = ()
    mel_std: tuple[float, ...] = ()

    def __post_init__(self):
        if self.input_size < 8 or self.roi_size < 8:
            raise ReaviseError(f"input_size/roi_size must be >= 8, got {self.input_size}/{self.roi_size}")
        if not self.channels or min(self.channels) < 1:
            raise ReaviseError(f"channels must list sizes >= 1, got {self.channels!r}")
        if self.temporal_kernel < 1 or self.temporal_kernel % 2 == 0:
            raise ReaviseError(f"temporal_kernel must be odd and positive, got {self.temporal_kernel}")
        if self.embed_dim < 1 or self.n_mels < 1:
            raise ReaviseError("embed_dim and n_mels must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ReaviseError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def out_dim(self) -> int:
        """Size of :meth:`LipReader.predict` (envelope + activity logit)."""
        return self.n_mels + 1


class LipReader(nn.Module):
    """Mouth ROIs [B, T, H, W] (0..1, STFT frame rate) -> embedding [B, T, embed_dim]."""

    def __init__(self, cfg: LipReaderConfig):
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        c_in, side = 1, cfg.input_size
        for c in cfg.channels:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.ReLU()]
            c_in, side = c, (side + 1) // 2
        self.cnn = nn.Sequential(*layers, nn.Flatten())
        self.proj = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(c_in * side * side, cfg.embed_dim), nn.ReLU())
        k = cfg.temporal_kernel
        self.temporal = nn.ModuleList(
            nn.Conv1d(cfg.embed_dim, cfg.embed_dim, k, padding=(k // 2) * d, dilation=d,
                      padding_mode="replicate")
            for d in cfg.dilations
        )
        self.drop = nn.Dropout(cfg.dropout)
        self.mel_head = nn.Linear(cfg.embed_dim, cfg.n_mels)
        self.vad_head = nn.Linear(cfg.embed_dim, 1)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """Embedding [B, T, embed_dim] of ROIs [B, T, H, W]."""
        if video.dim() != 4:
            raise ReaviseError(f"video must be [B, T, H, W], got {tuple(video.shape)}")
        B, T, H, W = video.shape
        x = video.reshape(B * T, 1, H, W)
        if self.cfg.standardize:
            mu = x.mean((2, 3), keepdim=True)
            x = (x - mu) / (x - mu).pow(2).mean((2, 3), keepdim=True).add(1e-4).sqrt()
        else:
            x = (x - 0.5) * 2.0
        s = self.cfg.input_size
        if (H, W) != (s, s):
            x = F.adaptive_avg_pool2d(x, s) if H >= s and W >= s else F.interpolate(x, size=(s, s))
        h = self.proj(self.cnn(x)).reshape(B, T, -1).transpose(1, 2)  # [B, E, T]
        for conv in self.temporal:
            h = h + F.relu(conv(h))
        return self.drop(h.transpose(1, 2))

    def heads(self, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(standardised log-mel [B, T, n_mels], activity logit [B, T]) from an embedding."""
        return self.mel_head(emb), self.vad_head(emb).squeeze(-1)

    def predict(self, video: torch.Tensor) -> torch.Tensor:
        """[B, T, n_mels + 1]: predicted standardised log-mel envelope and activity logit."""
        mel, vad = self.heads(self(video))
        return torch.cat([mel, vad[..., None]], -1)


# --------------------------------------------------------------------------- targets

def mel_filterbank(n_mels: int, n_bins: int = 513, sr: int = 16000, fmin: float = 50.0,
                   fmax: float | None = None) -> np.ndarray:
    """Triangular mel filters [n_bins, n_mels] (HTK mel scale), each summing to 1."""
    fmax = fmax or sr / 2
    mel = lambda f: 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)  # noqa: E731
    hz = lambda m: 700.0 * (10 ** (np.asarray(m) / 2595.0) - 1.0)  # noqa: E731
    edges = hz(np.linspace(mel(fmin), mel(fmax), n_mels + 2))
    freqs = np.linspace(0, sr / 2, n_bins)
    fb = np.zeros((n_bins, n_mels))
    for m in range(n_mels):
        lo, c, hi = edges[m], edges[m + 1], edges[m + 2]
        up = (freqs - lo) / max(c - lo, 1e-9)
        down = (hi - freqs) / max(hi - c, 1e-9)
        fb[:, m] = np.clip(np.minimum(up, down), 0, None)
        if fb[:, m].sum() == 0:  # narrower than a bin: the nearest bin
            fb[np.argmin(abs(freqs - c)), m] = 1.0
    return (fb / fb.sum(0, keepdims=True)).astype(np.float32)


def envelope_targets(power: np.ndarray, starts: np.ndarray, n_mels: int, vad_db: float = 30.0,
                     floor_db: float = -80.0) -> tuple[np.ndarray, np.ndarray]:
    """(log-mel [N, n_mels] float32, activity [N] bool) of a frame store's power [N, F].

    Log-mel is 10 log10 of the mel-band power, floored ``floor_db`` below the utterance's
    loudest band value; activity: frame energy within ``vad_db`` of the utterance's loudest.
    """
    fb = mel_filterbank(n_mels, power.shape[1])
    melp = power @ fb
    logmel = np.empty_like(melp)
    act = np.zeros(len(power), bool)
    for a, b in zip(starts[:-1], starts[1:], strict=True):
        seg = 10 * np.log10(melp[a:b] + 1e-12)
        logmel[a:b] = np.maximum(seg, seg.max() + floor_db)
        e = 10 * np.log10(power[a:b].sum(-1) + 1e-12)
        act[a:b] = e > e.max() - vad_db
    return logmel.astype(np.float32), act


# --------------------------------------------------------------------------- augmentation

@dataclass
class AugmentConfig:
    """Per-chunk ROI augmentation (the same transform on every frame of a chunk)."""

    #: largest shift, as a fraction of the ROI side
    shift: float = 0.05
    #: largest relative change of scale
    scale: float = 0.08
    #: largest rotation in degrees
    rotate: float = 5.0
    brightness: float = 0.1
    contrast: float = 0.2
    #: probability of a 3x3 box blur
    blur: float = 0.3


def augment_rois(video: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator | None = None) -> torch.Tensor:
    """ROIs [B, T, H, W] in 0..1, each chunk shifted/scaled/rotated/lit/blurred at random."""
    B, T, H, W = video.shape
    u = lambda *s: torch.rand(*s, generator=gen) * 2 - 1  # noqa: E731
    scale = 1 + cfg.scale * u(B)
    ang = math.radians(cfg.rotate) * u(B)
    tx, ty = 2 * cfg.shift * u(B), 2 * cfg.shift * u(B)
    cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
    theta = torch.stack([torch.stack([cos, -sin, tx], -1), torch.stack([sin, cos, ty], -1)], 1)
    theta = theta.to(video.dtype).repeat_interleave(T, 0)
    x = video.reshape(B * T, 1, H, W)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    blur = (torch.rand(B, generator=gen) < cfg.blur).repeat_interleave(T)
    if blur.any():
        x[blur] = F.avg_pool2d(x[blur], 3, stride=1, padding=1, count_include_pad=False)
    x = x.reshape(B, T, H, W)
    mean = x.mean((1, 2, 3), keepdim=True)
    c = (1 + cfg.contrast * u(B)).to(x.dtype)[:, None, None, None]
    b = (cfg.brightness * u(B)).to(x.dtype)[:, None, None, None]
    return ((x - mean) * c + mean + b).clamp(0, 1)


# --------------------------------------------------------------------------- checkpoints

def save_lipreader(path: str | os.PathLike, model: LipReader, extra: dict | None = None) -> Path:
    """Atomically write the lip reader (config + weights + ``extra``) to ``path``."""
    from ..audio import atomic_write

    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": config_dict(model.cfg),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": extra or {},
    }
    return atomic_write(Path(path), lambda tmp: torch.save(payload, tmp))


def config_dict(cfg: LipReaderConfig) -> dict[str, Any]:
    d = dataclasses.asdict(cfg)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def build_lipreader(config: dict | LipReaderConfig) -> LipReader:
    cfg = config if isinstance(config, LipReaderConfig) else load_dataclass(
        LipReaderConfig, config, scope="lip reader")
    return LipReader(cfg)


def read_lipreader(path: str | os.PathLike) -> dict:
    """The payload of a lip-reader file (config, state_dict, extra), checked."""
    from .checkpoint import load_weights_file

    path = Path(path)
    payload = load_weights_file(path, "lip-reader checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a reavise lip-reader checkpoint (`reavise lipreader train`)")
    return payload


def load_lipreader(path: str | os.PathLike) -> LipReader:
    """Rebuild a trained lip reader (eval mode) from its file."""
    payload = read_lipreader(path)
    model = build_lipreader(payload["config"])
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the lip reader ({str(exc)[:160]})") from None
    model.extra = payload.get("extra", {})
    return model.eval()


# --------------------------------------------------------------------------- training

@dataclass
class LipReaderTrainConfig:
    """A lip-reader training run (stored in the checkpoint's ``extra``)."""

    model: dict[str, Any] = field(default_factory=dict)
    augment: dict[str, Any] = field(default_factory=dict)
    #: STFT frames per training chunk
    chunk: int = 32
    batch_size: int = 32
    steps: int = 4000
    max_minutes: float | None = 10.0
    lr: float = 2e-3
    weight_decay: float = 1e-4
    #: weight of the activity (BCE) loss next to the envelope (MSE) loss
    vad_weight: float = 0.5
    vad_db: float = 30.0
    #: held-out evaluation every this many steps (the best weights are kept)
    eval_every: int = 100
    #: stop after this many evaluations without improvement (0: never)
    patience: int = 8
    seed: int = 0

    def __post_init__(self):
        for k in ("chunk", "batch_size", "steps", "eval_every"):
            if getattr(self, k) < 1:
                raise ReaviseError(f"{k} must be at least 1, got {getattr(self, k)}")
        if self.lr <= 0 or self.weight_decay < 0 or self.vad_weight < 0:
            raise ReaviseError("lr must be > 0, weight_decay and vad_weight >= 0")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ReaviseError(f"max_minutes must be positive, got {self.max_minutes}")


class _Chunks:
    """Chunks of STFT frames of a frame store with their lips, targets and masks."""

    def __init__(self, store, logmel_std: np.ndarray, act: np.ndarray, chunk: int):
        self.s, self.y, self.act, self.chunk = store, logmel_std, act, chunk
        starts = []
        for a, b in zip(store.starts[:-1], store.starts[1:], strict=True):
            if b - a >= chunk:
                starts.extend(range(int(a), int(b) - chunk + 1, max(1, chunk // 4)))
        if not starts:
            raise ReaviseError(f"no utterance has {chunk} frames")
        self.starts = np.asarray(starts)

    def batch(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        s, L = self.s, self.chunk
        rows = idx[:, None] + np.arange(L)[None]
        w = s.weight[rows][..., None, None]
        v = s.lips[s.left[rows]].astype(np.float32) * (1 - w) + s.lips[s.right[rows]] * w
        return {
            "video": torch.from_numpy(v / 255.0),
            "mel": torch.from_numpy(self.y[rows]),
            "act": torch.from_numpy(self.act[rows].astype(np.float32)),
            "valid": torch.from_numpy(s.valid[rows].astype(np.float32)),
        }


def lipreader_loss(model: LipReader, batch: dict, vad_weight: float) -> dict[str, torch.Tensor]:
    """Envelope MSE (standardised units: 1.0 = predicting the mean) and activity BCE, over
    frames with a valid face."""
    mel, vad = model.heads(model(batch["video"]))
    m = batch["valid"]
    n = m.sum().clamp_min(1.0)
    mse = (((mel - batch["mel"]) ** 2).mean(-1) * m).sum() / n
    bce = (F.binary_cross_entropy_with_logits(vad, batch["act"], reduction="none") * m).sum() / n
    acc = (((vad > 0).float() == batch["act"]).float() * m).sum() / n
    return {"loss": mse + vad_weight * bce, "mse": mse, "bce": bce, "acc": acc}


def evaluate_lipreader(model: LipReader, data: _Chunks, vad_weight: float, batch_size: int = 64) -> dict:
    """Mean held-out losses over all chunks of ``data`` (eval mode, no augmentation)."""
    was = model.training
    model.eval()
    tot: dict[str, float] = {}
    n = 0
    with torch.no_grad():
        for i in range(0, len(data.starts), batch_size):
            idx = data.starts[i : i + batch_size]
            out = lipreader_loss(model, data.batch(idx), vad_weight)
            for k, v in out.items():
                tot[k] = tot.get(k, 0.0) + float(v) * len(idx)
            n += len(idx)
    model.train(was)
    return {k: v / max(n, 1) for k, v in tot.items()}


def _split_data(corpus: Path, cfg: LipReaderTrainConfig, mcfg: LipReaderConfig):
    from ..data.dataset import build_store

    tr = build_store(corpus, "train", with_video=True)
    va = build_store(corpus, "val", with_video=True)
    if not tr.has_video or not va.has_video:
        raise ReaviseError(f"{corpus}: the lip reader needs lips in the train and val splits")
    ytr, atr = envelope_targets(tr.power, tr.starts, mcfg.n_mels, cfg.vad_db)
    yva, ava = envelope_targets(va.power, va.starts, mcfg.n_mels, cfg.vad_db)
    mean, std = ytr.mean(0), ytr.std(0) + 1e-3
    norm = lambda y: ((y - mean) / std).astype(np.float32)  # noqa: E731
    return (_Chunks(tr, norm(ytr), atr, cfg.chunk), _Chunks(va, norm(yva), ava, cfg.chunk),
            mean, std, float(atr.mean()))


def train_lipreader(corpus: str | os.PathLike, out: str | os.PathLike, cfg: LipReaderTrainConfig,
                    progress: bool = True) -> Path:
    """Train a lip reader on ``corpus`` (train split; held-out loss on val); return
    ``OUT/lipreader.pt`` (best held-out loss) after writing ``OUT/lipreader.json``."""
    from ..audio import atomic_write

    corpus, out = Path(corpus), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    mcfg = load_dataclass(LipReaderConfig, cfg.model, scope="lip reader")
    acfg = load_dataclass(AugmentConfig, cfg.augment, scope="augment")
    train_d, val_d, mean, std, act_rate = _split_data(corpus, cfg, mcfg)
    mcfg = dataclasses.replace(mcfg, mel_mean=tuple(map(float, mean)), mel_std=tuple(map(float, std)))
    model = LipReader(mcfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    history: list[dict] = []
    best, best_step, bad = math.inf, -1, 0
    t0 = time.monotonic()
    run = {"train": 0.0, "n": 0}
    path = out / "lipreader.pt"
    base = {"mse_mean_predictor": 1.0, "acc_base_rate": max(act_rate, 1 - act_rate)}
    for step in range(1, cfg.steps + 1):
        idx = train_d.starts[rng.integers(len(train_d.starts), size=cfg.batch_size)]
        batch = train_d.batch(idx)
        batch["video"] = augment_rois(batch["video"], acfg, gen)
        model.train()
        loss = lipreader_loss(model, batch, cfg.vad_weight)
        opt.zero_grad()
        loss["loss"].backward()
        opt.step()
        sched.step()
        run["train"] += loss["loss"].item()
        run["n"] += 1
        minutes = (time.monotonic() - t0) / 60
        last = step == cfg.steps or (cfg.max_minutes is not None and minutes >= cfg.max_minutes)
        if step % cfg.eval_every == 0 or last:
            ev = evaluate_lipreader(model, val_d, cfg.vad_weight)
            rec = {"step": step, "minutes": round(minutes, 2), "train_loss": run["train"] / run["n"],
                   **{f"val_{k}": v for k, v in ev.items()}}
            history.append(rec)
            run = {"train": 0.0, "n": 0}
            if progress:
                print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in rec.items()}),
                      flush=True)
            if ev["loss"] < best:
                best, best_step, bad = ev["loss"], step, 0
                save_lipreader(path, model, {"step": step, "val": ev, "baseline": base,
                                             "train_config": dataclasses.asdict(cfg)})
            else:
                bad += 1
            if cfg.patience and bad >= cfg.patience:
                break
        if last:
            break
    summary = {"best_step": best_step, "best_val_loss": best, "baseline": base, "history": history,
               "minutes": round((time.monotonic() - t0) / 60, 2),
               "train_chunks": len(train_d.starts), "val_chunks": len(val_d.starts),
               "train_config": dataclasses.asdict(cfg)}
    atomic_write(out / "lipreader.json", lambda t: Path(t).write_text(json.dumps(summary, indent=2)))
    return path
