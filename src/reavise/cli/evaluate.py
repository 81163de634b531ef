"""CLI command ``reavise evaluate``: SI-SDR / PESQ-WB / STOI / ESTOI of files or folders."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import InputError
from .options import SEED_MAX, output_file


def evaluate(
    est: Path = typer.Argument(
        ..., metavar="EST", exists=True, help="Enhanced WAV file, or a folder of them."
    ),
    ref: Path = typer.Argument(
        ..., metavar="REF", exists=True, help="Clean reference WAV file, or a folder of them."
    ),
    noisy: Path | None = typer.Option(
        None, "--noisy", exists=True,
        help="Noisy input (file or folder) to also report the improvements.",
    ),
    csv: Path | None = typer.Option(
        None, "--csv", dir_okay=False, callback=output_file, help="Write the per-file metrics to this CSV."
    ),
    suffix: str = typer.Option(
        "_enhanced",
        "--suffix",
        help="Folder mode: estimate X{suffix}.wav (or X.wav) <-> ref X.wav.",
    ),
    subset: bool = typer.Option(
        False, "--subset", help="Folder mode: score the estimates only (REF may hold more files; said in one line)."
    ),
    seed: int = typer.Option(
        0, "--seed", min=0, max=SEED_MAX, help="Accepted for uniformity; the metrics are deterministic."
    ),
) -> None:
    """Score enhanced speech against clean references; prints mean ± std and the 95 % CI.

    EST and REF are two files or two folders (matched by name; unmatched files are an error).
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from .. import metrics

    del seed  # every metric is deterministic; the option exists by project convention
    console = Console()
    for p, what in ((est, "EST"), (ref, "REF"), (noisy, "--noisy")):
        if p is not None and not p.exists():
            raise InputError(f"{p}: no such file or directory ({what})")
    if est.is_dir() != ref.is_dir() or (noisy is not None and noisy.is_dir() != ref.is_dir()):
        raise InputError(f"{est} / {ref}: give files for all arguments or folders for all")

    if est.is_file():
        rows = [metrics.evaluate_files(est, ref, noisy)]
    else:
        pairs = metrics.match_files(est, ref, noisy, suffix, subset=subset)
        rows = []
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("evaluating", total=len(pairs))
            for pair in pairs:
                rows.append(metrics.evaluate_files(pair.est, pair.ref, pair.noisy, pair.name))
                progress.advance(task)

    if csv is not None:
        metrics.write_csv(rows, csv)
    if len(rows) == 1:
        row = rows[0]
        for col in metrics.metric_columns(rows):
            console.print(f"{metrics.LABELS.get(col, col):>14}: {row[col]:.3f}")
    else:
        metrics.print_summary(rows, title=f"{len(rows)} files", console=console)
    if csv is not None:
        console.print(f"per-file metrics written to {csv}")


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` to the top-level app."""
    app.command("evaluate")(evaluate)
