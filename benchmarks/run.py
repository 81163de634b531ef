"""reavise benchmarks: quality and speed figures, written as JSON and Markdown.

    python benchmarks/run.py --out runs/bench [--only published,mcem,synth] [--repeat 3]

Sections:
- published: the published A-VAE (imported) + VEM / MCEM / Langevin EM, and the published
  RVAE and A-DKF + Langevin EM, on the real NTCD-TIMIT sample (needs ../shared/data): SI-SDR,
  PESQ-WB, ESTOI, wall time (in process, after a warm-up), real-time factor.
- mcem: each of MCEM's fast paths on this CPU (torch code, native kernels with a float32
  decoder, native kernels with int8 decoder products), which one the default
  (``int8_decoder=auto``) chose and its measurement, against a straightforward NumPy port of
  the published code, all at the published setting (100 EM iterations x 40 MH steps).
- synth: synthetic AV corpus generation rate (seconds of audio per wall second).
- avcost: what the lips cost: the shipped GRID-s1 AV priors against ``grid-s1-a-vae`` with
  the same algorithm and settings (MCEM, VEM), in process, interleaved rounds, on a fixed
  3 s stimulus (needs nothing from ../shared/data; the cost does not depend on the content).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import fair_blas  # noqa: E402, F401  (first: may re-execute without OpenBLAS overrides)
from common import machine, published_prior, shared_available, timed  # noqa: E402
from reavise.audio import SAMPLE_RATE, atomic_write  # noqa: E402


def bench_published(repeat: int) -> dict:
    from mcem_vs_numpy import load_sample
    from reavise.inference import build_algorithm, enhance_waveforms
    from reavise.metrics import evaluate_pair

    with tempfile.TemporaryDirectory() as tmp:
        prior = published_prior(Path(tmp))
    noisy, clean = load_sample()
    dur = len(noisy) / SAMPLE_RATE
    rows = [{"method": "noisy input", **_metrics(evaluate_pair(noisy, clean))}]
    for algo in ("vem", "mcem", "langevin"):
        a = build_algorithm(algo)
        med, times, res = timed(lambda a=a: enhance_waveforms(prior, a, [noisy], seed=0)[0], repeat)
        m = evaluate_pair(res.speech, clean, noisy=noisy)
        rows.append(_row(f"A-VAE (published) + {algo.upper() if algo != 'langevin' else 'Langevin EM'}",
                         m, med, dur, times))  # fmt: skip
    # the published sequence priors with their own Langevin EM settings (inference_defaults)
    for name, label in (("rvae", "RVAE"), ("a-dkf", "A-DKF")):
        with tempfile.TemporaryDirectory() as tmp:
            seq = published_prior(Path(tmp), name)
        a = build_algorithm("langevin")
        med, times, res = timed(lambda a=a, seq=seq: enhance_waveforms(seq, a, [noisy], seed=0)[0], repeat)
        rows.append(_row(f"{label} (published) + Langevin EM", evaluate_pair(res.speech, clean, noisy=noisy),
                         med, dur, times))  # fmt: skip
    return {"audio_seconds": dur, "rows": rows}


def _row(method: str, m: dict, med: float, dur: float, times: list[float]) -> dict:
    return {
        "method": method,
        **_metrics(m),
        "si_sdr_i": round(m["si_sdr_i"], 2),
        "wall_s": round(med, 3),
        "rtf": round(med / dur, 3),
        "times": [round(t, 3) for t in times],
    }


def _metrics(m: dict) -> dict:
    return {k: round(float(m[k]), 2) for k in ("si_sdr", "pesq", "estoi")}


#: MCEM's fast paths timed against the NumPy reference: (key, label, MCEM settings)
MCEM_VARIANTS = [
    ("torch", "torch code, float32 (native=false)", {"native": False}),
    ("native_float32", "native kernels, float32 decoder (int8_decoder=false)", {"int8_decoder": False}),
    ("native_int8", "native kernels, int8 decoder products (int8_decoder=true)", {"int8_decoder": True}),
]


def output_shape(prior) -> tuple[int, int]:
    """(bins F, hidden H) of the prior's decoder output layer, the product MCEM runs per MH
    step, as ``fastpath.decoder_split`` finds it (not by a layer's attribute name)."""
    from reavise.inference.fastpath import decoder_split

    split = decoder_split(prior, None)
    if split is None:
        raise SystemExit("the benchmark prior's decoder does not end in a linear layer")
    F, H = split.weight.shape
    return F, H


def default_mcem_path(prior) -> tuple[str, dict]:
    """Which of MCEM_VARIANTS the default settings run here, and the decision behind it."""
    from reavise import native

    if native.load() is None:
        return "torch", {"chosen": "float32", "reason": f"native kernels off: {native.unavailable_reason()}"}
    F, H = output_shape(prior)
    choice = native.decoder_path(H, F)
    return ("native_int8" if choice.chosen == "int8" else "native_float32"), choice.as_dict()


def fast_path_measurement(prior) -> dict:
    """The default's decision (as cached or measured by the process) and a fresh measurement
    of the output layer's products (reavise.native.decoder_path)."""
    from reavise import native

    key, decision = default_mcem_path(prior)
    out = {"default_path": key, "decision": decision}
    if native.load() is not None:
        F, H = output_shape(prior)
        out["measured_now"] = native.decoder_path(H, F, refresh=True).as_dict()
    return out


def bench_mcem(repeat: int, iters: int) -> dict:
    """Each MCEM path vs the NumPy reference, interleaved (N V1 V2 V3 N V1 ...) so that a
    machine whose speed drifts slows all alike; a speed-up is the median of per-round ratios."""
    from mcem_vs_numpy import load_sample, run_numpy, run_torch
    from reavise.metrics import si_sdr

    with tempfile.TemporaryDirectory() as tmp:
        prior = published_prior(Path(tmp))
    noisy, clean = load_sample()
    fast = fast_path_measurement(prior)
    for _, _, kw in MCEM_VARIANTS:  # warm-up: first-call allocations, the kernels' build
        run_torch(prior, noisy, 2, **kw)
    times_n: list[float] = []
    floor_ratios: list[float] = []
    times = {key: [] for key, _, _ in MCEM_VARIANTS}
    outs: dict = {}
    for _ in range(repeat):
        t0 = time.perf_counter()
        out_n = run_numpy(prior, noisy, iters)
        times_n.append(time.perf_counter() - t0)
        for key, _, kw in MCEM_VARIANTS:
            t0 = time.perf_counter()
            outs[key] = run_torch(prior, noisy, iters, **kw)
            times[key].append(time.perf_counter() - t0)
        # after the torch runs, not right after NumPy, whose BLAS threads spin for a while
        floor_ratios.append(times_n[-1] / matmul_floor(prior, noisy, iters))
    rows = []
    for key, label, kw in MCEM_VARIANTS:
        ratios = [n / t for n, t in zip(times_n, times[key], strict=True)]
        rows.append(
            {
                "path": key,
                "implementation": label,
                "settings": kw,
                "default": key == fast["default_path"],
                "wall_s": round(statistics.median(times[key]), 3),
                "times": [round(t, 3) for t in times[key]],
                "speedup": round(statistics.median(ratios), 2),
                "speedup_range": [round(min(ratios), 2), round(max(ratios), 2)],
                "si_sdr": round(si_sdr(outs[key], clean), 2),
            }
        )
    max_at_floor = statistics.median(floor_ratios)
    default = next(r for r in rows if r["default"])
    return {
        "setting": f"{iters} EM iterations x 40 MH steps (30 burn-in), NMF rank 10",
        "matmul_floor_s": round(statistics.median(times_n) / max_at_floor, 3),
        "max_speedup_at_floor": round(max_at_floor, 1),
        "numpy_s": round(statistics.median(times_n), 3),
        "numpy_times": [round(t, 3) for t in times_n],
        "si_sdr_numpy": round(si_sdr(out_n, clean), 2),
        "fast_paths": fast,
        "rows": rows,
        # the headline figures: what the default settings run on this machine
        "torch_s": default["wall_s"],
        "speedup": default["speedup"],
        "speedup_range": default["speedup_range"],
        "si_sdr_torch": default["si_sdr"],
    }


def matmul_floor(prior, noisy, iters: int, n_mh: int = 40) -> float:
    """Seconds the decoder's 128 -> 513 products alone take in one MCEM run: one [T, 128] x
    [128, 513] float32 product per MH step (+1 per E-step), timed in isolation (400 products,
    extrapolated). No float32 implementation of the algorithm can be faster on the machine."""
    import torch

    from reavise.audio import stft

    T = stft(torch.from_numpy(noisy).float()).shape[0]
    F, H = output_shape(prior)
    h = torch.rand(T, H) * 2 - 1
    W, C = torch.randn(H, F), torch.randn(T, F)
    with torch.inference_mode():
        for _ in range(50):
            torch.addmm(C, h, W)
        n = 400
        t0 = time.perf_counter()
        for _ in range(n):
            torch.addmm(C, h, W)
        per = (time.perf_counter() - t0) / n
    return per * iters * (n_mh + 1)


def bench_synth(minutes: float, workers: int) -> dict:
    from reavise.data.synth import synthesize_corpus

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        stats = synthesize_corpus(
            Path(tmp) / "c", hours=minutes / 60, speakers=8, seed=0, workers=workers, progress=False
        )
        wall = time.perf_counter() - t0
    rate = stats["seconds"] / wall
    return {
        "audio_seconds": round(stats["seconds"], 1),
        "wall_s": round(wall, 2),
        "workers": workers,
        "rate_audio_s_per_s": round(rate, 2),
        "minutes_per_corpus_hour": round(60 / rate, 2),
    }


#: the AV priors whose cost is measured against AV_BASELINE (shipped in the package)
AV_PRIORS = ("grid-s1-av-concat", "grid-s1-av-attention")
AV_BASELINE = "grid-s1-a-vae"


def _av_stimulus(seconds: float = 3.0, seed: int = 0):
    """A fixed noisy waveform and 25 fps mouth frames (random pixels) of ``seconds``."""
    import numpy as np

    from reavise.inference.pipeline import VideoInput

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t) ** 2
    voice = sum(np.sin(2 * np.pi * 140.0 * k * t) / k for k in range(1, 20)) * env
    wave = (0.3 * voice / np.abs(voice).max() + 0.1 * rng.standard_normal(t.size)).astype("float32")
    frames = rng.random((int(seconds * 25), 67, 67), dtype=np.float32)
    return wave, VideoInput(frames, 25.0)


def bench_avcost(repeat: int) -> dict:
    """Wall time of each AV prior / the A-VAE's, same algorithm and settings: per round one
    run of each (interleaved), the ratio is the median of per-round ratios."""
    import numpy as np

    from reavise.inference import build_algorithm, enhance_waveforms
    from reavise.inference.pipeline import VideoInput
    from reavise.models.checkpoint import load_checkpoint
    from reavise.pretrained import resolve

    wave, video = _av_stimulus()
    # the audio fallback's mixed path: no lips in a third of the frames (runs of 5 of every 17)
    valid = np.ones(len(video.frames), dtype=bool)
    for start in range(0, len(valid), 17):
        valid[start : start + 5] = False
    partial = VideoInput(video.frames, video.fps, valid)
    gapped = f"{AV_PRIORS[-1]}, {1 - valid.mean():.0%} of frames without lips"
    names = (AV_BASELINE, *AV_PRIORS, gapped)
    priors = {n: load_checkpoint(resolve(n)) for n in (AV_BASELINE, *AV_PRIORS)}
    priors[gapped] = priors[AV_PRIORS[-1]]
    inputs = {n: [video] for n in AV_PRIORS} | {gapped: [partial], AV_BASELINE: None}
    rows = []
    for algo in ("mcem", "vem"):
        a = build_algorithm(algo)

        def run(n, a=a):
            return enhance_waveforms(priors[n], a, [wave], inputs[n], seed=0)

        for n in names:  # warm-up
            run(n)
        times = {n: [] for n in names}
        for _ in range(max(repeat, 1)):
            for n in names:
                t0 = time.perf_counter()
                run(n)
                times[n].append(time.perf_counter() - t0)
        base = times[AV_BASELINE]
        for n in names:
            ratios = [x / b for x, b in zip(times[n], base, strict=True)]
            rows.append({"prior": n, "algorithm": algo, "wall_s": round(statistics.median(times[n]), 3),
                         "ratio": round(statistics.median(ratios), 2),
                         "ratio_range": [round(min(ratios), 2), round(max(ratios), 2)]})  # fmt: skip
    import torch

    from reavise.inference import fastpath

    lips = torch.from_numpy(video.frames)[None]  # each with the lips (and mask) it was timed with
    masks = {gapped: torch.from_numpy(valid)[None]}
    paths = {n: fastpath.describe(p, p.context(lips, masks.get(n)) if p.uses_video else None) for n, p in priors.items()}
    return {"audio_seconds": len(wave) / SAMPLE_RATE, "rounds": max(repeat, 1), "rows": rows,
            "decoder_paths": paths}  # fmt: skip


def _avcost_markdown(c: dict) -> list[str]:
    lines = [
        f"## What the lips cost: AV priors against `{AV_BASELINE}` ({c['audio_seconds']:.1f} s, same settings)",
        "",
        "| prior | algorithm | decoder path | wall (s) | cost vs A-VAE |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in c["rows"]:
        lo, hi = r["ratio_range"]
        lines.append(f"| `{r['prior']}` | {r['algorithm'].upper()} | {c['decoder_paths'][r['prior']]} | "
                     f"{r['wall_s']} | **{r['ratio']}x** ({lo}-{hi}) |")  # fmt: skip
    lines += [
        "",
        f"Medians of per-round ratios over {c['rounds']} interleaved rounds (range in brackets), "
        "in process after a warm-up, visual front-end included.",
        "",
    ]
    return lines


def to_markdown(report: dict) -> str:
    lines = ["# reavise benchmark", "", f"Machine: `{json.dumps(report['machine'])}`", ""]
    if "published" in report:
        p = report["published"]
        lines += [
            f"## Published priors on the NTCD-TIMIT sample ({p['audio_seconds']:.1f} s)",
            "",
            "| method | SI-SDR (dB) | SI-SDRi (dB) | PESQ-WB | ESTOI | wall (s) | RTF |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in p["rows"]:
            lines.append(
                f"| {r['method']} | {r['si_sdr']:.2f} | {r.get('si_sdr_i', '')} | {r['pesq']:.2f} | "
                f"{r['estoi']:.2f} | {r.get('wall_s', '')} | {r.get('rtf', '')} |"
            )
        lines.append("")
    if "mcem" in report:
        lines += _mcem_markdown(report["mcem"])
    if "avcost" in report:
        lines += _avcost_markdown(report["avcost"])
    if "synth" in report:
        s = report["synth"]
        lines += [
            "## Synthetic AV corpus generation",
            "",
            f"{s['audio_seconds']} s of audio+lips in {s['wall_s']} s with {s['workers']} workers: "
            f"{s['rate_audio_s_per_s']} s of corpus per second, "
            f"{s['minutes_per_corpus_hour']} min per hour of corpus.",
            "",
        ]
    if "roi" in report:
        from mouth_roi import to_markdown as roi_markdown

        lines += roi_markdown(report["roi"])
    if "long" in report:
        from long_file import markdown as long_markdown

        lines += ["## " + long_markdown(report["long"]["rows"], report["long"]["meta"]).lstrip("# "), ""]
    for k, v in report.get("skipped", {}).items():
        lines.append(f"- {k}: skipped ({v})")
    return "\n".join(lines) + "\n"


def _mcem_markdown(m: dict) -> list[str]:
    """The MCEM fast-path table and the default's decision, as Markdown lines."""
    lines = [
        "## MCEM fast paths on this CPU vs a straightforward NumPy port of the published code",
        "",
        f"Setting: {m['setting']}.",
        "",
        "| MCEM path | wall (s) | speed-up vs NumPy | SI-SDR (dB) | default here |",
        "| --- | --- | --- | --- | --- |",
        f"| NumPy reference (float64, published structure) | {m['numpy_s']} | 1 | {m['si_sdr_numpy']} | |",
    ]
    for r in m["rows"]:
        lo, hi = r["speedup_range"]
        lines.append(
            f"| {r['implementation']} | {r['wall_s']} | **{r['speedup']}x** ({lo}-{hi}) | "
            f"{r['si_sdr']} | {'**yes**' if r['default'] else ''} |"
        )
    lines += [
        "",
        f"Speed-ups are medians of {len(m['numpy_times'])} interleaved rounds (range in "
        "brackets); NumPy runs with its own BLAS kernel choice (see `machine.numpy_blas`).",
        "",
        _decision_line(m["fast_paths"]),
        "",
        f"The decoder's float32 128 -> 513 products alone (one per MH step) take "
        f"{m['matmul_floor_s']} s on this machine: no float32 implementation can exceed "
        f"{m['max_speedup_at_floor']}x here. The int8 path goes below that floor by running "
        "those products as exact int8 GEMMs of 14-bit fixed-point operands, where the CPU "
        "has fast int8 dot products.",
        "",
    ]
    return lines


def _decision_line(fast: dict) -> str:
    """One sentence: what ``int8_decoder=auto`` chose here and why."""
    d = fast["decision"]
    label = next(lab for key, lab, _ in MCEM_VARIANTS if key == fast["default_path"])
    line = f"The default (`int8_decoder=auto`) runs \"{label}\" here: {d['reason']}"
    now = fast.get("measured_now")
    if d.get("float32_gflops") is not None:
        line += (f" (output layer on one thread: int8 {d['int8_gflops']:.0f}, float32 "
                 f"{d['float32_gflops']:.0f} GFLOP/s-equivalent)")  # fmt: skip
    if now is not None and now.get("float32_gflops") is not None:
        line += (f"; measured again now: int8 {now['int8_gflops']:.0f}, float32 "
                 f"{now['float32_gflops']:.0f} -> {now['chosen']}")  # fmt: skip
    return line + "."


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/bench"))
    ap.add_argument("--only", default="published,mcem,avcost,synth,roi,long")
    ap.add_argument("--long-seconds", default="60,300", help="file lengths of the long-file "
                    "section (60,3600 is the one-hour check, ~20 min)")  # fmt: skip
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--mcem-iters", type=int, default=100)
    ap.add_argument("--synth-minutes", type=float, default=3.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--readme", type=Path, help="also write the results into this README's "
                    "<!-- bench-results:start/end --> section")  # fmt: skip
    args = ap.parse_args()
    only = set(args.only.split(","))
    report: dict = {"machine": machine(), "skipped": {}}
    if "published" in only or "mcem" in only:
        if not shared_available():
            report["skipped"]["published, mcem"] = "../shared/data not present"
            only -= {"published", "mcem"}
    if "published" in only:
        print("published A-VAE + VEM/MCEM/Langevin on the NTCD-TIMIT sample ...", flush=True)
        report["published"] = bench_published(args.repeat)
    if "mcem" in only:
        print("MCEM fast paths vs the NumPy reference ...", flush=True)
        report["mcem"] = bench_mcem(args.repeat, args.mcem_iters)
    if "avcost" in only:
        print("AV priors' cost against the A-VAE ...", flush=True)
        report["avcost"] = bench_avcost(args.repeat)
    if "synth" in only:
        print("synthetic corpus generation rate ...", flush=True)
        report["synth"] = bench_synth(args.synth_minutes, args.workers)
    if "roi" in only:
        from mouth_roi import DEFAULT_VIDEOS, bench_mouth_roi, write_report

        print("mouth-ROI extraction: tracked vs per-frame detection ...", flush=True)
        sec = bench_mouth_roi(DEFAULT_VIDEOS, n=20, repeat=1)
        args.out.mkdir(parents=True, exist_ok=True)
        write_report(dict(sec), args.out)  # mouth_roi.json/.md/.png
        sec.pop("_montage", None)  # keep the image array out of bench.json
        report["roi"] = sec
    if "long" in only:
        from long_file import bench_long

        print("long files: real-time factor and peak memory vs length ...", flush=True)
        report["long"] = bench_long([float(s) for s in args.long_seconds.split(",")], ["vem", "mcem"])
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out / "bench.json", lambda t: Path(t).write_text(json.dumps(report, indent=2)))
    md = to_markdown(report)
    atomic_write(args.out / "bench.md", lambda t: Path(t).write_text(md))
    print(md)
    print(f"wrote {args.out / 'bench.json'} and {args.out / 'bench.md'}")
    if args.readme is not None:
        from readme_tables import replace_between

        body = md.split("\n", 1)[1].replace("## ", "#### ")  # drop the title, demote headings
        body = f"Generated by `make bench` (benchmarks/run.py).\n{body}"
        text = replace_between(
            args.readme.read_text(), body, "<!-- bench-results:start -->", "<!-- bench-results:end -->"
        )
        atomic_write(args.readme, lambda t: Path(t).write_text(text))
        print(f"updated {args.readme}")


if __name__ == "__main__":
    main()
