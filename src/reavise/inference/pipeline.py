"""Waveforms in, enhanced waveforms out: normalise, STFT, batch with padding, EM, iSTFT.

Long inputs go through :func:`enhance_chunked`: overlapping chunks, each its own EM run,
cross-faded, read and written as a stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..align import align_mask_to_stft, align_video_to_stft
from ..audio import DEFAULT_STFT, istft, num_frames, stft
from .draws import derived_seed


@dataclass
class VideoInput:
    """Lips of one utterance: frames [T_v, H, W] in 0..1, fps, optional validity [T_v]."""

    frames: np.ndarray
    fps: float
    valid: np.ndarray | None = None


@dataclass
class EnhancedUtterance:
    speech: np.ndarray
    noise: np.ndarray
    cost: np.ndarray
    n_iter: int
    converged: bool
    #: the run's diagnostics for this utterance at its STFT frames: "modality_weights"
    #: (fusion site -> [..., T, 2] (audio, visual)), "switch" (q(m_t = AV) [T])
    info: dict = field(default_factory=dict)


def batch_video(
    videos: list[VideoInput | None], n_stft: list[int], T: int, device
) -> tuple[torch.Tensor, torch.Tensor] | tuple[None, None]:
    """Align each utterance's lips to its STFT frames and pad to [B, T, H, W] + valid [B, T]."""
    if all(v is None for v in videos):
        return None, None
    ref = next(v for v in videos if v is not None)
    H, W = ref.frames.shape[1:]
    out = np.zeros((len(videos), T, H, W), dtype=np.float32)
    valid = np.zeros((len(videos), T), dtype=bool)
    for i, (v, n) in enumerate(zip(videos, n_stft, strict=True)):
        if v is None:
            continue
        out[i, :n] = align_video_to_stft(v.frames, v.fps, n)
        mask = np.ones(len(v.frames), bool) if v.valid is None else v.valid
        valid[i, :n] = align_mask_to_stft(mask, v.fps, n)
    return torch.from_numpy(out).to(device), torch.from_numpy(valid).to(device)


def enhance_waveforms(
    prior,
    algorithm,
    waves: list[np.ndarray],
    videos: list[VideoInput | None] | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    progress=None,
    seeds: list[int] | None = None,
) -> list[EnhancedUtterance]:
    """Enhance several utterances in one batched EM run.

    Each waveform is peak-normalised (the priors were trained so), enhanced, and scaled back.
    Each is transformed on its own (STFT, inverse STFT) and draws its random numbers from its
    own generator (seeded ``seeds[i]``, default ``seed``), so its output does not depend on
    the other utterances of the batch: batching only changes the speed.
    """
    if videos is None:
        videos = [None] * len(waves)
    scales = [1.0 / max(float(np.max(np.abs(w))), 1e-12) for w in waves]
    lengths = [len(w) for w in waves]
    n_stft = [num_frames(n, DEFAULT_STFT) for n in lengths]
    X, mask = _batch_stft(waves, scales, n_stft, device)
    T = X.shape[1]
    video, valid = batch_video(videos, n_stft, T, device)
    ctx = prior.batch_context(video, valid, n_stft) if prior.uses_video else None
    res = algorithm.run(
        prior, X, ctx=ctx, frame_mask=mask, seed=seed, progress=progress, seeds=seeds
    )
    cost = res.cost.cpu().numpy()
    out = []
    for i in range(len(waves)):
        n, L = n_stft[i], lengths[i]
        speech = istft(res.speech[i, :n], length=L).cpu().numpy()
        noise = istft(res.noise[i, :n], length=L).cpu().numpy()
        its = res.n_iters[i] if res.n_iters else res.n_iter
        out.append(
            EnhancedUtterance(
                speech=speech / scales[i],
                noise=noise / scales[i],
                cost=cost[:its, i],
                n_iter=its,
                converged=res.converged_each[i] if res.converged_each else res.converged,
                info=_utterance_info(res.info, i, n),
            )
        )
    return out


def _utterance_info(info: dict, i: int, n: int) -> dict:
    """Utterance i's slice (its first n frames) of a batched run's diagnostics, as numpy."""
    out: dict = {}
    if "switch" in info:
        out["switch"] = info["switch"][i, :n].cpu().numpy()
    if "modality_weights" in info:
        out["modality_weights"] = {
            site: w[..., i, :n, :].float().cpu().numpy() for site, w in info["modality_weights"].items()
        }
    return out


def _batch_stft(
    waves: list[np.ndarray], scales: list[float], n_stft: list[int], device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each scaled waveform's STFT at its own length, zero-padded to [B, T, F]; mask [B, T]."""
    T = max(n_stft)
    specs = [stft(torch.from_numpy(np.asarray(w, np.float32) * np.float32(s)).to(device))
             for w, s in zip(waves, scales, strict=True)]  # fmt: skip
    X = torch.zeros(len(waves), T, specs[0].shape[-1], dtype=specs[0].dtype, device=device)
    mask = torch.zeros(len(waves), T, device=device)
    for i, (S, n) in enumerate(zip(specs, n_stft, strict=True)):
        X[i, :n] = S
        mask[i, :n] = 1.0
    return X, mask


# --- long inputs: overlapping chunks, cross-faded --------------------------------------

#: chunk starts are multiples of this many samples (0.8 s at 16 kHz): whole STFT hops (256)
#: and whole video frames at 25 and 30 fps, so a chunk's lips slice starts on its first frame
CHUNK_GRID = 12800


@dataclass(frozen=True)
class Chunking:
    """How inputs longer than one chunk are split: windows of ``seconds`` whose starts are
    ``seconds - overlap_seconds`` apart (rounded down to whole :data:`CHUNK_GRID` steps, which
    can only lengthen the overlap), cross-faded over the overlap."""

    seconds: float = 30.0
    overlap_seconds: float = 2.0
    sample_rate: int = DEFAULT_STFT.sample_rate

    def __post_init__(self):
        if self.overlap_seconds <= 0:
            raise ValueError(f"overlap_seconds must be positive, got {self.overlap_seconds}")
        if self.length < 4 * CHUNK_GRID or self.overlap_seconds > self.seconds / 4:
            raise ValueError(
                f"chunks of {self.seconds} s with {self.overlap_seconds} s overlap: need "
                f"seconds >= {4 * CHUNK_GRID / self.sample_rate:g} and overlap <= seconds / 4"
            )

    @property
    def length(self) -> int:
        return int(round(self.seconds * self.sample_rate))

    @property
    def hop(self) -> int:
        step = self.length - int(round(self.overlap_seconds * self.sample_rate))
        return step // CHUNK_GRID * CHUNK_GRID

    @property
    def overlap(self) -> int:
        return self.length - self.hop

    @property
    def single_limit(self) -> int:
        """Inputs of at most this many samples are enhanced whole (one chunk)."""
        return max(self.length, self.hop + self.length // 2 - 1)


def plan_chunks(n_samples: int, chunking: Chunking = Chunking()) -> list[tuple[int, int]]:
    """Sample spans [start, stop) of the chunks of an ``n_samples`` input.

    Chunk k starts at k * hop and is ``length`` long, so neighbours share ``overlap``
    samples; a last chunk that would hold less than half a chunk is merged into the one
    before (which then runs to the end). An input of at most ``single_limit`` samples is
    one chunk: the whole input, exactly as without chunking."""
    C, hop = chunking.length, chunking.hop
    starts = [0]
    while starts[-1] + C < n_samples:
        starts.append(starts[-1] + hop)
    if len(starts) > 1 and n_samples - starts[-1] < C // 2:
        starts.pop()
    return [(s, s + C) for s in starts[:-1]] + [(starts[-1], n_samples)]


def crossfade_weights(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(fade-in, fade-out) over ``n`` samples, float64: a sin^2 ramp and 1 minus it, so
    the two sum to exactly 1 at every sample."""
    fade_in = np.sin(0.5 * np.pi * (np.arange(n) + 0.5) / n) ** 2
    return fade_in, 1.0 - fade_in


def slice_video(video: VideoInput | None, start: int, stop: int, sr: int) -> VideoInput | None:
    """The lips of samples [start, stop): frames from the one at ``start`` on (exact when the
    start is a whole number of frames, as chunk starts are at 25 and 30 fps)."""
    if video is None:
        return None
    k0 = min(int(np.floor(start / sr * video.fps + 1e-6)), len(video.frames) - 1)
    k1 = max(k0 + 1, min(len(video.frames), int(np.ceil(stop / sr * video.fps)) + 1))
    valid = None if video.valid is None else video.valid[k0:k1]
    return VideoInput(video.frames[k0:k1], video.fps, valid)


@dataclass
class ChunkedResult:
    """What a chunked run reports: number of chunks, samples written, EM iterations each."""

    n_chunks: int
    n_samples: int
    n_iters: list[int]


def enhance_chunked(
    prior,
    algorithm,
    read,
    n_samples: int,
    write,
    video: VideoInput | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    chunking: Chunking = Chunking(),
    progress=None,
) -> ChunkedResult:
    """Enhance a long input chunk by chunk, streaming: memory O(chunk), not O(input).

    ``read(start, stop)`` returns samples [start, stop) of the input (float32; calls come in
    increasing order; the last may return fewer than asked); ``write(block)`` receives the
    enhanced speech in order, each sample once. Every chunk is its own EM run (its own NMF
    noise model, peak normalisation and seed: ``derived_seed(seed, k)``, so chunk 0 keeps
    ``seed``), and neighbours are cross-faded over their overlap with weights that sum to 1.
    An input of one chunk gives exactly the output of :func:`enhance_waveforms`.
    ``progress(k, n_chunks)`` is called after each chunk.
    """
    spans = plan_chunks(n_samples, chunking)
    fade_in, fade_out = crossfade_weights(chunking.overlap)
    tail: np.ndarray | None = None  # the last chunk's enhanced overlap, to fade out
    written, iters = 0, []
    for k, (a, b) in enumerate(spans):
        x = np.asarray(read(a, b), dtype=np.float32)
        y, n_iter = _enhance_chunk(
            prior, algorithm, x, slice_video(video, a, b, chunking.sample_rate), device,
            derived_seed(seed, k),
        )  # fmt: skip
        iters.append(n_iter)
        if tail is not None:
            y = y.astype(np.float64)
            y[: len(tail)] = tail * fade_out[: len(tail)] + y[: len(tail)] * fade_in[: len(tail)]
        keep = spans[k + 1][0] - a if k + 1 < len(spans) else len(y)
        write(np.asarray(y[:keep], dtype=np.float32))
        written += min(keep, len(y))
        tail = np.asarray(y[keep:], dtype=np.float64) if k + 1 < len(spans) else None
        if progress is not None:
            progress(k + 1, len(spans))
    return ChunkedResult(len(spans), written, iters)


def _enhance_chunk(prior, algorithm, x, video, device, seed) -> tuple[np.ndarray, int]:
    """One chunk's enhanced speech (zeros for a silent chunk: nothing to enhance)."""
    if not np.any(x):
        return np.zeros_like(x), 0
    res = enhance_waveforms(prior, algorithm, [x], [video], device=device, seed=seed)[0]
    return res.speech, res.n_iter
