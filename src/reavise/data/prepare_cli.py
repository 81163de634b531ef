"""``reavise data prepare``: real corpora (TCD-TIMIT, NTCD-TIMIT, GRID, LRS3, video folders)."""

from __future__ import annotations

from pathlib import Path

import typer

from ..cli import SEED_MAX, fraction, output_dir


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``reavise data``."""

    @app.command("prepare")
    def prepare(
        corpus: str = typer.Argument(
            ..., help="tcd-timit | ntcd-timit | grid | lrs3 | generic (any folder of talking-face videos)"
        ),
        root: Path = typer.Argument(..., exists=True, file_okay=False, help="The corpus as downloaded/unpacked."),
        out: Path = typer.Option(
            ..., "--out", "-o", file_okay=False, callback=output_dir,
            help="Output corpus folder (reavise layout).",
        ),
        seed: int = typer.Option(0, min=0, max=SEED_MAX, help="Seed of the speaker split where the corpus has none."),
        workers: int = typer.Option(1, min=1, help="Worker processes."),
        val_frac: float = typer.Option(0.1, callback=fraction, help="Fraction of (non-official) speakers for val."),
        test_frac: float = typer.Option(0.1, callback=fraction, help="Fraction of (non-official) speakers for test."),
        max_side: int = typer.Option(
            640, min=64, help="Decode videos downscaled to this size for ROI extraction."
        ),
        force: bool = typer.Option(False, help="Redo items already prepared by an earlier run."),
        progress: bool = typer.Option(True, help="Show a progress bar."),
    ) -> None:
        """Prepare a real audio-visual corpus: 16 kHz audio, 67x67 mouth ROIs, validity masks, manifest."""
        from ..errors import ReaviseError
        from .prepare import CORPORA, SKIPPED, prepare_corpus

        if corpus.lower() not in CORPORA:
            raise ReaviseError(f"unknown corpus {corpus!r}; choose one of {', '.join(CORPORA)}")
        res = prepare_corpus(
            corpus,
            root,
            out,
            seed=seed,
            workers=workers,
            val_frac=val_frac,
            test_frac=test_frac,
            max_side=max_side,
            force=force,
            progress=progress,
            warn=lambda m: typer.echo(f"warning: {m}", err=True),
        )
        sizes = ", ".join(f"{k} {len(v)}" for k, v in res.splits.items())
        if res.split_by == "utterance":
            sizes = ", ".join(f"{k} {n}" for k, n in res.split_utterances.items())
            typer.echo(f"prepared {len(res.rows)} utterances in {res.out} (one talker, split by utterance: {sizes})")
        else:
            typer.echo(f"prepared {len(res.rows)} utterances in {res.out} (speakers: {sizes})")
        if res.skipped:
            typer.echo(f"skipped {len(res.skipped)} items (listed in {res.out / SKIPPED}):", err=True)
            for s in res.skipped:
                typer.echo(f"  {s['reason']}", err=True)
