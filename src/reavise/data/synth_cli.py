"""``reavise data synth`` (synthetic AV corpus) and ``reavise data preview`` (contact sheet)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``reavise data``."""

    @app.command("synth")
    def synth_cmd(
        out: Path = typer.Option(..., "--out", help="Corpus folder to create (or resume)."),
        hours: float = typer.Option(1.0, "--hours", help="Hours of speech to generate."),
        speakers: int = typer.Option(50, "--speakers", help="Number of distinct speakers."),
        seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same corpus)."),
        workers: int = typer.Option(0, "--workers", help="Processes (0 = one per CPU core)."),
        min_utterance_seconds: float = typer.Option(2.0, "--min-utterance-seconds"),
        max_utterance_seconds: float = typer.Option(8.0, "--max-utterance-seconds"),
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
        corpus: Path = typer.Argument(..., help="Corpus folder (with manifest.jsonl)."),
        out: Path = typer.Option(..., "--out", help="PNG file to write."),
        real: Path | None = typer.Option(
            None, "--real", help="Real lips .npy to show beside (default: the NTCD-TIMIT sample)."
        ),
        n: int = typer.Option(16, "--n", help="Frames per row group."),
        seed: int = typer.Option(0, "--seed"),
    ) -> None:
        """Contact sheet of synthetic mouth frames (labelled by viseme) next to real ones."""
        from .synth import preview_sheet

        path = preview_sheet(corpus, out, real=real, n=n, seed=seed)
        typer.echo(str(path))
