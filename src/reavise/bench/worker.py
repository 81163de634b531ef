"""One benchmark cell (a method on a mixture), run in a worker process; its result is a JSON file.

The unit of work is a :class:`Cell`, made by ``grid.plan_cells`` in the parent and pickled to
the worker.

A cell file is written atomically once everything else of the cell (example audio, modality
weights) is on disk, so its presence means "done" and an interrupted run resumes from it.

A worker ends with its parent: SIGTERM (sent by the parent stopping its pool, or by the kernel
when the parent dies, however it died) unwinds the cell in progress, so its temp files are
removed and no cell is half-written, then the worker exits.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import SAMPLE_RATE, atomic_write, load_audio, write_wav

_MODELS: dict[tuple[str, str], Any] = {}


@dataclass(frozen=True)
class Cell:
    """One unit of work of the grid: a method on one distinct input (paths as strings).

    Audio-only methods run once per (utterance, noise, SNR): ``mixture`` is the first of the
    mixtures sharing that audio, and its result stands for all of them.
    """

    method: str  # the method's name in the tables
    kind: str  # "baseline" | "model"
    mixture: str  # id of the mixture that is run
    noisy: str
    clean: str
    file: str  # the cell JSON, written last (its presence means "done")
    seed: int
    device: str = "cpu"
    baseline: str = ""  # kind "baseline": its name in reavise.baselines
    checkpoint: str = ""  # kind "model": the prior, and the algorithm with its settings
    algorithm: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    lips: str | None = None
    valid: str | None = None
    fps: float | None = None
    duration: float = 0.0  # seconds (the longest cells are started first)
    #: where the enhanced audio of an example goes (OUT/examples/MIXTURE/METHOD, no suffix),
    #: and the example mixtures it stands for; None and () when the cell shows no example
    example: str | None = None
    example_mixtures: tuple[str, ...] = ()


def init_worker(threads: int = 1, parent_pid: int | None = None) -> None:
    """Process initializer: one torch thread per worker so workers do not fight for cores;
    the worker ends when ``parent_pid`` does (see :func:`stop_with_parent`)."""
    stop_with_parent(parent_pid)
    import torch

    torch.set_num_threads(threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))


class CellInterrupted(BaseException):
    """SIGTERM during a cell: unwinds it (``atomic_write`` removes its temp file), then exit."""


_IN_CELL = False
PR_SET_PDEATHSIG = 1


def _on_sigterm(signum: int, frame) -> None:
    if _IN_CELL:
        raise CellInterrupted
    os._exit(128 + signum)


def _set_parent_death_signal(sig: int) -> bool:
    """Linux: have the kernel send ``sig`` to this process when its parent exits."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _sigterm_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


def stop_with_parent(parent_pid: int | None) -> None:
    """SIGTERM stops this worker cleanly; the death of ``parent_pid`` sends it SIGTERM.

    SIGINT is ignored: Ctrl-C reaches the whole process group, and the parent answers it by
    terminating its pool, which must not see its workers fail cells first.
    """
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if parent_pid is None:
        return
    if not _set_parent_death_signal(signal.SIGTERM):  # elsewhere: poll the parent's pid
        from ..data.pool import watch

        watch(parent_pid, _sigterm_self)
    if os.getppid() != parent_pid:  # the parent died before the above could take effect
        os.kill(os.getpid(), signal.SIGTERM)


def load_prior(path: str, device: str):
    """Checkpoint cache: each worker loads a model once."""
    from ..models.checkpoint import load_checkpoint

    key = (path, device)
    if key not in _MODELS:
        _MODELS[key] = load_checkpoint(path, device=device)
    return _MODELS[key]


def fusion_weights(info: dict) -> dict[str, np.ndarray]:
    """Per-frame (audio, visual) weights [T, 2] of each fusion site, from an enhanced
    utterance's ``info["modality_weights"]`` (site -> [..., T, 2]); leading sample dimensions
    are averaged. Sites with constant weights (plain concatenation) give nothing, so the report
    has no plot for them."""
    out: dict[str, np.ndarray] = {}
    for site, w in (info.get("modality_weights") or {}).items():
        a = np.asarray(w, np.float32)
        if a.ndim < 2 or a.shape[-1] != 2 or a.size == 0:
            continue
        a = a.reshape(-1, a.shape[-2], 2).mean(0)
        if np.all(np.isfinite(a)) and float(np.ptp(a)) > 1e-6:
            out[str(site) or "fusion"] = a.astype(np.float32)
    return out


def _load_video(cell: Cell):
    """Lips of the mixture as a VideoInput, or None (missing video / audio-only prior)."""
    from ..inference.pipeline import VideoInput
    from ..lips import load_lips

    if not cell.lips:
        return None
    frames = load_lips(cell.lips)
    valid = np.load(cell.valid).astype(bool) if cell.valid else None
    if valid is not None and len(valid) != len(frames):
        valid = None
    return VideoInput(frames, float(cell.fps or 30.0), valid)


def _finite(d: dict) -> dict:
    """JSON has no inf/nan: store them as strings that float() reads back."""
    return {k: (repr(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def run_cell(cell: Cell) -> dict:
    """Enhance one mixture with one method, score it, write the cell JSON; returns the record.

    In a worker, SIGTERM during the cell unwinds it and ends the process (exit status 143).
    """
    global _IN_CELL
    try:
        _IN_CELL = True
        try:
            return _run_cell(cell)
        finally:
            _IN_CELL = False
    except CellInterrupted:
        os._exit(128 + signal.SIGTERM)


def _run_cell(cell: Cell) -> dict:
    """The work of :func:`run_cell`."""
    import torch

    from ..metrics import evaluate_pair

    noisy = load_audio(cell.noisy, warn=lambda m: None)
    clean = load_audio(cell.clean, warn=lambda m: None)
    n = min(len(noisy), len(clean))
    noisy, clean = noisy[:n], clean[:n]
    weights = None
    extra: dict[str, Any] = {}
    if cell.kind == "baseline":
        from ..baselines import get_baseline

        fn = get_baseline(cell.baseline)
        t0 = time.perf_counter()
        est = fn(noisy, SAMPLE_RATE, clean=clean, seed=cell.seed)
        wall = time.perf_counter() - t0
    else:
        from ..inference import build_algorithm, enhance_waveforms

        device = cell.device
        prior = load_prior(cell.checkpoint, device)
        algorithm = build_algorithm(cell.algorithm, **cell.settings)
        video = _load_video(cell) if prior.uses_video else None
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.inference_mode(False):
            res = enhance_waveforms(prior, algorithm, [noisy], [video], device=device, seed=cell.seed)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
        est = np.asarray(res[0].speech, dtype=np.float32)
        extra = {"n_iter": int(res[0].n_iter)}
        if cell.example and prior.uses_video:
            weights = fusion_weights(res[0].info) or None
    scores = evaluate_pair(est, clean, SAMPLE_RATE, noisy=noisy)
    duration = n / SAMPLE_RATE
    record = {
        "method": cell.method,
        "mixture": cell.mixture,
        **_finite(scores),
        "wall_s": wall,
        "duration_s": duration,
        "rtf": wall / duration,
        **extra,
    }
    if cell.example:
        ex = Path(cell.example)
        write_wav(ex.with_suffix(".wav"), est)
        if weights is not None:
            wpath = ex.with_suffix(".weights.npz")
            atomic_write(wpath, lambda t: np.savez(t, **weights), ".npz")
            record["weights"] = wpath.name
        record["example"] = ex.with_suffix(".wav").name
    atomic_write(Path(cell.file), lambda t: Path(t).write_text(json.dumps(record, indent=1)))
    return record
