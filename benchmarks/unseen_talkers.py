"""The GRID-s1 priors on talkers they never heard (issue 12, item 5): speechocean762 (64
non-native talkers, no video) and the NTCD-TIMIT sample (one talker, with lips), against
the GRID s1 test mixtures and the speaker-independent A-VAE trained on TCD-TIMIT.

    reavise data prepare audio ../shared/data/speechocean762 --out runs/so762
    python benchmarks/unseen_talkers.py --so762 runs/so762 --shared ../shared/data \\
        --grid-set runs/grid/eval/mixtures/clean --out runs/unseen

Sets (all at -5 dB with the real noises babble, cafe, street, car, the noise bank's test part):
- ``so762``: one utterance per talker (the first by id), 64 talkers; the i-th talker (sorted)
  gets noise type i mod 4, so 16 mixtures per type; no video, so AV priors run audio-only.
- ``ntcd``: the NTCD-TIMIT sample's own ``noisy.wav`` plus its ``clean.wav`` mixed with the 4
  noises (5 mixtures of one talker), with its lips (converted to the reavise layout);
  ``ntcd-novideo`` is the same audio without lips.
- ``grid-s1`` (``--grid-set``): a folder ``noisy/ clean/ lips/`` of GRID s1 test mixtures,
  e.g. the clean-face view that ``benchmarks/grid_s1.py`` writes (48 mixtures in the README).

Each prior enhances each set with ``reavise enhance DIR/noisy --algo mcem --seed 0 --threads 1``
and is scored by ``reavise evaluate``; finished (set, prior) pairs are reused on a rerun.
``tcd-timit-a-vae`` is ``reavise import-checkpoint`` of the published A-VAE.
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

NOISES = ("babble", "cafe", "street", "car")
SNR = -5
MODELS = ("grid-s1-a-vae", "tcd-timit-a-vae", "grid-s1-av-concat", "grid-s1-av-attention", "a-vae-synth")
BASES = ("grid-s1-a-vae", "tcd-timit-a-vae")
REAVISE = str(Path(sys.executable).parent / "reavise")


def cli(*args: str, quiet: bool = True) -> subprocess.CompletedProcess:
    """Run one reavise command; stop with its message on failure."""
    run = subprocess.run([REAVISE, *args], capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"reavise {' '.join(args)} failed:\n{run.stderr.strip()}")
    if not quiet:
        print(run.stdout.strip(), file=sys.stderr)
    return run


def read_rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def write_view(path: Path, rows: list[dict]) -> Path:
    """A one-split corpus view: manifest rows with absolute paths (nothing copied)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "manifest.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    return path


def link_set(d: Path, items: list[tuple[str, Path, Path, Path | None]]) -> Path:
    """A folder noisy/ clean/ [lips/] of links: (name, noisy, clean, lips or None)."""
    for name, noisy, clean, lips in items:
        for sub, src, ext in (("noisy", noisy, ".wav"), ("clean", clean, ".wav"), ("lips", lips, ".npy")):
            if src is None:
                continue
            (d / sub).mkdir(parents=True, exist_ok=True)
            link = d / sub / (name + ext)
            if not link.exists():
                link.symlink_to(Path(src).resolve())
    return d


def mix(view: Path, out: Path, noise_dir: Path, seed: int) -> list[dict]:
    """``reavise data mix`` of a view's test rows with the 4 real noises at -5 dB."""
    if not (out / "manifest.jsonl").exists():
        cli("data", "mix", str(view), "--out", str(out), "--split", "test", "--snrs", str(SNR),
            "--noises", ",".join(NOISES), "--visual", "clean", "--noise-dir", str(noise_dir),
            "--seed", str(seed))  # fmt: skip
    return read_rows(out / "manifest.jsonl")


def so762_set(corpus: Path, noise_dir: Path, out: Path, seed: int) -> Path:
    """One utterance per talker, noise type rotating over the sorted talkers."""
    rows = sorted(read_manifest_abs(corpus), key=lambda r: r["id"])
    first: dict[str, dict] = {}
    for r in rows:
        first.setdefault(r["speaker"], dict(r, split="test"))
    view = write_view(out / "views" / "so762", list(first.values()))
    mixed = mix(view, out / "mix" / "so762", noise_dir, seed)
    noise_of = {spk: NOISES[i % len(NOISES)] for i, spk in enumerate(sorted(first))}
    keep = [r for r in mixed if r["noise_type"] == noise_of[r["speaker"]]]
    base = out / "mix" / "so762"
    return link_set(out / "sets" / "so762", [(r["id"], base / r["noisy"], base / r["clean"], None) for r in keep])


def read_manifest_abs(corpus: Path) -> list[dict]:
    rows = read_rows(corpus / "manifest.jsonl")
    for r in rows:
        for key in ("audio", "lips", "valid"):
            if r.get(key):
                r[key] = str((corpus / r[key]).resolve())
    return rows


def ntcd_sets(sample: Path, noise_dir: Path, out: Path, seed: int) -> tuple[Path, Path]:
    """The sample's noisy.wav + clean.wav x 4 noises, with lips (reavise layout) and without."""
    from reavise.audio import load_audio
    from reavise.lips import load_lips, save_lips

    lips = out / "lips" / "ntcd-sample.npy"
    frames = load_lips(sample / "lips.npy")  # the (4489, T) column-major layout -> [T, 67, 67]
    if not lips.exists():
        save_lips(lips, frames)
    dur = len(load_audio(sample / "clean.wav")) / 16000
    row = {"id": "ntcd-sample", "speaker": "ntcd", "split": "test", "text": None, "audio": str(sample / "clean.wav"),
           "lips": str(lips.resolve()), "valid": None, "fps": 30.0, "duration": dur, "n_video_frames": len(frames)}
    view = write_view(out / "views" / "ntcd", [row])
    mixed = mix(view, out / "mix" / "ntcd", noise_dir, seed)
    base = out / "mix" / "ntcd"
    items = [(r["id"], base / r["noisy"], base / r["clean"], base / r["lips"]) for r in mixed]
    items.append(("ntcd-sample_given", sample / "noisy.wav", sample / "clean.wav", lips))
    with_lips = link_set(out / "sets" / "ntcd", items)
    without = link_set(out / "sets" / "ntcd-novideo", [(n, a, c, None) for n, a, c, _ in items])
    return with_lips, without


def enhance(model: str, checkpoint: str, name: str, d: Path, out: Path, seed: int) -> tuple[dict[str, dict], float]:
    """Per-file metrics of one prior on set ``name`` (reused when its CSV exists), and the RTF."""
    o = out / "enhanced" / name / model
    table, meta = Path(str(o) + ".csv"), Path(str(o) + ".json")
    if not table.exists():
        run = cli("enhance", str(d / "noisy"), "-o", str(o), "--model", checkpoint, "--algo", "mcem",
                  "--seed", str(seed), "--threads", "1", "--overwrite")  # fmt: skip
        found = re.search(r"real-time factor ([0-9.]+)", run.stdout + run.stderr)
        cli("evaluate", str(o), str(d / "clean"), "--noisy", str(d / "noisy"), "--csv", str(table) + ".tmp")
        meta.write_text(json.dumps({"rtf": float(found.group(1)) if found else None}))
        Path(str(table) + ".tmp").rename(table)
    with open(table) as f:
        rows = {r["file"]: {k: float(v) for k, v in r.items() if k != "file"} for r in csv.DictReader(f)}
    rtf = json.loads(meta.read_text()).get("rtf") if meta.exists() else None
    return rows, float("nan") if rtf is None else rtf


def ci(d: np.ndarray) -> tuple[float, float]:
    """Mean and half-width of the 95 % t-interval."""
    if len(d) < 2:
        return float(d.mean()), float("nan")
    return float(d.mean()), float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)))


def welch(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Difference of means a - b and the half-width of its 95 % Welch interval."""
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return float(a.mean() - b.mean()), float(stats.t.ppf(0.975, dof) * math.sqrt(va + vb))


def fmt(m: float, h: float) -> str:
    return f"{m:+.2f}" if math.isnan(h) else f"{m:+.2f} [{m - h:+.2f}, {m + h:+.2f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--so762", type=Path, help="speechocean762 prepared with `reavise data prepare audio`")
    ap.add_argument("--shared", type=Path, default=Path("../shared/data"))
    ap.add_argument("--grid-set", type=Path, help="GRID s1 test mixtures: a folder noisy/ clean/ lips/")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = args.out.resolve()
    noise_dir = args.shared / "noise-real"
    ckpt = out / "tcd-timit-a-vae.pt"
    if not ckpt.exists():
        cli("import-checkpoint", str(args.shared / "reference-checkpoints" / "a-vae" / "A-VAE.pt"), str(ckpt))
    checkpoints = {m: m for m in MODELS} | {"tcd-timit-a-vae": str(ckpt)}
    models = args.models.split(",")

    sets: dict[str, Path] = {}
    if args.grid_set is not None:
        sets["grid-s1"] = args.grid_set
    if args.so762 is not None:
        sets["so762"] = so762_set(args.so762, noise_dir, out, args.seed)
    sets["ntcd"], sets["ntcd-novideo"] = ntcd_sets(args.shared / "ntcd-timit-sample", noise_dir, out, args.seed)

    res: dict[tuple[str, str], dict[str, dict]] = {}
    rtf: dict[tuple[str, str], float] = {}
    audio_only = {"grid-s1-a-vae", "tcd-timit-a-vae", "a-vae-synth"}
    for model in models:
        for name, d in sets.items():
            if name == "ntcd-novideo" and model in audio_only:
                continue  # same output as on "ntcd"
            res[model, name], rtf[model, name] = enhance(model, checkpoints[model], name, d, out, args.seed)
            print(f"{name} {model}: done", file=sys.stderr)
    for model in audio_only & set(models):
        if (model, "ntcd") in res:
            res[model, "ntcd-novideo"], rtf[model, "ntcd-novideo"] = res[model, "ntcd"], rtf[model, "ntcd"]

    print("| set | prior | input SI-SDR | SI-SDR (dB) | SI-SDRi | PESQ-WB | ESTOI | vs `grid-s1-a-vae` [95 % CI] "
          "| vs `tcd-timit-a-vae` [95 % CI] | MCEM RTF | n |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in sets:
        for model in models:
            r = res[model, name]
            keys = sorted(r)
            col = {k: np.array([r[f][k] for f in keys]) for k in ("si_sdr", "si_sdr_i", "pesq", "estoi")}
            noisy_in = col["si_sdr"] - col["si_sdr_i"]
            row = (f"| {name} | `{model}` | {noisy_in.mean():.2f} | {col['si_sdr'].mean():.2f} | "
                   f"{col['si_sdr_i'].mean():.2f} | {col['pesq'].mean():.2f} | {col['estoi'].mean():.2f} |")  # fmt: skip
            for base in BASES:
                if base == model or (base, name) not in res:
                    row += " |"
                    continue
                b = res[base, name]
                row += " " + fmt(*ci(col["si_sdr"] - np.array([b[f]["si_sdr"] for f in keys]))) + " |"
            print(row + f" {rtf[model, name]:.2f} | {len(keys)} |")

    if "grid-s1" in sets:
        print()
        print("| prior | SI-SDRi on GRID s1 | unseen set | SI-SDRi there | unseen - s1 [95 % Welch CI] |")
        print("| --- | --- | --- | --- | --- |")
        for model in models:
            s1 = np.array([v["si_sdr_i"] for v in res[model, "grid-s1"].values()])
            for name in sets:
                if name == "grid-s1" or len(res[model, name]) < 2:
                    continue
                u = np.array([v["si_sdr_i"] for v in res[model, name].values()])
                print(f"| `{model}` | {s1.mean():.2f} | {name} | {u.mean():.2f} | {fmt(*welch(u, s1))} |")

    print()
    kinds = [*NOISES, "given"]
    print("| set | prior | " + " | ".join(f"SI-SDRi {k}" for k in kinds) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in kinds) + " |")
    for name in sets:
        if name == "ntcd-novideo":
            continue
        for model in models:
            by: dict[str, list[float]] = {}
            for f, v in res[model, name].items():
                found = re.search(r"_(" + "|".join(NOISES) + r")_snr", f)
                by.setdefault(found.group(1) if found else "given", []).append(v["si_sdr_i"])
            cells = [f"{np.mean(by[k]):.2f} ({len(by[k])})" if k in by else "" for k in kinds]
            print(f"| {name} | `{model}` | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
