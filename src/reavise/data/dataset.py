"""Training data: clean-speech power spectrograms (and aligned lips) from a corpus or a folder.

Features are computed once per split and kept in memory as one frame store: power
[N, F] float32, lips at native frame rate [N_v, H, W] uint8 plus, per STFT frame, the two
neighbouring video frames and the interpolation weight (``reavise.align``), so the lips
are interpolated on the fly and never stored at 62.5 fps. Waveforms are peak-normalised
first, as for the published priors; leading/trailing silence is excluded from sampling.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..align import align_mask_to_stft, video_to_stft_weights
from ..audio import load_audio, peak_normalize, power_spectrogram
from ..errors import InputError
from ..lips import load_lips
from .manifest import read_manifest, resolve

AUDIO_EXT = {".wav", ".flac", ".ogg"}
CACHE_VERSION = 1


@dataclass
class FrameStore:
    """All frames of one split, concatenated; ``starts`` index utterance boundaries."""

    power: np.ndarray  # [N, F] float32
    starts: np.ndarray  # [U + 1] frame offsets
    active: np.ndarray  # [N] bool: inside the non-silent region of its utterance
    lips: np.ndarray | None = None  # [N_v, H, W] uint8
    left: np.ndarray | None = None  # [N] int64 index into lips
    right: np.ndarray | None = None
    weight: np.ndarray | None = None  # [N] float32
    valid: np.ndarray | None = None  # [N] bool

    @property
    def has_video(self) -> bool:
        return self.lips is not None

    def save(self, path: Path) -> None:
        from ..audio import atomic_write

        arrays = {k: v for k, v in self.__dict__.items() if v is not None}
        atomic_write(path, lambda tmp: np.savez(tmp, **arrays), suffix=".npz")

    def fingerprint(self) -> str:
        """A short hash of what was loaded: utterance lengths, video or not, and the level of
        every utterance (0.1 dB steps, so the same files hash the same on any machine).

        Stored in training checkpoints: a resumed run refuses other data, but not the same
        data moved to another folder.
        """
        h = hashlib.blake2b(digest_size=8)
        lips_shape = None if self.lips is None else self.lips.shape
        h.update(repr((self.power.shape, lips_shape)).encode())
        cum = np.concatenate([[0.0], np.cumsum(self.power.astype(np.float64).sum(-1))])
        starts = np.asarray(self.starts, dtype=np.int64)
        energy = cum[starts[1:]] - cum[starts[:-1]]
        h.update(starts.tobytes())
        h.update(np.round(10 * np.log10(energy + 1e-12), 1).tobytes())
        return h.hexdigest()

    @classmethod
    def load(cls, path: Path) -> FrameStore:
        with np.load(path) as z:
            return cls(**{k: z[k] for k in z.files})


def _active_region(power: np.ndarray, top_db: float = 40.0) -> np.ndarray:
    """Frames between the first and last frame within ``top_db`` of the loudest frame."""
    e = 10 * np.log10(power.sum(-1) + 1e-12)
    on = np.flatnonzero(e > e.max() - top_db)
    act = np.zeros(len(power), bool)
    if len(on):
        act[on[0] : on[-1] + 1] = True
    return act


def list_wavs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXT)


def _utterances(source: Path, split: str) -> tuple[list[dict], bool]:
    """Manifest rows of ``split`` (corpus) or every audio file of a folder (audio only)."""
    if (source / "manifest.jsonl").exists():
        rows = [r for r in read_manifest(source) if r.get("split") == split]
        return rows, any(r.get("lips") for r in rows)
    if source.is_dir():
        files = list_wavs(source)
        if not files:
            raise InputError(f"{source}: no audio files (.wav/.flac/.ogg) and no manifest.jsonl")
        # deterministic 90/10 split of a plain folder by file-name hash
        def bucket(p: Path) -> str:
            h = int(hashlib.sha1(p.name.encode()).hexdigest(), 16) % 10
            return "val" if h == 0 else "train"

        rows = [{"id": p.stem, "audio": str(p), "_root": "/"} for p in files if bucket(p) == split]
        if not rows and split == "val":
            rows = [{"id": files[-1].stem, "audio": str(files[-1]), "_root": "/"}]
        return rows, False
    raise InputError(f"{source}: not a corpus folder or a folder of audio files")


def build_store(source: str | os.PathLike, split: str, with_video: bool | None = None) -> FrameStore:
    """Compute (or load from the corpus cache) the frame store of one split."""
    source = Path(source)
    rows, has_video = _utterances(source, split)
    if not rows:
        raise InputError(f"{source}: no utterances in split {split!r}")
    use_video = has_video if with_video is None else (with_video and has_video)
    key = hashlib.sha1(
        json.dumps([CACHE_VERSION, use_video, [(r["id"], r["audio"]) for r in rows]]).encode()
    ).hexdigest()[:12]
    cache = source / "cache" / f"{split}-{key}.npz" if (source / "manifest.jsonl").exists() else None
    if cache is not None and cache.exists():
        return FrameStore.load(cache)
    powers, acts, lips_all, lefts, rights, weights, valids = [], [], [], [], [], [], []
    n_lips = 0
    for r in rows:
        path = resolve(r, "audio") if r.get("_root") != "/" else Path(r["audio"])
        x, _ = peak_normalize(load_audio(path))
        p = power_spectrogram(torch.from_numpy(x)).numpy()
        powers.append(p)
        acts.append(_active_region(p))
        if use_video:
            lp = resolve(r, "lips")
            if lp is None:
                frames = np.zeros((1, 67, 67), np.uint8)
                ok = np.zeros(1, bool)
                fps = 30.0
            else:
                frames = np.round(load_lips(lp) * 255).astype(np.uint8)
                fps = float(r.get("fps", 30.0))
                vp = resolve(r, "valid")
                ok = np.load(vp) if vp is not None and vp.exists() else np.ones(len(frames), bool)
            li, ri, w = video_to_stft_weights(len(frames), fps, len(p))
            lips_all.append(frames)
            lefts.append(li + n_lips)
            rights.append(ri + n_lips)
            weights.append(w)
            valids.append(align_mask_to_stft(ok, fps, len(p)))
            n_lips += len(frames)
    starts = np.concatenate([[0], np.cumsum([len(p) for p in powers])])
    store = FrameStore(
        power=np.concatenate(powers).astype(np.float32),
        starts=starts,
        active=np.concatenate(acts),
        lips=np.concatenate(lips_all) if use_video else None,
        left=np.concatenate(lefts) if use_video else None,
        right=np.concatenate(rights) if use_video else None,
        weight=np.concatenate(weights).astype(np.float32) if use_video else None,
        valid=np.concatenate(valids) if use_video else None,
    )
    if cache is not None:
        store.save(cache)
    return store


class ChunkDataset(Dataset):
    """Fixed-length chunks of consecutive frames (length 1 = frame-wise training).

    Chunks start at every ``hop``-th active frame of every utterance, never crossing an
    utterance boundary; the list is fixed, so shuffling is the loader's job (seeded).
    """

    def __init__(self, store: FrameStore, length: int = 1, hop: int | None = None):
        self.store = store
        self.length = length
        hop = hop or length
        idx = []
        for u in range(len(store.starts) - 1):
            a, b = int(store.starts[u]), int(store.starts[u + 1])
            act = np.flatnonzero(store.active[a:b]) + a
            if len(act) == 0 or b - a < length:
                continue
            lo = max(a, min(int(act[0]), b - length))
            hi = min(int(act[-1]) - length + 1, b - length)
            idx.extend(range(lo, max(lo, hi) + 1, hop))
        self.index = np.asarray(idx, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        s = self.store
        a = int(self.index[i])
        sl = slice(a, a + self.length)
        item = {"power": torch.from_numpy(s.power[sl])}
        if s.has_video:
            w = s.weight[sl][:, None, None]
            v = s.lips[s.left[sl]].astype(np.float32) * (1 - w) + s.lips[s.right[sl]] * w
            item["video"] = torch.from_numpy(v / 255.0)
            item["valid"] = torch.from_numpy(s.valid[sl])
        return item
