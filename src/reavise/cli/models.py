"""``reavise models``: the registered priors and algorithms, and the shipped priors."""

from __future__ import annotations

import dataclasses

import typer

from .options import SEED_MAX


def list_models(
    seed: int = typer.Option(0, min=0, max=SEED_MAX, help="Accepted for uniformity; listing is deterministic."),
) -> None:
    """List registered speech priors and inference algorithms with their settings."""
    del seed
    from ..inference import ALGORITHMS
    from ..models import PRIORS

    typer.echo("speech priors:")
    for name in PRIORS:
        cfg = PRIORS.entry(name)[1]
        fields = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(cfg) if f.default is not dataclasses.MISSING)
        typer.echo(f"  {name}: {fields}")
    typer.echo("inference algorithms:")
    for name in ALGORITHMS:
        cfg = ALGORITHMS.entry(name)[1]
        fields = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(cfg))
        typer.echo(f"  {name}: {fields}")
    from ..pretrained import shipped

    typer.echo("shipped priors (--model NAME; data, recipe, licence: reavise/pretrained/MODEL_CARD.md):")
    for name, path in sorted(shipped().items()):
        typer.echo(f"  {name}: {path.name}, {path.stat().st_size / 1e6:.1f} MB")


def register(app: typer.Typer) -> None:
    """Add ``models`` to the top-level app."""
    app.command("models")(list_models)
