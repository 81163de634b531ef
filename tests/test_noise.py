"""Noise bank: determinism, spectral shapes, babble speakers, hum peaks, real-noise folders."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import lfilter, welch

from reavise.data.noise import (
    NOISE_RMS,
    NoiseFolder,
    compute_ltass,
    known_noises,
    make_noise,
    select_babble,
)
from reavise.errors import InputError, ReaviseError

SR = 16000
SYNTHETIC = ["white", "pink", "brown", "speech_shaped", "modulated", "car", "hum"]


def _speech_like(n: int, seed: int) -> np.ndarray:
    """Coloured, formant-like noise standing in for speech (two resonances + tilt)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    for fc, r in ((500.0, 0.97), (1500.0, 0.95)):
        th = 2 * np.pi * fc / SR
        x = lfilter([1.0], [1.0, -2 * r * np.cos(th), r * r], x)
    return lfilter([1.0], [1.0, -0.7], x)


def _slope_db_per_decade(x: np.ndarray, f_lo: float = 50.0, f_hi: float = 5000.0) -> float:
    f, p = welch(x, fs=SR, nperseg=4096)
    band = (f >= f_lo) & (f <= f_hi)
    return float(np.polyfit(np.log10(f[band]), 10 * np.log10(p[band]), 1)[0])


def test_registry_lists_all_types() -> None:
    assert set(SYNTHETIC + ["babble", "file"]) <= set(known_noises())
    with pytest.raises(ReaviseError, match=r"unknown noise type 'rain' \(known: .*pink"):
        make_noise("rain", 100, 0)


@pytest.mark.parametrize("kind", SYNTHETIC)
def test_deterministic_and_level(kind: str) -> None:
    a = make_noise(kind, 24000, np.random.default_rng(5))
    b = make_noise(kind, 24000, np.random.default_rng(5))
    c = make_noise(kind, 24000, np.random.default_rng(6))
    assert a.dtype == np.float32 and a.shape == (24000,)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)
    assert np.sqrt(np.mean(a.astype(np.float64) ** 2)) == pytest.approx(NOISE_RMS, rel=1e-4)


def test_any_length() -> None:
    for n in (1, 17, 1023, 48001):
        assert make_noise("pink", n, 0).shape == (n,)


@pytest.mark.parametrize(
    ("kind", "slope", "tol"), [("white", 0.0, 1.0), ("pink", -10.0, 1.0), ("brown", -20.0, 1.5)]
)
def test_spectral_slopes(kind: str, slope: float, tol: float) -> None:
    # pink: -3 dB/octave = -10 dB/decade; brown: -6 dB/octave = -20 dB/decade
    x = make_noise(kind, 10 * SR, np.random.default_rng(0))
    assert _slope_db_per_decade(x) == pytest.approx(slope, abs=tol)


def test_speech_shaped_matches_ltass() -> None:
    speech = [_speech_like(3 * SR, s) for s in range(3)]
    x = make_noise("speech_shaped", 10 * SR, 0, speech=speech)
    f, target = compute_ltass(speech)
    _, got = welch(x, fs=SR, nperseg=1024)
    band = (f >= 100) & (f <= 7000)
    d = 10 * np.log10(got[band]) - 10 * np.log10(target[band])
    d -= d.mean()  # level is arbitrary; compare the shape
    assert np.median(np.abs(d)) < 0.7
    assert np.max(np.abs(d)) < 3.0


def test_speech_shaped_default_curve_falls_with_frequency() -> None:
    # Byrne et al. (1994) LTASS: peak around 500 Hz, ~15 dB lower at 4 kHz
    f, p = welch(make_noise("speech_shaped", 8 * SR, 0), fs=SR, nperseg=1024)
    level = lambda hz: 10 * np.log10(p[np.argmin(np.abs(f - hz))])  # noqa: E731
    assert level(500) - level(4000) > 10
    assert level(500) > level(100)


@pytest.mark.parametrize("mains", [50.0, 60.0])
def test_hum_peaks_at_mains_harmonics(mains: float) -> None:
    x = make_noise("hum", 4 * SR, 1, mains_hz=mains)
    f, p = welch(x, fs=SR, nperseg=SR)  # 1 Hz resolution
    floor = np.median(10 * np.log10(p[(f > 20) & (f < 8000)]))
    for k in (1, 2, 3):
        assert 10 * np.log10(p[int(k * mains)]) - floor > 30
    other = 60.0 if mains == 50.0 else 50.0
    assert 10 * np.log10(p[int(other)]) - floor < 10


def test_car_noise_is_low_frequency() -> None:
    f, p = welch(make_noise("car", 4 * SR, 2), fs=SR, nperseg=4096)
    assert p[f < 500].sum() / p.sum() > 0.9


def test_babble_uses_only_other_speakers() -> None:
    pool = [
        {"id": f"{spk}_{i}", "speaker": spk, "duration": 1.0}
        for spk in ("ann", "bob", "cyd", "dan")
        for i in range(3)
    ]
    rng = np.random.default_rng(0)
    for target in ("ann", "bob"):
        chosen = select_babble(pool, target, 3, rng)
        assert len(chosen) == 3
        assert target not in {r["speaker"] for r in chosen}
        assert len({r["speaker"] for r in chosen}) == 3  # distinct talkers preferred
    assert len(select_babble(pool, "ann", 8, rng)) == 8  # more talkers than speakers: reuse
    with pytest.raises(ReaviseError, match="no utterance of another speaker"):
        select_babble([r for r in pool if r["speaker"] == "ann"], "ann", 3, rng)
    short = [dict(r, duration=0.1) for r in pool]
    with pytest.raises(ReaviseError, match="shorter than"):
        select_babble(short, "ann", 3, rng)


def test_babble_is_sum_of_sources() -> None:
    sources = [_speech_like(SR, s) for s in range(4)]
    a = make_noise("babble", 3 * SR, 1, sources=sources)  # longer than sources: looped
    b = make_noise("babble", 3 * SR, 1, sources=sources)
    assert np.array_equal(a, b)
    assert np.allclose(a[:SR], a[SR : 2 * SR], atol=1e-5)  # every source has period SR
    with pytest.raises(ReaviseError, match="sources"):
        make_noise("babble", 100, 0)


def test_noise_folder_and_file_noise(tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no audio here")
    with pytest.raises(InputError, match="no audio files"):
        NoiseFolder(empty)
    with pytest.raises(InputError, match="does not exist"):
        NoiseFolder(tmp_path / "nope")
    rec = np.random.default_rng(0).uniform(-0.5, 0.5, 2000).astype(np.float32)
    sf.write(tmp_path / "fan.wav", rec, SR, subtype="FLOAT")
    folder = NoiseFolder(tmp_path)
    assert [p.name for p in folder.files] == ["fan.wav"]
    x = make_noise("file", 5000, 3, noise_files=[str(p) for p in folder.files])
    assert np.allclose(x[:3000], x[2000:5000])  # shorter recording is looped
    # one period of x is a circular shift of the recording, up to the level
    seg = x[:2000].astype(np.float64)
    corr = max(
        np.dot(seg, np.roll(rec, -s)) / (np.linalg.norm(seg) * np.linalg.norm(rec))
        for s in range(2000)
    )
    assert corr > 0.9999
    with pytest.raises(ReaviseError, match="noise-dir"):
        make_noise("file", 100, 0)
