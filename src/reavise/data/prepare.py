"""Prepare real corpora (TCD-TIMIT, NTCD-TIMIT, GRID, LRS3, generic videos, clean speech audio).

Each corpus has a scanner that turns its folder layout into :class:`Item` s (one utterance:
video and/or audio and/or a ready-made lips file); one shared worker turns an item into the
reavise corpus layout (docs/architecture.md): 16 kHz mono audio, uint8 67x67 mouth ROIs, a
per-frame validity mask and a manifest row. Bad items are skipped with a one-line reason
(and listed in ``skipped.jsonl``), finished items are reused on a rerun, and ``workers > 1``
spreads items over processes.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..audio import DEFAULT_STFT, SAMPLE_RATE, atomic_write, load_audio, write_wav
from ..errors import InputError, ReaviseError
from ..lips import ROI_SIZE, VIDEO_FPS, load_lips, save_lips
from ..paths import safe_name
from ..registry import Registry
from .manifest import speakers_by_split, split_speakers, write_manifest
from .pool import data_pool

log = logging.getLogger(__name__)

CORPORA = ("tcd-timit", "ntcd-timit", "grid", "lrs3", "generic", "audio")
VIDEO_EXTS = (".mp4", ".mkv", ".avi", ".mov", ".mpg", ".mpeg", ".webm", ".m4v")
LIPS_EXTS = (".npy", ".mat")
STATE_DIR = ".prepare"  # per-item finished rows, for resuming
SKIPPED = "skipped.jsonl"

# NTCD-TIMIT speaker-independent test speakers (TCD-TIMIT volunteers), as used by the
# published NTCD-TIMIT evaluations of AV-VAE speech enhancement.
TIMIT_TEST_SPEAKERS = ("09F", "24M", "26M", "27M", "33F", "40F", "47M", "49F", "56M")
GRID_FPS = 25.0
GRID_ALIGN_UNITS_PER_S = 25000.0  # .align times are 1/1000 video frame at 25 fps


@dataclass
class Item:
    """One utterance found in a corpus, before any decoding."""

    id: str
    speaker: str
    source: Path  # the file that names the item in messages (video, else audio)
    video: Path | None = None
    audio: Path | None = None
    lips: Path | None = None
    text: str | None = None
    fps: float | None = None  # only for items whose lips come from a file
    split: str | None = None  # official split when the corpus has one
    extra: dict = field(default_factory=dict)
    audio_only: bool = False  # clean speech without video (no lips, no validity mask)


@dataclass
class PrepareResult:
    """What ``prepare_corpus`` produced: manifest rows, skipped items, speaker splits."""

    rows: list[dict]
    skipped: list[dict]
    splits: dict[str, list[str]]
    out: Path
    split_by: str = "speaker"  # "utterance" for a one-talker corpus
    split_utterances: dict[str, int] = field(default_factory=dict)


# ----------------------------------------------------------------------------- file helpers


def _walk(root: Path, exts: Iterable[str], exclude: Path | None = None) -> list[Path]:
    """Sorted files under ``root`` with one of ``exts`` (case-insensitive), skipping ``exclude``."""
    exts = tuple(e.lower() for e in exts)
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        d = Path(dirpath)
        if exclude is not None and (d == exclude or exclude in d.parents):
            dirnames[:] = []
            continue
        dirnames[:] = sorted(n for n in dirnames if not n.startswith("."))
        found += [d / f for f in filenames if f.lower().endswith(exts) and not f.startswith(".")]
    return sorted(found)


def _lips_stem(path: Path) -> str:
    """Utterance name of a lips file: NTCD-TIMIT names them ``<utt>Raw.npy``."""
    stem = path.stem
    return stem[:-3] if stem.endswith("Raw") and len(stem) > 3 else stem


def _safe(name: str) -> str:
    """A file-name-safe id component (``-`` for the characters it replaces: ids on disk)."""
    return safe_name(name, fill="-")


def _speaker_after(parts: tuple[str, ...], markers: Iterable[str]) -> str | None:
    """The path component right after one of ``markers`` (e.g. ``volunteers/<spk>``)."""
    low = [p.lower() for p in parts]
    for m in markers:
        if m in low:
            i = low.index(m)
            if i + 1 < len(parts) - 1:  # a folder, not the file itself
                return parts[i + 1]
    return None


_SNR_DIR = re.compile(r"^-?\d+(db)?$", re.IGNORECASE)


def _is_noisy(rel: Path) -> bool:
    """NTCD-TIMIT noisy copies live under ``<noise>/<snr>/`` (or a ``noisy`` folder)."""
    dirs = rel.parts[:-1]
    return any(d.lower() == "noisy" or _SNR_DIR.match(d) for d in dirs)


def load_lips_file(path: str | os.PathLike, roi_size: int = ROI_SIZE) -> np.ndarray:
    """A ready-made lips file (.npy in either reavise layout, or a MATLAB .mat) -> [T,67,67] 0..1."""
    path = Path(path)
    if path.suffix.lower() != ".mat":
        return load_lips(path, roi_size)
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path))
    except NotImplementedError:
        raise InputError(f"{path}: MATLAB v7.3 (HDF5) .mat files are not supported; re-save with -v7") from None
    except Exception as exc:
        raise InputError(f"{path}: not a readable .mat file ({str(exc).splitlines()[0] if str(exc) else exc})") from None
    arrays = [v for k, v in mat.items() if not k.startswith("__") and isinstance(v, np.ndarray) and v.dtype.kind in "fiub"]
    if not arrays:
        raise InputError(f"{path}: .mat file holds no numeric array")
    a = max(arrays, key=lambda v: v.size)
    n = roi_size * roi_size
    if a.ndim == 2 and a.shape[0] == n:
        # NTCD-TIMIT layout (H*W, T), each column a column-major image.
        a = a.T.reshape(-1, roi_size, roi_size).transpose(0, 2, 1)
    elif a.ndim == 2 and a.shape[1] == n:
        a = a.reshape(-1, roi_size, roi_size).transpose(0, 2, 1)
    elif a.ndim == 3 and a.shape[:2] == (roi_size, roi_size) and a.shape[2] != roi_size:
        a = a.transpose(2, 0, 1)  # MATLAB (H, W, T)
    if a.ndim != 3 or a.shape[1:] != (roi_size, roi_size):
        raise InputError(f"{path}: wrong ROI shape {a.shape}; expected [T,{roi_size},{roi_size}] or ({n}, T)")
    a = a.astype(np.float32)
    if a.max() > 1.0 + 1e-3:  # stored as 0..255
        a = a / 255.0
    if not np.all(np.isfinite(a)) or a.min() < -1e-3 or a.max() > 1 + 1e-3:
        raise InputError(f"{path}: lips values not finite or outside 0..255")
    return np.clip(a, 0.0, 1.0)


def _index(files: Iterable[Path], root: Path, speaker_of: Callable[[Path], str | None], key=lambda p: p.stem):
    """Map (speaker, stem) and stem -> files, to pair videos with audio/lips/labels."""
    by_spk: dict[tuple[str | None, str], Path] = {}
    by_stem: dict[str, list[Path]] = {}
    for f in files:
        rel = f.relative_to(root)
        by_spk.setdefault((speaker_of(rel), key(f)), f)
        by_stem.setdefault(key(f), []).append(f)
    return by_spk, by_stem


def _lookup(index, speaker: str | None, stem: str) -> Path | None:
    """Same speaker and stem first, else the stem if it is unique in the corpus."""
    by_spk, by_stem = index
    hit = by_spk.get((speaker, stem))
    if hit is None and len(by_stem.get(stem, [])) == 1:
        hit = by_stem[stem][0]
    return hit


def _text_file(path: Path) -> str | None:
    """The transcription in a same-stem .txt (LRS3 ``Text:`` line, else the first line)."""
    txt = path.with_suffix(".txt")
    if not txt.exists():
        return None
    lines = txt.read_text(errors="replace").splitlines()
    for line in lines:
        if line.lower().startswith("text:"):
            return line.split(":", 1)[1].strip()
    return lines[0].strip() if lines else None


def read_grid_align(path: str | os.PathLike) -> list[tuple[float, float, str]]:
    """GRID word alignment -> [(start_s, end_s, word)] (``sil``/``sp`` dropped)."""
    words = []
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) != 3:
            continue
        s, e, w = parts
        if w in ("sil", "sp"):
            continue
        words.append((int(s) / GRID_ALIGN_UNITS_PER_S, int(e) / GRID_ALIGN_UNITS_PER_S, w))
    return words


# ----------------------------------------------------------------------------- scanners


def _timit_speaker(rel: Path) -> str | None:
    spk = _speaker_after(rel.parts, ("volunteers", "lipspeakers", "clean"))
    return spk if spk is not None else (rel.parts[-2] if len(rel.parts) > 1 else None)


def _timit_group(rel: Path) -> str | None:
    low = [p.lower() for p in rel.parts]
    return "lipspeakers" if "lipspeakers" in low else ("volunteers" if "volunteers" in low else None)


def _timit_identity(rel: Path) -> tuple[str, str | None, str | None]:
    """(speaker, group, official split or None) of a (N)TCD-TIMIT path: lipspeakers train,
    the NTCD-TIMIT test speakers test, the rest drawn later by seed."""
    spk = _timit_speaker(rel) or "unknown"
    group = _timit_group(rel)
    split = "train" if group == "lipspeakers" else ("test" if spk in TIMIT_TEST_SPEAKERS else None)
    return spk, group, split


def scan_tcd_timit(root: Path, exclude: Path | None = None) -> list[Item]:
    """TCD-TIMIT: ``{volunteers,lipspeakers}/<spk>/[Clips/]straightcam/<utt>.mp4``.

    Audio: a same-name .wav under the speaker (the audio release), else the video's track.
    Lips: a same-name ``.mat``/``.npy`` (``<utt>Raw.npy``, NTCD-TIMIT lips release) if
    present, else extracted from the video. 30-degree camera clips are ignored.
    """
    videos = [v for v in _walk(root, (".mp4",), exclude) if "30degcam" not in {p.lower() for p in v.relative_to(root).parts}]
    wavs = _index([w for w in _walk(root, (".wav",), exclude) if not _is_noisy(w.relative_to(root))], root, _timit_speaker)
    lips = _index(_walk(root, LIPS_EXTS, exclude), root, _timit_speaker, key=_lips_stem)
    items = []
    for v in videos:
        rel = v.relative_to(root)
        spk, group, split = _timit_identity(rel)
        items.append(
            Item(
                id=f"{_safe(spk)}_{_safe(v.stem)}",
                speaker=_safe(spk),
                source=v,
                video=v,
                audio=_lookup(wavs, spk, v.stem),
                lips=_lookup(lips, spk, v.stem),
                text=_text_file(v),
                fps=VIDEO_FPS,
                split=split,
                extra={"group": group} if group else {},
            )
        )
    return items


def scan_ntcd_timit(root: Path, exclude: Path | None = None) -> list[Item]:
    """NTCD-TIMIT: clean wavs by speaker (``clean/[volunteers/]<spk>/[straightcam/]<utt>.wav``)
    with lips ``<utt>Raw.npy``/``.npy``/``.mat`` (beside them or in a separate lips tree).

    Noisy copies (``[noisy/]<noise>/<snr>/...``) are not utterances of the clean corpus;
    their conditions are recorded in corpus.json. Lips are 30 fps; a same-name .mp4 is used
    for the ROI only when no lips file exists.
    """
    all_wavs = _walk(root, (".wav",), exclude)
    clean = [w for w in all_wavs if not _is_noisy(w.relative_to(root))]
    lips = _index(_walk(root, LIPS_EXTS, exclude), root, _timit_speaker, key=_lips_stem)
    videos = _index(_walk(root, (".mp4",), exclude), root, _timit_speaker)
    items = []
    for w in clean:
        rel = w.relative_to(root)
        spk, group, split = _timit_identity(rel)
        items.append(
            Item(
                id=f"{_safe(spk)}_{_safe(w.stem)}",
                speaker=_safe(spk),
                source=w,
                video=_lookup(videos, spk, w.stem),
                audio=w,
                lips=_lookup(lips, spk, w.stem),
                text=_text_file(w),
                fps=VIDEO_FPS,
                split=split,
            )
        )
    return items


def ntcd_noise_conditions(root: Path, exclude: Path | None = None) -> dict[str, list[str]]:
    """Noise type -> SNR folders found under an NTCD-TIMIT root (for corpus.json)."""
    conds: dict[str, set[str]] = {}
    for w in _walk(root, (".wav",), exclude):
        dirs = w.relative_to(root).parts[:-1]
        for i, d in enumerate(dirs):
            if _SNR_DIR.match(d) and i > 0:
                conds.setdefault(dirs[i - 1], set()).add(d)
                break
    return {k: sorted(v, key=lambda s: int(re.sub(r"(?i)db$", "", s))) for k, v in sorted(conds.items())}


def _grid_speaker(rel: Path) -> str | None:
    for p in rel.parts[:-1]:
        if re.fullmatch(r"s\d+", p, re.IGNORECASE):
            return p.lower()
    return None


def _grid_root_speaker(root: Path) -> str | None:
    """The talker a one-talker GRID folder is named after (``grid-s1``, ``s1`` -> ``s1``)."""
    m = re.search(r"(?:^|[^a-z0-9])(s\d+)$", root.name.lower())
    return m.group(1) if m else None


def scan_grid(root: Path, exclude: Path | None = None) -> list[Item]:
    """GRID: ``s<k>/[video/mpg_6000/]<utt>.mpg``, audio ``audio_25k/s<k>/<utt>.wav`` (or any
    same-name wav/flac under the speaker), word timings ``[s<k>/]align/<utt>.align``.

    A one-talker folder (``grid-s1/{video,audio,align}/<utt>.*``, mp4 + FLAC) takes its
    speaker from the folder name."""
    videos = _walk(root, (".mpg", ".mpeg", ".mp4"), exclude)
    wavs = _index(_walk(root, (".wav", ".flac"), exclude), root, _grid_speaker)
    aligns = _index(_walk(root, (".align",), exclude), root, _grid_speaker)
    root_spk = _grid_root_speaker(root)
    items = []
    for v in videos:
        spk = _grid_speaker(v.relative_to(root)) or root_spk or "unknown"
        extra: dict = {}
        text = None
        al = _lookup(aligns, spk, v.stem)
        if al is not None:
            words = read_grid_align(al)
            text = " ".join(w for _, _, w in words)
            extra["words"] = [[round(s, 4), round(e, 4), w] for s, e, w in words]
        items.append(
            Item(
                id=f"{spk}_{_safe(v.stem)}",
                speaker=spk,
                source=v,
                video=v,
                audio=_lookup(wavs, spk, v.stem),
                text=text,
                extra=extra,
            )
        )
    return items


def scan_lrs3(root: Path, exclude: Path | None = None) -> list[Item]:
    """LRS3: ``{pretrain,trainval,test}/<youtube id>/<utt>.mp4`` + ``<utt>.txt`` (``Text: ...``).

    The YouTube id stands for the speaker; ``test`` is the official test split, validation
    speakers are drawn from pretrain/trainval.
    """
    items = []
    for v in _walk(root, (".mp4",), exclude):
        rel = v.relative_to(root)
        subset = next((p.lower() for p in rel.parts[:-1] if p.lower() in ("pretrain", "trainval", "test")), None)
        spk = _safe(rel.parts[-2]) if len(rel.parts) > 1 else "unknown"
        wav = v.with_suffix(".wav")
        items.append(
            Item(
                id=f"{spk}_{_safe(v.stem)}",
                speaker=spk,
                source=v,
                video=v,
                audio=wav if wav.exists() else None,
                text=_text_file(v),
                split="test" if subset == "test" else None,
                extra={"subset": subset} if subset else {},
            )
        )
    return items


def scan_generic(root: Path, exclude: Path | None = None) -> list[Item]:
    """Any folder of talking-face videos: the first sub-folder names the speaker (a video at
    the top level is its own speaker); audio from a same-name .wav, else the video's track."""
    items = []
    seen: set[str] = set()
    for v in _walk(root, VIDEO_EXTS, exclude):
        rel = v.relative_to(root)
        spk = _safe(rel.parts[0]) if len(rel.parts) > 1 else _safe(v.stem)
        uid = f"{spk}_{_safe('-'.join(rel.with_suffix('').parts[1:]) or v.stem)}"
        if uid in seen:  # same stem, different container
            uid = f"{uid}-{v.suffix.lstrip('.').lower()}"
        seen.add(uid)
        wav = v.with_suffix(".wav")
        items.append(
            Item(
                id=uid,
                speaker=spk,
                source=v,
                video=v,
                audio=wav if wav.exists() else None,
                text=_text_file(v),
            )
        )
    return items


AUDIO_EXTS = (".wav", ".flac")


def _utterance_texts(root: Path) -> dict[str, str]:
    """Transcripts of an audio folder from a ``utterances.tsv`` (columns ``file`` and ``text``)."""
    tsv = root / "utterances.tsv"
    if not tsv.exists():
        return {}
    lines = tsv.read_text(errors="replace").splitlines()
    if not lines:
        return {}
    head = lines[0].split("\t")
    if "file" not in head or "text" not in head:
        return {}
    fi, ti = head.index("file"), head.index("text")
    out = {}
    for line in lines[1:]:
        cols = line.split("\t")
        if len(cols) > max(fi, ti):
            out[Path(cols[fi]).as_posix()] = cols[ti]
    return out


def scan_audio_folder(root: Path, exclude: Path | None = None) -> list[Item]:
    """Clean speech without video (speechocean762 ``<speaker>/<utt>.flac``, wav or flac at
    any rate): the first sub-folder names the speaker, files at the top level are one speaker
    named after the folder; transcripts from ``utterances.tsv`` or a same-stem .txt.
    No official split is read (speechocean762's ``split`` column included): speakers are
    split by seed like any corpus without one."""
    texts = _utterance_texts(root)
    flat = _safe(root.name) or "unknown"
    items = []
    for a in _walk(root, AUDIO_EXTS, exclude):
        rel = a.relative_to(root)
        spk = _safe(rel.parts[0]) if len(rel.parts) > 1 else flat
        uid = f"{spk}_{_safe('-'.join(rel.with_suffix('').parts[1:]) or a.stem)}"
        items.append(
            Item(id=uid, speaker=spk, source=a, audio=a, text=texts.get(rel.as_posix()) or _text_file(a), audio_only=True)
        )
    return items


def _scan_generic_or_audio(root: Path, exclude: Path | None = None) -> list[Item]:
    """``generic``: a folder of talking-face videos, else (no video in it) of clean speech."""
    return scan_generic(root, exclude) or scan_audio_folder(root, exclude)


#: corpus name -> ``scan(root, exclude) -> list[Item]``
SCANNERS = Registry("corpus")
SCANNERS.add("tcd-timit", scan_tcd_timit)
SCANNERS.add("ntcd-timit", scan_ntcd_timit)
SCANNERS.add("grid", scan_grid)
SCANNERS.add("lrs3", scan_lrs3)
SCANNERS.add("generic", _scan_generic_or_audio)
SCANNERS.add("audio", scan_audio_folder)


def split_utterances(
    ids: Iterable[str], seed: int = 0, val_frac: float = 0.1, test_frac: float = 0.1
) -> dict[str, str]:
    """Utterance -> split for a one-talker corpus (GRID s1): shuffled by ``seed``, then the
    first ``round(test_frac * n)`` are test, the next ``round(val_frac * n)`` val."""
    ids = sorted(set(ids))
    order = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    n = len(order)
    n_test = int(round(test_frac * n)) if n >= 3 else 0
    n_val = int(round(val_frac * n)) if n >= 3 else 0
    return {u: "test" if i < n_test else ("val" if i < n_test + n_val else "train") for i, u in enumerate(order)}


# ----------------------------------------------------------------------------- one item


@dataclass
class _Job:
    item: Item
    out: Path
    root: Path
    tol_s: float
    tol_frac: float
    max_side: int
    force: bool


def _rel(path: Path, out: Path) -> str:
    return path.relative_to(out).as_posix()


def _state_path(out: Path, item: Item) -> Path:
    return out / STATE_DIR / item.speaker / f"{item.id}.json"


def _cached_row(job: _Job) -> dict | None:
    """The row of an item finished by an earlier run, if all its files are still there."""
    state = _state_path(job.out, job.item)
    if job.force or not state.exists():
        return None
    try:
        row = json.loads(state.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if all((job.out / row[k]).exists() for k in ("audio", "lips", "valid") if row.get(k)):
        return row
    return None


def process_item(job: _Job) -> dict:
    """Decode, check and write one item; returns its manifest row (without ``split``).

    Raises :class:`ReaviseError` with a one-line reason naming the file for a bad item.
    """
    from .. import video as vid

    it, out = job.item, job.out
    cached = _cached_row(job)
    if cached is not None:
        return cached

    # Audio: a separate wav wins (studio quality), else the video's own track.
    if it.audio is not None:
        audio = load_audio(it.audio, warn=lambda m: log.info(m))
    elif it.video is not None:
        audio = vid.read_audio_track(it.video)
        if audio is None:
            raise InputError(f"{it.video}: no audio (no same-name .wav and no audio track)")
        if audio.size < DEFAULT_STFT.n_fft or float(np.max(np.abs(audio))) == 0.0:
            raise InputError(f"{it.video}: audio track is empty or silent")
    else:
        raise InputError(f"{it.source}: no audio file")

    # Lips: a ready-made ROI file wins (the corpus's own crops), else detect in the video.
    if it.audio_only:
        return _audio_only_row(job, audio)
    if it.lips is not None:
        rois = load_lips_file(it.lips)
        valid = np.ones(len(rois), dtype=bool)
        fps = float(it.fps or VIDEO_FPS)
        lips_src = it.lips
    elif it.video is not None:
        rois, valid, fps = vid.extract_mouth_rois_from_video(it.video, max_side=job.max_side)
        if not valid.any():
            raise InputError(f"{it.video}: no face found in any of {len(valid)} frames")
        lips_src = it.video
    else:
        raise InputError(f"{it.source}: no lips file (.npy/.mat) and no video")
    if rois.ndim != 3 or rois.shape[1:] != (ROI_SIZE, ROI_SIZE):
        raise InputError(f"{lips_src}: wrong ROI shape {rois.shape}; expected [T,{ROI_SIZE},{ROI_SIZE}]")

    a_dur = len(audio) / SAMPLE_RATE
    v_dur = len(rois) / fps
    tol = max(job.tol_s, job.tol_frac * a_dur)
    if abs(a_dur - v_dur) > tol:
        raise InputError(
            f"{lips_src}: video lasts {v_dur:.2f} s ({len(rois)} frames at {fps:g} fps) but the "
            f"audio {a_dur:.2f} s (tolerance {tol:.2f} s)"
        )

    spk = it.speaker
    a_path = out / "audio" / spk / f"{it.id}.wav"
    l_path = out / "lips" / spk / f"{it.id}.npy"
    m_path = out / "valid" / spk / f"{it.id}.npy"
    write_wav(a_path, audio)
    save_lips(l_path, rois)
    atomic_write(m_path, lambda tmp: np.save(tmp, valid.astype(bool)), suffix=".npy")
    try:
        source = it.source.relative_to(job.root).as_posix()
    except ValueError:
        source = str(it.source)
    row = {
        "id": it.id,
        "speaker": spk,
        "text": it.text,
        "audio": _rel(a_path, out),
        "lips": _rel(l_path, out),
        "valid": _rel(m_path, out),
        "duration": round(a_dur, 4),
        "fps": round(fps, 4),
        "n_video_frames": int(len(rois)),
        "n_valid_frames": int(valid.sum()),
        "source": source,
        **it.extra,
    }
    state = _state_path(out, it)
    atomic_write(state, lambda tmp: Path(tmp).write_text(json.dumps(row, sort_keys=True)))
    return row


def _audio_only_row(job: _Job, audio: np.ndarray) -> dict:
    """Write one clean-speech item without video; its row has no lips/valid/fps."""
    it, out = job.item, job.out
    if audio.size < 1024 or float(np.max(np.abs(audio))) == 0.0:
        raise InputError(f"{it.source}: audio is empty or silent")
    a_path = out / "audio" / it.speaker / f"{it.id}.wav"
    write_wav(a_path, audio)
    try:
        source = it.source.relative_to(job.root).as_posix()
    except ValueError:
        source = str(it.source)
    row = {
        "id": it.id,
        "speaker": it.speaker,
        "text": it.text,
        "audio": _rel(a_path, out),
        "lips": None,
        "valid": None,
        "duration": round(len(audio) / SAMPLE_RATE, 4),
        "fps": None,
        "n_video_frames": 0,
        "n_valid_frames": 0,
        "source": source,
        **it.extra,
    }
    atomic_write(_state_path(out, it), lambda tmp: Path(tmp).write_text(json.dumps(row, sort_keys=True)))
    return row


def _run_job(job: _Job) -> tuple[str, dict]:
    """Worker entry: ("ok", row) or ("skip", record); never raises for a bad item."""
    try:
        return "ok", process_item(job)
    except ReaviseError as exc:
        return "skip", {"id": job.item.id, "speaker": job.item.speaker, "source": str(job.item.source), "reason": str(exc)}
    except Exception as exc:  # a decoder/detector failure on one odd file must not stop the corpus
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return "skip", {
            "id": job.item.id,
            "speaker": job.item.speaker,
            "source": str(job.item.source),
            "reason": f"{job.item.source}: {type(exc).__name__}: {msg}",
        }


def _init_worker() -> None:
    """One thread per worker process: the parallelism is across processes."""
    try:
        import cv2

        cv2.setNumThreads(1)
    except Exception:  # pragma: no cover
        pass
    try:
        import torch

        torch.set_num_threads(1)
    except Exception:  # pragma: no cover
        pass


# ----------------------------------------------------------------------------- driver


def prepare_corpus(
    corpus: str,
    root: str | os.PathLike,
    out: str | os.PathLike,
    seed: int = 0,
    workers: int = 1,
    val_frac: float = 0.1,
    test_frac: float = 0.1,
    tol_s: float = 0.2,
    tol_frac: float = 0.05,
    max_side: int = 640,
    force: bool = False,
    progress: bool = True,
    warn: Callable[[str], None] | None = None,
) -> PrepareResult:
    """Turn a real corpus at ``root`` into the reavise corpus layout at ``out``.

    Items whose files are already written are reused (``force`` redoes them); bad items are
    skipped with ``warn(reason)`` and listed in ``out/skipped.jsonl``. Items within the
    audio/video duration tolerance ``max(tol_s, tol_frac * duration)`` are kept.
    """
    corpus = corpus.lower()
    if corpus not in SCANNERS:
        raise ReaviseError(f"unknown corpus {corpus!r}; choose one of {', '.join(CORPORA)}")
    root, out = Path(root).resolve(), Path(out).resolve()
    if not root.is_dir():
        raise InputError(f"{root}: no such corpus folder")
    note = warn or (lambda m: log.warning(m))
    exclude = out if (out == root or root in out.parents) else None
    if exclude == root:
        raise ReaviseError(f"{out}: the output folder must differ from the corpus folder")
    items = SCANNERS.get(corpus)(root, exclude)
    if not items:
        raise InputError(f"{root}: no {corpus} utterances found (check the folder layout)")
    counts = Counter(i.id for i in items)
    dup = {k for k, n in counts.items() if n > 1}
    if dup:
        raise InputError(f"{root}: duplicate utterance ids {sorted(dup)[:5]}")

    jobs = [_Job(i, out, root, tol_s, tol_frac, max_side, force) for i in items]
    rows: list[dict] = []
    skipped: list[dict] = []

    def _collect(kind: str, payload: dict) -> None:
        if kind == "ok":
            rows.append(payload)
        else:
            skipped.append(payload)
            note(f"skipped {payload['reason']}")

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc=f"prepare {corpus}", unit="utt")
    try:
        if workers <= 1:
            for job in jobs:
                _collect(*_run_job(job))
                if bar is not None:
                    bar.update()
        else:
            with data_pool(workers, _init_worker) as pool:
                futures = [pool.submit(_run_job, j) for j in jobs]
                for fut in as_completed(futures):
                    _collect(*fut.result())
                    if bar is not None:
                        bar.update()
    finally:
        if bar is not None:
            bar.close()

    if not rows:
        raise InputError(f"{root}: none of its {len(items)} {corpus} items could be prepared ({skipped[0]['reason']})")
    # Split over the speakers that kept at least one utterance, so a speaker whose every item
    # was skipped does not leave val or test empty.
    fixed = {i.speaker: i.split for i in items if i.split}
    kept = {r["speaker"] for r in rows}
    splits = split_speakers(kept, seed, {k: v for k, v in fixed.items() if k in kept}, val_frac, test_frac)
    by_utt = None
    if len(kept) == 1 and not fixed:
        # One talker (GRID s1): split by utterance, not by speaker.
        by_utt = split_utterances((r["id"] for r in rows), seed, val_frac, test_frac)
    for r in rows:
        r["split"] = by_utt[r["id"]] if by_utt is not None else splits[r["speaker"]]
    rows.sort(key=lambda r: (r["speaker"], r["id"]))
    skipped.sort(key=lambda r: (r["speaker"], r["id"]))
    write_manifest(out, rows)
    text = "".join(json.dumps(s, sort_keys=True) + "\n" for s in skipped)
    atomic_write(out / SKIPPED, lambda tmp: Path(tmp).write_text(text))

    by_split = speakers_by_split(splits)
    n_utts = {k: sum(r["split"] == k for r in rows) for k in by_split}
    if by_utt is not None:
        by_split = {k: sorted({r["speaker"] for r in rows if r["split"] == k}) for k in by_split}
    meta = {
        "kind": corpus,
        "version": 1,
        "seed": seed,
        "source": str(root),
        "splits": by_split,
        "split_by": "utterance" if by_utt is not None else "speaker",
        "split_utterances": n_utts,
        "n_utterances": len(rows),
        "n_skipped": len(skipped),
        "sample_rate": SAMPLE_RATE,
        "roi_size": ROI_SIZE,
    }
    if corpus == "ntcd-timit":
        meta["noise_conditions"] = ntcd_noise_conditions(root, exclude)
    atomic_write(out / "corpus.json", lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n"))
    return PrepareResult(
        rows=rows, skipped=skipped, splits=by_split, out=out,
        split_by="utterance" if by_utt is not None else "speaker", split_utterances=n_utts,
    )  # fmt: skip
