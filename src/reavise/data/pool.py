"""The worker pools of the data commands (synth, prepare, mix): start method and lifetime."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_all_start_methods, get_context
from multiprocessing.context import BaseContext


def worker_context() -> BaseContext:
    """forkserver where available (else spawn): workers start from a clean process.

    Forking a parent whose torch or OpenCV thread pools have run can deadlock the child
    (seen in cv2.setNumThreads during ``reavise data prepare``).
    """
    return get_context("forkserver" if "forkserver" in get_all_start_methods() else "spawn")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else (pid reused): treat as gone
        return False
    return True


def watch(pid: int, on_gone: Callable[[], None], interval: float = 0.5) -> None:
    """Call ``on_gone()`` from a daemon thread once process ``pid`` has ended (however it
    ended: SIGKILL too). Polls the pid itself, so it works whoever the caller's parent is."""

    def poll() -> None:
        while _alive(pid):
            time.sleep(interval)
        on_gone()

    threading.Thread(target=poll, daemon=True).start()


def _exit_now() -> None:
    os._exit(1)  # the command that owned this pool is gone: write nothing more


def end_with(main_pid: int, init: Callable[[], None] | None = None, interval: float = 0.5) -> None:
    """Pool initializer: the worker exits once process ``main_pid`` has ended (killed with
    SIGKILL, say), then runs ``init``. Under forkserver a worker's parent is the fork server,
    not the command, so the command's pid is watched rather than ``getppid``. Ctrl-C reaches
    the whole process group and stops the workers as before."""
    watch(main_pid, _exit_now, interval)
    if init is not None:
        init()


def data_pool(workers: int, init: Callable[[], None] | None = None) -> ProcessPoolExecutor:
    """A process pool for a data command whose workers end with the command."""
    return ProcessPoolExecutor(
        workers, mp_context=worker_context(), initializer=end_with, initargs=(os.getpid(), init)
    )
