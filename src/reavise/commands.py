"""Top-level subcommands: train, enhance, import-checkpoint, models, evaluate, demo."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer
import yaml

from . import evaluate_cli
from .cli import SEED_MAX, app, checkpoint, output_dir, output_file, positive
from .cli import device as device_option
from .errors import ReaviseError, SettingError

evaluate_cli.register(app)


def parse_settings(
    items: list[str] | None, flag: str = "--set", origins: dict[str, str] | None = None
) -> dict:
    """``key=value`` pairs (values parsed as YAML scalars: 10, 0.01, true, [128, 64]).

    ``origins`` (when given) records ``key -> "--set key=value"`` for error messages.
    """
    out = {}
    for item in items or []:
        k, sep, v = item.partition("=")
        key = k.strip().replace("-", "_")
        if not sep or not key:
            raise ReaviseError(f"{flag} {item!r}: expected key=value")
        try:
            out[key] = yaml.safe_load(v)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or type(exc).__name__
            raise ReaviseError(f"{flag} {item}: not a YAML value ({problem})") from None
        if origins is not None:
            origins[key] = f"{flag} {item}"
    return out


def explain(exc: SettingError, origins: dict[str, str]) -> ReaviseError:
    """A setting's error prefixed with where its value came from (a flag, a YAML file)."""
    origin = origins.get(exc.key)
    return ReaviseError(f"{origin}: {exc.key} {exc.problem}") if origin else exc


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
    container that may use only a few). The CLI also makes idle OpenMP threads sleep after
    a short spin (``GOMP_SPINCOUNT``, see ``cli.main``) so that on a busy machine they do not
    spin against the other processes."""
    import os

    import torch

    if threads:
        torch.set_num_threads(threads)
    elif not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(default_threads())


def train_values(
    config: Path | None,
    model: str,
    model_set: list[str] | None,
    train_set: list[str] | None,
    flags: dict,
    origins: dict[str, str],
) -> dict:
    """TrainConfig values from a YAML file, --model-set, --set and flags (later ones win)."""
    from .validate import load_yaml

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


@app.command()
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
    from .train import TrainConfig
    from .train import train as run_train

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


@app.command()
def enhance(
    inputs: list[Path] = typer.Argument(..., exists=True, help="Noisy audio/video files or folders."),
    out: Path = typer.Option(
        ..., "--out", "-o", file_okay=False, callback=output_dir, help="Output folder (*_enhanced.wav)."
    ),
    model: Path = typer.Option(
        ..., "--model", "-m", callback=checkpoint,
        help="reavise checkpoint (.pt) or a shipped prior's name (see `reavise models`).",
    ),
    algo: str = typer.Option("vem", help="Inference algorithm: vem, mcem, langevin."),
    algo_set: list[str] | None = typer.Option(None, "--set", help="Algorithm setting key=value."),
    lips: Path | None = typer.Option(None, exists=True, dir_okay=False, help="Lips .npy for a single audio input."),
    lips_fps: float | None = typer.Option(
        None, callback=positive,
        help="Frame rate of lips .npy files (default: 30, or 25 when only that fits the audio).",
    ),
    batch_size: int = typer.Option(4, min=1, help="Utterances enhanced together."),
    device: str = typer.Option("cpu", callback=device_option, help="cpu, cuda, cuda:1, ..."),
    overwrite: bool = typer.Option(False, help="Redo outputs that already exist."),
    seed: int = typer.Option(0, min=0, max=SEED_MAX, help="Random seed."),
    threads: int | None = typer.Option(None, min=1, help="CPU threads for torch."),
) -> None:  # fmt: skip
    """Enhance noisy speech with a trained prior (lips found beside each file if needed)."""
    from rich.console import Console
    from rich.progress import Progress

    from .enhance import plan_jobs, run_enhance
    from .inference import build_algorithm
    from .models.checkpoint import load_checkpoint

    origins: dict[str, str] = {}
    settings = parse_settings(algo_set, "--set", origins)
    try:
        algorithm = build_algorithm(algo, **settings)
    except SettingError as exc:
        raise explain(exc, origins) from None
    prior = load_checkpoint(model, device=device)
    jobs = plan_jobs(inputs, out, lips, prior.uses_video, lips_fps)
    set_threads(threads)
    errors: list[str] = []
    # progress and per-file errors on stderr; stdout keeps the one-line summary
    console = Console(stderr=True)
    with Progress(transient=True, console=console, disable=not console.is_terminal) as bar:
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
    src: Path = typer.Argument(..., exists=True, dir_okay=False, help="Published state_dict (e.g. A-VAE.pt)."),
    dst: Path = typer.Argument(..., dir_okay=False, callback=output_file, help="reavise checkpoint to write."),
    seed: int = typer.Option(
        0, min=0, max=SEED_MAX, help="Accepted for uniformity; the conversion is deterministic."
    ),
) -> None:
    """Convert a published prior (A-VAE, RVAE or A-DKF state_dict) into a reavise checkpoint."""
    from .models.checkpoint import import_published

    del seed
    typer.echo(f"wrote {import_published(src, dst, report=typer.echo)}")


@app.command("models")
def list_models(
    seed: int = typer.Option(0, min=0, max=SEED_MAX, help="Accepted for uniformity; listing is deterministic."),
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
    from .pretrained import shipped

    typer.echo("shipped priors (--model NAME; data, recipe, licence: reavise/pretrained/MODEL_CARD.md):")
    for name, path in sorted(shipped().items()):
        typer.echo(f"  {name}: {path.name}, {path.stat().st_size / 1e6:.1f} MB")


from . import bench_cli  # noqa: E402  (benchmark, report)

bench_cli.register(app)
