"""The corpus manifest: JSON lines, one utterance per line, paths relative to the corpus root."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from ..audio import atomic_write
from ..errors import InputError

MANIFEST = "manifest.jsonl"
REQUIRED = ("id", "speaker", "split", "audio", "duration", "fps")


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
