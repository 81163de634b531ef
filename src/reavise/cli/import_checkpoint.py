"""``reavise import-checkpoint`` (a published prior as a reavise checkpoint) and ``reavise
combine`` (an AV and an audio-only checkpoint as one audio-fallback prior)."""

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


def combine(
    av: str = typer.Argument(..., help="Audio-visual prior: checkpoint or shipped name (used on frames with lips)."),
    audio: str = typer.Argument(..., help="Audio-only prior: checkpoint or shipped name (used on frames without)."),
    dst: Path = typer.Argument(..., dir_okay=False, callback=output_file, help="reavise checkpoint to write."),
    seed: int = typer.Option(0, min=0, max=SEED_MAX, help="Accepted for uniformity; combining is deterministic."),
) -> None:
    """Make one prior of an AV prior and an audio-only one: the AV prior where lips are
    found, the audio-only prior on frames (or videos) without them."""
    from ..models.fallback import combine as combine_priors
    from ..pretrained import resolve

    del seed
    typer.echo(f"wrote {combine_priors(resolve(av), resolve(audio), dst, report=typer.echo)}")


def register(app: typer.Typer) -> None:
    """Add ``import-checkpoint`` and ``combine`` to the top-level app."""
    app.command("import-checkpoint")(import_checkpoint)
    app.command("combine")(combine)
