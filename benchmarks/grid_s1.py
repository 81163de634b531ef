"""The shipped GRID-s1 priors on held-out GRID s1 mixtures: SI-SDR per visual condition,
paired differences against the A-VAE (mean, 95 % t-interval), through the user's commands.

    reavise data prepare grid ../shared/data/grid-s1 --out runs/grid/corpus --seed 0
    reavise data mix runs/grid/corpus --out runs/grid/testmix --split test --snrs -5 \\
        --noises babble,cafe,street,car --visual clean,occlusion:0.7,missing \\
        --n-utterances 24 --noise-dir ../shared/data/noise-real --seed 0
    python benchmarks/grid_s1.py runs/grid/testmix --out runs/grid/eval --utterances 12

Each condition's mixtures are enhanced with ``reavise enhance DIR --model NAME --algo mcem``
(lips found as ``lips/<id>.npy``; "missing" has none) and scored with ``reavise evaluate``;
the A-VAE runs once (the noisy audio is the same in every visual condition).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from scipy import stats

MODELS = ("grid-s1-a-vae", "grid-s1-av-concat", "grid-s1-av-attention")
CONDITIONS = {"clean": "clean", "occlusion0.7": "mouth occluded in 70 % of frames", "missing": "no video"}


def views(mix: Path, out: Path, n_utt: int) -> dict[str, Path]:
    """Per condition, a folder noisy/ clean/ lips/ of links to the first n_utt utterances."""
    rows = [json.loads(x) for x in (mix / "manifest.jsonl").read_text().splitlines() if x.strip()]
    keep = sorted({r["source_id"] for r in rows})[:n_utt]
    dirs = {}
    for tag in CONDITIONS:
        d = out / "mixtures" / tag
        for sub in ("noisy", "clean", "lips"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        for r in rows:
            if r["source_id"] in keep and r["id"].endswith("_" + tag):
                stem = r["id"].rsplit("_", 1)[0]
                for key, sub, ext in (("noisy", "noisy", ".wav"), ("clean", "clean", ".wav"), ("lips", "lips", ".npy")):
                    link = d / sub / (stem + ext)
                    if r.get(key) and not link.exists():
                        link.symlink_to((mix / r[key]).resolve())
        dirs[tag] = d
    return dirs


def scores(path: Path) -> dict[str, float]:
    with open(path) as f:
        return {r["file"]: float(r["si_sdr"]) for r in csv.DictReader(f)}


def ci(d: np.ndarray) -> tuple[float, float]:
    return float(d.mean()), float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mix", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--utterances", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--extra", action="append", default=[], metavar="LABEL=CHECKPOINT",
                    help="another prior to score beside the shipped ones (e.g. reliability=runs/grid/rel/model.pt)")
    args = ap.parse_args()
    extra = dict(x.split("=", 1) for x in args.extra)
    models = [*MODELS, *extra]
    reavise = str(Path(sys.executable).parent / "reavise")
    dirs = views(args.mix, args.out, args.utterances)
    res: dict[tuple[str, str], dict[str, float]] = {}
    rtf: dict[tuple[str, str], float] = {}
    for model in models:
        for tag, d in dirs.items():
            if model == "grid-s1-a-vae" and tag != "clean":
                res[model, tag], rtf[model, tag] = res[model, "clean"], rtf[model, "clean"]
                continue
            o = args.out / "enhanced" / f"{model}-{tag}"
            run = subprocess.run([reavise, "enhance", str(d / "noisy"), "-o", str(o), "--model", extra.get(model, model), "--algo",
                                  "mcem", "--seed", str(args.seed), "--threads", "1", "--overwrite"],
                                 check=True, capture_output=True, text=True)  # fmt: skip
            found = re.search(r"real-time factor ([0-9.]+)", run.stdout + run.stderr)
            rtf[model, tag] = float(found.group(1)) if found else float("nan")
            subprocess.run([reavise, "evaluate", str(o), str(d / "clean"), "--noisy", str(d / "noisy"),
                            "--csv", str(o) + ".csv"], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
            res[model, tag] = scores(Path(str(o) + ".csv"))
    print("| prior | visual | SI-SDR (dB) | vs grid-s1-a-vae [95 % CI] | vs grid-s1-av-concat [95 % CI] "
          "| MCEM real-time factor | n |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for tag, label in CONDITIONS.items():
        base = res["grid-s1-a-vae", tag]
        keys = sorted(base)
        for model in models:
            s = np.array([res[model, tag][k] for k in keys])
            row = f"| `{model}` | {label} | {s.mean():.2f} |"
            for ref in ("grid-s1-a-vae", "grid-s1-av-concat"):
                if ref == model:
                    row += " |"
                    continue
                m, h = ci(s - np.array([res[ref, tag][k] for k in keys]))
                row += f" {m:+.2f} [{m - h:+.2f}, {m + h:+.2f}] |"
            print(row + f" {rtf[model, tag]:.2f} | {len(keys)} |")


if __name__ == "__main__":
    main()
