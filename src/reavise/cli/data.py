"""``reavise data ...``: synthesise a corpus, preview it, prepare a real one, mix test sets
(the work: ``reavise.data``)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import typer

from .options import SEED_MAX, fraction, output_dir, output_file, positive

#: help of the ``reavise data`` group
HELP = "Corpora: synthesise, prepare, mix, preview."



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
    from ..data.synth import synthesize_corpus

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
    from ..data.synth import preview_sheet

    path = preview_sheet(corpus, out, real=real, n=n, seed=seed)
    typer.echo(str(path))



def prepare(
    corpus: str = typer.Argument(
        ..., help="tcd-timit | ntcd-timit | grid | lrs3 | generic (any folder of talking-face videos) "
        "| audio (any folder of clean speech, no video: <speaker>/<utt>.wav|flac)"
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
    """Prepare a real corpus: 16 kHz audio, 67x67 mouth ROIs and validity masks (none for audio), manifest."""
    from ..data.prepare import CORPORA, SKIPPED, prepare_corpus
    from ..errors import ReaviseError

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
    from ..data.mix import make_mixtures

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


def mix_video_command(
    corpus: Path = typer.Argument(
        ..., exists=True, file_okay=False, help="Corpus prepared from videos (manifest rows name a source video)."
    ),
    noise_dir: Path = typer.Argument(
        ..., exists=True, file_okay=False, help="Noise folder: per-type sub-folders of recordings, or flat (type 'file')."
    ),
    out: Path = typer.Option(
        ..., "--out", file_okay=False, callback=output_dir, help="Output folder (one visual condition)."
    ),
    split: str = typer.Option("test", help="Corpus split to mix."),
    snr: str = typer.Option("-5", "--snr", help="SNR in dB (any finite number, negative included)."),
    noises: str = typer.Option(None, help="Comma-separated noise types (default: every sub-folder of NOISE_DIR)."),
    visual: str = typer.Option(
        "clean", help="One face-video condition, name[:severity 0..1]: clean, occlusion, blur, dropped, missing."
    ),
    n: int = typer.Option(None, "--n", min=1, help="Use only N utterances (seeded choice, as `data mix`)."),
    ids: str = typer.Option(None, "--ids", help="Comma-separated utterance ids (instead of --n)."),
    video_root: Path = typer.Option(
        None, exists=True, file_okay=False, help="Folder the manifest's source videos are relative to (default: corpus.json's source)."
    ),
    audio_codec: str = typer.Option("flac", help="Muxed audio: flac (lossless, checked) or aac (lossy, ~28 dB SI-SDR)."),
    seed: int = typer.Option(0, min=0, max=SEED_MAX, help="Random seed; the same seed gives the same noise as `data mix`."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:  # fmt: skip
    """Noisy face videos: degrade the full-face video, mux the noisy audio (reavise enhance DIR/noisy)."""
    from ..data.mix import parse_names
    from ..data.mix_video import make_video_mixtures
    from ..errors import ReaviseError

    try:
        snr_db = float(snr)
    except ValueError:
        raise ReaviseError(f"--snr: {snr!r} is not a number of dB") from None

    rows = make_video_mixtures(
        corpus, noise_dir, out, split=split, snr=snr_db, noise_types=noises, visual=visual,
        n_utterances=n, ids=parse_names(ids) if ids else None, seed=seed, video_root_dir=video_root,
        audio_codec=audio_codec, progress=progress, warn=lambda m: typer.echo(f"warning: {m}", err=True),
    )  # fmt: skip
    n_utt = len({r["source_id"] for r in rows})
    worst = min((r["audio_si_sdr_db"] for r in rows), default=float("nan"))
    typer.echo(
        f"{len(rows)} face-video mixtures of {n_utt} utterances in {out} ({rows[0]['visual'] if rows else visual}; "
        f"muxed audio SI-SDR >= {worst:.1f} dB)"
    )


def holdout_cmd(
    corpus: Path = typer.Argument(..., exists=True, file_okay=False, help="Corpus folder (with manifest.jsonl)."),
    out: Path = typer.Option(..., "--out", file_okay=False, callback=output_dir, help="Folder of the view to write."),
    n: int = typer.Option(..., "--n", min=1, help="Utterances to hold out."),
    source: str = typer.Option("train", "--from", help="Split they come from."),
    name: str = typer.Option("dev", "--name", help="Name of the held-out split."),
    seed: int = typer.Option(0, "--seed", min=0, max=SEED_MAX, help="Random seed of the draw."),
) -> None:
    """Hold out N utterances of a split as your own validation split (a view: no copies)."""
    from ..data.manifest import hold_out

    counts = hold_out(corpus, out, n, seed, source=source, name=name)
    typer.echo(f"{out}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + f" (seed {seed})")


def register(app: typer.Typer) -> None:
    """Add the ``data`` commands (synth, preview, prepare, mix, mix-video, holdout) to ``app``."""
    app.command("synth")(synth_cmd)
    app.command("preview")(preview_cmd)
    app.command("prepare")(prepare)
    app.command("mix")(mix_command)
    app.command("mix-video")(mix_video_command)
    app.command("holdout")(holdout_cmd)
