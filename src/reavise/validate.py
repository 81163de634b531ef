"""Checks of user-supplied values, each failing with a one-line :mod:`reavise.errors` error.

* :func:`check_fields` checks (and normalises) every field of a typed config dataclass
  against its annotation, :func:`at_least` / :func:`positive` / ... its ranges: the configs'
  ``__post_init__`` call them, so a bad value fails where the config is built, naming the key.
* :func:`load_yaml` reads a YAML file (missing, unreadable, syntax error: one line).
* :func:`check_device` refuses unknown devices and CUDA where there is none.
* :func:`check_output_dir` / :func:`check_output_file` refuse an output that cannot be written,
  before any work starts.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import ReaviseError, SettingError

_NAMES = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    str: "a string",
    dict: "a mapping",
    Path: "a path",
    type(None): "null",
}


def short_repr(v: Any) -> str:
    """``repr(v)``, cut to 60 characters for a one-line message."""
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin in (tuple, list):
        inner = typing.get_args(tp)[:1] or (Any,)
        return f"a list of {_describe(inner[0]).removeprefix('a ').removeprefix('an ')}s"
    if origin is dict:
        return "a mapping"
    return _NAMES.get(tp, getattr(tp, "__name__", str(tp)))


class _Mismatch(Exception):
    """A value does not fit an annotation (turned into a SettingError by the caller)."""


def _coerce(v: Any, tp: Any) -> Any:
    """``v`` as a value of annotation ``tp`` (ints -> floats, lists -> tuples, "1e-3" -> float)."""
    if tp is Any or tp is typing.Any:
        return v
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if v is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(v, a)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin in (tuple, list):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis] or [Any]
        items = v if isinstance(v, (list, tuple)) else [v]
        return origin(_coerce(x, args[0]) for x in items)
    if origin is dict or tp is dict:
        if not isinstance(v, dict):
            raise _Mismatch
        return v
    if tp is bool:
        if not isinstance(v, bool):
            raise _Mismatch
        return v
    if tp is int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise _Mismatch
        return v
    if tp is float:
        if isinstance(v, str):
            try:
                v = float(v)  # YAML 1.1 reads 1e-3 (no dot) as a string
            except ValueError:
                raise _Mismatch from None
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise _Mismatch
        return float(v)
    if tp is str:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return str(v)  # precision: 16 -> "16"
        if not isinstance(v, str):
            raise _Mismatch
        return v
    if tp is Path:
        if not isinstance(v, (str, os.PathLike)):
            raise _Mismatch
        return Path(v)
    if isinstance(tp, type) and not isinstance(v, tp):
        raise _Mismatch
    return v


def _finite(v: Any) -> bool:
    if isinstance(v, float):
        return math.isfinite(v)
    if isinstance(v, (tuple, list)):
        return all(_finite(x) for x in v)
    return True


def check_fields(obj: Any, scope: str = "") -> None:
    """Check every field of dataclass ``obj`` against its annotation, normalising in place.

    Ints are accepted for floats, numeric strings ("1e-3", which YAML 1.1 does not read as a
    number) for floats, a scalar or list for a tuple; NaN and infinities are refused.
    Raises :class:`SettingError` naming the first field that does not fit.
    """
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        tp = hints.get(f.name, Any)
        try:
            new = _coerce(v, tp)
        except _Mismatch:
            raise SettingError(f.name, f"must be {_describe(tp)}, got {short_repr(v)}", scope) from None
        if not _finite(new):
            raise SettingError(f.name, f"must be a finite number, got {short_repr(v)}", scope)
        if new is not v:
            object.__setattr__(obj, f.name, new)


def at_least(obj: Any, key: str, minimum: float, scope: str = "") -> None:
    """``obj.key`` (when not None) must be >= ``minimum``."""
    v = getattr(obj, key)
    if v is not None and v < minimum:
        raise SettingError(key, f"must be at least {minimum}, got {short_repr(v)}", scope)


def positive(obj: Any, key: str, scope: str = "") -> None:
    """``obj.key`` (when not None) must be > 0."""
    v = getattr(obj, key)
    if v is not None and v <= 0:
        raise SettingError(key, f"must be positive, got {short_repr(v)}", scope)


def within(obj: Any, key: str, low: float, high: float, scope: str = "") -> None:
    """``obj.key`` must lie in [low, high]."""
    v = getattr(obj, key)
    if v is not None and not low <= v <= high:
        raise SettingError(key, f"must be between {low} and {high}, got {short_repr(v)}", scope)


def one_of(obj: Any, key: str, choices: Iterable[Any], scope: str = "") -> None:
    """``obj.key`` must be one of ``choices``."""
    choices = list(choices)
    v = getattr(obj, key)
    if v not in choices:
        shown = ", ".join(map(str, choices))
        raise SettingError(key, f"must be one of {shown}, got {short_repr(v)}", scope)


def load_yaml(path: str | os.PathLike) -> Any:
    """Read a YAML file; a missing or unreadable file or a syntax error is one ReaviseError."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise ReaviseError(f"{path}: no such config file")
    if path.is_dir():
        raise ReaviseError(f"{path}: is a folder, not a YAML config file")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ReaviseError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ReaviseError(f"{path}: YAML syntax error{where}: {problem}") from None


def check_device(device: str) -> str:
    """``device`` if torch can run on it here: cpu, cuda[:N] (with a GPU), mps (on a Mac)."""
    if device == "cpu":
        return device
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ReaviseError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ReaviseError(f"{device!r} needs CUDA, which is not available on this machine")
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise ReaviseError(f"{device!r}: this machine has {n} CUDA device(s)")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ReaviseError(f"{device!r} needs MPS, which is not available on this machine")
    elif dev.type != "cpu":
        raise ReaviseError(f"unsupported device {device!r}; use cpu, cuda or cuda:N")
    return device


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_output_dir(path: Path, what: str = "output folder") -> Path:
    """Refuse (one line) an output folder that is a file or cannot be created or written."""
    if path.exists() and not path.is_dir():
        raise ReaviseError(f"{path}: {what} is an existing file")
    base = _nearest_existing(path)
    if not base.is_dir():
        raise ReaviseError(f"{path}: cannot create the {what} ({base} is a file)")
    if not os.access(base, os.W_OK | os.X_OK):
        raise ReaviseError(f"{path}: {what} is not writable ({base} is read-only)")
    return path


def check_output_file(path: Path, what: str = "output file") -> Path:
    """Refuse (one line) an output file that is a folder or cannot be written."""
    if path.is_dir():
        raise ReaviseError(f"{path}: {what} is a folder; give a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise ReaviseError(f"{path}: {what} is not writable")
    check_output_dir(path.parent, f"folder of the {what}")
    return path
