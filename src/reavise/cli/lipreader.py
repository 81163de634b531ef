"""``reavise lipreader train``: a visual front-end pretrained on clean audio-visual speech."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import ReaviseError
from .options import SEED_MAX, output_dir, parse_settings, positive, set_threads

HELP = "Lip readers: visual front-ends pretrained on clean AV speech (lips -> speech envelope)."


def train(
    data: Path = typer.Argument(
        ..., exists=True, file_okay=False, help="Corpus folder with lips (train and val splits)."
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", file_okay=False, callback=output_dir,
        help="Run folder: lipreader.pt (best held-out loss), lipreader.json.",
    ),
    config: Path | None = typer.Option(
        None, exists=True, dir_okay=False,
        help="YAML file of LipReaderTrainConfig settings (model:, augment:, steps, ...).",
    ),
    train_set: list[str] | None = typer.Option(None, "--set", help="Train setting key=value."),
    max_minutes: float | None = typer.Option(None, callback=positive, help="Stop after this much wall time."),
    seed: int = typer.Option(0, min=0, max=SEED_MAX, help="Random seed."),
    threads: int | None = typer.Option(None, min=1, help="CPU threads for torch."),
    quiet: bool = typer.Option(False, help="No per-evaluation lines."),
) -> None:  # fmt: skip
    """Train a lip reader (mouth ROIs -> clean log-mel envelope + voice activity) for
    ``visual_frontend: pretrained`` priors."""
    from ..models.lipreader import LipReaderTrainConfig, train_lipreader
    from ..registry import load_dataclass
    from ..validate import load_yaml

    values: dict = {}
    if config is not None:
        values = load_yaml(config) or {}
        if not isinstance(values, dict):
            raise ReaviseError(f"{config}: expected a mapping of lip-reader settings")
    values.update(parse_settings(train_set, "--set"))
    if max_minutes is not None:
        values["max_minutes"] = max_minutes
    values["seed"] = seed
    cfg = load_dataclass(LipReaderTrainConfig, values, scope=str(config or "--set"))
    set_threads(threads)
    path = train_lipreader(data, out, cfg, progress=not quiet)
    typer.echo(f"lip reader: {path}")


def register(app: typer.Typer) -> None:
    """Add the ``lipreader`` group (``lipreader train``) to the top-level app."""
    group = typer.Typer(help=HELP, no_args_is_help=True)
    group.command("train")(train)
    app.add_typer(group, name="lipreader")
