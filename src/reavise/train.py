"""Training of any registered speech prior with PyTorch Lightning.

Lightning gives multi-GPU/multi-node DDP, mixed precision, checkpointing, early stopping and
logging; reavise adds the data (``data.dataset``), the loss (``SpeechPrior.loss``), visual
augmentation for audio-visual priors, and the export of the best model as a self-describing
reavise checkpoint (``OUT/model.pt``) every time validation improves.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from . import validate as V
from .audio import atomic_write
from .data.dataset import ChunkDataset, build_store
from .errors import ReaviseError, SettingError
from .models import build_prior
from .models.checkpoint import save_checkpoint

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in the checkpoint)."""

    model: str = "a-vae"
    model_config: dict[str, Any] = field(default_factory=dict)
    epochs: int = 100
    batch_size: int = 128
    #: frames per training example (1 = frame-wise; >1 for temporal visual front-ends)
    chunk: int = 1
    lr: float = 1e-3
    beta: float = 1.0
    patience: int = 10
    max_minutes: float | None = None
    #: cap on training examples drawn per epoch (None = all chunks)
    examples_per_epoch: int | None = None
    seed: int = 0
    accelerator: str = "auto"
    devices: str | int = "auto"
    #: Lightning precision, e.g. "32-true", "16-mixed", "bf16-mixed"
    precision: str = "32-true"
    #: "csv" (always available) or "tensorboard" (needs the tensorboard package)
    logger: str = "csv"
    num_workers: int = 0
    #: audio-visual augmentation: probability of dropping the whole video of an example
    modality_dropout: float = 0.0
    #: probability of corrupting a random run of frames (occlusion/noise/blank) in an example
    visual_corruption: float = 0.0

    def __post_init__(self):
        """Types and ranges of every setting (SettingError naming the key), before any work."""
        from .models.registry import PRIORS, make_config

        V.check_fields(self)
        V.one_of(self, "model", sorted(PRIORS))
        try:
            make_config(self.model, self.model_config)
        except SettingError as exc:
            raise exc.within(scope=f"model {self.model!r}", prefix="model_config.") from None
        for key in ("epochs", "batch_size", "chunk", "examples_per_epoch"):
            V.at_least(self, key, 1)
        for key in ("patience", "seed", "num_workers"):
            V.at_least(self, key, 0)
        V.positive(self, "lr")
        V.at_least(self, "beta", 0)
        V.positive(self, "max_minutes")
        V.within(self, "modality_dropout", 0, 1)
        V.within(self, "visual_corruption", 0, 1)
        V.one_of(self, "accelerator", ACCELERATORS)
        V.one_of(self, "precision", PRECISIONS)
        V.one_of(self, "logger", ("csv", "tensorboard"))
        if not _devices_ok(self.devices):
            raise SettingError(
                "devices", f"must be auto, a count (-1: all) or a list like 0,1; got {self.devices!r}"
            )


#: Lightning's accelerator and precision names (checked before a run starts)
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
PRECISIONS = (
    "32-true", "32", "64-true", "64", "16-mixed", "16", "16-true",
    "bf16-mixed", "bf16", "bf16-true", "transformer-engine", "transformer-engine-float16",
)  # fmt: skip


def _devices_ok(devices: str | int) -> bool:
    """Lightning's ``devices``: "auto", a count >= 1 or -1 (all), or indices "0,1"."""
    if isinstance(devices, int):
        return devices == -1 or devices >= 1
    text = devices.strip()
    if text == "auto" or text == "-1":
        return True
    parts = [p for p in text.split(",") if p.strip()]
    if not parts or not all(p.strip().isdigit() for p in parts):
        return False
    return "," in text or int(text) >= 1


class PriorModule(L.LightningModule):
    """Lightning wrapper: the negative ELBO of a prior on clean speech (and lips)."""

    def __init__(self, cfg: TrainConfig):
        super().__init__()
        self.cfg = cfg
        self.prior = build_prior(cfg.model, cfg.model_config)
        self.save_hyperparameters({"train_config": dataclasses.asdict(cfg)})

    def _step(self, batch: dict[str, torch.Tensor], train: bool) -> dict[str, torch.Tensor]:
        video = batch.get("video")
        valid = batch.get("valid")
        if self.prior.uses_video and train and video is not None:
            from .models.augment import corrupt_video

            video, valid = corrupt_video(
                video, valid, self.cfg.modality_dropout, self.cfg.visual_corruption
            )
        ctx = self.prior.context(video, valid) if self.prior.uses_video else None
        return self.prior.loss(batch["power"], ctx, beta=self.cfg.beta)

    def training_step(self, batch, batch_idx):
        out = self._step(batch, train=True)
        bs = batch["power"].shape[0]
        self.log("train_loss", out["loss"], prog_bar=True, batch_size=bs)
        self.log("train_kl", out["kl"], batch_size=bs)
        return out["loss"]

    def validation_step(self, batch, batch_idx):
        out = self._step(batch, train=False)
        bs = batch["power"].shape[0]
        self.log("val_loss", out["loss"], prog_bar=True, batch_size=bs)
        self.log("val_recon", out["recon"], batch_size=bs)
        self.log("val_kl", out["kl"], batch_size=bs)

    def configure_optimizers(self):
        return torch.optim.Adam(self.prior.parameters(), lr=self.cfg.lr)


class ExportBest(L.Callback):
    """Write ``model.pt`` (reavise checkpoint) whenever the validation loss improves."""

    def __init__(self, path: Path, cfg: TrainConfig):
        self.path = path
        self.cfg = cfg
        self.best = float("inf")

    def on_validation_end(self, trainer, module):
        if trainer.sanity_checking:
            return
        val = trainer.callback_metrics.get("val_loss")
        if val is None or not torch.isfinite(val) or float(val) >= self.best:
            return
        self.best = float(val)
        save_checkpoint(
            self.path,
            module.prior,
            extra={
                "epoch": trainer.current_epoch,
                "val_loss": self.best,
                "train_config": dataclasses.asdict(self.cfg),
            },
        )

    def state_dict(self):
        return {"best": self.best}

    def load_state_dict(self, state):
        self.best = state["best"]


class EpochSampler(torch.utils.data.Sampler):
    """Seeded random subset/permutation per epoch (deterministic for seed and epoch)."""

    def __init__(self, n: int, per_epoch: int | None, seed: int):
        self.n, self.per_epoch, self.seed, self.epoch = n, per_epoch or n, seed, 0

    def __len__(self):
        return min(self.per_epoch, self.n) if self.per_epoch <= self.n else self.per_epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        self.epoch += 1
        if self.per_epoch <= self.n:
            return iter(torch.randperm(self.n, generator=g)[: self.per_epoch].tolist())
        return iter(torch.randint(self.n, (self.per_epoch,), generator=g).tolist())


def _logger(kind: str, out: Path):
    if kind == "csv":
        return L.pytorch.loggers.CSVLogger(out, name="logs")
    if kind == "tensorboard":
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise ReaviseError("logger 'tensorboard' needs the tensorboard package") from None
        return L.pytorch.loggers.TensorBoardLogger(out, name="tb")
    raise ReaviseError(f"unknown logger {kind!r} (csv, tensorboard)")


def train(
    data: str | os.PathLike,
    out: str | os.PathLike,
    cfg: TrainConfig,
    resume: bool = True,
    progress: bool = True,
) -> Path:
    """Train ``cfg.model`` on the clean speech in ``data``; return the exported checkpoint.

    ``data`` is a reavise corpus (manifest with train/val splits) or a folder of wavs.
    An interrupted run resumes from ``OUT/last.ckpt`` (optimizer, epoch and RNG included).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module = PriorModule(cfg)
    with_video = module.prior.uses_video
    train_store = build_store(data, "train", with_video=with_video)
    val_store = build_store(data, "val", with_video=with_video)
    if with_video and not train_store.has_video:
        raise ReaviseError(f"{data}: model {cfg.model!r} needs lips, but the corpus has none")
    train_ds = ChunkDataset(train_store, cfg.chunk)
    val_ds = ChunkDataset(val_store, cfg.chunk, hop=max(cfg.chunk, 4))
    if len(train_ds) == 0 or len(val_ds) == 0:
        raise ReaviseError(f"{data}: not enough speech for chunks of {cfg.chunk} frames")
    train_dl = DataLoader(
        train_ds,
        batch_size=cfg.batch_size,
        sampler=EpochSampler(len(train_ds), cfg.examples_per_epoch, cfg.seed),
        num_workers=cfg.num_workers,
        drop_last=len(train_ds) > cfg.batch_size,
    )
    val_dl = DataLoader(val_ds, batch_size=max(cfg.batch_size, 256), num_workers=cfg.num_workers)
    ckpt_cb = L.pytorch.callbacks.ModelCheckpoint(
        dirpath=out, filename="best", monitor="val_loss", save_last=True, save_top_k=1
    )
    callbacks = [
        ckpt_cb,
        L.pytorch.callbacks.EarlyStopping("val_loss", patience=cfg.patience),
        ExportBest(out / "model.pt", cfg),
    ]
    if progress:
        callbacks.append(L.pytorch.callbacks.TQDMProgressBar(refresh_rate=10))
    trainer = L.Trainer(
        default_root_dir=out,
        max_epochs=cfg.epochs,
        max_time={"minutes": cfg.max_minutes} if cfg.max_minutes else None,
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        precision=cfg.precision,
        callbacks=callbacks,
        logger=_logger(cfg.logger, out),
        enable_progress_bar=progress,
        enable_model_summary=False,
        deterministic=True,
        log_every_n_steps=10,
    )
    last = out / "last.ckpt"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*number of training batches.*")
        # resuming into the same folder is the point; Lightning's own deprecation chatter
        warnings.filterwarnings("ignore", ".*exists and is not empty.*")
        warnings.filterwarnings("ignore", ".*LeafSpec.*")
        trainer.fit(
            module, train_dl, val_dl, ckpt_path=str(last) if resume and last.exists() else None
        )
    summary = {
        "model": cfg.model,
        "epochs_run": trainer.current_epoch,
        "best_val_loss": callbacks[2].best,
        "train_frames": int(len(train_store.power)),
        "val_frames": int(len(val_store.power)),
        "train_config": dataclasses.asdict(cfg),
    }
    atomic_write(out / "train.json", lambda t: Path(t).write_text(json.dumps(summary, indent=2)))
    if not (out / "model.pt").exists():
        raise ReaviseError(f"{out}: training produced no finite validation loss; no model saved")
    return out / "model.pt"
