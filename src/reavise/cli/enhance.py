"""``reavise enhance``: noisy files or folders -> enhanced WAVs (the work: ``reavise.enhance``)."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import SettingError
from .options import (
    SEED_MAX,
    checkpoint,
    explain,
    output_dir,
    parse_settings,
    positive,
    set_threads,
)
from .options import device as device_option


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

    from ..enhance import plan_jobs, run_enhance
    from ..inference import build_algorithm
    from ..models.checkpoint import load_checkpoint

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


def register(app: typer.Typer) -> None:
    """Add ``enhance`` to the top-level app."""
    app.command("enhance")(enhance)
