"""``reavise report``: a static HTML page (index.html + PNG + WAV, no server, no CDN) from a
benchmark folder, like the demo pages of speech papers: tables, plots, and audio examples.

Everything the page uses is copied into the report folder, which is built beside the target
and swapped in at the end, so an interrupted run never leaves a half-written report.
"""

from __future__ import annotations

import html
import json
import math
import os
import shutil
import string
from importlib import resources
from pathlib import Path

import numpy as np

from ..audio import DEFAULT_STFT, SAMPLE_RATE
from ..errors import ReaviseError
from ..metrics import LABELS, summarize
from .tables import PIVOT_METRICS, all_tables, methods_of, read_results, visual_label

#: STFT frames per second (62.5: hop 256 at 16 kHz)
FPS_STFT = DEFAULT_STFT.frames_per_second


def _style(method: str, uses_video: dict[str, bool]) -> dict:
    """Line style: baselines dashed/dotted, audio-only priors solid thin, AV priors solid thick."""
    if method == "noisy":
        return {"color": "0.55", "linestyle": "--", "linewidth": 1.2}
    if method.startswith("oracle"):
        return {"color": "0.25", "linestyle": ":", "linewidth": 1.5}
    if "/" not in method:
        return {"linestyle": "--", "linewidth": 1.2}
    return {"linestyle": "-", "linewidth": 2.2 if uses_video.get(method) else 1.6}


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight", facecolor="white")


def _line_plot(rows, groups, by, xlabel, path: Path, uses_video, categorical: bool) -> None:
    """One panel per key metric: mean ± 95 % CI per method over the condition groups."""
    from matplotlib.figure import Figure

    metrics = [m for m in PIVOT_METRICS if any(math.isfinite(r.get(m, math.nan)) for r in rows)]
    fig = Figure(figsize=(4.1 * len(metrics), 3.4), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    xs = list(range(len(groups))) if categorical else groups
    for ax, metric in zip(axes, metrics, strict=True):
        for meth in methods_of(rows):
            mean, ci = [], []
            for g in groups:
                part = [r for r in rows if r["method"] == meth and by(r) == g]
                s = summarize(part, [metric])[metric] if part else {"mean": math.nan, "ci95": math.nan}
                mean.append(s["mean"])
                ci.append(s["ci95"] if math.isfinite(s["ci95"]) else 0.0)
            ax.errorbar(xs, mean, yerr=ci, label=meth, marker="o", markersize=4, capsize=3,
                        **_style(meth, uses_video))  # fmt: skip
        ax.set_title(LABELS.get(metric, metric), fontsize=11)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        ax.margins(x=0.08)
        if categorical:
            ax.set_xticks(xs, [str(g) for g in groups], rotation=20, ha="right", fontsize=9)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(5, len(labels)), fontsize=9,
               frameon=False)  # fmt: skip
    _save(fig, path)


def _visual_order(labels: list[str]) -> list[str]:
    """clean first, then each degradation by severity, missing last."""

    def key(s: str):
        name, _, sev = s.partition(":")
        rank = 0 if name == "clean" else (2 if name == "missing" else 1)
        return (rank, name, float(sev or 0))

    return sorted(labels, key=key)


def _spectrogram(x: np.ndarray) -> np.ndarray:
    """Power spectrogram in dB [bins, frames] with the reavise STFT."""
    import torch

    from ..audio import power_spectrogram

    p = power_spectrogram(torch.from_numpy(np.asarray(x, dtype=np.float32))).numpy().T
    return 10 * np.log10(p + 1e-10)


def _spec_image(ax, db: np.ndarray, vmax: float, duration: float) -> None:
    ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=vmax - 80, vmax=vmax,
              extent=(0, duration, 0, SAMPLE_RATE / 2000), interpolation="nearest")  # fmt: skip


def _spec_png(x: np.ndarray, vmax: float, path: Path) -> None:
    from matplotlib.figure import Figure

    dur = len(x) / SAMPLE_RATE
    fig = Figure(figsize=(4.6, 1.5))
    ax = fig.add_axes((0.09, 0.24, 0.9, 0.72))
    _spec_image(ax, _spectrogram(x), vmax, dur)
    ax.set_ylabel("kHz", fontsize=8)
    ax.set_xlabel("time (s)", fontsize=8, labelpad=1)
    ax.tick_params(labelsize=7)
    fig.savefig(path, dpi=100, facecolor="white")


def _lips_strip(frames: np.ndarray, n: int = 10) -> np.ndarray:
    """``n`` evenly spaced mouth frames side by side, [H, n*W]."""
    idx = np.linspace(0, len(frames) - 1, min(n, len(frames))).round().astype(int)
    return np.concatenate([frames[i] for i in idx], axis=1)


def _lips_png(frames: np.ndarray, path: Path) -> None:
    from matplotlib.figure import Figure

    strip = _lips_strip(frames)
    fig = Figure(figsize=(strip.shape[1] / 67 * 0.75, 0.8))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(strip, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    fig.savefig(path, dpi=100, facecolor="white")


def _weights_png(weights: dict[str, np.ndarray], noisy: np.ndarray, frames: np.ndarray | None, method: str,
                 path: Path, degraded: list | None = None) -> None:  # fmt: skip
    """Per-frame modality weights over time, under the mouth frames and the noisy spectrogram;
    the spans of ``degraded`` ([start, end) seconds of damaged video frames) shaded."""
    from matplotlib.figure import Figure

    dur = len(noisy) / SAMPLE_RATE
    n_rows = 3 if frames is not None else 2
    ratios = [0.8, 1.6, 1.4] if frames is not None else [1.6, 1.4]
    fig = Figure(figsize=(8.0, 1.25 * sum(ratios)), layout="constrained")
    axes = fig.subplots(n_rows, 1, gridspec_kw={"height_ratios": ratios})
    i = 0
    if frames is not None:
        axes[0].imshow(_lips_strip(frames, 14), cmap="gray", vmin=0, vmax=1, aspect="equal")
        axes[0].set_axis_off()
        axes[0].set_title(f"mouth frames, noisy spectrogram and modality weights of {method}",
                          fontsize=10)  # fmt: skip
        i = 1
    db = _spectrogram(noisy)
    _spec_image(axes[i], db, float(db.max()), dur)
    axes[i].set_ylabel("kHz")
    axes[i].set_xlim(0, dur)
    for k, (a, b) in enumerate(degraded or []):
        axes[i + 1].axvspan(a, b, color="tab:red", alpha=0.15, linewidth=0,
                            label="damaged video frames" if k == 0 else None)  # fmt: skip
    for site, w in weights.items():  # w [T, 2]: (audio, visual), summing to one
        t = np.arange(len(w)) / FPS_STFT
        axes[i + 1].plot(t, w[:, 1], label=f"{site}: visual weight", linewidth=1.6)
    axes[i + 1].set_xlim(0, dur)
    axes[i + 1].set_ylim(-0.02, 1.02)
    axes[i + 1].set_xlabel("time (s)")
    axes[i + 1].set_ylabel("visual weight")
    axes[i + 1].grid(alpha=0.3)
    axes[i + 1].legend(fontsize=8, loc="upper right", frameon=False)
    _save(fig, path)


def _setup_html(record: dict, rows: list[dict]) -> str:
    cfg = record.get("config") or {}
    m = record.get("machine") or {}
    items = [
        ("methods", ", ".join(methods_of(rows))),
        ("noise types", ", ".join(dict.fromkeys(r["noise_type"] for r in rows))),
        ("SNRs (dB)", ", ".join(f"{s:g}" for s in dict.fromkeys(r["snr_db"] for r in rows))),
        ("visual conditions", ", ".join(dict.fromkeys(visual_label(r) for r in rows))),
        ("test utterances", str(len({r.get("source_id") for r in rows}))),
        ("seed", str(record.get("seed", cfg.get("seed", "")))),
    ]
    if m:
        items.append(
            ("machine", f"{m.get('cpu_count')} CPU core(s), {m.get('processor') or '?'}; torch "
             f"{m.get('torch')}; device {m.get('device')}; {m.get('workers')} worker(s)")
        )  # fmt: skip
    if record.get("timings"):
        t = record["timings"]
        items.append(("wall time", ", ".join(f"{k[:-2]} {v:.0f} s" for k, v in t.items())))
        if len(record.get("timings_history") or []) > 1:
            from .grid import total_compute_s

            n = len(record["timings_history"])
            items.append(("wall time, all runs", f"{total_compute_s(record):.0f} s over {n} invocations"))
    body = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in items)
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in record.get("notes", []))
    return f'<dl class="setup">{body}</dl>' + (f"<ul class=\"note\">{notes}</ul>" if notes else "")


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def _examples_html(run: Path, tmp: Path, record: dict) -> str:
    """Per example: clean / noisy / every method with an audio player and its spectrogram."""
    from ..audio import load_audio
    from ..lips import load_lips

    parts = []
    for k, ex in enumerate(record.get("examples", [])):
        if not (run / ex["noisy"]).exists():
            continue
        slug = f"ex{k + 1}"
        noisy = load_audio(run / ex["noisy"])
        clean = load_audio(run / ex["clean"])
        vmax = float(max(_spectrogram(noisy).max(), _spectrogram(clean).max()))
        entries = [("clean", run / ex["clean"]), ("noisy", run / ex["noisy"])]
        entries += [(m, run / v["audio"]) for m, v in ex.get("methods", {}).items()
                    if m != "noisy" and (run / v["audio"]).exists()]  # fmt: skip
        rows = []
        for i, (name, src) in enumerate(entries):
            x = noisy if name == "noisy" else clean if name == "clean" else load_audio(src)
            audio = f"audio/{slug}/{i:02d}.wav"
            img = f"img/{slug}/{i:02d}.png"
            _copy(src, tmp / audio)
            (tmp / img).parent.mkdir(parents=True, exist_ok=True)
            _spec_png(x, vmax, tmp / img)
            rows.append(
                f'<tr><td class="name">{html.escape(name)}</td><td class="player">'
                f'<audio controls preload="none" src="{audio}"></audio></td>'
                f'<td><img src="{img}" alt="spectrogram of {html.escape(name)}" loading="lazy">'
                "</td></tr>"
            )
        frames = load_lips(run / ex["lips"]) if ex.get("lips") and (run / ex["lips"]).exists() else None
        extra = ""
        has_weights = any(v.get("weights") for v in ex.get("methods", {}).values())
        if frames is not None and not has_weights:
            img = f"img/{slug}/lips.png"
            _lips_png(frames, tmp / img)
            extra += (f'<figure class="lips"><img src="{img}" alt="mouth frames">'
                      "<figcaption>Mouth frames given to the audio-visual priors (evenly spaced, "
                      "after the visual degradation).</figcaption></figure>")  # fmt: skip
        for j, (m, v) in enumerate(ex.get("methods", {}).items()):
            if not v.get("weights") or not (run / v["weights"]).exists():
                continue
            with np.load(run / v["weights"]) as z:
                w = {k: z[k] for k in z.files}
            img = f"img/{slug}/weights{j:02d}.png"
            spans = ex.get("degraded_s") or []
            _weights_png(w, noisy, frames, m, tmp / img, spans)
            shaded = "; shaded: the video frames the condition damaged" if spans else ""
            extra += (f'<figure><img src="{img}" alt="modality weights of {html.escape(m)}">'
                      f"<figcaption>Per-frame visual weight (audio weight = 1 - visual) of each "
                      f"fusion site of {html.escape(m)}; the video is trusted where it is high"
                      f"{shaded}.</figcaption></figure>")  # fmt: skip
        cond = (f"{ex['noise_type']} noise at {float(ex['snr_db']):g} dB SNR, video: "
                f"{visual_label(ex)}")  # fmt: skip
        text = f"<p class=\"meta\">“{html.escape(ex['text'])}”</p>" if ex.get("text") else ""
        parts.append(
            f'<div class="example" id="{slug}"><h3>{k + 1}. {html.escape(ex["source_id"])} '
            f"— {html.escape(cond)}</h3>{text}"
            f'<table class="media"><tbody>{"".join(rows)}</tbody></table>{extra}</div>'
        )
    return "".join(parts) or '<p class="note">No audio examples were stored for this run.</p>'


def write_report(run: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Build ``OUT/index.html`` (default ``RUN/report``) from a benchmark folder; returns it."""
    run = Path(run)
    out = Path(out) if out is not None else run / "report"
    rows = read_results(run / "results.csv")
    rec_path = run / "benchmark.json"
    record = json.loads(rec_path.read_text()) if rec_path.exists() else {}
    uses_video = {m["name"]: bool(m.get("uses_video")) for m in record.get("methods", [])}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        tables = all_tables(rows, record.get("machine"), (record.get("config") or {}).get("reference") or [])
        tables_html = "".join(f'<div class="scroll">{t.html()}</div>' for t in tables)
        plots = []
        snrs = sorted(dict.fromkeys(r["snr_db"] for r in rows))
        _line_plot(rows, snrs, lambda r: r["snr_db"], "input SNR (dB)", tmp / "img/snr.png",
                   uses_video, categorical=len(snrs) < 2)  # fmt: skip
        plots.append(("img/snr.png", "Improvement over the noisy input vs input SNR (mean ± 95 % "
                      "CI over utterances and the other conditions)."))  # fmt: skip
        vis = _visual_order(list(dict.fromkeys(visual_label(r) for r in rows)))
        if len(vis) > 1:
            _line_plot(rows, vis, visual_label, "visual condition (increasing corruption)",
                       tmp / "img/visual.png", uses_video, categorical=True)  # fmt: skip
            plots.append(("img/visual.png", "Improvement vs visual corruption (audio-only methods "
                          "are flat: they do not see the video)."))  # fmt: skip
        plots_html = "".join(
            f'<figure><img src="{src}" alt="{html.escape(cap)}"><figcaption>{html.escape(cap)}'
            "</figcaption></figure>"
            for src, cap in plots
        )
        examples_html = _examples_html(run, tmp, record)
        title = f"reavise benchmark: {record.get('title') or run.name}"
        n_utt = len({r.get("source_id") for r in rows})
        subtitle = (f"{len(rows)} results, {n_utt} test utterance(s), "
                    f"{len(methods_of(rows))} method(s); source: {run.name}/results.csv")  # fmt: skip
        template = string.Template(
            resources.files("reavise.resources").joinpath("report.html").read_text()
        )
        page = template.substitute(
            title=html.escape(title),
            subtitle=html.escape(subtitle),
            setup=_setup_html(record, rows),
            tables=tables_html,
            plots=plots_html,
            examples=examples_html,
            footer="Generated by <code>reavise report</code>. Mean ± 95 % confidence interval "
            "(Student t) over utterances; i = improvement over the noisy input.",
        )
        css = resources.files("reavise.resources").joinpath("report.css").read_text()
        (tmp / "report.css").write_text(css)
        (tmp / "index.html").write_text(page)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        if not (out / "index.html").exists() and any(out.iterdir()):
            shutil.rmtree(tmp, ignore_errors=True)
            raise ReaviseError(f"{out}: exists and is not a report folder; choose another --out")
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return out / "index.html"
