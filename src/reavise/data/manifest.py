"""The corpus manifest: JSON lines, one utterance per line, paths relative to the corpus root;
and the speaker split its ``split`` field records."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..audio import atomic_write
from ..errors import InputError

MANIFEST = "manifest.jsonl"
REQUIRED = ("id", "speaker", "split", "audio", "duration", "fps")
SPLITS = ("train", "val", "test")


def read_manifest(root: str | os.PathLike, name: str = MANIFEST) -> list[dict]:
    """Read ``root/manifest.jsonl``; every row gains ``_root`` (the corpus folder)."""
    root = Path(root)
    path = root / name
    if not path.exists():
        raise InputError(f"{path}: no manifest (is {root} a reavise corpus?)")
    rows = []
    with open(path) as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{i}: not valid JSON ({exc.msg})") from None
            missing = [k for k in REQUIRED if k not in row]
            if missing and name == MANIFEST:
                raise InputError(f"{path}:{i}: missing fields {missing}")
            row["_root"] = str(root)
            rows.append(row)
    return rows


def write_manifest(root: str | os.PathLike, rows: Iterable[dict], name: str = MANIFEST) -> Path:
    """Atomically write rows (keys starting with ``_`` are dropped), sorted as given."""
    root = Path(root)
    text = "".join(
        json.dumps({k: v for k, v in r.items() if not k.startswith("_")}, sort_keys=True) + "\n"
        for r in rows
    )
    return atomic_write(root / name, lambda tmp: Path(tmp).write_text(text))


def resolve(row: dict, key: str) -> Path | None:
    """Absolute path of a manifest row's relative path field (None if absent)."""
    value = row.get(key)
    if value is None:
        return None
    return Path(row["_root"]) / value


def split_speakers(
    speakers: Iterable[str],
    seed: int | np.random.Generator = 0,
    fixed: dict[str, str] | None = None,
    val_frac: float = 0.1,
    test_frac: float = 0.1,
) -> dict[str, str]:
    """Speaker -> split: official assignments first, the rest shuffled by ``seed``.

    ``seed`` is an int (drawn with ``np.random.default_rng(seed)``: ``data prepare``) or the
    Generator to draw from (``data synth`` passes its own seeded stream). The free speakers
    are sorted, permuted, and taken as test, then val, then train. A split the official
    assignment already fills is not drawn again; with at least two free speakers there is at
    least one test (then one val) speaker, never sharing a speaker.
    """
    fixed = dict(fixed or {})
    free = sorted(set(speakers) - set(fixed))
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    order = [free[i] for i in rng.permutation(len(free))]
    n = len(order)
    has = set(fixed.values())
    n_test = 0 if "test" in has or n < 2 else max(1, round(test_frac * n))
    n_val = 0 if "val" in has or n - n_test < 2 else max(1, round(val_frac * n))
    out = dict(fixed)
    for i, s in enumerate(order):
        out[s] = "test" if i < n_test else ("val" if i < n_test + n_val else "train")
    return out


def speakers_by_split(splits: dict[str, str]) -> dict[str, list[str]]:
    """``{"train": [...], "val": [...], "test": [...]}`` (sorted) from speaker -> split."""
    out: dict[str, list[str]] = {k: [] for k in SPLITS}
    for spk in sorted(splits):
        out[splits[spk]].append(spk)
    return out
