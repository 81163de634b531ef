"""Shared helpers of the benchmark scripts: data location, timing, machine facts."""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
#: the real reference data beside the repo ($REAVISE_SHARED_DATA overrides, e.g. for a worktree)
SHARED = Path(os.environ.get("REAVISE_SHARED_DATA") or REPO.parent / "shared" / "data")


def shared_available() -> bool:
    return (SHARED / "ntcd-timit-sample" / "noisy.wav").exists()


#: the published checkpoints under ../shared/data/reference-checkpoints: name -> state_dict
PUBLISHED = {"a-vae": "a-vae/A-VAE.pt", "rvae": "rvae/RVAE.pt", "a-dkf": "a-dkf/A-DKF.pt"}


def published_prior(workdir: Path, name: str = "a-vae"):
    """A published prior (``PUBLISHED``) imported into a reavise checkpoint (None without
    shared data)."""
    from reavise.models.checkpoint import import_published, load_checkpoint

    if not shared_available():
        return None
    src = SHARED / "reference-checkpoints" / PUBLISHED[name]
    ck = import_published(src, workdir / f"published-{name}.pt")
    return load_checkpoint(ck)


def timed(fn, repeat: int = 3, warmup: int = 1) -> tuple[float, list[float], object]:
    """Median wall time of ``fn()`` over ``repeat`` runs after ``warmup`` runs."""
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, out


def machine() -> dict:
    from fair_blas import numpy_blas
    from reavise import native

    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        "numpy_blas": numpy_blas(),
        "native_kernels": "on" if native.load() is not None else f"off ({native.unavailable_reason()})",
        "int8_cpu_flags": sorted((native.cpu_flags() or set()) & set(native.INT8_CPU_FLAGS)),
    }
