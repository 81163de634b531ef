"""``reavise benchmark``: run a comparison grid (the work: ``reavise.bench``)."""

from __future__ import annotations

from pathlib import Path

import typer

from .options import SEED_MAX, output_dir
from .options import device as device_option


def benchmark(
    config: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="Benchmark YAML (see configs/quick.yaml)."
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", file_okay=False, callback=output_dir,
        help="Output folder (resumed if it exists).",
    ),
    workers: int = typer.Option(
        0, "--workers", min=0, help="Worker processes (0: one per CPU core; 1 on cuda)."
    ),
    device: str = typer.Option("cpu", "--device", callback=device_option, help="cpu or cuda[:N]."),
    seed: int | None = typer.Option(
        None, "--seed", min=0, max=SEED_MAX, help="Random seed (default: the config's)."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Train/load priors, make mixtures, run every method on them, write results and tables."""
    from ..bench.grid import run_benchmark

    rec = run_benchmark(config, out, workers=workers, device=device, seed=seed, progress=progress,
                        echo=typer.echo)  # fmt: skip
    tables = out / "tables.md"
    if tables.exists():
        typer.echo(tables.read_text())
    typer.echo(
        f"{out}: {rec['n_rows']} result rows ({rec['n_run']} of {rec['n_tasks']} cells computed "
        f"now) in {rec['timings']['total_s']:.0f} s -> {out / 'results.csv'}, {out / 'tables.md'}"
    )
    for note in rec["notes"]:
        typer.echo(f"note: {note}")
    if rec["errors"]:
        raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    """Add ``benchmark`` to the top-level app."""
    app.command("benchmark")(benchmark)
