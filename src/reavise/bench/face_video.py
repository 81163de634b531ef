"""Benchmark mixtures whose visual conditions are drawn on the *face video* (``visual_on:
face_video``): the real path of ``reavise enhance VIDEO``, cached once per noisy video.

For each (visual condition, SNR), :func:`reavise.data.mix_video.make_video_mixtures` writes
the noisy face videos into ``OUT/video/<condition>/snr<snr>/`` (an object over the mouth, a
blurred face, dropped frames... drawn on the full frames). Each video is then decoded and
run through the project's face and mouth detector by
:func:`reavise.enhance.load_video_input`, the function ``reavise enhance VIDEO`` calls, and
its audio track, mouth ROIs (float32, as the detector gave them) and validity mask are
written in the ``reavise data mix`` layout under ``OUT/mixtures/``, so every method of the
grid enhances exactly what ``reavise enhance`` would have, and the detection runs once per
video instead of once per method. ``missing`` (no video) keeps the noisy audio alone.

Mixture ids are ``<utterance>_<noise>_snr<snr>_<condition>``, as ``reavise data mix``.
"""

from __future__ import annotations

import json
import shutil
from concurrent.futures import as_completed
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..audio import SAMPLE_RATE, atomic_write, load_audio, write_wav
from ..data.manifest import MANIFEST, read_manifest, write_manifest
from ..data.pool import data_pool
from ..data.video_degrade import parse_face_visual
from ..paths import safe_name

SETTINGS = "mixtures.json"


def _folder_tag(spec: str) -> str:
    return safe_name(spec.replace(":", ""))


def _mix_folder(args: dict) -> list[dict]:
    """One (condition, SNR) folder of noisy face videos (run in a worker)."""
    from ..data.mix_video import make_video_mixtures

    return make_video_mixtures(**args, progress=False)


def _copy(src: Path, dst: Path) -> None:
    """``src`` to ``dst`` whole or not at all (temp file + rename)."""
    atomic_write(dst, lambda tmp: shutil.copyfile(src, tmp))


def _detect_one(job: dict) -> dict:
    """Decode one noisy video, detect the mouth, write its audio / lips / validity (a worker)."""
    from ..enhance import load_video_input

    out = Path(job["out"])
    row, mid = job["row"], job["id"]
    src = Path(job["video_dir"]) / row["noisy"]
    noisy = f"noisy/{mid}.wav"
    lips_rel = valid_rel = None
    fps = float(row.get("fps") or 25.0)
    if row.get("has_video"):
        audio, lips, _ = load_video_input(src, with_lips=True)
        lips_rel, valid_rel = f"lips/{mid}.npy", f"valid/{mid}.npy"
        frames = np.ascontiguousarray(lips.frames, dtype=np.float32)
        atomic_write(out / lips_rel, lambda tmp: np.save(tmp, frames), suffix=".npy")
        valid = np.ones(len(frames), bool) if lips.valid is None else np.asarray(lips.valid, bool)
        atomic_write(out / valid_rel, lambda tmp: np.save(tmp, valid), suffix=".npy")
        fps = float(lips.fps)
        n_valid = int(valid.sum())
        write_wav(out / noisy, audio)
    else:  # no video: mix-video wrote the noisy WAV itself
        audio = load_audio(src)
        n_valid = 0
        _copy(src, out / noisy)
    clean = f"clean/{mid}.wav"
    _copy(Path(job["video_dir"]) / row["clean"], out / clean)
    return {
        "id": mid, "source_id": row["source_id"], "speaker": row["speaker"], "split": row.get("split"),
        "text": row.get("text", ""), "noise_type": row["noise_type"], "snr_db": float(row["snr_db"]),
        "visual": row["visual"], "severity": float(row["severity"]), "visual_on": "face_video",
        "noisy": noisy, "audio": noisy, "clean": clean, "lips": lips_rel, "valid": valid_rel, "fps": fps,
        "duration": len(audio) / SAMPLE_RATE, "video": str(src), "affected_frames": row.get("affected_frames"),
        "affected_runs": row.get("affected_runs"), "detected_frames": n_valid,
        "n_video_frames": row.get("n_video_frames"),
    }  # fmt: skip


def make_face_video_mixtures(
    corpus: Path, out_dir: Path, video_dir: Path, *, split: str, snrs, noise_types, visual,
    n_utterances: int, seed: int, noise_dir: Path, workers: int = 1, progress: bool = True,
) -> list[dict]:  # fmt: skip
    """Noisy face videos for every (condition, SNR), detected, in the ``data mix`` layout
    under ``out_dir`` (see the module docstring); resumable. Returns the manifest rows."""
    conds = [parse_face_visual(v) for v in visual]
    settings = {
        "version": 1, "kind": "face-video-detected", "corpus": str(Path(corpus).resolve()), "split": split,
        "snrs": [float(s) for s in snrs], "noise_types": list(noise_types), "visual": [c.spec for c in conds],
        "n_utterances": int(n_utterances), "seed": int(seed), "noise_dir": str(Path(noise_dir).resolve()),
    }  # fmt: skip
    settings_path = out_dir / SETTINGS
    if settings_path.exists() and (out_dir / MANIFEST).exists():
        if json.loads(settings_path.read_text()) == settings:
            return read_manifest(out_dir)
    folders = [
        (c, float(s), Path(video_dir) / _folder_tag(c.spec) / f"snr{float(s):g}") for c in conds for s in snrs
    ]
    jobs = [
        dict(corpus_dir=str(corpus), noise_dir=str(noise_dir), out_dir=str(d), split=split, snr=s,
             noise_types=list(noise_types), visual=c.spec, n_utterances=n_utterances, seed=seed)
        for c, s, d in folders
    ]  # fmt: skip
    per_folder: dict[str, list[dict]] = {}
    with data_pool(workers) as pool, tqdm(total=len(jobs), desc="face videos", unit="set", disable=not progress) as bar:
        futs = {pool.submit(_mix_folder, j): j["out_dir"] for j in jobs}
        for f in as_completed(futs):
            per_folder[futs[f]] = f.result()
            bar.update(1)
    tasks = []
    for c, _s, d in folders:
        for r in per_folder[str(d)]:
            mid = f"{r['id']}_{_folder_tag(c.spec)}"
            tasks.append({"out": str(out_dir), "video_dir": str(d), "row": r, "id": mid})
    done: dict[str, dict] = {}
    todo = []
    for t in tasks:
        files = [out_dir / "noisy" / f"{t['id']}.wav", out_dir / "clean" / f"{t['id']}.wav"]
        if t["row"].get("has_video"):
            files.append(out_dir / "valid" / f"{t['id']}.npy")
        journal = out_dir / ".detected" / f"{t['id']}.json"
        if journal.exists() and all(p.exists() for p in files):
            done[t["id"]] = json.loads(journal.read_text())
        else:
            todo.append(t)
    (out_dir / ".detected").mkdir(parents=True, exist_ok=True)

    def record(row: dict) -> None:
        done[row["id"]] = row
        atomic_write(out_dir / ".detected" / f"{row['id']}.json", lambda tmp: Path(tmp).write_text(json.dumps(row)))

    with tqdm(total=len(tasks), initial=len(done), desc="detect mouths", unit="video", disable=not progress) as bar:
        if workers <= 1:
            for t in todo:
                record(_detect_one(t))
                bar.update(1)
        else:
            with data_pool(workers) as pool:
                for f in as_completed([pool.submit(_detect_one, t) for t in todo]):
                    record(f.result())
                    bar.update(1)
    rows = [done[t["id"]] for t in tasks]
    write_manifest(out_dir, rows)
    atomic_write(settings_path, lambda tmp: Path(tmp).write_text(json.dumps(settings, indent=2)))
    return rows


def check_face_video_args(noise_dir: Path | None, corpus_path: Path | None) -> str | None:
    """Why ``visual_on: face_video`` cannot run with this config (None: it can)."""
    if corpus_path is None:
        return "needs a prepared corpus with its videos (corpus.path), not a synthetic one"
    if noise_dir is None:
        return "needs noise_dir (a folder of real noise recordings)"
    return None

