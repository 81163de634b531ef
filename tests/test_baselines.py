"""Baselines: each improves SI-SDR on a synthetic 0 dB mixture, keeps the length, fails clearly
without its optional package; figures on the real NTCD-TIMIT sample are printed (run with -s)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from reavise import baselines
from reavise.baselines import BASELINES, NEEDS_CLEAN, OPTIONAL, enhance, estimate_noise_psd
from reavise.errors import ReaviseError
from reavise.metrics import evaluate_pair, markdown_table, si_sdr

SR = 16000
NTCD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ntcd-timit-sample"


def mixture(seed: int = 0, dur: float = 3.0, sr: int = SR) -> tuple[np.ndarray, np.ndarray]:
    """Harmonic complex (f0 ~140 Hz, 14 partials) with a syllable envelope + white noise at 0 dB."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * dur)) / sr
    f0 = 140 + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    s = sum(np.sin(k * phase) / k for k in range(1, 15))
    s = s * np.clip(np.sin(2 * np.pi * 1.3 * t), 0, None) ** 2
    s = 0.1 * s / np.std(s)
    n = rng.standard_normal(len(t))
    n *= np.std(s) / np.std(n)  # equal power: 0 dB SNR
    return (s + n).astype(np.float32), s.astype(np.float32)


@pytest.fixture(scope="module")
def mix() -> tuple[np.ndarray, np.ndarray]:
    return mixture()


def _available(name: str) -> bool:
    try:
        enhance(name, mixture(dur=0.5)[0], SR)
        return True
    except ReaviseError:
        return False


@pytest.mark.parametrize(
    "name, min_gain",
    [
        ("oracle_wiener", 8.0),
        ("spectral_subtraction", 2.0),
        ("mmse_lsa", 3.0),
        ("noisereduce", 2.0),
        ("rnnoise", 2.0),
    ],
)
def test_baseline_improves_si_sdr(mix, name, min_gain):
    if name in OPTIONAL and not _available(name):
        pytest.skip(f"{OPTIONAL[name]} not installed")
    noisy, clean = mix
    out = enhance(name, noisy, SR, clean=clean if name in NEEDS_CLEAN else None, seed=0)
    assert out.shape == noisy.shape and out.dtype == np.float32
    assert np.all(np.isfinite(out))
    gain = si_sdr(out, clean) - si_sdr(noisy, clean)
    assert gain > min_gain, f"{name}: SI-SDR gain {gain:.2f} dB"


@pytest.mark.parametrize("name", list(BASELINES))
@pytest.mark.parametrize("sr, n", [(16000, 16001), (8000, 12345), (48000, 30011)])
def test_length_preserved_any_rate(name, sr, n):
    if name in OPTIONAL and not _available(name):
        pytest.skip(f"{OPTIONAL[name]} not installed")
    noisy, clean = mixture(dur=n / sr + 0.01, sr=sr)
    noisy, clean = noisy[:n], clean[:n]
    out = BASELINES[name](noisy, sr, clean=clean if name in NEEDS_CLEAN else None, seed=0)
    assert out.shape == (n,) and np.all(np.isfinite(out))


def test_deterministic(mix):
    noisy, clean = mix
    for name in ("spectral_subtraction", "mmse_lsa"):
        np.testing.assert_array_equal(
            enhance(name, noisy, SR, seed=3), enhance(name, noisy, SR, seed=3)
        )


def test_identity_is_noisy(mix):
    noisy, _ = mix
    np.testing.assert_array_equal(enhance("noisy", noisy, SR), noisy)


def test_oracle_needs_clean_and_unknown_name(mix):
    with pytest.raises(ReaviseError, match="clean"):
        enhance("oracle_wiener", mix[0], SR)
    with pytest.raises(ReaviseError, match="mmse_lsa"):
        enhance("wiener2000", mix[0], SR)


@pytest.mark.parametrize(
    "name, module", [("noisereduce", "noisereduce"), ("rnnoise", "pyrnnoise.rnnoise")]
)
def test_missing_optional_package_names_extra(monkeypatch, mix, name, module):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(ReaviseError, match=r"pip install reavise\[baselines\]"):
        enhance(name, mix[0], SR)


def test_min_stats_noise_estimate_is_unbiased_for_white_noise():
    rng = np.random.default_rng(5)
    P = np.abs(baselines._spec(rng.standard_normal(SR * 4))) ** 2
    for method in ("min_stats", "lowest_frames", "first_frames"):
        ratio = float(np.mean(estimate_noise_psd(P, method)) / P.mean())
        assert 0.8 < ratio < 1.25, (method, ratio)


def test_lsa_gain_limits():
    # high SNR: G -> 1; very low a-priori SNR: G -> small
    assert baselines.lsa_gain(np.array([1e4]), np.array([1e4]))[0] == pytest.approx(1.0, abs=1e-3)
    assert baselines.lsa_gain(np.array([1e-3]), np.array([1.0]))[0] < 0.05


@pytest.mark.skipif(not NTCD.is_dir(), reason="shared NTCD-TIMIT sample not available")
def test_ntcd_sample_figures():
    clean, _ = sf.read(str(NTCD / "clean.wav"), dtype="float32")
    noisy, _ = sf.read(str(NTCD / "noisy.wav"), dtype="float32")
    rows = []
    for name in BASELINES:
        if name in OPTIONAL and not _available(name):
            continue
        out = enhance(name, noisy, SR, clean=clean if name in NEEDS_CLEAN else None)
        assert out.shape == noisy.shape
        m = evaluate_pair(out, clean, SR)
        rows.append(
            {
                "method": name,
                "si_sdr": m["si_sdr"],
                "pesq": m["pesq"],
                "stoi": m["stoi"],
                "estoi": m["estoi"],
            }
        )
    print("\nNTCD-TIMIT sample (reference clean.wav):\n" + markdown_table(rows))
    by = {r["method"]: r for r in rows}
    assert by["noisy"]["si_sdr"] == pytest.approx(-0.54, abs=0.02)
    assert by["oracle_wiener"]["si_sdr"] > 10
    for name in ("spectral_subtraction", "mmse_lsa", "noisereduce", "rnnoise"):
        if name in by:
            assert by[name]["si_sdr"] > by["noisy"]["si_sdr"] + 2, name
