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
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint, EarlyStopping
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
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
    """Seeded random subset/permutation per epoch: a function of (seed, epoch) alone.

    The epoch comes from the constructor (the first epoch of a resumed run) and from
    ``set_epoch`` (Lightning calls it before every epoch, and so does :class:`EpochState`),
    never from a counter, so a resumed run draws the examples an uninterrupted one draws.
    """

    def __init__(self, n: int, per_epoch: int | None, seed: int, epoch: int = 0):
        self.n, self.per_epoch, self.seed, self.epoch = n, per_epoch or n, seed, epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self):
        return min(self.per_epoch, self.n) if self.per_epoch <= self.n else self.per_epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch, stream=STREAM_SAMPLER))
        if self.per_epoch <= self.n:
            return iter(torch.randperm(self.n, generator=g)[: self.per_epoch].tolist())
        return iter(torch.randint(self.n, (self.per_epoch,), generator=g).tolist())


# --------------------------------------------------------------------------- epoch seeds

#: independent random streams of one epoch: global RNGs, example sampler, loader worker seeds
STREAM_GLOBAL, STREAM_SAMPLER, STREAM_LOADER = 0, 1, 2


def epoch_seed(
    seed: int, epoch: int, rank: int = 0, stream: int = STREAM_GLOBAL, bits: int = 64
) -> int:
    """The seed of one random stream of one epoch on one process (no state carries over)."""
    ss = np.random.SeedSequence([seed % 2**64, epoch, rank, stream])
    return int(ss.generate_state(1, np.uint64 if bits == 64 else np.uint32)[0])


def seed_epoch_rngs(seed: int, epoch: int, rank: int) -> None:
    """Seed torch (CPU and every CUDA device), numpy and Python ``random`` for one epoch.

    Every random draw of training (reparameterisation noise, modality dropout and visual
    corruption) then depends on (seed, epoch, rank) only, whatever ran before the epoch.
    """
    s = epoch_seed(seed, epoch, rank)
    torch.manual_seed(s)
    np.random.seed(epoch_seed(seed, epoch, rank, bits=32))
    random.seed(s)


def rng_states() -> dict:
    """The global random states, as tensors and plain values (loadable with weights_only)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [
            name,
            torch.from_numpy(keys.astype(np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ],
        "python": random.getstate(),
    }


def set_rng_states(states: dict) -> None:
    """Restore what :func:`rng_states` collected (CUDA states only on as many devices)."""
    torch.set_rng_state(states["torch"])
    cuda = states.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(states["python"])


# --------------------------------------------------------------------------- resume checkpoints

LAST = "last.ckpt"
#: the checkpoint before ``last.ckpt``: the fallback when that one is unreadable or missing
PREV = "prev.ckpt"
#: key of reavise's own record in a Lightning checkpoint
RECORD_KEY = "reavise"
#: settings a resumed run may change (with a warning): the budget, and how (not what) it computes
BUDGET_SETTINGS = ("epochs", "max_minutes", "patience")
RUNTIME_SETTINGS = ("accelerator", "logger", "num_workers")


class EpochState(Checkpoint):
    """Seeds every epoch from (seed, epoch) and writes ``OUT/last.ckpt`` at every epoch end.

    A :class:`~lightning.pytorch.callbacks.Checkpoint`, so Lightning runs it after the early
    stopping callback: the saved state includes that epoch's early-stopping decision. The file
    is written to a temp name and renamed; the one it replaces is kept as ``OUT/prev.ckpt``.
    Nothing in it names the run folder, so a moved folder resumes from its own files.
    """

    def __init__(
        self,
        out: Path,
        seed: int,
        sampler: EpochSampler,
        loader_generator: torch.Generator,
        record: dict,
    ):
        self.out = out
        self.seed = seed
        self.sampler = sampler
        self.loader_generator = loader_generator
        self.record = record

    def on_train_epoch_start(self, trainer, module):
        epoch = trainer.current_epoch
        seed_epoch_rngs(self.seed, epoch, trainer.global_rank)
        self.sampler.set_epoch(epoch)
        self.loader_generator.manual_seed(epoch_seed(self.seed, epoch, stream=STREAM_LOADER))

    def on_train_epoch_end(self, trainer, module):
        # an epoch cut short (max_minutes) is not a resume point: a resumed run redoes it
        if trainer.fit_loop.epoch_loop._num_ready_batches_reached():
            save_resume_checkpoint(trainer, self.out)

    def on_save_checkpoint(self, trainer, module, checkpoint):
        checkpoint[RECORD_KEY] = {
            **self.record,
            "next_epoch": trainer.current_epoch + 1,
            "rng": rng_states(),
        }

    def on_load_checkpoint(self, trainer, module, checkpoint):
        rec = checkpoint.get(RECORD_KEY) or {}
        if "rng" in rec:
            set_rng_states(rec["rng"])


class ResumableEarlyStopping(EarlyStopping):
    """Early stopping that keeps this run's patience when resuming (the budget may change),
    and stops a resumed run at once when the checkpointed one had already stopped."""

    @property
    def state_key(self) -> str:
        # the plain EarlyStopping key, so checkpoints of either class restore each other
        return "EarlyStopping" + repr({"monitor": self.monitor, "mode": self.mode})

    def load_state_dict(self, state: dict[str, Any]) -> None:
        patience = self.patience
        super().load_state_dict(state)
        self.patience = patience

    def on_train_start(self, trainer, module):
        if self.stopping_reason != EarlyStoppingReason.NOT_STOPPED and (
            self.wait_count >= self.patience
            or self.stopping_reason != EarlyStoppingReason.PATIENCE_EXHAUSTED
        ):
            trainer.should_stop = True


def save_resume_checkpoint(trainer: L.Trainer, out: Path) -> None:
    """Write ``OUT/last.ckpt`` atomically (temp + rename), keeping the previous as ``prev.ckpt``."""
    last, prev, tmp = out / LAST, out / PREV, out / f".{LAST}.tmp"
    trainer.save_checkpoint(tmp, weights_only=False)  # every rank takes part; rank 0 writes
    if trainer.is_global_zero:
        if last.exists():
            os.replace(last, prev)
        os.replace(tmp, last)


@dataclass
class ResumePoint:
    """A readable resume checkpoint and what it holds."""

    path: Path
    ckpt: dict

    @property
    def next_epoch(self) -> int:
        rec = self.ckpt.get(RECORD_KEY) or {}
        return int(rec.get("next_epoch", int(self.ckpt.get("epoch", -1)) + 1))

    @property
    def record(self) -> dict:
        """reavise's run record; for older checkpoints, the train config Lightning kept."""
        rec = self.ckpt.get(RECORD_KEY)
        if rec:
            return rec
        cfg = (self.ckpt.get("hyper_parameters") or {}).get("train_config")
        return {"train_config": cfg} if cfg else {}


def read_resume_checkpoint(path: Path) -> dict:
    """Load a Lightning checkpoint on the CPU (tensors and plain values only); raise if unusable."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or not {"state_dict", "loops", "epoch"} <= set(ckpt):
        raise ValueError("not a Lightning training checkpoint")
    return ckpt


def find_resume_point(out: Path) -> ResumePoint | None:
    """``OUT/last.ckpt``, else ``OUT/prev.ckpt`` (with a one-line warning), else None.

    An unreadable file (truncated, not a checkpoint) is renamed ``NAME.unreadable`` so that it
    is neither resumed from nor rotated into ``prev.ckpt``; the run never crashes on it.
    """
    last, prev = out / LAST, out / PREV
    problems: list[str] = []
    for path in (last, prev):
        if not path.exists():
            if path == last and prev.exists():
                problems.append(f"{last} is missing")
            continue
        try:
            ckpt = read_resume_checkpoint(path)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is handled the same way
            aside = path.with_name(path.name + ".unreadable")
            os.replace(path, aside)
            log.debug("%s: %s", path, exc)
            problems.append(f"{path} is unreadable (truncated?; kept as {aside.name})")
            continue
        point = ResumePoint(path, ckpt)
        if problems:
            log.warning(f"{'; '.join(problems)}: resuming from {path} (epoch {point.next_epoch})")
        return point
    if problems:
        log.warning(f"{'; '.join(problems)}: starting over")
    return None


def discard_resume_points(out: Path) -> None:
    """``--restart``: remove the old run's checkpoints, so no later resume continues it."""
    for name in (LAST, PREV):
        (out / name).unlink(missing_ok=True)


def run_record(
    cfg: TrainConfig, module: PriorModule, data: str | os.PathLike, fingerprint: str
) -> dict:
    """What defines a run, stored in its checkpoints and compared when resuming."""
    from .models.checkpoint import _config_dict

    return {
        "format": 1,
        "train_config": dataclasses.asdict(cfg),
        "model_config": _config_dict(module.prior.config),
        "data": {"path": str(Path(data).resolve()), "fingerprint": fingerprint},
    }


def settings_changes(stored: dict, current: dict) -> dict[str, tuple[Any, Any]]:
    """Settings that differ between a stored run record and this run's: key -> (old, new).

    Train settings missing from an older record count as their defaults; the model config is
    compared resolved (defaults filled in) when the record has it; the data by content.
    """
    defaults = {
        f.name: f.default
        for f in dataclasses.fields(TrainConfig)
        if f.default is not dataclasses.MISSING
    }
    old = {**defaults, "model_config": {}, **stored.get("train_config", {})}
    new = current["train_config"]
    diff = {
        k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)
    }
    if stored.get("model_config") is not None:
        diff.pop("model_config", None)
        if stored["model_config"] != current["model_config"]:
            diff["model_config"] = (stored["model_config"], current["model_config"])
    sdata, cdata = stored.get("data"), current["data"]
    if sdata and sdata.get("fingerprint") != cdata["fingerprint"]:
        diff["data"] = (sdata.get("path"), cdata["path"])
    return diff


def describe_changes(diff: dict[str, tuple[Any, Any]], keys: list[str]) -> str:
    """``lr 0.001 -> 0.003, data (other content)`` for the given keys of ``diff``."""
    parts = []
    for k in keys:
        old, new = diff[k]
        if k == "data":  # paths in full: they are what tells two corpora apart
            parts.append("data (same path, other content)" if old == new else f"data {old} -> {new}")
        else:
            parts.append(f"{k} {V.short_repr(old)} -> {V.short_repr(new)}")
    return ", ".join(parts)


def check_resume_settings(point: ResumePoint, current: dict) -> None:
    """Refuse to continue a run with other settings; warn (one line) about a changed budget."""
    stored = point.record
    if not stored.get("train_config"):
        return  # a checkpoint without any record: nothing to compare with
    diff = settings_changes(stored, current)
    fatal = [k for k in diff if k not in BUDGET_SETTINGS + RUNTIME_SETTINGS]
    if fatal:
        raise ReaviseError(
            f"{point.path}: the run in this folder was started with other settings "
            f"({describe_changes(diff, fatal)}); use --restart to start over, or another --out"
        )
    if diff:
        log.warning(
            f"{point.path}: resuming with changed settings {describe_changes(diff, list(diff))}"
        )


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


def _stores(data: str | os.PathLike, cfg: TrainConfig, with_video: bool):
    """The train and val frame stores and chunk datasets (errors name the data folder)."""
    train_store = build_store(data, "train", with_video=with_video)
    val_store = build_store(data, "val", with_video=with_video)
    if with_video and not train_store.has_video:
        raise ReaviseError(f"{data}: model {cfg.model!r} needs lips, but the corpus has none")
    train_ds = ChunkDataset(train_store, cfg.chunk)
    val_ds = ChunkDataset(val_store, cfg.chunk, hop=max(cfg.chunk, 4))
    if len(train_ds) == 0 or len(val_ds) == 0:
        raise ReaviseError(f"{data}: not enough speech for chunks of {cfg.chunk} frames")
    return train_store, val_store, train_ds, val_ds


def train(
    data: str | os.PathLike,
    out: str | os.PathLike,
    cfg: TrainConfig,
    resume: bool = True,
    progress: bool = True,
) -> Path:
    """Train ``cfg.model`` on the clean speech in ``data``; return the exported checkpoint.

    ``data`` is a reavise corpus (manifest with train/val splits) or a folder of wavs.
    An interrupted run resumes exactly from ``OUT/last.ckpt`` (written at every epoch end:
    weights, optimizer, epoch, early stopping, RNG states): it ends with the weights of an
    uninterrupted run. A checkpoint of a run with other settings is refused (only the
    budget: epochs, max_minutes, patience, may change); ``resume=False`` starts over.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module = PriorModule(cfg)
    train_store, val_store, train_ds, val_ds = _stores(data, cfg, module.prior.uses_video)
    fingerprint = f"{train_store.fingerprint()}-{val_store.fingerprint()}"
    record = run_record(cfg, module, data, fingerprint)
    if resume:
        point = find_resume_point(out)
    else:
        discard_resume_points(out)
        point = None
    if point is not None:
        check_resume_settings(point, record)
    start = point.next_epoch if point is not None else 0
    sampler = EpochSampler(len(train_ds), cfg.examples_per_epoch, cfg.seed, epoch=start)
    # worker seeds come from this generator (not the global RNG), seeded per epoch
    loader_generator = torch.Generator().manual_seed(
        epoch_seed(cfg.seed, start, stream=STREAM_LOADER)
    )
    train_dl = DataLoader(
        train_ds,
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=cfg.num_workers,
        drop_last=len(train_ds) > cfg.batch_size,
        generator=loader_generator,
    )
    val_dl = DataLoader(val_ds, batch_size=max(cfg.batch_size, 256), num_workers=cfg.num_workers)
    export = ExportBest(out / "model.pt", cfg)
    callbacks = [
        ResumableEarlyStopping("val_loss", patience=cfg.patience),
        export,
        EpochState(out, cfg.seed, sampler, loader_generator, record),
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
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*number of training batches.*")
        # resuming into the same folder is the point; Lightning's own deprecation chatter
        warnings.filterwarnings("ignore", ".*exists and is not empty.*")
        warnings.filterwarnings("ignore", ".*LeafSpec.*")
        # checkpoints of older reavise versions hold a ModelCheckpoint state no longer used
        warnings.filterwarnings("ignore", ".*callbacks used to create the checkpoint.*")
        trainer.fit(
            module,
            train_dl,
            val_dl,
            ckpt_path=str(point.path) if point is not None else None,
            weights_only=True,
        )
    summary = {
        "model": cfg.model,
        "epochs_run": trainer.current_epoch,
        "best_val_loss": export.best,
        "train_frames": int(len(train_store.power)),
        "val_frames": int(len(val_store.power)),
        "train_config": dataclasses.asdict(cfg),
    }
    atomic_write(out / "train.json", lambda t: Path(t).write_text(json.dumps(summary, indent=2)))
    if not (out / "model.pt").exists():
        raise ReaviseError(f"{out}: training produced no finite validation loss; no model saved")
    return out / "model.pt"
