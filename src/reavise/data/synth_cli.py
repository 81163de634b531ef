"""``reavise data synth`` (synthetic AV corpus) and ``reavise data preview`` (contact sheet)."""

from __future__ import annotations

from pathlib import Path

import typer

from ..cli import SEED_MAX, output_dir, output_file, positive


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``reavise data``."""

    @app.command("synth")
    def synth_cmd(
        out: Path = typer.Option(
            ..., "--out", file_okay=False, callback=output_dir, help="Corpus folder to create (or resume)."
        ),
        hours: float = typer.Option(1.0, "--hours", callback=positive, help="Hours of speech to generate."),
        speakers: int = typer.Option(50, "--speakers", min=1, help="Number of distinct speakers."),
        seed: int = typer.Option(0, "--seed", min=0, max=SEED_MAX, help="Random seed (same seed, same corpus)."),
        workers: int = typer.Option(0, "--workers", min=0, help="Processes (0 = one per CPU core)."),
        min_utterance_seconds: float = typer.Option(2.0, "--min-utterance-seconds", min=0.5),
        max_utterance_seconds: float = typer.Option(8.0, "--max-utterance-seconds", min=0.5),
        progress: bool = typer.Option(True, "--progress/--no-progress"),
    ) -> None:
        """Synthesise a corpus: espeak-ng speech + lips rendered from its phoneme timings."""
        from .synth import synthesize_corpus

        stats = synthesize_corpus(
            out,
            hours,
            speakers,
            seed,
            workers=workers,
            progress=progress,
            min_utterance_seconds=min_utterance_seconds,
            max_utterance_seconds=max_utterance_seconds,
        )
        typer.echo(
            f"{out}: {stats['utterances']} utterances ({stats['written']} new, "
            f"{stats['skipped']} kept), {stats['seconds'] / 60:.1f} min of speech, "
            f"{stats['speakers']} speakers, {stats['wall_seconds']:.1f} s wall "
            f"({stats['rate']:.1f} s audio/s, {stats['workers']} workers)"
        )

    @app.command("preview")
    def preview_cmd(
        corpus: Path = typer.Argument(
            ..., exists=True, file_okay=False, help="Corpus folder (with manifest.jsonl)."
        ),
        out: Path = typer.Option(
            ..., "--out", dir_okay=False, callback=output_file, help="PNG file to write."
        ),
        real: Path | None = typer.Option(
            None, "--real", exists=True, dir_okay=False,
            help="Real lips .npy to show beside (default: the NTCD-TIMIT sample).",
        ),
        n: int = typer.Option(16, "--n", min=1, help="Frames per row group."),
        seed: int = typer.Option(0, "--seed", min=0, max=SEED_MAX),
    ) -> None:
        """Contact sheet of synthetic mouth frames (labelled by viseme) next to real ones."""
        from .synth import preview_sheet

        path = preview_sheet(corpus, out, real=real, n=n, seed=seed)
        typer.echo(str(path))
