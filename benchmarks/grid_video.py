"""The shipped GRID-s1 priors on noisy *face videos* (issue 12, "real lips"): the visual
degradations are drawn on the full-face video, and ``reavise enhance VIDEO`` runs the
project's face/mouth detector on what it gets. SI-SDR (and PESQ/STOI) per prior and
condition, paired differences against the A-VAE (mean, 95 % t-interval), how often the
detector held the face on the degraded frames, and wall time per file.

    python benchmarks/grid_video.py /work/data/grid-s1 ../shared/data/noise-real \\
        --ref-mix /work/data/testmix-m5 --out /work/data/video-bench --utterances 12

The utterances are the first ``--utterances`` (by id) of ``--ref-mix`` (a ``reavise data
mix`` set: the same corpus, seed and noise folder give the very same noise segments and
gains, so these mixtures carry the same noisy audio as the ROI-level ones), mixed with its
noise types at its SNR by ``reavise data mix-video``, one folder per condition. Every
(prior, condition) is ``reavise enhance DIR/noisy --algo mcem --seed 0 --threads 1`` then
``reavise evaluate``; the A-VAE runs once, on the audio-only folder (the noisy audio is the
same in every condition). Finished runs are kept (their CSV exists): rerunning resumes.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

MODELS = ("grid-s1-a-vae", "grid-s1-av-concat", "grid-s1-av-attention")
CONDITIONS = {  # tag: (mix-video --visual, label)
    "clean": ("clean", "clean face"),
    "occlusion0.7": ("occlusion:0.7", "mouth occluded in 70 % of frames"),
    "missing": ("missing", "no video (audio only)"),
    "occlusion0.3": ("occlusion:0.3", "mouth occluded in 30 % of frames"),
    "blur0.5": ("blur:0.5", "face blurred (sigma 4.3 px)"),
    "dropped0.3": ("dropped:0.3", "30 % of frames dropped (frozen or black)"),
}


def reavise(*args: str, **kw) -> subprocess.CompletedProcess:
    """``reavise ARGS`` on one thread; a failure raises with the command's last stderr lines."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "reavise", *args], capture_output=True, text=True, env=env, **kw)
    if run.returncode != 0:
        tail = "\n".join(run.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"reavise {' '.join(args[:2])} ... exited {run.returncode}:\n{tail}")
    return run


def reference(ref_mix: Path, n_utt: int) -> tuple[list[str], list[str], float, int]:
    """(utterance ids, noise types, SNR, seed) of a ``reavise data mix`` folder."""
    rows = [json.loads(x) for x in (ref_mix / "manifest.jsonl").read_text().splitlines() if x.strip()]
    settings = json.loads((ref_mix / "mixtures.json").read_text())
    ids = sorted({r["source_id"] for r in rows})[:n_utt]
    return ids, list(settings["noise_types"]), float(settings["snrs"][0]), int(settings["seed"])


def scores(path: Path) -> dict[str, dict[str, float]]:
    with open(path) as f:
        return {r["file"]: {k: float(v) for k, v in r.items() if k != "file" and v not in ("", None)} for r in csv.DictReader(f)}


def ci(d: np.ndarray) -> tuple[float, float]:
    return float(d.mean()), float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)))


def detector_stats(d: Path) -> dict:
    """Per condition folder: the detector (as ``reavise enhance`` runs it) on each distinct
    video: frames with a face held, on the degraded frames and the others, and on occluded
    frames how often the mouth it placed lies inside the object (the model got the object)."""
    from reavise import video as V

    rows = [json.loads(x) for x in (d / "manifest.jsonl").read_text().splitlines() if x.strip()]
    seen, out = set(), {"videos": 0, "frames": 0, "valid": 0, "affected": 0, "valid_affected": 0,
                        "mouth_on_object": 0, "faceless_videos": 0, "seconds": 0.0}  # fmt: skip
    for r in rows:
        if not r["has_video"] or r["source_id"] in seen:
            continue
        seen.add(r["source_id"])
        t0 = time.perf_counter()
        frames, _ = V.read_video(d / r["noisy"])
        poses, valid = V.mouth_poses(frames)
        out["seconds"] += time.perf_counter() - t0
        aff = np.zeros(len(frames), dtype=bool)
        inside = np.zeros(len(frames), dtype=bool)
        for start, stop, x0, y0, x1, y1 in r["object_boxes"]:
            aff[start:stop] = True
            p = poses[start:stop]
            inside[start:stop] = (p[:, 0] >= x0) & (p[:, 0] < x1) & (p[:, 1] >= y0) & (p[:, 1] < y1)
        for start, stop in r.get("affected_runs", []):
            aff[start:stop] = True  # frames blurred, dropped (frozen or black), occluded
        out["videos"] += 1
        out["faceless_videos"] += int(not valid.any())
        out["frames"] += len(frames)
        out["valid"] += int(valid.sum())
        out["affected"] += int(aff.sum())
        out["valid_affected"] += int((valid & aff).sum())
        out["mouth_on_object"] += int((valid & inside).sum())
    return out


def run_one(model: str, tag: str, d: Path, o: Path, seed: int) -> dict:
    """Enhance + evaluate one (prior, condition); kept when its CSV exists."""
    csv_path, meta = Path(str(o) + ".csv"), Path(str(o) + ".json")
    if csv_path.exists() and meta.exists():
        return {**json.loads(meta.read_text()), "scores": scores(csv_path)}
    t0 = time.perf_counter()
    run = reavise("enhance", str(d / "noisy"), "-o", str(o), "--model", model, "--algo", "mcem",
                  "--seed", str(seed), "--threads", "1")  # fmt: skip (no --overwrite: a killed run resumes)
    wall = time.perf_counter() - t0
    n = len(list((d / "noisy").iterdir()))
    noisy = ["--noisy", str(d / "noisy")] if tag == "missing" else []
    reavise("evaluate", str(o), str(d / "clean"), *noisy, "--csv", str(csv_path))
    info = {"wall_s": wall, "n": n, "wall_per_file_s": wall / n, "stdout": run.stdout.strip().splitlines()[-1:],
            "warnings": [x for x in run.stderr.splitlines() if "warn" in x.lower()][:5]}  # fmt: skip
    meta.write_text(json.dumps(info, indent=1))
    print(f"{model} {tag}: {wall:.0f} s for {n} files", flush=True)
    return {**info, "scores": scores(csv_path)}


def per_file_wall(r: dict) -> float:
    """Wall seconds per file the run enhanced (a resumed run skipped the finished ones)."""
    found = re.search(r"enhanced (\d+) file", " ".join(r.get("stdout", [])))
    n = int(found.group(1)) if found else r["n"]
    return r["wall_s"] / max(n, 1)


def table(res: dict, det: dict, tags: list[str]) -> str:
    lines = ["| prior | visual (face video) | SI-SDR (dB) | PESQ | ESTOI | vs grid-s1-a-vae [95 % CI] | wall s/file | n |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    base = res.get(("grid-s1-a-vae", "missing"))
    for tag in tags:
        for model in MODELS:
            r = res.get((model, "missing" if model == "grid-s1-a-vae" else tag))
            if r is None:
                continue
            keys = sorted(r["scores"])
            cols = {m: np.array([r["scores"][k].get(m, np.nan) for k in keys]) for m in ("si_sdr", "pesq", "estoi")}
            col = cols.__getitem__
            row = f"| `{model}` | {CONDITIONS[tag][1]} | {col('si_sdr').mean():.2f} | {np.nanmean(col('pesq')):.2f} | {np.nanmean(col('estoi')):.3f} |"
            if model == "grid-s1-a-vae" or base is None:
                row += " |"
            else:
                m, h = ci(col("si_sdr") - np.array([base["scores"][k]["si_sdr"] for k in keys]))
                row += f" {m:+.2f} [{m - h:+.2f}, {m + h:+.2f}] |"
            lines.append(row + f" {per_file_wall(r):.2f} | {len(keys)} |")
    lines += ["", "| visual | videos | frames with a face held | on degraded frames | mouth placed on the object | detection s/video |",
              "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for tag in tags:
        s = det.get(tag)
        if not s or not s["videos"]:
            continue
        on_aff = f"{s['valid_affected'] / s['affected']:.1%} of {s['affected']}" if s["affected"] else "-"
        obj = f"{s['mouth_on_object'] / s['affected']:.1%}" if tag.startswith("occlusion") and s["affected"] else "-"
        lines.append(f"| {CONDITIONS[tag][1]} | {s['videos']} | {s['valid'] / s['frames']:.1%} | {on_aff} | {obj} | {s['seconds'] / s['videos']:.2f} |")
    return "\n".join(lines)


def paired_table(res: dict, tags: list[str]) -> str:
    """The AV priors' SI-SDR per condition against grid-s1-a-vae and grid-s1-av-concat
    (paired, 95 % t-intervals): the README / model-card table."""
    lines = ["| prior | visual (face video) | SI-SDR (dB) | vs `grid-s1-a-vae` [95 % CI] | vs `grid-s1-av-concat` [95 % CI] |",
             "| --- | --- | --- | --- | --- |"]  # fmt: skip
    base = res.get(("grid-s1-a-vae", "missing"))
    if base is not None:
        lines.append(f"| `grid-s1-a-vae` | (audio only) | {np.mean([v['si_sdr'] for v in base['scores'].values()]):.2f} | | |")

    def diff(r, ref, keys):
        if ref is None:
            return ""
        m, h = ci(np.array([r["scores"][k]["si_sdr"] - ref["scores"][k]["si_sdr"] for k in keys]))
        return f"{m:+.2f} [{m - h:+.2f}, {m + h:+.2f}]"

    for model in MODELS[1:]:
        for tag in tags:
            r = res.get((model, tag))
            if r is None:
                continue
            keys = sorted(r["scores"])
            si = np.mean([r["scores"][k]["si_sdr"] for k in keys])
            vs_concat = "" if model == "grid-s1-av-concat" else diff(r, res.get(("grid-s1-av-concat", tag)), keys)
            lines.append(f"| `{model}` | {CONDITIONS[tag][1]} | {si:.2f} | {diff(r, base, keys)} | {vs_concat} |")
    return "\n".join(lines)


def timing(out: Path, n: int, seed: int) -> str:
    """Wall time per file, in one process on one thread, back to back (the enhance runs above
    share the machine's 2 cores with other jobs, so their wall times are only indicative):
    the video path (decode the mp4 + its audio track, detect and track the mouth, crop the
    ROIs, enhance) against the audio-only path (read the WAV, enhance) on the same files."""
    import torch

    from reavise import video as V
    from reavise.audio import load_audio
    from reavise.inference import build_algorithm, enhance_waveforms
    from reavise.inference.pipeline import VideoInput
    from reavise.models.checkpoint import load_checkpoint
    from reavise.pretrained import resolve

    torch.set_num_threads(1)
    names = sorted(p.stem for p in (out / "mixtures" / "clean" / "noisy").glob("*.mp4"))[:n]
    algo = build_algorithm("mcem")
    t: dict[str, list[float]] = {k: [] for k in ("decode", "detect", "em_av", "read_wav", "em_a")}
    priors = {m: load_checkpoint(resolve(m)) for m in ("grid-s1-av-concat", "grid-s1-a-vae")}
    for name in names:
        t0 = time.perf_counter()
        frames, fps = V.read_video(out / "mixtures" / "clean" / "noisy" / f"{name}.mp4")
        audio = V.read_audio_track(out / "mixtures" / "clean" / "noisy" / f"{name}.mp4")
        t1 = time.perf_counter()
        rois, valid = V.extract_mouth_rois(frames)
        t2 = time.perf_counter()
        enhance_waveforms(priors["grid-s1-av-concat"], algo, [audio], [VideoInput(rois, fps, valid)], seed=seed)
        t3 = time.perf_counter()
        x = load_audio(out / "mixtures" / "missing" / "noisy" / f"{name}.wav")
        t4 = time.perf_counter()
        enhance_waveforms(priors["grid-s1-a-vae"], algo, [x], [None], seed=seed)
        t5 = time.perf_counter()
        for k, v in zip(t, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
            t[k].append(v)
    m = {k: float(np.mean(v)) for k, v in t.items()}
    (out / "timing.json").write_text(json.dumps({"files": names, **m}, indent=1))
    return (f"| path | decode mp4 + audio | detect + track + crop | EM (MCEM) | total s/file |\n| --- | --- | --- | --- | --- |\n"
            f"| video, `grid-s1-av-concat` | {m['decode']:.2f} | {m['detect']:.2f} | {m['em_av']:.2f} | {m['decode'] + m['detect'] + m['em_av']:.2f} |\n"
            f"| audio only (WAV), `grid-s1-a-vae` | {m['read_wav']:.3f} | - | {m['em_a']:.2f} | {m['read_wav'] + m['em_a']:.2f} |\n"
            f"({len(names)} files of {out / 'mixtures' / 'clean'}, one thread)")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", type=Path)
    ap.add_argument("noise_dir", type=Path)
    ap.add_argument("--ref-mix", type=Path, required=True, help="a `reavise data mix` folder: its utterances, noises, SNR, seed")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--utterances", type=int, default=12)
    ap.add_argument("--conditions", default=",".join(CONDITIONS), help="tags, in the order to run")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--table-only", action="store_true", help="only tabulate the finished runs")
    ap.add_argument("--timing", type=int, default=0, metavar="N", help="then time both paths on N files in one process")
    args = ap.parse_args()
    ids, noises, snr, seed = reference(args.ref_mix, args.utterances)
    tags = [t for t in args.conditions.split(",") if t]
    models = [m for m in args.models.split(",") if m]
    res: dict = {}
    det: dict = {}
    for tag in [] if args.table_only else tags:
        d = args.out / "mixtures" / tag
        reavise("data", "mix-video", str(args.corpus), str(args.noise_dir), "--out", str(d), "--snr", f"{snr:g}",
                "--noises", ",".join(noises), "--visual", CONDITIONS[tag][0], "--ids", ",".join(ids),
                "--seed", str(seed), "--no-progress")  # fmt: skip
    for tag in tags:  # A-VAE first, on the audio-only folder
        d = args.out / "mixtures" / tag
        for model in models:
            if model == "grid-s1-a-vae" and tag != "missing":
                continue
            o = args.out / "enhanced" / f"{model}-{tag}"
            if args.table_only and not Path(str(o) + ".json").exists():
                continue
            try:
                res[model, tag] = run_one(model, tag, d, o, seed)
            except RuntimeError as exc:  # one failed run must not lose the others
                print(f"{model} {tag}: FAILED {exc}", flush=True)
        cached = d / "detector.json"
        if tag != "missing" and cached.exists():
            det[tag] = json.loads(cached.read_text())
        elif tag != "missing" and (d / "manifest.jsonl").exists():
            det[tag] = detector_stats(d)
            cached.write_text(json.dumps(det[tag], indent=1))
        (args.out / "table.md").write_text(table(res, det, [t for t in tags if any(k[1] == t for k in res)]) + "\n")
    (args.out / "detector.json").write_text(json.dumps(det, indent=1))
    print(table(res, det, tags))
    print("\n" + paired_table(res, tags))
    if args.timing:
        print("\n" + timing(args.out, args.timing, seed))


if __name__ == "__main__":
    main()
