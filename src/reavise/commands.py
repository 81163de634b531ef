"""Top-level subcommands: train, enhance, import-checkpoint, models, evaluate, demo."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer
import yaml

from . import evaluate_cli
from .cli import app
from .errors import ReaviseError

evaluate_cli.register(app)


def parse_settings(items: list[str] | None) -> dict:
    """``key=value`` pairs (values parsed as YAML scalars: 10, 0.01, true, [128, 64])."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ReaviseError(f"--set {item!r}: expected key=value")
        k, v = item.split("=", 1)
        out[k.strip().replace("-", "_")] = yaml.safe_load(v)
    return out


#: most torch threads chosen by default (the models are small: more threads mostly wait)
MAX_DEFAULT_THREADS = 8


def default_threads() -> int:
    """CPUs this process may use: its affinity mask, the cgroup CPU quota (containers),
    and ``MAX_DEFAULT_THREADS``, whichever is smallest."""
    import math
    import os

    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:  # cgroup v2: "max 100000" or "200000 100000" (quota, period in microseconds)
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, min(n, MAX_DEFAULT_THREADS))


def set_threads(threads: int | None) -> None:
    """torch threads: ``threads``, else ``OMP_NUM_THREADS`` when set, else
    :func:`default_threads` (torch's own default counts every CPU of the machine, also in a
    container that may use only a few). The CLI also makes idle OpenMP threads sleep
    (``OMP_WAIT_POLICY=PASSIVE``, see ``cli.main``) so that on a busy machine they do not
    spin against the other processes."""
    import os

    import torch

    if threads:
        torch.set_num_threads(threads)
    elif not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(default_threads())


@app.command()
def train(
    data: Path = typer.Argument(..., help="Corpus folder (manifest.jsonl) or folder of clean wavs."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder: model.pt, last.ckpt, logs."),
    model: str = typer.Option("a-vae", help="Registered model name (see `reavise models`)."),
    config: Path | None = typer.Option(None, help="YAML file with train settings and model_config."),
    model_set: list[str] | None = typer.Option(None, "--model-set", help="Model config key=value."),
    train_set: list[str] | None = typer.Option(None, "--set", help="Train setting key=value."),
    epochs: int | None = typer.Option(None, help="Maximum epochs."),
    batch_size: int | None = typer.Option(None, help="Examples per batch."),
    lr: float | None = typer.Option(None, help="Adam learning rate."),
    max_minutes: float | None = typer.Option(None, help="Stop after this much wall time."),
    accelerator: str | None = typer.Option(None, help="Lightning accelerator: auto, cpu, gpu."),
    devices: str | None = typer.Option(None, help="Devices: auto, 1, 2 (DDP), ..."),
    precision: str | None = typer.Option(None, help="32-true, 16-mixed, bf16-mixed."),
    logger: str | None = typer.Option(None, help="csv or tensorboard."),
    restart: bool = typer.Option(False, help="Ignore OUT/last.ckpt and start over."),
    seed: int = typer.Option(0, help="Random seed."),
    threads: int | None = typer.Option(None, help="CPU threads for torch."),
    quiet: bool = typer.Option(False, help="No progress bar."),
) -> None:
    """Train a speech prior on clean speech (resumes from OUT/last.ckpt)."""
    from .train import TrainConfig
    from .train import train as run_train

    set_threads(threads)
    values: dict = {}
    if config is not None:
        if not config.exists():
            raise ReaviseError(f"{config}: no such config file")
        values = yaml.safe_load(config.read_text()) or {}
    values.setdefault("model", model)
    values.setdefault("model_config", {})
    values["model_config"].update(parse_settings(model_set))
    values.update(parse_settings(train_set))
    flags = {
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "max_minutes": max_minutes,
        "accelerator": accelerator, "devices": devices, "precision": precision, "logger": logger,
    }  # fmt: skip
    for k, v in flags.items():
        if v is not None:
            values[k] = v
    values["seed"] = seed
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    bad = sorted(set(values) - known)
    if bad:
        raise ReaviseError(f"unknown train settings {bad}; known: {sorted(known)}")
    path = run_train(data, out, TrainConfig(**values), resume=not restart, progress=not quiet)
    typer.echo(f"model: {path}")


@app.command()
def enhance(
    inputs: list[Path] = typer.Argument(..., help="Noisy audio/video files or folders."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (*_enhanced.wav)."),
    model: Path = typer.Option(..., "--model", "-m", help="reavise checkpoint (.pt)."),
    algo: str = typer.Option("vem", help="Inference algorithm: vem, mcem, langevin."),
    algo_set: list[str] | None = typer.Option(None, "--set", help="Algorithm setting key=value."),
    lips: Path | None = typer.Option(None, help="Lips .npy for a single audio input."),
    batch_size: int = typer.Option(4, help="Utterances enhanced together."),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:1, ..."),
    overwrite: bool = typer.Option(False, help="Redo outputs that already exist."),
    seed: int = typer.Option(0, help="Random seed."),
    threads: int | None = typer.Option(None, help="CPU threads for torch."),
) -> None:
    """Enhance noisy speech with a trained prior (lips found beside each file if needed)."""
    from rich.console import Console
    from rich.progress import Progress

    from .enhance import plan_jobs, run_enhance
    from .inference import build_algorithm
    from .models.checkpoint import load_checkpoint

    set_threads(threads)
    prior = load_checkpoint(model, device=device)
    algorithm = build_algorithm(algo, **parse_settings(algo_set))
    jobs = plan_jobs(inputs, out, lips, prior.uses_video)
    errors: list[str] = []
    # progress and per-file errors on stderr; stdout keeps the one-line summary
    with Progress(transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task(f"enhance ({algo})", total=len(jobs))
        stats = run_enhance(
            prior,
            algorithm,
            jobs,
            batch_size=batch_size,
            device=device,
            seed=seed,
            overwrite=overwrite,
            on_error=lambda m: (errors.append(m), bar.console.print(f"error: {m}", soft_wrap=True, markup=False, highlight=False)),
            on_done=lambda j, t: bar.advance(task),
        )
    typer.echo(
        f"enhanced {stats['done']} file(s) into {out} (skipped {stats['skipped']} existing, "
        f"{stats['failed']} failed); real-time factor {stats['rtf']:.3f}"
    )
    if errors:
        raise typer.Exit(2)


@app.command("import-checkpoint")
def import_checkpoint(
    src: Path = typer.Argument(..., help="Published state_dict (e.g. A-VAE.pt)."),
    dst: Path = typer.Argument(..., help="reavise checkpoint to write."),
    seed: int = typer.Option(0, help="Accepted for uniformity; the conversion is deterministic."),
) -> None:
    """Convert a published audio-only VAE (av-dkf/DVAE layout) into a reavise checkpoint."""
    from .models.checkpoint import import_published

    del seed
    typer.echo(f"wrote {import_published(src, dst)}")


@app.command("models")
def list_models(
    seed: int = typer.Option(0, help="Accepted for uniformity; listing is deterministic."),
) -> None:
    """List registered speech priors and inference algorithms with their settings."""
    del seed
    from .inference import ALGORITHMS
    from .models import PRIORS

    typer.echo("speech priors:")
    for name, (_, cfg) in sorted(PRIORS.items()):
        fields = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(cfg) if f.default is not dataclasses.MISSING)
        typer.echo(f"  {name}: {fields}")
    typer.echo("inference algorithms:")
    for name, (_, cfg) in sorted(ALGORITHMS.items()):
        fields = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(cfg))
        typer.echo(f"  {name}: {fields}")


from . import bench_cli  # noqa: E402  (benchmark, report)

bench_cli.register(app)
