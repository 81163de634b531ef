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


def hold_out(
    corpus: str | os.PathLike, out: str | os.PathLike, n: int, seed: int,
    source: str = "train", name: str = "dev",
) -> dict[str, int]:
    """A view of ``corpus`` in ``out`` with ``n`` of its ``source`` utterances moved to split
    ``name`` (drawn with ``seed``): a validation set of one's own, for tuning on data that
    neither training nor the test split sees. The view's rows point at the corpus's files
    (absolute paths: nothing is copied); its ``corpus.json`` says where it comes from.
    Returns the utterances per split."""
    corpus, out = Path(corpus).resolve(), Path(out)
    rows = read_manifest(corpus)
    pool = sorted(r["id"] for r in rows if r["split"] == source)
    if not 0 < n < len(pool):
        raise InputError(f"--n: must be between 1 and {len(pool) - 1} ({len(pool)} {source} utterances), got {n}")
    if name in {r["split"] for r in rows}:
        raise InputError(f"--name: {corpus} already has a {name!r} split")
    held = set(np.random.default_rng(seed).choice(pool, n, replace=False).tolist())
    out.mkdir(parents=True, exist_ok=True)
    view = []
    for r in rows:
        r = dict(r)
        for key in ("audio", "lips", "valid"):
            if r.get(key) is not None:
                r[key] = str(corpus / r[key])
        if r["id"] in held:
            r["split"] = name
        view.append(r)
    meta_path = corpus / "corpus.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    meta["derived"] = {"from": str(corpus), "held_out": n, "split": name, "source": source, "seed": seed}
    counts: dict[str, int] = {}
    for r in view:
        counts[r["split"]] = counts.get(r["split"], 0) + 1
    meta["split_utterances"] = counts
    write_manifest(out, view)
    atomic_write(out / "corpus.json", lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=1, sort_keys=True)))
    return counts
