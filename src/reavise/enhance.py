"""File-level enhancement: find inputs, load audio (+ lips or video), batch, write outputs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .audio import SAMPLE_RATE, load_audio, write_wav
from .errors import InputError, ReaviseError
from .inference import enhance_waveforms
from .inference.pipeline import VideoInput
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
    """Lips beside an audio file: STEM.npy, STEM_lips.npy or lips.npy in the same folder."""
    for cand in (audio.with_suffix(".npy"), audio.with_name(audio.stem + "_lips.npy")):
        if cand.exists():
            return cand
    single = audio.parent / "lips.npy"
    return single if single.exists() else None


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
        return _load_video_job(job, uses_video)
    x = load_audio(job.source, warn=lambda m: log.warning(m))
    check_level(job.source, x)
    if not uses_video or job.lips is None:
        return x, None, None
    frames = load_lips(job.lips)
    fps = lips_fps(
        job.lips, len(frames), job.source, len(x) / SAMPLE_RATE, job.lips_fps, warn=log.warning
    )
    return x, VideoInput(frames, fps), None


def _load_video_job(job: Job, uses_video: bool) -> tuple[np.ndarray, VideoInput | None, object]:
    """Audio track, mouth ROIs (AV prior) and frames of a video input."""
    from . import video as V

    frames, fps = V.read_video(job.source)
    audio = V.read_audio_track(job.source, SAMPLE_RATE)
    if audio is None:
        raise InputError(f"{job.source}: video has no audio track to enhance")
    # codecs pad or delay the track a little: keep the length the frames imply
    video_s = len(frames) / fps
    audio = audio[: int(round(video_s * SAMPLE_RATE))]
    if len(audio) < 1024 or not np.any(audio):
        raise InputError(f"{job.source}: audio track is empty, silent or shorter than one frame")
    check_level(job.source, audio)
    audio_s = len(audio) / SAMPLE_RATE
    if video_s - audio_s > AV_TOLERANCE_S:
        log.warning(
            f"{job.source}: the audio track lasts {audio_s:.2f} s but the video {video_s:.2f} s: "
            f"the enhanced video is silent after {audio_s:.2f} s"
        )
    lips = None
    if uses_video:
        roi, valid = V.extract_mouth_rois(frames)
        if valid is not None and not np.any(valid):
            log.warning(f"{job.source}: no face found in any frame: enhanced audio-only")
        lips = VideoInput(roi, fps, valid)
    return audio, lips, (frames, fps)


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
) -> dict:
    """Enhance jobs in batches; bad inputs are reported and skipped, finished ones resumed."""
    on_error = on_error or (lambda m: log.error(m))
    stats = {"done": 0, "skipped": 0, "failed": 0, "audio_seconds": 0.0, "wall_seconds": 0.0}
    todo = [j for j in jobs if overwrite or not j.out_audio.exists()]
    stats["skipped"] = len(jobs) - len(todo)
    for b in range(0, len(todo), batch_size):
        batch = []
        for job in todo[b : b + batch_size]:
            try:
                batch.append((job, *load_job(job, prior.uses_video)))
            except ReaviseError as exc:
                stats["failed"] += 1
                on_error(str(exc))
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
        secs = sum(len(x) for _, x, _, _ in batch) / SAMPLE_RATE
        stats["audio_seconds"] += secs
        stats["wall_seconds"] += wall
        for (job, _, _, clip), res in zip(batch, results, strict=True):
            write_wav(job.out_audio, res.speech)
            if job.out_video is not None and clip is not None:
                from . import video as V

                frames, fps = clip
                V.write_video_with_audio(frames, fps, res.speech, SAMPLE_RATE, job.out_video)
            stats["done"] += 1
            if on_done:
                on_done(job, wall / len(batch))
    stats["rtf"] = stats["wall_seconds"] / max(stats["audio_seconds"], 1e-9)
    return stats
