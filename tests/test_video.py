"""Video decoding/encoding (PyAV) and mouth-ROI extraction on a real face image."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from skimage import data

from reavise.errors import InputError
from reavise.lips import ROI_SIZE
from reavise.video import (
    NEUTRAL_GREY,
    MouthDetector,
    RoiTracking,
    crop_roi,
    extract_mouth_rois,
    mouth_poses,
    read_audio_track,
    read_video,
    smooth_poses,
    video_info,
    write_video,
    write_video_with_audio,
)

# Mouth of skimage.data.astronaut() (512x512), measured on the image: lips span rows ~137-156
# and columns ~200-246 (the smile); centre about (row 146, col 223).
MOUTH_ROWS = (137, 156)
MOUTH_COLS = (200, 246)


# The same mouth in the 160 x 160 face of ``moving_face`` (0.625 x the crop above).
FACE_MOUTH = np.array([(223 - 96) * 0.625, (146 - 40) * 0.625])
BACKGROUND = 110


def moving_face(n: int, v=(1.7, 0.9), start=(20.0, 15.0), canvas=(200, 240)):
    """Gray frames of the astronaut's face gliding at ``v`` px/frame (sub-pixel) over a flat
    background, and the true mouth centre (x, y) in each."""
    face = cv2.cvtColor(data.astronaut()[40:296, 96:352], cv2.COLOR_RGB2GRAY)
    face = cv2.resize(face, (160, 160), interpolation=cv2.INTER_AREA)
    frames, truth = [], []
    for t in range(n):
        ox, oy = start[0] + v[0] * t, start[1] + v[1] * t
        m = np.float32([[1, 0, ox], [0, 1, oy]])
        frames.append(cv2.warpAffine(face, m, (canvas[1], canvas[0]), borderValue=BACKGROUND))
        truth.append(FACE_MOUTH + [ox, oy])
    return np.stack(frames), np.array(truth)


def face_frames(n: int = 10, size: int = 160, shift: int = 2) -> np.ndarray:
    """A talking-head stand-in: the astronaut's face, translated a few pixels per frame."""
    face = data.astronaut()[40:296, 96:352]
    face = cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA)
    return np.stack([np.roll(face, (shift * t, shift * t // 2), axis=(0, 1)) for t in range(n)])


def test_video_roundtrip(tmp_path):
    frames = face_frames(12)
    path = write_video(tmp_path / "v.mp4", frames, 25.0)
    out, fps = read_video(path)
    assert out.shape == frames.shape and out.dtype == np.uint8
    assert fps == pytest.approx(25.0)
    assert np.abs(out.astype(int) - frames.astype(int)).mean() < 6
    gray, _ = read_video(path, gray=True, max_side=80)
    assert gray.shape == (12, 80, 80)
    assert video_info(path) == (pytest.approx(25.0), 12, False)
    assert read_audio_track(path) is None
    # MPEG-1 (GRID's container) at a fractional NTSC rate.
    frames_mpg, fps_mpg = read_video(write_video(tmp_path / "v.mpg", frames, 30000 / 1001))
    assert len(frames_mpg) == 12 and fps_mpg == pytest.approx(29.97, abs=0.01)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left


def test_write_video_with_audio_roundtrip(tmp_path):
    frames = face_frames(15)
    sr = 16000
    t = np.arange(int(15 / 25 * sr)) / sr
    audio = (0.4 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    path = write_video_with_audio(frames, 25.0, audio, sr, tmp_path / "enh.mp4")
    out, fps = read_video(path)
    assert len(out) == 15 and fps == pytest.approx(25.0)
    back = read_audio_track(path)
    assert back is not None
    # AAC pads the last frame; the signal itself lines up sample for sample.
    assert len(audio) <= len(back) <= len(audio) + 2048
    seg = slice(1000, len(audio) - 1000)
    assert np.corrcoef(back[seg], audio[seg])[0, 1] > 0.99
    # Resampled on the way in: 44.1 kHz input, 16 kHz out.
    a44 = np.sin(2 * np.pi * 330 * np.arange(int(0.6 * 44100)) / 44100).astype(np.float32) * 0.4
    back44 = read_audio_track(write_video_with_audio(frames, 25.0, a44, 44100, tmp_path / "b.mkv"))
    assert abs(len(back44) - 0.6 * 16000) < 2048


def test_bad_videos_raise_one_line(tmp_path):
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(np.random.default_rng(0).bytes(5000))
    for path in (bad, tmp_path / "missing.mp4"):
        with pytest.raises(InputError) as exc:
            read_video(path)
        assert path.name in str(exc.value) and "\n" not in str(exc.value)
    import soundfile as sf

    wav = tmp_path / "audio_only.wav"
    sf.write(wav, np.zeros(16000, dtype=np.float32), 16000)
    with pytest.raises(InputError, match="no video stream"):
        read_video(wav)


def test_mouth_on_astronaut():
    img = data.astronaut()
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    pose = MouthDetector().detect(gray)
    assert pose is not None
    assert MOUTH_ROWS[0] <= pose.cy <= MOUTH_ROWS[1]
    assert MOUTH_COLS[0] <= pose.cx <= MOUTH_COLS[1]
    # The ROI covers the mouth: about one mouth width, not the whole face.
    assert 35 <= pose.side <= 80
    assert abs(pose.angle) < math.radians(8)
    roi = crop_roi(gray, pose)
    assert roi.shape == (ROI_SIZE, ROI_SIZE) and roi.dtype == np.float32
    assert 0 <= roi.min() and roi.max() <= 1
    # The square cropped from the image (pose is upright here) holds the whole mouth box.
    half = pose.side / 2
    assert pose.cx - half <= MOUTH_COLS[0] + 4 and pose.cx + half >= MOUTH_COLS[1] - 4
    assert pose.cy - half <= MOUTH_ROWS[0] and pose.cy + half >= MOUTH_ROWS[1]
    # ... and is the crop of that region: compare with a plain resize of it.
    x0, y0 = round(pose.cx - half), round(pose.cy - half)
    ref = cv2.resize(gray[y0 : y0 + round(pose.side), x0 : x0 + round(pose.side)], (ROI_SIZE,) * 2)
    assert np.corrcoef(ref.ravel(), roi.ravel())[0, 1] > 0.9


def test_mouth_follows_rotation():
    gray = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)
    m = cv2.getRotationMatrix2D((256, 256), 15, 1.0)  # 15 deg counter-clockwise
    rot = cv2.warpAffine(gray, m, (512, 512), borderMode=cv2.BORDER_REPLICATE)
    truth = m @ np.array([223.0, 146.0, 1.0])
    pose = MouthDetector().detect(rot)
    assert pose is not None
    assert np.hypot(pose.cx - truth[0], pose.cy - truth[1]) < 10
    assert math.degrees(pose.angle) == pytest.approx(-15, abs=6)


def test_validity_mask_and_fill():
    frames = face_frames(8)
    grey = np.full_like(frames[0], 128)
    seq = np.concatenate([grey[None], frames[:3], grey[None], frames[3:6]])
    rois, valid = extract_mouth_rois(seq)
    assert rois.shape == (8, ROI_SIZE, ROI_SIZE) and rois.dtype == np.float32
    assert valid.tolist() == [False, True, True, True, False, True, True, True]
    assert np.all(rois[0] == np.float32(NEUTRAL_GREY))  # before any face: neutral grey
    assert np.array_equal(rois[4], rois[3])  # a lost face keeps the last valid ROI
    assert 0 <= rois.min() and rois.max() <= 1


def test_smooth_poses_removes_jitter_and_glitches():
    rng = np.random.default_rng(0)
    t = np.arange(40)
    truth = np.stack([100 + 0.5 * t, 80 + 0 * t, 50 + 0 * t, 0 * t], 1).astype(float)
    noisy = truth + rng.normal(0, 1.5, truth.shape) * [1, 1, 1, 0]
    noisy[20] += [40, -40, 0, 0]  # a one-frame false detection
    valid = np.ones(40, bool)
    valid[5] = False
    sm = smooth_poses(noisy, valid, 5)
    err_raw = np.abs(noisy - truth)[valid, :2].mean()
    err_sm = np.abs(sm - truth)[valid, :2].mean()
    assert err_sm < 0.6 * err_raw
    assert np.abs(sm[20] - truth[20])[:2].max() < 5


def test_tracked_mouth_follows_known_motion():
    frames, truth = moving_face(14)
    poses, valid = mouth_poses(frames, smooth=1)
    assert valid.all()
    err = poses[:, :2] - truth
    # On the mouth in every frame, and the error does not drift while the face moves
    # 24 px right and 12 px down (re-detections at frames 5 and 10 included).
    assert np.hypot(*err.T).max() < 3
    assert np.abs(err - err[0]).max() < 1.5
    assert np.ptp(poses[:, 2]) < 3  # steady ROI size


def test_track_lost_when_face_leaves_frame():
    frames, truth = moving_face(20, v=(10, 0))
    poses, valid = mouth_poses(frames, smooth=1)
    assert valid[:10].all() and not valid[-5:].any()
    assert np.hypot(*(poses[valid, :2] - truth[valid]).T).max() < 3


def test_late_face_is_tracked_back():
    """A face found by a later whole-frame search is followed backwards to its first frame."""
    frames, truth = moving_face(12)
    seq = np.concatenate([np.full((5, *frames.shape[1:]), BACKGROUND, np.uint8), frames])
    poses, valid = mouth_poses(seq, smooth=1)
    assert valid.tolist() == [False] * 5 + [True] * 12
    assert np.hypot(*(poses[5:, :2] - truth).T).max() < 3


def test_no_face_gives_all_false_mask():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (8, 96, 120), dtype=np.uint8)
    for per_frame in (False, True):
        rois, valid = extract_mouth_rois(frames, per_frame=per_frame)
        assert valid.dtype == bool and not valid.any()
        assert np.all(rois == np.float32(NEUTRAL_GREY))


def test_tracking_is_deterministic_and_close_to_per_frame():
    frames, _ = moving_face(10)
    r1, v1 = extract_mouth_rois(frames)
    r2, v2 = extract_mouth_rois(frames.copy())
    assert np.array_equal(r1, r2) and np.array_equal(v1, v2)
    ref, vref = extract_mouth_rois(frames, per_frame=True)
    assert vref.all() and v1.all()
    # The same mouth: the tracked ROIs look like the per-frame-detected ones.
    assert np.corrcoef(r1.ravel(), ref.ravel())[0, 1] > 0.9


def test_roi_tracking_rejects_bad_settings():
    with pytest.raises(ValueError, match="detect_every"):
        RoiTracking(detect_every=0)
    with pytest.raises(ValueError, match="min_score"):
        RoiTracking(min_score=0.9, refresh_score=0.5)


def test_tracking_on_real_grid_clip(shared_data):
    """On a real GRID clip the tracked mouth stays within a few pixels of per-frame detection."""
    clip = shared_data / "grid-s1" / "video" / "bbaf2n.mp4"
    if not clip.exists():
        pytest.skip("GRID s1 videos not present")
    frames, fps = read_video(clip, gray=True)
    frames = frames[:15]
    tracked, valid = mouth_poses(frames)
    ref, vref = mouth_poses(frames, per_frame=True)
    assert valid.all() and vref.all()
    d = np.hypot(*(tracked[:, :2] - ref[:, :2]).T)
    assert d.mean() < 2.5 and d.max() < 6
    assert np.abs(tracked[:, 2] - ref[:, 2]).mean() < 3
