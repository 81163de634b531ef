"""Visual degradations: shape/range kept, severities honoured, masks exact, deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from reavise.data.degrade import (
    MAX_NOISE_SIGMA,
    VISUAL_DEGRADATIONS,
    _run_bounds,
    degrade,
    offset_frames,
    parse_visual,
    runs_mask,
)
from reavise.errors import ReaviseError


def _frames(t: int = 120, seed: int = 0) -> np.ndarray:
    """Smooth random frames in 0.2..0.8 (no frame equals another)."""
    rng = np.random.default_rng(seed)
    base = rng.random((t, 67, 67)).astype(np.float32)
    return 0.2 + 0.6 * base


@pytest.mark.parametrize("name", sorted(VISUAL_DEGRADATIONS))
@pytest.mark.parametrize("severity", [0.0, 0.4, 1.0])
def test_shape_range_and_frame_count_kept(name: str, severity: float) -> None:
    frames = _frames(90)
    out, valid = degrade(frames, name, severity, rng=3)
    assert valid.dtype == bool and valid.shape == (90,)
    if name == "missing":
        assert out is None and not valid.any()
        return
    assert out.shape == frames.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert np.array_equal(frames, _frames(90))  # input untouched


@pytest.mark.parametrize("severity", [0.1, 0.3, 0.5, 0.7, 0.9])
def test_occlusion_fraction_runs_and_mask(severity: float) -> None:
    frames = _frames(300)
    out, valid = degrade(frames, "occlusion", severity, rng=1, fps=30.0)
    occluded = ~valid
    assert occluded.sum() == round(severity * 300)
    changed = np.abs(out - frames).reshape(300, -1).max(axis=1) > 1e-6
    assert np.array_equal(changed, occluded)  # mask False exactly on the degraded frames
    runs = _run_bounds(occluded)
    # contiguous events (>= 6 frames = 0.2 s at 30 fps), not scattered frames; a run may be
    # shorter only where it was trimmed to hit the exact total or merged with a neighbour
    lengths = [b - a for a, b in runs]
    assert np.mean(lengths) >= 6
    assert sum(1 for n in lengths if n < 6) <= 1


def test_occlusion_patch_covers_mouth() -> None:
    frames = _frames(60)
    out, valid = degrade(frames, "occlusion", 0.5, rng=2, patch="solid")
    centre = out[~valid][:, 24:43, 24:43]  # central 19x19 px: the mouth
    assert np.ptp(centre.reshape(len(centre), -1), axis=1).max() < 1e-6  # solid patch
    out, valid = degrade(frames, "occlusion", 0.5, rng=2, patch="textured")
    centre = out[~valid][:, 24:43, 24:43]
    diff = np.abs(centre - frames[~valid][:, 24:43, 24:43])
    assert diff.mean() > 0.1


def test_pixel_noise_sigma_by_severity() -> None:
    frames = np.full((40, 67, 67), 0.5, dtype=np.float32)
    for severity in (0.2, 0.5):
        out, valid = degrade(frames, "pixel_noise", severity, rng=0)
        assert valid.all()
        assert np.std(out - frames) == pytest.approx(severity * MAX_NOISE_SIGMA, rel=0.03)


def test_blur_smooths_by_severity() -> None:
    frames = _frames(20)
    same, _ = degrade(frames, "blur", 0.0, rng=0)
    assert np.allclose(same, frames)
    weak, valid = degrade(frames, "blur", 0.2, rng=0)
    strong, _ = degrade(frames, "blur", 0.8, rng=0)
    assert valid.all()
    assert np.std(frames) > np.std(weak) > np.std(strong)
    assert np.mean(strong) == pytest.approx(np.mean(frames), abs=0.01)


@pytest.mark.parametrize("mode", ["freeze", "blank"])
def test_dropped_modes_and_mask(mode: str) -> None:
    frames = _frames(300)
    out, valid = degrade(frames, "dropped", 0.3, rng=4, mode=mode)
    assert (~valid).sum() == 90
    assert np.array_equal(out[valid], frames[valid])
    for a, b in _run_bounds(~valid):
        expected = frames[max(a - 1, 0)] if mode == "freeze" else 0.0
        assert np.allclose(out[a:b], expected)


def test_dropped_mixed_uses_both_modes() -> None:
    frames = _frames(600)
    out, valid = degrade(frames, "dropped", 0.5, rng=5)
    kinds = set()
    for a, b in _run_bounds(~valid):
        kinds.add("blank" if np.all(out[a:b] == 0) else "freeze")
    assert kinds == {"blank", "freeze"}


@pytest.mark.parametrize(
    ("severity", "fps", "k"), [(0.5, 30.0, 3), (1.0, 25.0, 5), (0.25, 50.0, 2)]
)
def test_offset_shifts_by_expected_frames(severity: float, fps: float, k: int) -> None:
    assert offset_frames(severity, fps) == k  # severity * 200 ms * fps
    t = 50
    frames = np.broadcast_to(np.linspace(0, 1, t, dtype=np.float32)[:, None, None], (t, 67, 67))
    out, valid = degrade(np.array(frames), "offset", severity, rng=0, fps=fps)
    assert np.array_equal(out[k:], frames[: t - k])
    assert np.array_equal(out[:k], np.broadcast_to(frames[0], (k, 67, 67)))
    assert np.array_equal(valid, np.arange(t) >= k)


def test_missing_gives_none_and_all_false() -> None:
    out, valid = degrade(_frames(33), "missing", rng=0)
    assert out is None
    assert valid.shape == (33,) and not valid.any()


@pytest.mark.parametrize("name", ["occlusion", "pixel_noise", "dropped"])
def test_deterministic_for_seed(name: str) -> None:
    frames = _frames(120)
    a, ma = degrade(frames, name, 0.5, rng=7)
    b, mb = degrade(frames, name, 0.5, rng=7)
    c, _ = degrade(frames, name, 0.5, rng=8)
    assert np.array_equal(a, b) and np.array_equal(ma, mb)
    assert not np.array_equal(a, c)


def test_runs_mask_exact_count() -> None:
    rng = np.random.default_rng(0)
    for n in (1, 7, 50, 301):
        for frac in (0.0, 0.05, 0.33, 0.5, 0.99, 1.0):
            assert runs_mask(n, frac, rng, 3, 9).sum() == round(frac * n)


def test_parse_visual() -> None:
    assert parse_visual("occlusion:0.7").severity == 0.7
    assert parse_visual("occlusion:0.7").label == "occlusion0.7"
    assert parse_visual("missing").label == "missing"
    assert parse_visual("blur").severity == 0.5
    with pytest.raises(ReaviseError, match="unknown visual condition 'smear'.*occlusion"):
        parse_visual("smear:0.2")
    with pytest.raises(ReaviseError, match="0..1"):
        parse_visual("blur:1.5")
    with pytest.raises(ReaviseError, match="not a number"):
        parse_visual("blur:high")
