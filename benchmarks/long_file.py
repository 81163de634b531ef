"""Long-file benchmark: real-time factor and peak memory of `reavise enhance` vs file length.

Tiles the NTCD-TIMIT sample (or, without the shared data, a synthetic gated tone in white
noise) to each length, enhances it with the published A-VAE (or a small untrained A-VAE)
through the real CLI in a fresh process, and records the CLI's real-time factor (EM wall
time / audio time) and the process's peak resident memory (``os.wait4``'s ru_maxrss).
Long inputs are enhanced in 30 s chunks, streamed: the target is a flat real-time factor
(an hour within 10 % of 60 s) and peak memory <= 1 GB whatever the length.

    python benchmarks/long_file.py --seconds 60 300 --algos vem mcem --out runs/bench
    python benchmarks/long_file.py --seconds 60 3600 --algos vem   # the 1-hour check (~20 min)

Writes OUT/long_file.json and OUT/long_file.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import REPO, SHARED, shared_available  # noqa: E402

SR = 16000
PEAK_LIMIT_MB = 1024.0
RTF_TOLERANCE = 0.10


def base_signal() -> tuple[np.ndarray, str]:
    """The noisy sample (4.8 s) or a synthetic stand-in, and what it is."""
    if shared_available():
        x, sr = sf.read(SHARED / "ntcd-timit-sample" / "noisy.wav", dtype="float32")
        return x, "ntcd-timit-sample/noisy.wav tiled"
    rng = np.random.default_rng(0)
    t = np.arange(5 * SR) / SR
    tone = 0.4 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 1.3 * t) > 0)
    return (tone + 0.05 * rng.standard_normal(len(t))).astype(np.float32), "synthetic tone in noise"


def write_tiled(x: np.ndarray, seconds: float, path: Path) -> Path:
    """``x`` repeated to ``seconds``, written in blocks (never the whole file in memory)."""
    n, block = int(seconds * SR), 60 * SR
    tiled = np.resize(x, block + len(x))
    with sf.SoundFile(path, "w", SR, 1, subtype="PCM_16", format="WAV") as f:
        for a in range(0, n, block):
            off = a % len(x)
            f.write(tiled[off : off + min(block, n - a)])
    return path


def model(workdir: Path) -> tuple[Path, str]:
    """The published A-VAE as a reavise checkpoint, or a small untrained A-VAE."""
    dst = workdir / "model.pt"
    if shared_available():
        from reavise.models.checkpoint import import_published

        import_published(SHARED / "reference-checkpoints" / "a-vae" / "A-VAE.pt", dst)
        return dst, "published A-VAE"
    import torch

    from reavise.models import build_prior
    from reavise.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    save_checkpoint(dst, build_prior("a-vae", {}))
    return dst, "untrained A-VAE (no shared data)"


def measure(wav: Path, ckpt: Path, algo: str, out: Path, threads: int | None) -> dict:
    """One `reavise enhance` process, its wall time, the RTF it prints and its peak resident
    memory: it runs under a tiny wrapper process, so the wrapper's RUSAGE_CHILDREN maximum is
    this run's alone."""
    code = (
        "import json, resource, subprocess, sys, time;"
        "t=time.perf_counter(); p=subprocess.run(sys.argv[1:], capture_output=True, text=True);"
        "w=time.perf_counter()-t;"
        "print(json.dumps({'rc': p.returncode, 'wall_s': w, 'stdout': p.stdout,"
        " 'stderr': p.stderr[-500:],"
        " 'peak_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0}))"
    )
    cmd = [sys.executable, "-m", "reavise", "enhance", str(wav), "-o", str(out), "-m", str(ckpt),
           "--algo", algo, "--overwrite"]  # fmt: skip
    if threads:
        cmd += ["--threads", str(threads)]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    res = json.loads(subprocess.run([sys.executable, "-c", code, *cmd], env=env,
                                    capture_output=True, text=True, check=True).stdout)  # fmt: skip
    if res["rc"]:
        raise RuntimeError(f"enhance failed ({res['rc']}): {res['stderr']}")
    m = re.search(r"real-time factor ([0-9.]+)", res["stdout"])
    return {"wall_s": round(res["wall_s"], 2), "rtf": float(m.group(1)) if m else None,
            "peak_mb": round(res["peak_mb"], 1)}  # fmt: skip


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        "# Long files: real-time factor and peak memory",
        "",
        f"{meta['model']}, input {meta['signal']}, threads {meta['threads'] or 'default'}, "
        f"{meta['cpu_count']} CPUs. RTF = EM wall time / audio time (the CLI's figure); peak = "
        "the process's maximum resident memory. Target: peak <= 1 GB, RTF within 10 % of the "
        "shortest file's.",
        "",
        "| algo | seconds | RTF | RTF / shortest | peak MB | wall s | ok |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['algo']} | {r['seconds']:g} | {r['rtf']:.3f} | {r['rtf_ratio']:.2f} | "
            f"{r['peak_mb']:.0f} | {r['wall_s']:.1f} | {'yes' if r['ok'] else 'NO'} |"
        )
    return "\n".join(lines) + "\n"


def bench_long(seconds: list[float], algos: list[str], threads: int | None = None) -> dict:
    """Each algorithm at each length: {"meta": ..., "rows": [...]} (see ``markdown``)."""
    sys.path.insert(0, str(REPO / "src"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="reavise-long-") as tmp:
        work = Path(tmp)
        ckpt, model_name = model(work)
        x, signal = base_signal()
        for algo in algos:
            first = None
            for secs in sorted(seconds):
                wav = write_tiled(x, secs, work / f"in-{secs:g}.wav")
                r = measure(wav, ckpt, algo, work / "out", threads)
                first = first or r["rtf"]
                ratio = r["rtf"] / first
                ok = r["peak_mb"] <= PEAK_LIMIT_MB and ratio <= 1 + RTF_TOLERANCE
                rows.append({"algo": algo, "seconds": secs, **r, "rtf_ratio": round(ratio, 3),
                             "ok": ok})  # fmt: skip
                print(json.dumps(rows[-1]), flush=True)
                wav.unlink()
    meta = {"model": model_name, "signal": signal, "threads": threads,
            "cpu_count": os.cpu_count()}  # fmt: skip
    return {"meta": meta, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, nargs="+", default=[60.0, 300.0])
    ap.add_argument("--algos", nargs="+", default=["vem", "mcem"])
    ap.add_argument("--threads", type=int, default=None, help="--threads for the CLI")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "bench")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    res = bench_long(args.seconds, args.algos, args.threads)
    (args.out / "long_file.json").write_text(json.dumps(res, indent=2))
    (args.out / "long_file.md").write_text(markdown(res["rows"], res["meta"]))
    print(f"wrote {args.out / 'long_file.json'} and {args.out / 'long_file.md'}")


if __name__ == "__main__":
    main()
