"""``reavise data mix``: noisy test mixtures at exact SNRs with degraded lips videos."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import typer

from ..cli import SEED_MAX, output_dir


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``reavise data``."""

    @app.command("mix")
    def mix_command(
        corpus: Path = typer.Argument(
            ..., exists=True, file_okay=False, help="Corpus folder (with manifest.jsonl)."
        ),
        out: Path = typer.Option(
            ..., "--out", file_okay=False, callback=output_dir, help="Output folder for the mixtures."
        ),
        split: str = typer.Option("test", help="Corpus split to mix."),
        snrs: str = typer.Option("-5,0,5,10", help="Comma-separated SNRs in dB."),
        noises: str = typer.Option(
            None,
            help="Comma-separated noise types (white, pink, brown, speech_shaped, babble, "
            "modulated, car, hum, file). Default: all synthetic ones, plus file with --noise-dir.",
        ),
        visual: str = typer.Option(
            "clean,occlusion:0.3,occlusion:0.7,missing",
            help="Comma-separated visual conditions, name[:severity 0..1]: clean, occlusion, "
            "pixel_noise, blur, dropped, offset, missing.",
        ),
        n_utterances: int = typer.Option(None, min=1, help="Use only N utterances (seeded choice)."),
        noise_dir: Path = typer.Option(
            None, exists=True, file_okay=False, help="Folder of real noise recordings (type 'file')."
        ),
        seed: int = typer.Option(
            0, min=0, max=SEED_MAX, help="Random seed; the same seed gives the same mixtures."
        ),
        workers: int = typer.Option(1, min=1, help="Worker processes."),
    ) -> None:
        """Mix clean test speech with noises at exact SNRs and degrade the lips videos."""
        from .mix import make_mixtures

        rows = make_mixtures(
            corpus,
            out,
            split=split,
            snrs=snrs,
            noise_types=noises,
            visual_conditions=visual,
            n_utterances=n_utterances,
            seed=seed,
            noise_dir=noise_dir,
            workers=workers,
        )
        n_utt = len({r["source_id"] for r in rows})
        clipped = sum(1 for r in rows if r["clip_gain"] < 1.0)
        kinds = Counter(r["noise_type"] for r in rows)
        typer.echo(
            f"{len(rows)} mixtures of {n_utt} utterances in {out} "
            f"({len(kinds)} noise types; {clipped} scaled down to avoid clipping)"
        )
