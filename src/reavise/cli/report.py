"""``reavise report``: a benchmark run as a static HTML page (the work: ``reavise.bench.report``)."""

from __future__ import annotations

from pathlib import Path

import typer

from .options import SEED_MAX, output_dir


def report(
    run: Path = typer.Argument(
        ..., exists=True, file_okay=False, help="Benchmark output folder (with results.csv)."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", file_okay=False, callback=output_dir,
        help="Report folder (default RUN/report).",
    ),
    seed: int = typer.Option(
        0, "--seed", min=0, max=SEED_MAX, help="Accepted for uniformity; the report is deterministic."
    ),
) -> None:
    """Write a static HTML report (index.html; tables, plots, audio examples), no server needed."""
    from ..bench.report import write_report

    del seed
    path = write_report(run, out)
    typer.echo(f"report: {path}")


def register(app: typer.Typer) -> None:
    """Add ``report`` to the top-level app."""
    app.command("report")(report)
