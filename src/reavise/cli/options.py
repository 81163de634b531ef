"""What several commands share: the checked-option callbacks (typer calls them with the
parsed value), ``--set key=value`` parsing, and the torch thread count of ``--threads``.

Nothing here imports the command modules or the app (``reavise.cli``), so every command
module can import it.
"""

from __future__ import annotations

import typer

from ..errors import ReaviseError, SettingError

#: option bounds shared by every command
SEED_MAX = 2**32 - 1


# --- option callbacks (typer calls them with the parsed value) -----------------------------
def positive(value: float | None) -> float | None:
    """A float option that must be > 0."""
    if value is not None and not value > 0:
        raise typer.BadParameter(f"must be positive, got {value:g}")
    return value


def fraction(value: float | None) -> float | None:
    """A float option in [0, 1)."""
    if value is not None and not 0 <= value < 1:
        raise typer.BadParameter(f"must be at least 0 and below 1, got {value:g}")
    return value


def _checked(module: str, name: str, doc: str):
    """A typer callback that passes a value (None stays None) through ``module.name``, a check
    raising ReaviseError, imported on first use (``--help`` stays light)."""

    def callback(value):
        if value is None:
            return value
        import importlib

        check = getattr(importlib.import_module(module, "reavise"), name)
        try:
            return check(value)
        except ReaviseError as exc:
            raise typer.BadParameter(str(exc)) from None

    callback.__doc__ = doc
    return callback


device = _checked(".validate", "check_device",
                  "A torch device that exists here (cpu, cuda[:N] with a GPU, mps on a Mac).")
output_dir = _checked(".validate", "check_output_dir",
                      "An output folder that is not a file and can be created and written.")
output_file = _checked(".validate", "check_output_file",
                       "An output file that is not a folder and whose folder can be written.")
checkpoint = _checked(".pretrained", "resolve",
                      "A checkpoint file, or the name of a prior shipped with reavise.")  # fmt: skip


# --- --set key=value -----------------------------------------------------------------------
def parse_settings(
    items: list[str] | None, flag: str = "--set", origins: dict[str, str] | None = None
) -> dict:
    """``key=value`` pairs (values parsed as YAML scalars: 10, 0.01, true, [128, 64]).

    ``origins`` (when given) records ``key -> "--set key=value"`` for error messages.
    """
    import yaml

    out = {}
    for item in items or []:
        k, sep, v = item.partition("=")
        key = k.strip().replace("-", "_")
        if not sep or not key:
            raise ReaviseError(f"{flag} {item!r}: expected key=value")
        try:
            out[key] = yaml.safe_load(v)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or type(exc).__name__
            raise ReaviseError(f"{flag} {item}: not a YAML value ({problem})") from None
        if origins is not None:
            origins[key] = f"{flag} {item}"
    return out


def explain(exc: SettingError, origins: dict[str, str]) -> ReaviseError:
    """A setting's error prefixed with where its value came from (a flag, a YAML file)."""
    origin = origins.get(exc.key)
    return ReaviseError(f"{origin}: {exc.key} {exc.problem}") if origin else exc


# --- --threads -----------------------------------------------------------------------------
#: most torch threads chosen by default (the models are small: more threads mostly wait)
MAX_DEFAULT_THREADS = 8


def default_threads() -> int:
    """CPUs this process may use: its affinity mask, the cgroup CPU quota (containers),
    and ``MAX_DEFAULT_THREADS``, whichever is smallest."""
    import math
    import os

    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:  # cgroup v2: "max 100000" or "200000 100000" (quota, period in microseconds)
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, min(n, MAX_DEFAULT_THREADS))


def set_threads(threads: int | None) -> None:
    """torch threads: ``threads``, else ``OMP_NUM_THREADS`` when set, else
    :func:`default_threads` (torch's own default counts every CPU of the machine, also in a
    container that may use only a few). The CLI also makes idle OpenMP threads sleep after
    a short spin (``GOMP_SPINCOUNT``, see ``reavise.cli.main``) so that on a busy machine they
    do not spin against the other processes."""
    import os

    import torch

    if threads:
        torch.set_num_threads(threads)
    elif not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(default_threads())
