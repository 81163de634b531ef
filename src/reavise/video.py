"""Video I/O (PyAV) and 67x67 mouth-ROI extraction with a per-frame validity mask.

Detection runs fully offline with the Haar cascades that ship inside OpenCV's wheel
(``cv2.data.haarcascades``): a frontal-face cascade, plus the eye cascade for in-plane
rotation and scale. (mediapipe 1.2.3 ships no face model files and would need a download;
OpenCV's facemark LBF and YuNet need model files that are not bundled either.)
The mouth pose comes from face geometry: the mouth centre lies about one inter-ocular
distance below the eye midpoint, perpendicular to the eye line. Poses are smoothed across
frames before cropping, so the ROI does not jitter with the detector.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from .audio import SAMPLE_RATE, atomic_write, resample
from .errors import InputError
from .lips import ROI_SIZE

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".avi", ".mov", ".mpg", ".mpeg", ".webm", ".m4v")

# Face geometry (fractions of the Haar frontal-face box width, which spans roughly the
# outer eye corners +- a margin). Measured on frontal faces: eyes at ~0.38 of the box
# height, mouth centre at ~0.80, inter-ocular distance ~0.46 box widths.
_MOUTH_Y_IN_BOX = 0.80
_EYE_Y_IN_BOX = 0.38
_IOD_IN_BOX = 0.46
# Eye-midpoint to mouth-centre distance in inter-ocular distances (anthropometric ~1.0).
_MOUTH_BELOW_EYES = 1.0
# ROI side in inter-ocular distances: the NTCD-TIMIT ROIs show the lips spanning ~85 %
# of the width, and a neutral mouth is ~0.9 inter-ocular distances wide.
_ROI_SIDE_IOD = 1.2
NEUTRAL_GREY = 0.5


# ----------------------------------------------------------------------------- decoding


def _open(path: str | os.PathLike):
    """Open a container with PyAV, turning every failure into a one-line InputError."""
    import av

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such video file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a video file")
    try:
        return av.open(str(path))
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: not a readable video file ({msg})") from None


def _stream_fps(stream) -> float:
    """Frame rate of a video stream (average rate, else guessed/base rate)."""
    for rate in (stream.average_rate, getattr(stream, "guessed_rate", None), stream.base_rate):
        if rate is not None and float(rate) > 0:
            return float(rate)
    return 0.0


def iter_video_frames(
    path: str | os.PathLike, gray: bool = False, max_side: int | None = None
) -> Iterator[np.ndarray]:
    """Yield decoded frames one at a time (uint8 [H,W,3] RGB or [H,W] gray).

    ``max_side`` downscales during decoding (aspect kept), so long HD videos never sit
    in memory at full resolution.
    """
    path = Path(path)
    container = _open(path)
    try:
        if not container.streams.video:
            raise InputError(f"{path}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        size = None
        fmt = "gray" if gray else "rgb24"
        try:
            for frame in container.decode(stream):
                if size is None:
                    w, h = frame.width, frame.height
                    s = min(1.0, max_side / max(w, h)) if max_side else 1.0
                    size = (max(2, round(w * s)), max(2, round(h * s)))
                yield frame.to_ndarray(width=size[0], height=size[1], format=fmt)
        except InputError:
            raise
        except Exception as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(f"{path}: corrupt video stream ({msg})") from None
    finally:
        container.close()


def video_info(path: str | os.PathLike) -> tuple[float, int | None, bool]:
    """(fps, frame count if the container knows it, whether an audio stream exists)."""
    path = Path(path)
    container = _open(path)
    try:
        if not container.streams.video:
            raise InputError(f"{path}: no video stream")
        stream = container.streams.video[0]
        return _stream_fps(stream), (stream.frames or None), bool(container.streams.audio)
    finally:
        container.close()


def read_video(
    path: str | os.PathLike, gray: bool = False, max_side: int | None = None
) -> tuple[np.ndarray, float]:
    """Decode a whole video: (uint8 frames [T,H,W,3] RGB or [T,H,W] gray, fps).

    Raises :class:`InputError` (one line naming the file) for a missing, unreadable or
    corrupt file, a file without a video stream, or one that decodes to no frames.
    """
    path = Path(path)
    fps, _, _ = video_info(path)
    frames = list(iter_video_frames(path, gray=gray, max_side=max_side))
    if not frames:
        raise InputError(f"{path}: video stream has no decodable frames")
    if fps <= 0:
        raise InputError(f"{path}: video stream has no frame rate")
    return np.stack(frames), fps


def read_audio_track(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray | None:
    """The first audio track of a video as float32 mono at ``sample_rate``; None if none."""
    path = Path(path)
    container = _open(path)
    try:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        chunks: list[np.ndarray] = []
        rate = None
        try:
            for frame in container.decode(stream):
                # Planar float keeps channels separate: downmix ourselves, resample with soxr
                # (the project's one resampler) rather than swresample.
                a = frame.to_ndarray()
                if a.dtype.kind in "iu":
                    a = a.astype(np.float32) / float(np.iinfo(a.dtype).max)
                if not frame.format.is_planar:
                    a = a.reshape(-1, len(frame.layout.channels)).T
                chunks.append(a.astype(np.float32).mean(axis=0))
                rate = frame.sample_rate
        except Exception as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(f"{path}: corrupt audio stream ({msg})") from None
    finally:
        container.close()
    if not chunks or rate is None:
        return None
    x = np.concatenate(chunks)
    return resample(x, rate, sample_rate).astype(np.float32)


# ----------------------------------------------------------------------------- writing


def _fps_fraction(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)


def _video_encoder(
    container, ext: str, frames: np.ndarray, fps: float, codec: str | None, crf: int | None
) -> Callable[[], None]:
    """Add the video stream now (all streams precede the header); return the encode step."""
    import av

    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        frames = np.clip(np.round(np.asarray(frames, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
    if frames.ndim == 3:
        frames = np.repeat(frames[..., None], 3, axis=-1)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [T,H,W] or [T,H,W,3], got {frames.shape}")
    h, w = frames.shape[1:3]
    # yuv420p needs even sizes: pad one edge row/column by replication.
    if h % 2 or w % 2:
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        h, w = frames.shape[1:3]
    if codec is None:
        codec = {".mpg": "mpeg1video", ".mpeg": "mpeg1video", ".avi": "mpeg4", ".webm": "libvpx"}.get(
            ext, "libx264"
        )
    rate = _fps_fraction(fps)
    stream = container.add_stream(codec, rate=rate)
    stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
    if codec == "libx264":
        stream.options = {"crf": str(18 if crf is None else crf), "preset": "veryfast"}
    elif codec in ("mpeg1video", "mpeg2video", "mpeg4"):
        # Near-lossless for test/analysis use: cap the quantiser, generous bit rate.
        stream.bit_rate = int(max(2e6, 2.0 * w * h * float(rate)))
        stream.options = {"qmin": "1", "qmax": str(4 if crf is None else max(2, crf // 4))}

    def encode() -> None:
        for t, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            frame.pts = t
            frame.time_base = 1 / rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode())

    return encode


def _audio_encoder(
    container, ext: str, audio: np.ndarray, sr: int, codec: str | None
) -> Callable[[], None]:
    """Add a mono audio stream; return the encode step (frames of the codec's frame size)."""
    import av

    if codec is None:
        codec = {".mpg": "mp2", ".mpeg": "mp2", ".avi": "mp2", ".webm": "libopus", ".mkv": "aac"}.get(
            ext, "aac"
        )
    if codec == "libopus" and sr != 48000:
        audio, sr = resample(audio, sr, 48000), 48000
    x = np.clip(np.asarray(audio, dtype=np.float32).reshape(-1), -1.0, 1.0)
    stream = container.add_stream(codec, rate=sr, layout="mono")
    cc = stream.codec_context
    fmt = cc.format.name if cc.format is not None else "fltp"
    n = cc.frame_size or 1024

    def encode() -> None:
        for start in range(0, len(x), n):
            chunk = x[start : start + n]
            if fmt.startswith("s16"):
                arr = np.round(chunk * 32767).astype(np.int16)[None, :]
            else:
                arr = chunk.astype(np.float32)[None, :]
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(arr), format=fmt, layout="mono")
            frame.sample_rate = sr
            frame.pts = start
            frame.time_base = Fraction(1, sr)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())

    return encode


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float,
    audio: np.ndarray | None = None,
    sr: int = SAMPLE_RATE,
    codec: str | None = None,
    audio_codec: str | None = None,
    crf: int | None = None,
) -> Path:
    """Atomically encode frames (uint8, or float 0..1; [T,H,W] or [T,H,W,3]) plus optional audio.

    The container follows the extension (.mp4/.mkv: H.264 + AAC, .mpg: MPEG-1 + MP2,
    .avi: MPEG-4 + MP2, .webm: VP8 + Opus).
    """
    import av

    if len(frames) == 0:
        raise ValueError("no frames to write")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")

    ext = Path(path).suffix.lower()

    def _write(tmp: str) -> None:
        # The temp file's name ends like ``path``, so the container follows the extension.
        fmt = {".mpg": "mpeg", ".mpeg": "mpeg"}.get(ext)
        with av.open(tmp, mode="w", format=fmt) as container:
            steps = [_video_encoder(container, ext, frames, fps, codec, crf)]
            if audio is not None:
                steps.append(_audio_encoder(container, ext, audio, sr, audio_codec))
            for step in steps:
                step()

    return atomic_write(path, _write)


def write_video_with_audio(
    frames: np.ndarray, fps: float, audio: np.ndarray, sr: int, out_path: str | os.PathLike
) -> Path:
    """Write ``frames`` with ``audio`` (mono float) muxed in, atomically: enhanced video out."""
    return write_video(out_path, frames, fps, audio=audio, sr=sr)


# ----------------------------------------------------------------------------- detection


@dataclass(frozen=True)
class MouthPose:
    """Where to crop: mouth centre (x, y) in pixels, ROI side in pixels, roll in radians."""

    cx: float
    cy: float
    side: float
    angle: float = 0.0

    def as_array(self) -> np.ndarray:
        return np.array([self.cx, self.cy, self.side, self.angle], dtype=np.float64)


@functools.cache
def _cascade(name: str):
    import cv2

    path = os.path.join(cv2.data.haarcascades, name)
    c = cv2.CascadeClassifier(path)
    if c.empty():  # pragma: no cover - a broken OpenCV install
        raise RuntimeError(f"{path}: OpenCV Haar cascade missing or unreadable")
    return c


def _cascade_faces(img: np.ndarray, min_side: int, max_side: int | None = None) -> np.ndarray:
    """Face boxes [n,4] (x, y, w, h) in ``img`` pixels: the default frontal-face cascade,
    then the alt2 one when the first finds nothing."""
    kw: dict = {"scaleFactor": 1.1, "minSize": (min_side, min_side)}
    if max_side is not None:
        kw["maxSize"] = (max_side, max_side)
    faces = _cascade("haarcascade_frontalface_default.xml").detectMultiScale(img, minNeighbors=5, **kw)
    if len(faces) == 0:
        faces = _cascade("haarcascade_frontalface_alt2.xml").detectMultiScale(img, minNeighbors=4, **kw)
    return np.asarray(faces, dtype=np.float64).reshape(-1, 4)


class MouthDetector:
    """Face + mouth pose from OpenCV Haar cascades (bundled, offline).

    ``detect_side`` is the image size the full-frame face search runs at (bigger finds
    smaller faces, costs time). ``prev`` (the last pose) picks the face nearest it when
    several are found.
    """

    def __init__(self, detect_side: int = 360, min_face_frac: float = 0.12, use_eyes: bool = True):
        self.detect_side = detect_side
        self.min_face_frac = min_face_frac
        self.use_eyes = use_eyes

    def detect_face(self, gray: np.ndarray, prev: MouthPose | None = None):
        """Face box (x, y, w, h) in ``gray`` pixels, searched over the whole frame, or None."""
        import cv2

        h, w = gray.shape[:2]
        s = min(1.0, self.detect_side / max(h, w))
        small = cv2.resize(gray, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA) if s < 1 else gray
        small = cv2.equalizeHist(small)
        min_face = max(24, int(self.min_face_frac * min(small.shape)))
        boxes = _cascade_faces(small, min_face) / s
        if len(boxes) == 0:
            return None
        if prev is not None and len(boxes) > 1:
            # Tracking: the face whose expected mouth is nearest the last mouth.
            mx = boxes[:, 0] + boxes[:, 2] / 2
            my = boxes[:, 1] + _MOUTH_Y_IN_BOX * boxes[:, 3]
            i = int(np.argmin((mx - prev.cx) ** 2 + (my - prev.cy) ** 2))
        else:
            i = int(np.argmax(boxes[:, 2] * boxes[:, 3]))
        return tuple(float(v) for v in boxes[i])

    def detect_face_near(self, gray: np.ndarray, box, margin: float = 0.35, face_px: int = 80):
        """Face box near ``box`` (x, y, w, h), or None: the cheap re-detection of a tracker.

        Searches only a window ``margin`` face widths around ``box``, downscaled so the face
        is about ``face_px`` wide, for faces 0.75-1.35 times its size; the one whose centre
        is nearest ``box``'s wins.
        """
        import cv2

        x, y, w, h = box
        H, W = gray.shape[:2]
        x0, y0 = max(0, int(x - margin * w)), max(0, int(y - margin * h))
        x1, y1 = min(W, math.ceil(x + (1 + margin) * w)), min(H, math.ceil(y + (1 + margin) * h))
        if x1 - x0 < 0.75 * w or y1 - y0 < 0.75 * h:
            return None
        win = gray[y0:y1, x0:x1]
        s = min(1.0, face_px / w)
        if s < 1:
            size = (max(1, round((x1 - x0) * s)), max(1, round((y1 - y0) * s)))
            win = cv2.resize(win, size, interpolation=cv2.INTER_AREA)
        sx, sy = (x1 - x0) / win.shape[1], (y1 - y0) / win.shape[0]
        fw = w * win.shape[1] / (x1 - x0)
        boxes = _cascade_faces(cv2.equalizeHist(win), max(24, int(0.75 * fw)), math.ceil(1.35 * fw))
        if len(boxes) == 0:
            return None
        boxes = boxes * [sx, sy, sx, sy] + [x0, y0, 0, 0]
        d = (boxes[:, 0] + boxes[:, 2] / 2 - x - w / 2) ** 2 + (boxes[:, 1] + boxes[:, 3] / 2 - y - h / 2) ** 2
        return tuple(float(v) for v in boxes[int(np.argmin(d))])

    def _eyes(self, gray: np.ndarray, box) -> tuple[np.ndarray, np.ndarray] | None:
        """Left and right eye centres inside the face box, or None if not both are clear."""
        import cv2

        x, y, w, h = box
        # Search band: upper face, where the Haar box puts the eyes at ~0.38 height.
        y0, y1 = int(y + 0.15 * h), int(y + 0.6 * h)
        x0, x1 = int(max(0, x)), int(x + w)
        roi = gray[max(0, y0) : y1, x0:x1]
        if roi.size == 0:
            return None
        s = min(1.0, 160.0 / max(1, roi.shape[1]))
        if s < 1:
            roi = cv2.resize(roi, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        min_eye = max(8, int(0.12 * w * s))
        eyes = _cascade("haarcascade_eye.xml").detectMultiScale(
            roi, scaleFactor=1.1, minNeighbors=5, minSize=(min_eye, min_eye), maxSize=(int(0.4 * w * s),) * 2
        )
        if len(eyes) < 2:
            return None
        centres = np.array([[ex + ew / 2, ey + eh / 2] for ex, ey, ew, eh in eyes]) / s
        centres += [x0, max(0, y0)]
        left = centres[centres[:, 0] < x + w / 2]
        right = centres[centres[:, 0] >= x + w / 2]
        if len(left) == 0 or len(right) == 0:
            return None
        # Largest-separation consistent pair: the eye nearest each expected eye position.
        exp_l = np.array([x + w * (0.5 - _IOD_IN_BOX / 2), y + _EYE_Y_IN_BOX * h])
        exp_r = np.array([x + w * (0.5 + _IOD_IN_BOX / 2), y + _EYE_Y_IN_BOX * h])
        el = left[np.argmin(((left - exp_l) ** 2).sum(1))]
        er = right[np.argmin(((right - exp_r) ** 2).sum(1))]
        iod = float(np.hypot(*(er - el)))
        roll = math.atan2(er[1] - el[1], er[0] - el[0])
        # Reject implausible pairs (nostrils, eyebrows, a tilted false hit).
        if not (0.3 * w <= iod <= 0.65 * w) or abs(roll) > math.radians(30):
            return None
        return el, er

    def pose_from_box(self, gray: np.ndarray, box) -> MouthPose:
        """Mouth pose from a face box (and the eyes inside it, when both are found)."""
        return self.pose_and_eyes(gray, box)[0]

    def pose_and_eyes(self, gray: np.ndarray, box) -> tuple[MouthPose, bool]:
        """(mouth pose from a face box, whether both eyes were found and used)."""
        x, y, w, h = box
        # Face-box estimate: upright face, mouth at fixed fractions of the box.
        iod = _IOD_IN_BOX * w
        cx, cy, angle = x + w / 2, y + _MOUTH_Y_IN_BOX * h, 0.0
        eyes = self._eyes(gray, box) if self.use_eyes else None
        if eyes is not None:
            el, er = eyes
            d = er - el
            iod_e = float(np.hypot(*d))
            angle = math.atan2(d[1], d[0])
            # The mouth lies on the perpendicular bisector of the eye line, below it:
            # rotate "down" (0, 1) by the roll angle -> (-sin a, cos a).
            mid = (el + er) / 2
            ex = mid[0] - math.sin(angle) * _MOUTH_BELOW_EYES * iod_e
            ey = mid[1] + math.cos(angle) * _MOUTH_BELOW_EYES * iod_e
            # Average the two estimates: each has independent errors.
            cx, cy, iod = (cx + ex) / 2, (cy + ey) / 2, (iod + iod_e) / 2
        return MouthPose(cx, cy, _ROI_SIDE_IOD * iod, angle), eyes is not None

    def detect(self, gray: np.ndarray, prev: MouthPose | None = None) -> MouthPose | None:
        """Mouth pose in one grayscale frame (whole-frame search), or None when no face is found."""
        box = self.detect_face(gray, prev)
        return None if box is None else self.pose_from_box(gray, box)


# ----------------------------------------------------------------------------- tracking


@dataclass(frozen=True)
class RoiTracking:
    """Detect-then-track settings of :func:`extract_mouth_rois`.

    A whole-frame detection starts a track; a reference patch of the upper face (eyes to
    nose: rigid, unlike the speaking mouth) is then followed frame to frame by normalised
    cross-correlation in a small search region of a downscaled frame. Every
    ``detect_every`` frames the face is re-detected in a window around the tracked box;
    the mouth pose of each frame is the tracked patch position plus the (median-smoothed,
    interpolated) mouth offset those detections measured, so the detector's jitter is
    averaged out and tracker drift is corrected.
    """

    detect_every: int = 5  # frames between re-detections while tracking
    retry_every: int = 5  # most frames between whole-frame searches while no face is held
    track_face_px: int = 64  # the patch is followed at the pyramid level where the face is >= this wide
    search_frac: float = 0.15  # search margin per frame, in face widths
    min_score: float = 0.5  # correlation below this: the track is lost
    refresh_score: float = 0.8  # correlation below this: the patch is re-cut from the current frame
    window_frac: float = 0.35  # re-detection window around the tracked face box, in face widths
    detect_face_px: int = 80  # face width the re-detection runs at
    max_misses: int = 3  # consecutive failed re-detections that end a track
    rescale_frac: float = 0.15  # re-detected face size change that re-cuts the patch

    def __post_init__(self) -> None:
        for name in ("detect_every", "retry_every", "track_face_px", "detect_face_px", "max_misses"):
            if getattr(self, name) < 1:
                raise ValueError(f"RoiTracking.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.min_score <= self.refresh_score <= 1:
            raise ValueError("RoiTracking: need 0 <= min_score <= refresh_score <= 1")


# Reference patch, in face-box fractions: eyes to just below the nose, inside the cheeks.
_PATCH_X = (0.18, 0.82)
_PATCH_Y = (0.20, 0.68)
_MIN_PATCH_STD = 2.0  # grey levels: a flatter patch has nothing to correlate


@dataclass
class _Track:
    """One unbroken track: the reference patch, where it was found, and detections along it."""

    level: int  # pyramid level the patch lives at (each level halves the frame)
    patch: np.ndarray  # uint8 reference patch at that level
    box: tuple  # face box (full-resolution pixels) of the last detection
    box_pos: np.ndarray  # patch centre when that detection was made
    pos: dict  # frame -> patch centre (x, y) in full-resolution pixels
    keys: list  # (frame, detected MouthPose, eyes found) in frame order
    last_try: int  # frame of the last detection attempt
    misses: int = 0


def _pyramid(gray: np.ndarray, level: int) -> np.ndarray:
    import cv2

    for _ in range(level):
        gray = cv2.pyrDown(gray)
    return gray


def _cut_patch(gray: np.ndarray, level: int, centre: np.ndarray, box) -> np.ndarray:
    """The reference patch centred (sub-pixel) on ``centre``, sized from face ``box``."""
    import cv2

    f = 2.0**level
    size = (max(8, round((_PATCH_X[1] - _PATCH_X[0]) * box[2] / f)), max(8, round((_PATCH_Y[1] - _PATCH_Y[0]) * box[3] / f)))
    return cv2.getRectSubPix(_pyramid(gray, level), size, (float(centre[0] / f), float(centre[1] / f)))


def _patch_centre(box) -> np.ndarray:
    x, y, w, h = box
    return np.array([x + w * sum(_PATCH_X) / 2, y + h * sum(_PATCH_Y) / 2])


def _start_track(gray: np.ndarray, t: int, box, key: tuple, cfg: RoiTracking) -> _Track | None:
    """A track from a detection at frame ``t``; None if the face has no texture to follow."""
    level = max(0, int(math.floor(math.log2(max(1.0, box[2] / cfg.track_face_px)))))
    centre = _patch_centre(box)
    patch = _cut_patch(gray, level, centre, box)
    if float(patch.std()) < _MIN_PATCH_STD:
        return None
    return _Track(level, patch, box, centre, {t: centre}, [(t, *key)], t)


def _peak_offset(left: float, mid: float, right: float) -> float:
    """Sub-pixel peak position (-0.5..0.5) of a parabola through three samples."""
    den = left - 2 * mid + right
    return 0.0 if den >= 0 else float(np.clip(0.5 * (left - right) / den, -0.5, 0.5))


def _follow(tr: _Track, gray: np.ndarray, t: int, src: int, cfg: RoiTracking) -> bool:
    """Find the patch in frame ``t`` near where it was in frame ``src``; False if lost."""
    import cv2

    f = 2.0**tr.level
    img = _pyramid(gray, tr.level)
    ph, pw = tr.patch.shape
    m = max(2, math.ceil(cfg.search_frac * tr.box[2] / f))
    c = tr.pos[src] / f
    x0, y0 = round(c[0] - (pw - 1) / 2) - m, round(c[1] - (ph - 1) / 2) - m
    xa, ya = max(0, x0), max(0, y0)
    xb, yb = min(img.shape[1], x0 + pw + 2 * m), min(img.shape[0], y0 + ph + 2 * m)
    if xb - xa < pw + 2 or yb - ya < ph + 2:
        return False  # the face left the frame
    res = np.nan_to_num(cv2.matchTemplate(img[ya:yb, xa:xb], tr.patch, cv2.TM_CCOEFF_NORMED), nan=-1.0)
    j, i = np.unravel_index(int(np.argmax(res)), res.shape)
    score = float(res[j, i])
    if score < cfg.min_score:
        return False
    dx = _peak_offset(res[j, i - 1], res[j, i], res[j, i + 1]) if 0 < i < res.shape[1] - 1 else 0.0
    dy = _peak_offset(res[j - 1, i], res[j, i], res[j + 1, i]) if 0 < j < res.shape[0] - 1 else 0.0
    centre = np.array([xa + i + dx + (pw - 1) / 2, ya + j + dy + (ph - 1) / 2]) * f
    tr.pos[t] = centre
    if score < cfg.refresh_score:  # appearance drifted: follow the face as it looks now
        tr.patch = _cut_patch(gray, tr.level, centre, tr.box)
    return True


def _redetect(tr: _Track, det: MouthDetector, gray: np.ndarray, t: int, cfg: RoiTracking) -> None:
    """Re-detect the face in a window around where the track puts it (frame ``t``)."""
    tr.last_try = t
    shift = tr.pos[t] - tr.box_pos
    pred = (tr.box[0] + shift[0], tr.box[1] + shift[1], tr.box[2], tr.box[3])
    box = det.detect_face_near(gray, pred, cfg.window_frac, cfg.detect_face_px)
    if box is None:
        tr.misses += 1
        return
    tr.misses = 0
    tr.keys.append((t, *det.pose_and_eyes(gray, box)))
    if abs(box[2] / tr.box[2] - 1) > cfg.rescale_frac:  # the face grew or shrank: re-cut
        tr.patch = _cut_patch(gray, tr.level, tr.pos[t], box)
    tr.box, tr.box_pos = box, tr.pos[t]


def _running_median(a: np.ndarray, window: int) -> np.ndarray:
    half = window // 2
    return np.stack([np.median(a[max(0, k - half) : k + half + 1], axis=0) for k in range(len(a))])


def _track_poses(tr: _Track) -> tuple[np.ndarray, np.ndarray]:
    """(frames, poses [n,4]) of a track: patch position + interpolated detected mouth offset."""
    frames = np.array(sorted(tr.pos))
    # The box-only estimate sits a few pixels off the box+eyes one, and its ROI is smaller:
    # mixing the two makes the ROI jump, so detections with both eyes win when there are any.
    keys = [k for k in tr.keys if k[2]] or tr.keys
    kt = np.array([t for t, _, _ in keys], dtype=np.float64)
    kp = np.array([p.as_array() for _, p, _ in keys])
    kpos = np.array([tr.pos[t] for t, _, _ in keys])
    # Offsets median-smoothed over neighbouring detections: one bad detection moves nothing.
    vals = _running_median(np.column_stack([kp[:, :2] - kpos, kp[:, 2:]]), 3)
    cols = np.stack([np.interp(frames, kt, vals[:, j]) for j in range(4)], axis=1)
    pos = np.array([tr.pos[t] for t in frames])
    cols[:, :2] += pos
    return frames, cols


def _acquire(det: MouthDetector, gray: np.ndarray, t: int, prev: MouthPose | None, cfg: RoiTracking) -> _Track | None:
    """A new track from a whole-frame detection in frame ``t``, or None."""
    box = det.detect_face(gray, prev)
    return None if box is None else _start_track(gray, t, box, det.pose_and_eyes(gray, box), cfg)


def track_mouth_poses(
    grays: list[np.ndarray], detector: MouthDetector | None = None, cfg: RoiTracking | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Raw mouth poses [T,4] (cx, cy, side, angle) and validity [T]: detect, then track.

    A frame is valid when a track covers it: the patch was found there with a good
    correlation and a detection confirmed the face within ``max_misses`` re-detections.
    Without a face, whole-frame searches back off from every frame to every
    ``retry_every`` frames; a face found late is also tracked backwards over the frames
    before it.
    """
    det = detector or MouthDetector()
    cfg = cfg or RoiTracking()
    tracks: list[_Track] = []
    cur: _Track | None = None
    lost_since, next_try, gap, prev = 0, 0, 1, None
    for t, g in enumerate(grays):
        if cur is not None:
            if _follow(cur, g, t, t - 1, cfg):
                if t - cur.last_try >= cfg.detect_every:
                    _redetect(cur, det, g, t, cfg)
                if cur.misses >= cfg.max_misses:
                    cur, lost_since, next_try, gap = None, t + 1, t + 1, 1
                continue
            cur, lost_since, next_try, gap = None, t, t, 1
        if t < next_try:
            continue
        cur = _acquire(det, g, t, prev, cfg)
        if cur is None:
            # Back off: retry 1, 2, 4, ... frames later, at most every ``retry_every``.
            next_try, gap = t + gap, min(2 * gap, cfg.retry_every)
            continue
        prev = cur.keys[0][1]
        tracks.append(cur)
        for b in range(t - 1, lost_since - 1, -1):  # backwards over the frames it was missed in
            if not _follow(cur, grays[b], b, b + 1, cfg):
                break
    poses = np.zeros((len(grays), 4))
    valid = np.zeros(len(grays), dtype=bool)
    for tr in tracks:
        frames, p = _track_poses(tr)
        poses[frames], valid[frames] = p, True
    return poses, valid


def detect_mouth_poses(
    grays: list[np.ndarray], detector: MouthDetector | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Raw mouth poses [T,4] and validity [T] from a whole-frame detection in every frame
    (the reference the tracker is measured against; ~5x slower)."""
    det = detector or MouthDetector()
    poses = np.zeros((len(grays), 4))
    valid = np.zeros(len(grays), dtype=bool)
    prev: MouthPose | None = None
    for t, g in enumerate(grays):
        p = det.detect(g, prev)
        if p is not None:
            poses[t], valid[t], prev = p.as_array(), True, p
    return poses, valid


# ----------------------------------------------------------------------------- smoothing, crop


def smooth_poses(poses: np.ndarray, valid: np.ndarray, window: int = 5) -> np.ndarray:
    """Centred running median then mean of valid poses [T,4]; invalid rows are left as they are.

    The median drops single-frame detector glitches, the mean removes sub-pixel jitter.
    """
    out = poses.copy()
    if window <= 1 or valid.sum() < 2:
        return out
    idx = np.flatnonzero(valid)
    half = window // 2
    med = np.empty((len(idx), poses.shape[1]))
    for k in range(len(idx)):
        lo, hi = max(0, k - half), min(len(idx), k + half + 1)
        med[k] = np.median(poses[idx[lo:hi]], axis=0)
    for k, t in enumerate(idx):
        lo, hi = max(0, k - half), min(len(idx), k + half + 1)
        out[t] = med[lo:hi].mean(axis=0)
    return out


def crop_roi(gray: np.ndarray, pose: MouthPose | np.ndarray, size: int = ROI_SIZE) -> np.ndarray:
    """Rotate/scale/crop a ``size`` x ``size`` float32 ROI (0..1) centred on the mouth."""
    import cv2

    cx, cy, side, angle = (pose.as_array() if isinstance(pose, MouthPose) else np.asarray(pose, float))
    s = side / size  # source pixels per ROI pixel
    c, si = math.cos(angle), math.sin(angle)
    # Affine map ROI (u, v) -> image (x, y): rotate the ROI axes by the roll angle, scale,
    # and put the ROI centre ((size-1)/2, (size-1)/2) onto the mouth centre.
    u0 = (size - 1) / 2
    m = np.array(
        [
            [s * c, -s * si, cx - s * (c * u0 - si * u0)],
            [s * si, s * c, cy - s * (si * u0 + c * u0)],
        ]
    )
    src = gray if gray.dtype == np.uint8 else np.clip(gray * 255, 0, 255).astype(np.uint8)
    # Downscaling more than 2x: pre-blur so the warp does not alias.
    if s > 2:
        k = int(2 * round(s / 2) + 1)
        src = cv2.GaussianBlur(src, (k, k), s / 2.5)
    roi = cv2.warpAffine(
        src, m, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
    )
    return roi.astype(np.float32) / 255.0


def _to_gray(frame: np.ndarray) -> np.ndarray:
    import cv2

    if frame.ndim == 3:
        return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(frame)


def mouth_poses(
    frames: np.ndarray,
    detector: MouthDetector | None = None,
    smooth: int = 5,
    tracking: RoiTracking | None = None,
    per_frame: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed mouth poses [T,4] (cx, cy, side, angle) and validity [T] of ``frames``.

    Detect-then-track by default (``tracking`` settings); ``per_frame`` runs the whole-frame
    detector on every frame instead (the slow reference).
    """
    grays = [_to_gray(f) for f in frames]
    if per_frame:
        poses, valid = detect_mouth_poses(grays, detector)
    else:
        poses, valid = track_mouth_poses(grays, detector, tracking)
    return smooth_poses(poses, valid, smooth), valid


def rois_from_poses(frames: np.ndarray, poses: np.ndarray, valid: np.ndarray, size: int = ROI_SIZE) -> np.ndarray:
    """Crop the ROI of every valid frame; an invalid frame repeats the last valid ROI
    (a neutral grey frame before the first)."""
    rois = np.full((len(frames), size, size), NEUTRAL_GREY, dtype=np.float32)
    last = None
    for t, f in enumerate(frames):
        if valid[t]:
            last = crop_roi(_to_gray(f), poses[t], size)
        if last is not None:
            rois[t] = last
    return rois


def extract_mouth_rois(
    frames: np.ndarray,
    size: int = ROI_SIZE,
    detector: MouthDetector | None = None,
    smooth: int = 5,
    tracking: RoiTracking | None = None,
    per_frame: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Mouth ROIs float32 [T,size,size] in 0..1 and a validity mask bool [T].

    ``frames``: uint8 [T,H,W,3] RGB or [T,H,W] gray. The face is detected, then tracked
    (see :class:`RoiTracking`; ``per_frame=True`` detects in every frame instead). Frames
    where no face is held are marked False and get the last valid ROI (a neutral grey
    frame before the first). When no face is found in any frame the mask is all False
    (``not valid.any()``) and every ROI is neutral grey: callers should say so and run
    audio-only rather than trust the ROIs.
    """
    poses, valid = mouth_poses(frames, detector, smooth, tracking, per_frame)
    return rois_from_poses(frames, poses, valid, size), valid


def extract_mouth_rois_from_video(
    path: str | os.PathLike,
    size: int = ROI_SIZE,
    max_side: int = 640,
    smooth: int = 5,
    tracking: RoiTracking | None = None,
    per_frame: bool = False,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Decode a video (gray, downscaled to ``max_side``) and extract (rois, valid, fps).

    ``valid`` is all False when no face was ever found (see :func:`extract_mouth_rois`).
    """
    frames, fps = read_video(path, gray=True, max_side=max_side)
    rois, valid = extract_mouth_rois(frames, size=size, smooth=smooth, tracking=tracking, per_frame=per_frame)
    return rois, valid, fps
