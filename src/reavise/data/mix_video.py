"""Noisy face-video test sets: ``reavise data mix-video`` (issue 12, "real lips").

Each mixture is the corpus' clean speech plus real (or synthetic) noise at one SNR, muxed
into the utterance's *full-face* video after a face-video degradation
(:mod:`reavise.data.video_degrade`). ``reavise enhance DIR/noisy`` then takes the real
video path: decode, detect the face and mouth on every frame, crop the ROIs, enhance.

The noise of a mixture is :func:`reavise.data.mix.utterance_noise`, seeded by (seed,
utterance, noise type, SNR) only, so ``mix-video`` and ``reavise data mix`` with the same
corpus, seed and noise folder hear the same noise segment at the same gain. The audio is
muxed losslessly (FLAC in MP4, 16-bit, read back and checked: SI-SDR against the intended
noisy signal over 40 dB, recorded as ``audio_si_sdr_db``); ``audio_codec="aac"`` writes
the usual AAC instead (about 28 dB on GRID: the codec, not the noise, would then limit the
scores). ``missing`` (no video) writes the noisy audio alone as ``noisy/<id>.wav``.

Layout: ``mixtures.json``, ``manifest.jsonl``, ``noisy/<id>.mp4`` (``.wav`` for missing),
``clean/<id>.wav``; ids are ``<utterance>_<noise>_snr<snr>`` (one visual condition per
folder, so the same id in two folders is the same audio under two visual conditions).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..audio import SAMPLE_RATE, atomic_write, load_audio, write_wav
from ..errors import InputError, ReaviseError
from ..metrics import si_sdr
from ..paths import safe_name
from .degrade import _run_bounds
from .manifest import MANIFEST, read_manifest, write_manifest
from .mix import (
    JOURNAL,
    SETTINGS,
    _read_rows,
    mix,
    noise_context,
    resolve_noises,
    select_utterances,
    stable_seed,
    utterance_noise,
)
from .video_degrade import degrade_face_video, mouth_track, parse_face_visual

#: SI-SDR (dB) the muxed audio must keep against the intended noisy signal (lossless codecs)
MIN_AUDIO_SI_SDR = 40.0
AUDIO_CODECS = ("flac", "aac")


def video_root(corpus_dir: Path, given: str | os.PathLike | None) -> Path:
    """Where the corpus' ``source`` videos live: ``given``, else ``corpus.json``'s source."""
    if given is not None:
        root = Path(given)
    else:
        info = corpus_dir / "corpus.json"
        try:
            root = Path(json.loads(info.read_text())["source"])
        except (OSError, json.JSONDecodeError, KeyError, TypeError):
            raise InputError(f"{info}: names no source folder of the videos; give --video-root") from None
    if not root.is_dir():
        raise InputError(f"--video-root {root}: no such folder")
    return root


def _select(corpus_dir: Path, corpus: list[dict], split: str, n: int | None, ids: Sequence[str] | None, seed: int):
    rows = select_utterances(corpus_dir, corpus, split, None if ids else n, seed)
    if ids:
        by_id = {str(r["id"]): r for r in rows}
        unknown = [i for i in ids if i not in by_id]
        if unknown:
            raise ReaviseError(f"--ids: {', '.join(unknown[:3])} not in the {split!r} split of {corpus_dir}")
        rows = [by_id[i] for i in sorted(set(ids))]
    missing = [str(r["id"]) for r in rows if not r.get("source")]
    if missing:
        raise InputError(f"{corpus_dir}: utterance {missing[0]} names no source video; mix-video needs a corpus prepared from videos")
    return rows


def _write_noisy(path: Path, frames, fps: float, noisy: np.ndarray, codec: str) -> float:
    """Write the noisy mixture (video + audio, or audio alone); SI-SDR of what was written (dB)."""
    from .. import video as V

    if frames is None:
        write_wav(path, noisy)
        got = load_audio(path)
    else:
        V.write_video(path, frames, fps, audio=noisy, sr=SAMPLE_RATE, audio_codec=codec)
        got = V.read_audio_track(path, SAMPLE_RATE)
    ref = np.clip(noisy, -1, 1)
    n = min(len(ref), len(got))
    return round(float(si_sdr(got[:n], ref[:n])), 2)


def _mix_one(job: dict) -> list[dict]:
    """All mixtures of one utterance under the folder's visual condition."""
    from .. import video as V

    row, out, seed, vis = job["row"], Path(job["out_dir"]), job["seed"], job["visual"]
    uid, speaker = str(row["id"]), str(row["speaker"])
    clean = load_audio(Path(job["corpus"]) / row["audio"]).astype(np.float64)
    frames, fps = V.read_video(Path(job["video_root"]) / row["source"])
    say = None if job["warn"] is None else (lambda msg: job["warn"](f"{uid}: {msg}"))
    mouth, found = mouth_track(frames, say) if vis.name == "occlusion" else (np.zeros((len(frames), 4)), None)
    visual_seed = stable_seed(seed, uid, vis.label, "face-visual")
    deg = degrade_face_video(frames, vis, mouth, rng=visual_seed, fps=fps)
    rows = []
    for noise_type in job["noises"]:
        mid = f"{safe_name(uid)}_{noise_type}_snr{job['snr']:g}"
        if mid in job["done"]:
            continue
        noise, extra, noise_seed = utterance_noise(job["ctx"], seed, uid, speaker, len(clean), noise_type, job["snr"])
        m = mix(clean, noise, job["snr"])
        noisy = f"noisy/{mid}{'.wav' if deg.frames is None else '.mp4'}"
        quality = _write_noisy(out / noisy, deg.frames, fps, m.noisy, job["audio_codec"])
        if quality < MIN_AUDIO_SI_SDR and job["audio_codec"] != "aac":
            raise ReaviseError(f"{out / noisy}: muxed audio SI-SDR {quality:.1f} dB < {MIN_AUDIO_SI_SDR:g} dB")
        write_wav(out / f"clean/{mid}.wav", m.clean)
        rows.append({
            "id": mid, "source_id": uid, "speaker": speaker, "split": row.get("split"),
            "text": row.get("text", ""), "source_video": str(row["source"]),
            "noise_type": noise_type, "snr_db": float(job["snr"]), "visual": vis.name,
            "severity": vis.severity, "noisy": noisy, "clean": f"clean/{mid}.wav", "audio": noisy,
            "has_video": deg.frames is not None, "fps": fps, "n_video_frames": len(frames),
            "affected_frames": int(deg.affected.sum()),
            "affected_runs": [[int(a), int(b)] for a, b in _run_bounds(deg.affected)], "object_boxes": [list(b) for b in deg.boxes],
            "clean_face_frames": None if found is None else int(found.sum()),
            "duration": len(clean) / SAMPLE_RATE, "clip_gain": m.clip_gain, "noise_gain": m.noise_gain,
            "noise_seed": noise_seed, "visual_seed": visual_seed, "audio_codec": None if deg.frames is None else job["audio_codec"],
            "audio_si_sdr_db": quality, **extra,
        })  # fmt: skip
    return rows


def _check_settings(path: Path, settings: dict) -> None:
    if not path.exists():
        return
    try:
        old = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise ReaviseError(f"{path}: not valid JSON; use a new --out folder") from None
    for key in ("corpus", "split", "seed", "snr_db", "visual", "audio_codec"):
        if old.get(key) != settings[key]:
            raise ReaviseError(
                f"{path.parent}: holds mixtures made with {key}={old.get(key)!r}, not {settings[key]!r}; use a new --out folder"
            )


def make_video_mixtures(
    corpus_dir: str | os.PathLike,
    noise_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    split: str = "test",
    snr: float = -5.0,
    noise_types: Sequence[str] | str | None = None,
    visual: str = "clean",
    n_utterances: int | None = None,
    ids: Sequence[str] | None = None,
    seed: int = 0,
    video_root_dir: str | os.PathLike | None = None,
    audio_codec: str = "flac",
    progress: bool = True,
    warn: Callable[[str], None] | None = None,
) -> list[dict]:
    """Write noisy face-video mixtures of ``split`` (see the module docstring); returns the rows.

    ``ids`` (utterance ids) wins over ``n_utterances`` (a seeded choice, as in
    :func:`reavise.data.mix.make_mixtures`, so the same seed picks the same utterances).
    Resumable: mixtures whose files exist from an earlier run with the same settings are kept.
    """
    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    if "," in visual:
        raise ReaviseError(f"--visual {visual!r}: one condition per --out folder")
    vis = parse_face_visual(visual)
    if audio_codec not in AUDIO_CODECS:
        raise ReaviseError(f"--audio-codec must be one of {', '.join(AUDIO_CODECS)}, got {audio_codec!r}")
    if not np.isfinite(snr):
        raise ReaviseError(f"--snr: must be a finite number of dB, got {snr}")
    if not Path(noise_dir).is_dir():
        raise InputError(f"NOISE_DIR {noise_dir}: no such folder")
    noises, real_noise, part = resolve_noises(noise_types, noise_dir, split)
    corpus = read_manifest(corpus_dir)
    rows = _select(corpus_dir, corpus, split, n_utterances, ids, seed)
    vroot = video_root(corpus_dir, video_root_dir)
    for r in rows[:1]:
        if not (vroot / r["source"]).exists():
            raise InputError(f"{vroot / r['source']}: no such video (is --video-root right?)")
    ctx = noise_context(corpus_dir, corpus, rows, noises, real_noise, noise_dir, seed)
    settings = {
        "version": 1, "kind": "face-video", "corpus": str(corpus_dir.resolve()), "split": split,
        "seed": int(seed), "snr_db": float(snr), "noise_types": noises, "visual": vis.spec,
        "n_utterances": len(rows), "noise_dir": str(Path(noise_dir).resolve()), "noise_split": part,
        "video_root": str(vroot.resolve()), "audio_codec": audio_codec, "sample_rate": SAMPLE_RATE,
    }  # fmt: skip
    settings_path = out_dir / SETTINGS
    _check_settings(settings_path, settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(settings_path, lambda tmp: Path(tmp).write_text(json.dumps(settings, indent=2)))

    journal = out_dir / JOURNAL
    done = {
        r["id"]: r for r in _read_rows(out_dir / MANIFEST) + _read_rows(journal)
        if "id" in r and (out_dir / r["noisy"]).exists() and (out_dir / r["clean"]).exists()
    }  # fmt: skip
    base = {
        "corpus": str(corpus_dir), "out_dir": str(out_dir), "seed": int(seed), "visual": vis,
        "snr": float(snr), "noises": noises, "ctx": ctx, "video_root": str(vroot),
        "audio_codec": audio_codec, "warn": warn,
    }  # fmt: skip
    order = [(r, [f"{safe_name(str(r['id']))}_{nt}_snr{snr:g}" for nt in noises]) for r in rows]
    with open(journal, "a") as jf, tqdm(total=len(order), desc=f"mix-video {vis.label}", unit="utt", disable=not progress) as bar:
        for r, mids in order:
            if all(m in done for m in mids):
                bar.update(1)
                continue
            job = {**base, "row": r, "done": {m for m in mids if m in done}}
            for nr in _mix_one(job):
                done[nr["id"]] = nr
                jf.write(json.dumps(nr, sort_keys=True) + "\n")
            jf.flush()
            bar.update(1)
    out_rows = [done[m] for _, mids in order for m in mids]
    write_manifest(out_dir, out_rows)
    journal.unlink(missing_ok=True)
    return out_rows
