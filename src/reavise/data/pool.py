"""The start method of the data commands' worker pools (synth, prepare, mix)."""

from __future__ import annotations

from multiprocessing import get_all_start_methods, get_context
from multiprocessing.context import BaseContext


def worker_context() -> BaseContext:
    """forkserver where available (else spawn): workers start from a clean process.

    Forking a parent whose torch or OpenCV thread pools have run can deadlock the child
    (seen in cv2.setNumThreads during ``reavise data prepare``).
    """
    return get_context("forkserver" if "forkserver" in get_all_start_methods() else "spawn")
