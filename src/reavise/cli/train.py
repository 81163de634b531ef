"""``reavise train``: a speech prior from a corpus, with settings from a YAML file and flags."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer

from ..errors import ReaviseError, SettingError
from .options import SEED_MAX, explain, output_dir, parse_settings, positive, set_threads


def train_values(
    config: Path | None,
    model: str,
    model_set: list[str] | None,
    train_set: list[str] | None,
    flags: dict,
    origins: dict[str, str],
) -> dict:
    """TrainConfig values from a YAML file, --model-set, --set and flags (later ones win)."""
    from ..validate import load_yaml

    values: dict = {}
    if config is not None:
        values = load_yaml(config)
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise ReaviseError(
                f"{config}: expected a mapping of train settings, got a {type(values).__name__}"
            )
        values = dict(values)
        origins.update({str(k): str(config) for k in values})
        mc = values.get("model_config")
        if mc is not None and not isinstance(mc, dict):
            raise ReaviseError(f"{config}: model_config must be a mapping, got {mc!r}")
        origins.update({f"model_config.{k}": str(config) for k in mc or {}})
    if "model" not in values:
        values["model"] = model
        origins["model"] = "--model"
    values["model_config"] = dict(values.get("model_config") or {})
    model_origins: dict[str, str] = {}
    values["model_config"].update(parse_settings(model_set, "--model-set", model_origins))
    origins.update({f"model_config.{k}": v for k, v in model_origins.items()})
    values.update(parse_settings(train_set, "--set", origins))
    for k, v in flags.items():
        if v is not None:
            values[k] = v
            origins[k] = f"--{k.replace('_', '-')}"
    return values


def train(
    data: Path = typer.Argument(
        ..., exists=True, file_okay=False, help="Corpus folder (manifest.jsonl) or folder of clean wavs."
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", file_okay=False, callback=output_dir,
        help="Run folder: model.pt, last.ckpt, logs.",
    ),
    model: str = typer.Option("a-vae", help="Registered model name (see `reavise models`)."),
    config: Path | None = typer.Option(
        None, exists=True, dir_okay=False, help="YAML file with train settings and model_config."
    ),
    model_set: list[str] | None = typer.Option(None, "--model-set", help="Model config key=value."),
    train_set: list[str] | None = typer.Option(None, "--set", help="Train setting key=value."),
    epochs: int | None = typer.Option(None, min=1, help="Maximum epochs."),
    batch_size: int | None = typer.Option(None, min=1, help="Examples per batch."),
    lr: float | None = typer.Option(None, callback=positive, help="Adam learning rate."),
    max_minutes: float | None = typer.Option(None, callback=positive, help="Stop after this much wall time."),
    accelerator: str | None = typer.Option(None, help="Lightning accelerator: auto, cpu, gpu."),
    devices: str | None = typer.Option(None, help="Devices: auto, 1, 2 (DDP), ..."),
    precision: str | None = typer.Option(None, help="32-true, 16-mixed, bf16-mixed."),
    logger: str | None = typer.Option(None, help="csv or tensorboard."),
    restart: bool = typer.Option(False, help="Ignore OUT/last.ckpt and start over."),
    seed: int = typer.Option(0, min=0, max=SEED_MAX, help="Random seed."),
    threads: int | None = typer.Option(None, min=1, help="CPU threads for torch."),
    quiet: bool = typer.Option(False, help="No progress bar."),
) -> None:  # fmt: skip
    """Train a speech prior on clean speech (resumes from OUT/last.ckpt)."""
    from ..train import TrainConfig
    from ..train import train as run_train

    flags = {
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "max_minutes": max_minutes,
        "accelerator": accelerator, "devices": devices, "precision": precision, "logger": logger,
        "seed": seed,
    }  # fmt: skip
    origins: dict[str, str] = {}
    values = train_values(config, model, model_set, train_set, flags, origins)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    bad = sorted(set(values) - known)
    if bad:
        where = origins.get(bad[0], "")
        raise ReaviseError(f"{where + ': ' if where else ''}unknown train settings {bad}; known: {sorted(known)}")
    try:
        cfg = TrainConfig(**values)
    except SettingError as exc:
        raise explain(exc, origins) from None
    check_accelerator(cfg.accelerator, origins.get("accelerator", "accelerator"))
    set_threads(threads)
    path = run_train(data, out, cfg, resume=not restart, progress=not quiet)
    typer.echo(f"model: {path}")


def check_accelerator(accelerator: str, origin: str) -> None:
    """Refuse a GPU accelerator on a machine without CUDA before Lightning starts."""
    import torch

    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ReaviseError(f"{origin}: {accelerator!r} needs CUDA, which is not available on this machine")


def register(app: typer.Typer) -> None:
    """Add ``train`` to the top-level app."""
    app.command("train")(train)
