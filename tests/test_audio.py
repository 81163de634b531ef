import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import write
from reavise import audio as A
from reavise.errors import InputError


def test_stft_shape_and_convention():
    x = torch.randn(2, 16000)
    X = A.stft(x)
    assert X.shape == (2, 16000 // 256 + 1, 513)
    w = A.sine_window(1024)
    # sine window: w^2 at 75 % overlap sums to N/2 / hop * ... = constant 2
    ola = sum(torch.roll(w**2, k * 256) for k in range(4))
    assert torch.allclose(ola, torch.full_like(ola, 2.0), atol=1e-5)


def test_stft_istft_round_trip_below_1e5():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 12345, generator=g)
    y = A.istft(A.stft(x), length=x.shape[-1])
    rel = (y - x).norm() / x.norm()
    assert rel < 1e-5


def test_power_spectrogram_of_sinusoid_peaks_at_its_bin():
    sr = 16000
    t = torch.arange(sr) / sr
    f = 1000.0
    P = A.power_spectrogram(torch.sin(2 * torch.pi * f * t))
    peak_bin = int(P[10].argmax())
    assert peak_bin == round(f / sr * 1024)
    # Parseval-ish: energy of the frame equals sum |X|^2 / (sum w^2) for a stationary tone
    assert P[10, peak_bin] > 1000 * P[10, 200]


def test_load_audio_downmix_resample_and_notes(tmp_path, speechlike):
    x = speechlike(0, 1.0, 22050)
    stereo = np.stack([x, 0.5 * x], axis=1)
    p = write(tmp_path / "s.wav", stereo, 22050, "FLOAT")
    notes = []
    y = A.load_audio(p, warn=notes.append)
    assert any("downmixed" in n for n in notes) and any("resampled" in n for n in notes)
    assert abs(len(y) - 16000) <= 1
    ref = A.resample(0.75 * x, 22050, 16000)
    assert np.allclose(y, ref, atol=1e-4)


@pytest.mark.parametrize(
    "make, msg",
    [
        (lambda: np.zeros(0, np.float32), "empty"),
        (lambda: np.zeros(4000, np.float32), "all zeros"),
        (lambda: np.full(4000, np.nan, np.float32), "NaN"),
        (lambda: np.ones(500, np.float32) * 0.1, "too short"),
    ],
)
def test_load_audio_bad_inputs_one_line(tmp_path, make, msg):
    p = tmp_path / "bad.wav"
    sf.write(p, make(), 16000, subtype="FLOAT")
    with pytest.raises(InputError) as exc:
        A.load_audio(p)
    text = str(exc.value)
    assert msg in text and str(p) in text and "\n" not in text


def test_load_audio_not_audio(tmp_path):
    p = tmp_path / "x.wav"
    p.write_text("hello")
    with pytest.raises(InputError, match="not a readable audio file"):
        A.load_audio(p)


def test_clipping_warns(tmp_path, speechlike):
    x = np.clip(speechlike(1) * 4, -1, 1)
    p = write(tmp_path / "c.wav", x)
    notes = []
    A.load_audio(p, warn=notes.append)
    assert any("clipped" in n for n in notes)


def test_write_wav_atomic_leaves_no_partial(tmp_path):
    target = tmp_path / "out.wav"

    def boom(tmp):
        with open(tmp, "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        A.atomic_write(target, boom)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
    A.write_wav(target, np.array([0.0, 0.5, -0.5, 2.0], np.float32))
    y, sr = sf.read(target)
    assert sr == 16000 and np.allclose(y, [0, 0.5, -0.5, 1.0], atol=1e-4)
