"""One benchmark cell (a method on a mixture), run in a worker process; its result is a JSON file.

A cell file is written atomically once everything else of the cell (example audio, modality
weights) is on disk, so its presence means "done" and an interrupted run resumes from it.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import SAMPLE_RATE, atomic_write, load_audio, write_wav

_MODELS: dict[tuple[str, str], Any] = {}


def init_worker(threads: int = 1) -> None:
    """Process initializer: one torch thread per worker so workers do not fight for cores."""
    import torch

    torch.set_num_threads(threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))


def load_prior(path: str, device: str):
    """Checkpoint cache: each worker loads a model once."""
    from ..models.checkpoint import load_checkpoint

    key = (path, device)
    if key not in _MODELS:
        _MODELS[key] = load_checkpoint(path, device=device)
    return _MODELS[key]


def fusion_weights(prior) -> dict[str, np.ndarray]:
    """Per-frame (audio, visual) weights [T, 2] of each fusion site of the last forward pass.

    Read through ``prior.fusion_weights()`` (site -> [..., B, T, 2]) right after enhancing one
    utterance; leading sample dimensions are averaged. Priors without fusion modules and sites
    with constant weights (plain concatenation) give nothing, so the report has no plot for them.
    """
    fn = getattr(prior, "fusion_weights", None)
    if not callable(fn):
        return {}
    out: dict[str, np.ndarray] = {}
    for site, w in (fn() or {}).items():
        a = w.detach().float().cpu().numpy() if hasattr(w, "detach") else np.asarray(w, np.float32)
        if a.ndim < 2 or a.shape[-1] != 2 or a.size == 0:
            continue
        a = a.reshape(-1, a.shape[-2], 2).mean(0)
        if np.all(np.isfinite(a)) and float(np.ptp(a)) > 1e-6:
            out[str(site) or "fusion"] = a.astype(np.float32)
    return out


def _load_video(task: dict):
    """Lips of the mixture as a VideoInput, or None (missing video / audio-only prior)."""
    from ..inference.pipeline import VideoInput
    from ..lips import load_lips

    if not task.get("lips"):
        return None
    frames = load_lips(task["lips"])
    valid = np.load(task["valid"]).astype(bool) if task.get("valid") else None
    if valid is not None and len(valid) != len(frames):
        valid = None
    return VideoInput(frames, float(task.get("fps") or 30.0), valid)


def _finite(d: dict) -> dict:
    """JSON has no inf/nan: store them as strings that float() reads back."""
    return {k: (repr(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def run_cell(task: dict) -> dict:
    """Enhance one mixture with one method, score it, write the cell JSON; returns the record."""
    import torch

    from ..metrics import evaluate_pair

    noisy = load_audio(task["noisy"], warn=lambda m: None)
    clean = load_audio(task["clean"], warn=lambda m: None)
    n = min(len(noisy), len(clean))
    noisy, clean = noisy[:n], clean[:n]
    weights = None
    extra: dict[str, Any] = {}
    if task["kind"] == "baseline":
        from ..baselines import get_baseline

        fn = get_baseline(task["baseline"])
        t0 = time.perf_counter()
        est = fn(noisy, SAMPLE_RATE, clean=clean, seed=task["seed"])
        wall = time.perf_counter() - t0
    else:
        from ..inference import build_algorithm, enhance_waveforms

        device = task["device"]
        prior = load_prior(task["checkpoint"], device)
        algorithm = build_algorithm(task["algorithm"], **task["settings"])
        video = _load_video(task) if prior.uses_video else None
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.inference_mode(False):
            res = enhance_waveforms(prior, algorithm, [noisy], [video], device=device, seed=task["seed"])
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
        est = np.asarray(res[0].speech, dtype=np.float32)
        extra = {"n_iter": int(res[0].n_iter)}
        if task.get("example") and prior.uses_video:
            weights = fusion_weights(prior) or None
    scores = evaluate_pair(est, clean, SAMPLE_RATE, noisy=noisy)
    duration = n / SAMPLE_RATE
    record = {
        "method": task["method"],
        "mixture": task["mixture"],
        **_finite(scores),
        "wall_s": wall,
        "duration_s": duration,
        "rtf": wall / duration,
        **extra,
    }
    if task.get("example"):
        ex = Path(task["example"])
        write_wav(ex.with_suffix(".wav"), est)
        if weights is not None:
            wpath = ex.with_suffix(".weights.npz")
            atomic_write(wpath, lambda t: np.savez(t, **weights), ".npz")
            record["weights"] = wpath.name
        record["example"] = ex.with_suffix(".wav").name
    cell = Path(task["cell"])
    atomic_write(cell, lambda t: Path(t).write_text(json.dumps(record, indent=1)))
    return record
