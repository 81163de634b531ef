"""Import first in benchmark entry points: time NumPy with its own BLAS kernel choice.

Some machines set OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE to work around bugs of old OpenBLAS
builds; on a current NumPy they force slower kernels (here Haswell instead of SkylakeX), which
would flatter reavise against the NumPy reference. The process re-executes itself once
without them (before NumPy is loaded); ``REAVISE_BENCH_KEEP_OPENBLAS_ENV=1`` keeps them.
"""

from __future__ import annotations

import os
import sys

VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def reexec_without_openblas_overrides() -> None:
    if os.environ.get("REAVISE_BENCH_KEEP_OPENBLAS_ENV") == "1" or "numpy" in sys.modules:
        return
    if not (sys.argv and os.path.isfile(sys.argv[0])):  # python -c / interactive: leave as is
        return
    if any(v in os.environ for v in VARS):
        env = {k: v for k, v in os.environ.items() if k not in VARS}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)


def numpy_blas() -> str:
    """The BLAS NumPy runs (library, version, kernel architecture, threads), if knowable."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (threadpoolctl not installed)"
    for lib in threadpool_info():
        if lib.get("user_api") == "blas" and "numpy" in lib.get("filepath", ""):
            return (
                f"{lib.get('internal_api')} {lib.get('version')}, kernel "
                f"{lib.get('architecture')}, {lib.get('num_threads')} threads"
            )
    return "unknown"


reexec_without_openblas_overrides()
