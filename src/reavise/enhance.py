"""File-level enhancement: find inputs, load audio (+ lips or video), batch, write outputs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from .audio import DEFAULT_STFT, SAMPLE_RATE, atomic_write, load_audio, num_frames, write_wav
from .errors import InputError, ReaviseError
from .inference import enhance_waveforms
from .inference.pipeline import Chunking, VideoInput, enhance_chunked
from .lips import AV_TOLERANCE_S, lips_fps, load_lips

log = logging.getLogger(__name__)

AUDIO_EXT = {".wav", ".flac", ".ogg", ".aiff", ".aif"}
VIDEO_EXT = {".mp4", ".mkv", ".avi", ".mov", ".mpg", ".webm"}
#: inputs quieter than this peak level are refused: their 16-bit output would be all zeros
MIN_PEAK_DBFS = -70.0


@dataclass
class Job:
    """One input to enhance and where its outputs go."""

    source: Path
    out_audio: Path
    out_video: Path | None = None
    lips: Path | None = None
    #: frame rate of ``lips`` (None: 30 fps, or 25 fps when only that fits the audio)
    lips_fps: float | None = None


def collect_inputs(paths: list[Path]) -> list[Path]:
    """Expand folders into their audio/video files (sorted); keep files as given."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(
                f for f in p.rglob("*") if f.suffix.lower() in AUDIO_EXT | VIDEO_EXT
            )
            found = [f for f in found if not f.stem.endswith("_enhanced")]
            if not found:
                raise InputError(f"{p}: folder holds no audio or video files")
            files.extend(found)
        else:
            files.append(p)
    return files


def find_lips(audio: Path) -> Path | None:
    """Lips beside an audio file: STEM.npy, STEM_lips.npy or lips.npy in the same folder, or
    ``../lips/STEM.npy`` for the ``noisy/`` folder of a mixture set (``reavise data mix``)."""
    for cand in (audio.with_suffix(".npy"), audio.with_name(audio.stem + "_lips.npy")):
        if cand.exists():
            return cand
    single = audio.parent / "lips.npy"
    if single.exists():
        return single
    # a `reavise data mix` folder: noisy/<id>.wav with lips/<id>.npy
    mixed = audio.parent.parent / "lips" / f"{audio.stem}.npy"
    return mixed if audio.parent.name == "noisy" and mixed.exists() else None


def find_valid(lips: Path) -> Path | None:
    """The validity mask of a lips file, where one is stored beside it: STEM_valid.npy, or
    ``../valid/STEM.npy`` for the ``lips/`` folder of a mixture set (``reavise data mix``:
    frames the degradation dropped or blanked are False there)."""
    stem = lips.stem[: -len("_lips")] if lips.stem.endswith("_lips") else lips.stem
    cand = lips.with_name(f"{stem}_valid.npy")
    if cand.exists():
        return cand
    mixed = lips.parent.parent / "valid" / lips.name
    return mixed if lips.parent.name == "lips" and mixed.exists() else None


def load_valid(path: Path, n_frames: int) -> np.ndarray:
    """A validity mask [T] (one value per lips frame) as bool; a wrong length or an
    unreadable file is one InputError line naming it."""
    try:
        v = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable validity mask ({str(exc).splitlines()[0][:120]})") from None
    v = np.asarray(v).reshape(-1)
    if len(v) != n_frames:
        raise InputError(f"{path}: validity mask has {len(v)} values for {n_frames} lips frames")
    return v.astype(bool)


def plan_jobs(
    inputs: list[Path],
    out_dir: Path,
    lips: Path | None,
    uses_video: bool,
    lips_fps: float | None = None,
) -> list[Job]:
    """Decide output paths and lips files; refuse to write over an input.

    Says (one warning line) when lips are ignored (audio-only model, video input) and when an
    audio-visual model gets audio inputs without lips beside them (enhanced audio-only).
    """
    files = collect_inputs(inputs)
    if lips is not None and len(files) != 1:
        raise ReaviseError("--lips names one lips file; give exactly one audio input with it")
    if lips is not None and not uses_video:
        log.warning(f"--lips {lips}: the model is audio-only; the lips are ignored")
        lips = None
    if lips is not None and files[0].suffix.lower() in VIDEO_EXT:
        log.warning(f"--lips {lips}: {files[0].name} is a video; its own lips are used")
        lips = None
    jobs = []
    resolved_inputs = {f.resolve() for f in files}
    for f in files:
        out = out_dir / f"{f.stem}_enhanced.wav"
        is_video = f.suffix.lower() in VIDEO_EXT
        out_v = out_dir / f"{f.stem}_enhanced{f.suffix.lower()}" if is_video else None
        for o in (out, out_v):
            if o is not None and o.resolve() in resolved_inputs:
                raise ReaviseError(f"{o}: output would overwrite an input; choose another -o")
        lp = lips if lips is not None else (find_lips(f) if uses_video and not is_video else None)
        jobs.append(Job(f, out, out_v, lp, lips_fps))
    _warn_missing_lips([j.source for j in jobs if uses_video and j.lips is None and j.out_video is None])
    return jobs


def _warn_missing_lips(files: list[Path]) -> None:
    """One warning line for audio inputs that an audio-visual model gets without lips."""
    if not files:
        return
    if len(files) == 1:
        f = files[0]
        log.warning(
            f"{f}: no lips beside it ({f.stem}.npy, {f.stem}_lips.npy or lips.npy): "
            "enhanced audio-only"
        )
        return
    names = ", ".join(f.name for f in files[:3]) + (", ..." if len(files) > 3 else "")
    log.warning(f"{len(files)} audio inputs have no lips beside them ({names}): enhanced audio-only")


def check_level(path: Path, x: np.ndarray) -> None:
    """Refuse a near-silent input: its enhanced 16-bit output would be all zeros."""
    peak = float(np.max(np.abs(x)))
    dbfs = 20 * np.log10(max(peak, 1e-12))
    if dbfs < MIN_PEAK_DBFS:
        raise InputError(
            f"{path}: near-silent (peak {dbfs:.0f} dBFS, below {MIN_PEAK_DBFS:.0f}): the enhanced "
            "16-bit output would be all zeros; amplify the input first"
        )


def load_job(job: Job, uses_video: bool) -> tuple[np.ndarray, VideoInput | None, object]:
    """Audio waveform, lips (if the prior uses video), and decoded video frames (video input)."""
    if job.source.suffix.lower() in VIDEO_EXT:
        return load_video_input(job.source, uses_video)
    x = load_audio(job.source, warn=lambda m: log.warning(m))
    check_level(job.source, x)
    if not uses_video or job.lips is None:
        return x, None, None
    frames = load_lips(job.lips)
    fps = lips_fps(
        job.lips, len(frames), job.source, len(x) / SAMPLE_RATE, job.lips_fps, warn=log.warning
    )
    vpath = find_valid(job.lips)
    valid = None if vpath is None else load_valid(vpath, len(frames))
    return x, VideoInput(frames, fps, valid), None


def load_video_input(source: Path, with_lips: bool = True) -> tuple[np.ndarray, VideoInput | None, object]:
    """Audio track, mouth ROIs (``with_lips``: the project's face/mouth detector on every
    frame) and the decoded frames of a video file: what ``reavise enhance VIDEO`` works on."""
    from . import video as V

    source = Path(source)
    frames, fps = V.read_video(source)
    audio = V.read_audio_track(source, SAMPLE_RATE)
    if audio is None:
        raise InputError(f"{source}: video has no audio track to enhance")
    # codecs pad or delay the track a little: keep the length the frames imply
    video_s = len(frames) / fps
    audio = audio[: int(round(video_s * SAMPLE_RATE))]
    if len(audio) < DEFAULT_STFT.n_fft or not np.any(audio):
        raise InputError(f"{source}: audio track is empty, silent or shorter than one frame")
    check_level(source, audio)
    audio_s = len(audio) / SAMPLE_RATE
    if video_s - audio_s > AV_TOLERANCE_S:
        log.warning(
            f"{source}: the audio track lasts {audio_s:.2f} s but the video {video_s:.2f} s: "
            f"the enhanced video is silent after {audio_s:.2f} s"
        )
    lips = None
    if with_lips:
        roi, valid = V.extract_mouth_rois(frames)
        if valid is not None and not np.any(valid):
            log.warning(f"{source}: no face found in any frame: enhanced audio-only")
        lips = VideoInput(roi, fps, valid)
    return audio, lips, (frames, fps)


#: STFT frames (all files together) in one batched EM run; see docs/inference.md for the
#: measurement behind it
BATCH_FRAME_BUDGET = 2000


def run_enhance(
    prior,
    algorithm,
    jobs: list[Job],
    batch_size: int = 4,
    device: str = "cpu",
    seed: int = 0,
    overwrite: bool = False,
    on_error: Callable[[str], None] | None = None,
    on_done: Callable[[Job, float], None] | None = None,
    chunking: Chunking | None = None,
    frame_budget: int = BATCH_FRAME_BUDGET,
    on_chunk: Callable[[Job, int, int], None] | None = None,
) -> dict:
    """Enhance jobs in batches; bad inputs are reported and skipped, finished ones resumed.

    Jobs are sorted by length so that a batch holds similar lengths (little padding); a batch
    holds at most ``batch_size`` files and ``frame_budget`` STFT frames in all (one file
    over the budget goes alone). Every utterance's result is independent of its batch, so
    this changes only the speed. Inputs longer than one chunk (``chunking``) are enhanced
    chunk by chunk (:func:`~reavise.inference.pipeline.enhance_chunked`), audio files
    streamed from disk to disk; ``on_chunk(job, k, n_chunks)`` reports each chunk.
    """
    chunking = chunking or Chunking()
    on_error = on_error or (lambda m: log.error(m))
    stats = {"done": 0, "skipped": 0, "failed": 0, "audio_seconds": 0.0, "wall_seconds": 0.0}
    todo = [j for j in jobs if overwrite or not j.out_audio.exists()]
    stats["skipped"] = len(jobs) - len(todo)
    sized = sorted(((j, probe_samples(j)) for j in todo), key=lambda jn: _length_key(jn[1]))
    long_jobs = [j for j, n in sized if n is not None and n > chunking.single_limit]
    short = [(j, n) for j, n in sized if n is None or n <= chunking.single_limit]

    def finish(job: Job, secs: float, wall: float) -> None:
        stats["audio_seconds"] += secs
        stats["wall_seconds"] += wall
        stats["done"] += 1
        if on_done:
            on_done(job, wall)

    def chunk_report(job: Job):
        return None if on_chunk is None else (lambda k, n: on_chunk(job, k, n))

    for group in _batches(short, batch_size, frame_budget):
        batch = []
        for job in group:
            try:
                batch.append((job, *load_job(job, prior.uses_video)))
            except ReaviseError as exc:
                stats["failed"] += 1
                on_error(str(exc))
        # inputs whose length was unknown before loading (video, unreadable header) and
        # that turn out longer than one chunk are enhanced chunk by chunk, from memory
        for item in [it for it in batch if len(it[1]) > chunking.single_limit]:
            batch.remove(item)
            t0 = time.perf_counter()
            speech = _enhance_loaded_chunked(
                prior, algorithm, item[1], item[2], device, seed, chunking, chunk_report(item[0])
            )
            _write_outputs(item[0], speech, item[3])
            wall = time.perf_counter() - t0
            finish(item[0], len(item[1]) / SAMPLE_RATE, wall)
        if not batch:
            continue
        t0 = time.perf_counter()
        with torch.inference_mode(False):
            results = enhance_waveforms(
                prior,
                algorithm,
                [x for _, x, _, _ in batch],
                [v for _, _, v, _ in batch],
                device=device,
                seed=seed,
            )
        wall = time.perf_counter() - t0
        for (job, x, _, clip), res in zip(batch, results, strict=True):
            _write_outputs(job, res.speech, clip)
            finish(job, len(x) / SAMPLE_RATE, wall / len(batch))
    for job in long_jobs:
        t0 = time.perf_counter()
        try:
            n = _enhance_long_job(prior, algorithm, job, device, seed, chunking, chunk_report(job))
        except ReaviseError as exc:
            stats["failed"] += 1
            on_error(str(exc))
            continue
        wall = time.perf_counter() - t0
        finish(job, n / SAMPLE_RATE, wall)
    stats["rtf"] = stats["wall_seconds"] / max(stats["audio_seconds"], 1e-9)
    return stats


def probe_samples(job: Job) -> int | None:
    """The input's length in samples at 16 kHz from its header (None: a video, or unknown)."""
    if job.source.suffix.lower() in VIDEO_EXT:
        return None
    try:
        info = sf.info(str(job.source))
    except Exception:  # unreadable: load_job reports it
        return None
    return int(round(info.frames * SAMPLE_RATE / info.samplerate)) if info.samplerate else None


def _length_key(n: int | None) -> tuple[int, int]:
    return (1, 0) if n is None else (0, n)


def _batches(sized: list[tuple[Job, int | None]], batch_size: int, frame_budget: int):
    """Consecutive groups of (length-sorted) jobs: at most ``batch_size`` jobs and
    ``frame_budget`` frames of the padded batch (the longest times the count); a job of
    unknown length goes alone."""
    group: list[Job] = []
    longest = 0
    for job, n in sized:
        frames = num_frames(n) if n is not None else frame_budget + 1
        if group and (
            len(group) >= batch_size or max(longest, frames) * (len(group) + 1) > frame_budget
        ):
            yield group
            group, longest = [], 0
        group.append(job)
        longest = max(longest, frames)
    if group:
        yield group


def _write_outputs(job: Job, speech: np.ndarray, clip) -> None:
    bad = ~np.isfinite(speech)
    if bad.any():
        # a diverged E-step: without this the WAV holds full-scale clicks and the AAC
        # encoder of the video refuses the frame (a traceback)
        log.warning(
            f"{job.source}: the enhanced speech has {int(bad.sum())} non-finite samples "
            "(the inference diverged there); written as silence"
        )
        speech = np.where(bad, 0.0, speech)
    write_wav(job.out_audio, speech)
    if job.out_video is not None and clip is not None:
        from . import video as V

        frames, fps = clip
        V.write_video_with_audio(frames, fps, speech, SAMPLE_RATE, job.out_video)


def _enhance_loaded_chunked(prior, algorithm, x, lips, device, seed, chunking, progress):
    """Chunked enhancement of a waveform already in memory (video inputs, lips inputs)."""
    parts: list[np.ndarray] = []
    with torch.inference_mode(False):
        enhance_chunked(
            prior, algorithm, lambda a, b: x[a:b], len(x), parts.append, lips, device, seed,
            chunking, progress,
        )  # fmt: skip
    return np.concatenate(parts)


def _enhance_long_job(prior, algorithm, job, device, seed, chunking, progress) -> int:
    """A long input: audio streamed from disk to a temp file renamed at the end (memory
    O(chunk)); with lips, the audio is loaded whole and only the EM is chunked. Returns the
    number of samples enhanced."""
    if prior.uses_video and job.lips is not None:
        x, lips, clip = load_job(job, prior.uses_video)
        _write_outputs(job, _enhance_loaded_chunked(
            prior, algorithm, x, lips, device, seed, chunking, progress), clip)  # fmt: skip
        return len(x)
    done = {"n": 0}

    def write_stream(tmp: str) -> None:
        with AudioStream(job.source) as src, sf.SoundFile(
            tmp, "w", SAMPLE_RATE, 1, subtype="PCM_16", format="WAV"
        ) as dst:
            with torch.inference_mode(False):
                res = enhance_chunked(
                    prior, algorithm, src.read, src.n_samples,
                    lambda y: dst.write(np.clip(y, -1.0, 1.0)), None, device, seed, chunking,
                    progress,
                )  # fmt: skip
            if src.peak == 0.0:
                raise InputError(f"{job.source}: audio is all zeros (silent)")
            check_level(job.source, np.array([src.peak]))  # the whole file, once streamed
            done["n"] = res.n_samples

    atomic_write(job.out_audio, write_stream)
    return done["n"]


class AudioStream:
    """A long audio file read forward as 16 kHz mono float32, block by block.

    ``read(start, stop)`` takes spans in increasing order (overlaps allowed) and keeps only
    the samples from the last ``start`` on: memory O(span). Stereo is downmixed and other
    rates resampled as they stream (soxr, VHQ), with the same one-line notes as
    :func:`~reavise.audio.load_audio`; a block with NaN or infinite samples raises
    :class:`InputError` naming the file.
    """

    BLOCK = 1 << 16

    def __init__(self, path: Path):
        self.path = path
        try:
            self.file = sf.SoundFile(str(path))
        except Exception as exc:
            raise InputError(f"{path}: not a readable audio file ({exc})") from None
        self.rate = self.file.samplerate
        self.n_samples = int(round(self.file.frames * SAMPLE_RATE / self.rate))
        if self.file.channels > 1:
            log.warning(f"{path}: {self.file.channels} channels, downmixed to mono")
        self.resampler = None
        if self.rate != SAMPLE_RATE:
            import soxr

            log.warning(f"{path}: sample rate {self.rate} Hz, resampled to {SAMPLE_RATE} Hz")
            self.resampler = soxr.ResampleStream(self.rate, SAMPLE_RATE, 1, "float32", "VHQ")
        self.buf = np.zeros(0, np.float32)
        self.buf_start = 0
        self.eof = False
        self.peak = 0.0

    def __enter__(self) -> AudioStream:
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()

    def _pull(self) -> None:
        block = self.file.read(self.BLOCK, dtype="float32", always_2d=True)
        self.eof = len(block) < self.BLOCK
        if not np.all(np.isfinite(block)):
            raise InputError(f"{self.path}: audio contains NaN or infinite samples")
        x = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
        if self.resampler is not None:
            x = self.resampler.resample_chunk(x, last=self.eof)
        if len(x):
            self.peak = max(self.peak, float(np.max(np.abs(x))))
        self.buf = np.concatenate([self.buf, x.astype(np.float32, copy=False)])

    def read(self, start: int, stop: int) -> np.ndarray:
        if start < self.buf_start:
            raise ValueError("AudioStream reads forward only")
        drop = start - self.buf_start
        self.buf, self.buf_start = self.buf[drop:], start
        while not self.eof and len(self.buf) < stop - start:
            self._pull()
        return self.buf[: stop - start].copy()
