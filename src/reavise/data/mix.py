"""Test mixtures: clean corpus speech + noise at an exact SNR, with degraded lips videos.

SNR is defined over the whole utterance, 10 log10(sum s^2 / sum n^2), and met exactly on the
float signals. If the mixture would exceed ``max_peak``, clean and noise are scaled by one
common factor (``clip_gain``, SNR unchanged). Files are 16-bit PCM WAV like the corpus
(``reavise.audio.write_wav``); clean, noise and noisy are quantised separately, so the written
noisy equals clean + noise within 1.5 LSB and the SNR of the written files is within
quantisation error of ``snr_db`` (their measured SNR is recorded as ``snr_db_written``).

Mixture layout (docs/architecture.md): ``mixtures.json``, ``manifest.jsonl``,
``noisy|clean|noise/<id>.wav``, ``lips/<id>.npy``, ``valid/<id>.npy``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from ..audio import SAMPLE_RATE, atomic_write, load_audio, write_wav
from ..errors import ReaviseError
from ..lips import load_lips, save_lips
from ..paths import safe_name
from .degrade import VisualCondition, degrade, parse_visual
from .manifest import MANIFEST, read_manifest, write_manifest
from .noise import (
    NoiseFolder,
    check_noise_type,
    compute_ltass,
    make_noise,
    select_babble,
)
from .pool import data_pool

DEFAULT_SNRS: tuple[float, ...] = (-5.0, 0.0, 5.0, 10.0)
DEFAULT_NOISES: tuple[str, ...] = (
    "white", "pink", "brown", "speech_shaped", "babble", "modulated", "car", "hum",
)  # fmt: skip
DEFAULT_VISUAL: tuple[str, ...] = ("clean", "occlusion:0.3", "occlusion:0.7", "missing")
BABBLE_TALKERS = 6
BABBLE_SPLITS = ("test", "val")
LTASS_UTTERANCES = 32
SETTINGS = "mixtures.json"
JOURNAL = ".progress.jsonl"


@dataclass(frozen=True)
class Mix:
    """A mixture: ``noisy = clean + noise`` (all float64, already scaled) and the gains used."""

    noisy: np.ndarray
    clean: np.ndarray
    noise: np.ndarray
    noise_gain: float
    clip_gain: float


def snr_db(clean: np.ndarray, noise: np.ndarray) -> float:
    """Utterance-level SNR 10 log10(sum s^2 / sum n^2) in dB."""
    s = np.asarray(clean, dtype=np.float64)
    n = np.asarray(noise, dtype=np.float64)
    return float(10 * np.log10(np.sum(s**2) / np.sum(n**2)))


def mix(clean: np.ndarray, noise: np.ndarray, snr_db: float, max_peak: float = 1.0) -> Mix:
    """Mix ``clean`` and ``noise`` (same length) at exactly ``snr_db``; see :class:`Mix`.

    The noise gain solves sum s^2 / (g^2 sum n^2) = 10^(snr/10), i.e.
    g = sqrt(sum s^2 / (sum n^2 10^(snr/10))). If max |s + g n| > max_peak, both s and g n are
    multiplied by c = max_peak / peak (``clip_gain``), which leaves their ratio, the SNR, as is.
    """
    s = np.asarray(clean, dtype=np.float64).reshape(-1)
    n = np.asarray(noise, dtype=np.float64).reshape(-1)
    if len(s) != len(n):
        raise ReaviseError(f"mix: clean has {len(s)} samples but noise has {len(n)}")
    if not math.isfinite(float(snr_db)):
        raise ReaviseError(f"mix: SNR must be a finite number of dB, got {snr_db}")
    ps, pn = float(np.sum(s**2)), float(np.sum(n**2))
    if ps == 0.0:
        raise ReaviseError("mix: clean signal is silent (zero energy); no SNR is defined")
    if pn == 0.0:
        raise ReaviseError("mix: noise signal is silent (zero energy); no SNR is defined")
    g = math.sqrt(ps / (pn * 10 ** (float(snr_db) / 10)))
    n = g * n
    noisy = s + n
    peak = float(np.max(np.abs(noisy)))
    c = 1.0
    if peak > max_peak:
        c = max_peak / peak
        s, n, noisy = s * c, n * c, noisy * c
    return Mix(noisy=noisy, clean=s, noise=n, noise_gain=g * c, clip_gain=c)


def mix_at_snr(
    clean: np.ndarray, noise: np.ndarray, snr_db: float, max_peak: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """(noisy, scaled_noise) at exactly ``snr_db``; the clean part is ``noisy - scaled_noise``.

    Use :func:`mix` to also get the anti-clipping factor applied to both signals.
    """
    m = mix(clean, noise, snr_db, max_peak)
    return m.noisy, m.noise


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from ``parts`` via BLAKE2b: stable across runs, unlike salted ``hash()``."""
    text = "\x1f".join(f"{p:.6g}" if isinstance(p, float) else str(p) for p in parts)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 1


def parse_snrs(text: str | Iterable[float]) -> list[float]:
    """Parse ``"-5,0,5,10"`` (or a list of numbers) into finite SNRs in dB."""
    items = [t.strip() for t in text.split(",")] if isinstance(text, str) else list(text)
    out: list[float] = []
    for item in items:
        if item == "":
            continue
        try:
            v = float(item)
        except (TypeError, ValueError):
            raise ReaviseError(f"bad SNR list {text!r}: {item!r} is not a number of dB") from None
        if not math.isfinite(v):
            raise ReaviseError(f"bad SNR list {text!r}: {item!r} is not finite")
        if v not in out:
            out.append(v)
    if not out:
        raise ReaviseError(f"bad SNR list {text!r}: no SNR given")
    return out


def parse_names(text: str | Iterable[str]) -> list[str]:
    """Split a comma-separated list (or pass a list through), dropping blanks and repeats."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for item in items:
        item = str(item).strip()
        if item and item not in out:
            out.append(item)
    return out


def mixture_id(source_id: str, noise_type: str, snr: float, visual: VisualCondition) -> str:
    """E.g. ``spk1_u003_pink_snr-5_occlusion0.3``."""
    return f"{safe_name(source_id)}_{noise_type}_snr{snr:g}_{visual.label}"


def _paths(mid: str, has_lips: bool) -> dict[str, str | None]:
    return {
        "noisy": f"noisy/{mid}.wav",
        "clean": f"clean/{mid}.wav",
        "noise": f"noise/{mid}.wav",
        "lips": f"lips/{mid}.npy" if has_lips else None,
        "valid": f"valid/{mid}.npy",
    }


def _complete(out_dir: Path, row: dict) -> bool:
    """True if every file a manifest row names exists (the mixture need not be redone)."""
    keys = ("noisy", "clean", "noise", "lips", "valid")
    return all(row.get(k) is None or (out_dir / row[k]).exists() for k in keys if k in row)


@functools.lru_cache(maxsize=64)
def _cached_audio(path: str) -> np.ndarray:
    """Babble sources are reused across mixtures: read each once per process."""
    x = load_audio(path)
    x.setflags(write=False)
    return x


def _save_bool(path: Path, mask: np.ndarray) -> None:
    atomic_write(path, lambda tmp: np.save(tmp, np.asarray(mask, dtype=bool)), suffix=".npy")


NOISE_PARTS = ("all", "val", "test")


def real_noise_types(noise_dir: str | os.PathLike) -> dict[str, list[str]]:
    """Noise type -> its recordings, for a folder with per-type sub-folders
    (``noise-real/<type>/*.flac``); empty for a flat folder of recordings (type ``file``)."""
    from .noise import AUDIO_EXTENSIONS

    root = Path(noise_dir)
    types: dict[str, list[str]] = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(
            str(f) for f in sub.rglob("*")
            if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS and not f.name.startswith(".")
        )  # fmt: skip
        if files:
            types[sub.name] = files
    return types


def noise_part(files: Sequence[str], part: str) -> list[tuple[str, float, float]]:
    """The recordings (path, start fraction, end fraction) of one real noise type that
    ``part`` may use, so that test mixtures hear noise never used for validation.

    Fixed, independent of any seed: with two or more recordings (sorted by name) the even
    positions are for test and the odd ones for val; a single recording is cut in time, its
    first half for val and its second half for test. ``all`` uses every recording whole.
    """
    if part not in NOISE_PARTS:
        raise ReaviseError(f"noise part must be one of {', '.join(NOISE_PARTS)}, got {part!r}")
    files = sorted(files)
    if part == "all":
        return [(f, 0.0, 1.0) for f in files]
    if len(files) == 1:
        return [(files[0], 0.0, 0.5) if part == "val" else (files[0], 0.5, 1.0)]
    keep = 0 if part == "test" else 1
    return [(f, 0.0, 1.0) for i, f in enumerate(files) if i % 2 == keep]


def _real_noise(entries: Sequence[Sequence], n_samples: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A random segment (looped when short) of one of ``entries`` (see :func:`noise_part`)."""
    path, lo, hi = entries[int(rng.integers(0, len(entries)))]
    x = _cached_audio(str(path))
    a, b = int(round(lo * len(x))), int(round(hi * len(x)))
    seg = np.asarray(x[a:b], dtype=np.float64)
    if seg.size == 0 or not np.any(seg):
        raise ReaviseError(f"{path}: noise recording part {lo:g}..{hi:g} is empty or silent")
    start = int(rng.integers(0, len(seg)))
    idx = (start + np.arange(n_samples)) % len(seg)
    return seg[idx], {"noise_file": str(path), "noise_offset_s": round((a + start) / SAMPLE_RATE, 4)}


def utterance_noise(
    ctx: dict, seed: int, uid: str, speaker: str, n_samples: int, noise_type: str, snr: float
) -> tuple[np.ndarray, dict, int]:
    """(noise [n_samples], manifest fields, noise seed) of one mixture, seeded by (seed,
    utterance, noise type, SNR) only: ``ctx`` holds what :func:`noise_context` prepares."""
    noise_seed = stable_seed(seed, uid, noise_type, float(snr), "noise")
    rng = np.random.default_rng(noise_seed)
    extra: dict = {}
    kw: dict = {}
    if noise_type in ctx.get("real_noise", {}):
        noise, info = _real_noise(ctx["real_noise"][noise_type], n_samples, rng)
        extra["noise_source"] = "real"
        extra["noise_file"] = os.path.relpath(info["noise_file"], ctx["noise_dir"])
        extra["noise_offset_s"] = info["noise_offset_s"]
        return noise, extra, noise_seed
    if noise_type == "babble":
        chosen = select_babble(ctx["babble_pool"], speaker, ctx["babble_talkers"], rng)
        kw["sources"] = [_cached_audio(r["path"]) for r in chosen]
        extra["babble_ids"] = [r["id"] for r in chosen]
        extra["babble_speakers"] = [r["speaker"] for r in chosen]
    elif noise_type == "speech_shaped" and ctx["ltass"] is not None:
        kw["ltass"] = ctx["ltass"]
    elif noise_type == "file":
        files = ctx["noise_files"]
        path = files[int(rng.integers(0, len(files)))]
        kw["noise_file"] = path
        extra["noise_file"] = os.path.relpath(path, ctx["noise_dir"])
    return make_noise(noise_type, n_samples, rng, **kw), extra, noise_seed


def _mix_utterance(job: dict) -> list[dict]:
    """Make every pending mixture of one source utterance; returns their manifest rows."""
    row, out_dir, seed = job["row"], Path(job["out_dir"]), job["seed"]
    root = Path(job["corpus"])
    uid, speaker = str(row["id"]), str(row["speaker"])
    clean = load_audio(root / row["audio"]).astype(np.float64)
    frames = valid0 = None
    fps = float(row.get("fps") or 30.0)
    if row.get("lips"):
        frames = load_lips(root / row["lips"])
        valid0 = np.ones(len(frames), dtype=bool)
        if row.get("valid"):
            v = np.load(root / row["valid"]).astype(bool).reshape(-1)
            if len(v) != len(frames):
                raise ReaviseError(
                    f"{root / row['valid']}: {len(v)} validity flags for {len(frames)} lips frames"
                )
            valid0 = v
    n_video = len(frames) if frames is not None else int(row.get("n_video_frames") or 0)
    visuals = [parse_visual(v) for v in job["visual"]]
    rows: list[dict] = []
    for noise_type in job["noises"]:
        for snr in job["snrs"]:
            todo = [v for v in visuals if mixture_id(uid, noise_type, snr, v) not in job["done"]]
            if not todo:
                continue
            noise, extra, noise_seed = utterance_noise(job, seed, uid, speaker, len(clean), noise_type, snr)
            m = mix(clean, noise, snr)
            written_snr = None
            for vis in todo:
                mid = mixture_id(uid, noise_type, snr, vis)
                visual_seed = stable_seed(seed, uid, vis.label, "visual")
                lips = mask = None
                if frames is not None:
                    lips, mask = degrade(frames, vis, rng=visual_seed, fps=fps)
                    mask = mask & valid0
                if lips is None:
                    mask = np.zeros(n_video, dtype=bool)
                paths = _paths(mid, lips is not None)
                write_wav(out_dir / paths["clean"], m.clean)
                write_wav(out_dir / paths["noise"], m.noise)
                write_wav(out_dir / paths["noisy"], m.noisy)
                if written_snr is None:
                    s_q = sf.read(str(out_dir / paths["clean"]), dtype="float64")[0]
                    n_q = sf.read(str(out_dir / paths["noise"]), dtype="float64")[0]
                    written_snr = round(snr_db(s_q, n_q), 4)
                if lips is not None:
                    save_lips(out_dir / paths["lips"], lips)
                _save_bool(out_dir / paths["valid"], mask)
                rows.append(
                    {
                        "id": mid,
                        "source_id": uid,
                        "speaker": speaker,
                        "split": row.get("split"),
                        "text": row.get("text", ""),
                        "noise_type": noise_type,
                        "snr_db": float(snr),
                        "snr_db_written": written_snr,
                        "visual": vis.name,
                        "severity": vis.severity,
                        **paths,
                        "audio": paths["noisy"],
                        "fps": fps,
                        "n_video_frames": n_video,
                        "duration": len(clean) / SAMPLE_RATE,
                        "clip_gain": m.clip_gain,
                        "noise_gain": m.noise_gain,
                        "noise_seed": noise_seed,
                        "visual_seed": visual_seed,
                        **extra,
                    }
                )
    return rows


def _read_rows(path: Path) -> list[dict]:
    """JSON lines of a previous (possibly interrupted) run; a torn last line is ignored."""
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def resolve_noises(
    noise_types: Sequence[str] | str | None,
    noise_dir: str | os.PathLike | None,
    split: str,
    noise_split: str = "auto",
) -> tuple[list[str], dict[str, list], str]:
    """(noise types, real noise type -> recordings part (:func:`noise_part`), noise part).

    See :func:`make_mixtures` for the defaults and for real noise by type."""
    real_types = real_noise_types(noise_dir) if noise_dir is not None and Path(noise_dir).is_dir() else {}
    if noise_types is None:
        if real_types:
            noises = list(real_types)
        else:
            noises = list(DEFAULT_NOISES) + (["file"] if noise_dir is not None else [])
    else:
        noises = parse_names(noise_types)
        if real_types and "file" in noises:
            i = noises.index("file")
            noises = noises[:i] + [t for t in real_types if t not in noises] + noises[i + 1 :]
    if not noises:
        raise ReaviseError("no noise types given")
    for kind in noises:
        if kind not in real_types:
            check_noise_type(kind)
    part = noise_split
    if part == "auto":
        part = split if split in ("val", "test") else "all"
    real_noise = {t: noise_part(real_types[t], part) for t in noises if t in real_types}
    return noises, real_noise, part


def select_utterances(
    corpus_dir: Path, corpus: list[dict], split: str, n_utterances: int | None, seed: int
) -> list[dict]:
    """The rows of ``split`` sorted by id, or a seeded choice of ``n_utterances`` of them."""
    rows = sorted((r for r in corpus if r.get("split") == split), key=lambda r: str(r["id"]))
    if not rows:
        present = ", ".join(sorted({str(r.get("split")) for r in corpus})) or "none"
        raise ReaviseError(f"{corpus_dir}: corpus has no {split!r} utterances (splits: {present})")
    if n_utterances is not None:
        if n_utterances < 1:
            raise ReaviseError(f"--n-utterances must be at least 1, got {n_utterances}")
        if n_utterances < len(rows):
            pick = np.random.default_rng(stable_seed(seed, "utterances")).permutation(len(rows))
            rows = [rows[i] for i in sorted(pick[:n_utterances])]
    return rows


def noise_context(
    corpus_dir: Path,
    corpus: list[dict],
    rows: list[dict],
    noises: list[str],
    real_noise: dict,
    noise_dir: str | os.PathLike | None,
    seed: int,
    babble_talkers: int = BABBLE_TALKERS,
) -> dict:
    """What :func:`utterance_noise` needs: babble pool, LTASS, noise files, real noise parts."""
    real_types = noise_dir is not None and Path(noise_dir).is_dir() and bool(real_noise_types(noise_dir))
    noise_files: list[str] = []
    if real_types:
        pass  # the sub-folders were read above
    elif "file" in noises:
        if noise_dir is None:
            raise ReaviseError("noise type 'file' needs a folder of noise recordings (--noise-dir)")
        noise_files = [str(p) for p in NoiseFolder(noise_dir).files]
    elif noise_dir is not None:
        NoiseFolder(noise_dir)  # still report an empty/missing folder

    babble_pool: list[dict] = []
    if "babble" in noises and "babble" not in real_noise:
        babble_pool = [
            {"id": str(r["id"]), "speaker": str(r["speaker"]), "duration": float(r["duration"]),
             "path": str(corpus_dir / r["audio"])}
            for r in corpus if r.get("split") in BABBLE_SPLITS
        ]  # fmt: skip
        check_rng = np.random.default_rng(0)
        for spk in sorted({str(r["speaker"]) for r in rows}):
            select_babble(babble_pool, spk, 1, check_rng)  # fail early, before any work

    ltass = None
    if "speech_shaped" in noises and "speech_shaped" not in real_noise:
        # The corpus' own LTASS (from up to 32 utterances of any split) shapes the noise.
        ordered = sorted(corpus, key=lambda r: str(r["id"]))
        pick = np.random.default_rng(stable_seed(seed, "ltass")).permutation(len(ordered))
        sample = [ordered[i] for i in sorted(pick[:LTASS_UTTERANCES])]
        f, p = compute_ltass([load_audio(corpus_dir / r["audio"]) for r in sample])
        ltass = (f.tolist(), p.tolist())
    return {
        "babble_pool": babble_pool,
        "babble_talkers": babble_talkers,
        "ltass": ltass,
        "noise_files": noise_files,
        "real_noise": real_noise,
        "noise_dir": str(noise_dir) if noise_dir is not None else None,
    }


def make_mixtures(
    corpus_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    split: str = "test",
    snrs: Sequence[float] | str = DEFAULT_SNRS,
    noise_types: Sequence[str] | str | None = None,
    visual_conditions: Sequence[str | VisualCondition] | str = DEFAULT_VISUAL,
    n_utterances: int | None = None,
    seed: int = 0,
    noise_dir: str | os.PathLike | None = None,
    workers: int = 1,
    babble_talkers: int = BABBLE_TALKERS,
    progress: bool = True,
    noise_split: str = "auto",
) -> list[dict]:
    """Write utterances x noises x SNRs x visual conditions mixtures of ``split`` to ``out_dir``.

    Returns the manifest rows (also in ``out_dir/manifest.jsonl``). Deterministic for
    ``seed``: the noise of a mixture is seeded by (seed, utterance, noise, SNR) and its
    degradation by (seed, utterance, visual condition), so mixtures that differ only in the
    visual condition share their audio and each utterance has one degradation per condition.
    Resumable: mixtures whose files exist (from an earlier run with the same seed) are kept.
    ``noise_types`` defaults to :data:`DEFAULT_NOISES`, plus ``file`` when ``noise_dir`` is given.

    Real noise by type: when ``noise_dir`` has per-type sub-folders (``<type>/*.flac``),
    each sub-folder is a noise type named after it (it wins over a synthetic type of the same
    name), ``file`` stands for all of them, and the default is all of them. Those
    recordings are shared out between the val and test splits by :func:`noise_part`
    (``noise_split="auto"``: the part of the corpus split mixed, ``all`` for train).
    """
    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    snr_list = parse_snrs(snrs)
    noises, real_noise, part = resolve_noises(noise_types, noise_dir, split, noise_split)
    specs = (
        parse_names(visual_conditions)
        if isinstance(visual_conditions, str)
        else [v.spec if isinstance(v, VisualCondition) else str(v) for v in visual_conditions]
    )
    visuals: list[VisualCondition] = []
    for spec in specs:
        cond = parse_visual(spec)
        if cond.label not in [v.label for v in visuals]:
            visuals.append(cond)
    if not visuals:
        raise ReaviseError("no visual conditions given")
    if workers < 1:
        raise ReaviseError(f"--workers must be at least 1, got {workers}")
    if babble_talkers < 1:
        raise ReaviseError(f"babble needs at least 1 talker, got {babble_talkers}")

    corpus = read_manifest(corpus_dir)
    rows = select_utterances(corpus_dir, corpus, split, n_utterances, seed)
    ctx = noise_context(corpus_dir, corpus, rows, noises, real_noise, noise_dir, seed, babble_talkers)

    settings = {
        "version": 1,
        "corpus": str(corpus_dir.resolve()),
        "split": split,
        "seed": int(seed),
        "snrs": snr_list,
        "noise_types": noises,
        "visual_conditions": [v.spec for v in visuals],
        "n_utterances": len(rows),
        "noise_dir": str(Path(noise_dir).resolve()) if noise_dir is not None else None,
        "babble_talkers": babble_talkers,
        "noise_split": part if real_noise else None,
        "real_noise": {
            t: [[os.path.relpath(f, noise_dir), lo, hi] for f, lo, hi in e] for t, e in real_noise.items()
        },
        "sample_rate": SAMPLE_RATE,
        "wav_subtype": "PCM_16",
    }
    settings_path = out_dir / SETTINGS
    if settings_path.exists():
        try:
            old = json.loads(settings_path.read_text())
        except json.JSONDecodeError:
            raise ReaviseError(f"{settings_path}: not valid JSON; use a new --out folder") from None
        for key in ("corpus", "split", "seed"):
            if old.get(key) != settings[key]:
                raise ReaviseError(
                    f"{out_dir}: holds mixtures made with {key}={old.get(key)!r}, not "
                    f"{settings[key]!r}; use a new --out folder"
                )
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(settings_path, lambda tmp: Path(tmp).write_text(json.dumps(settings, indent=2)))

    # Resume: rows of the last manifest and of an interrupted run's journal whose files exist.
    journal = out_dir / JOURNAL
    done: dict[str, dict] = {}
    for r in _read_rows(out_dir / MANIFEST) + _read_rows(journal):
        if "id" in r and _complete(out_dir, r):
            done[r["id"]] = r

    plan: list[tuple[dict, list[str]]] = []
    for r in rows:
        ids = [
            mixture_id(str(r["id"]), nt, s, v) for nt in noises for s in snr_list for v in visuals
        ]
        plan.append((r, ids))
    jobs = [
        {
            "row": {k: v for k, v in r.items() if not k.startswith("_")},
            "corpus": str(corpus_dir),
            "out_dir": str(out_dir),
            "seed": int(seed),
            "snrs": snr_list,
            "noises": noises,
            "visual": [v.spec for v in visuals],
            "done": sorted(i for i in ids if i in done),
            **ctx,  # babble pool, LTASS, noise files, real noise (noise_context)
        }
        for r, ids in plan
        if any(i not in done for i in ids)
    ]

    bar = tqdm(
        total=len(plan), initial=len(plan) - len(jobs), desc="mixing", unit="utt",
        disable=not progress,
    )  # fmt: skip
    with open(journal, "a") as jf, bar:

        def record(new_rows: list[dict]) -> None:
            for nr in new_rows:
                done[nr["id"]] = nr
                jf.write(json.dumps(nr, sort_keys=True) + "\n")
            jf.flush()
            bar.update(1)

        if workers == 1 or len(jobs) <= 1:
            for job in jobs:
                record(_mix_utterance(job))
        else:
            with data_pool(workers) as pool:
                futures = [pool.submit(_mix_utterance, job) for job in jobs]
                for fut in as_completed(futures):
                    record(fut.result())

    out_rows = [done[i] for _, ids in plan for i in ids]
    write_manifest(out_dir, out_rows)
    settings["n_mixtures"] = len(out_rows)
    atomic_write(settings_path, lambda tmp: Path(tmp).write_text(json.dumps(settings, indent=2)))
    journal.unlink(missing_ok=True)
    return out_rows
