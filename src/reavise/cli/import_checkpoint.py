"""``reavise import-checkpoint``: a published audio-only VAE as a reavise checkpoint."""

from __future__ import annotations

from pathlib import Path

import typer

from .options import SEED_MAX, output_file


def import_checkpoint(
    src: Path = typer.Argument(..., exists=True, dir_okay=False, help="Published state_dict (e.g. A-VAE.pt)."),
    dst: Path = typer.Argument(..., dir_okay=False, callback=output_file, help="reavise checkpoint to write."),
    seed: int = typer.Option(
        0, min=0, max=SEED_MAX, help="Accepted for uniformity; the conversion is deterministic."
    ),
) -> None:
    """Convert a published prior (A-VAE, RVAE or A-DKF state_dict) into a reavise checkpoint."""
    from ..models.checkpoint import import_published

    del seed
    typer.echo(f"wrote {import_published(src, dst, report=typer.echo)}")


def register(app: typer.Typer) -> None:
    """Add ``import-checkpoint`` to the top-level app."""
    app.command("import-checkpoint")(import_checkpoint)
