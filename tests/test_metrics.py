"""Metrics: SI-SDR against hand-computed values, torch/numpy agreement, PESQ/STOI sanity,
folder evaluation, summaries, the `reavise evaluate` CLI, and the shared-data README figures."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import typer
from typer.testing import CliRunner

from reavise import metrics
from reavise.cli.evaluate import register
from reavise.errors import InputError, ReaviseError
from reavise.metrics import (
    estoi,
    evaluate_folders,
    evaluate_pair,
    markdown_table,
    match_lengths,
    pesq_nb,
    pesq_wb,
    si_sdr,
    si_sdr_torch,
    stoi,
    summarize,
)

SR = 16000
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
NTCD = SHARED / "ntcd-timit-sample"
RVAE = SHARED / "reference-outputs" / "rvae-ps"


def speechlike(seed: int = 0, dur: float = 2.0) -> np.ndarray:
    """Harmonic complex (gliding f0 ~140 Hz) with a syllable-rate envelope: PESQ accepts it."""
    t = np.arange(int(SR * dur)) / SR
    f0 = 140 + 20 * np.sin(2 * np.pi * 0.7 * t + seed)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    s = sum(np.sin(k * phase) / k for k in range(1, 15))
    env = np.clip(np.sin(2 * np.pi * 1.3 * t), 0, None) ** 2
    s = s * env
    return (0.3 * s / np.abs(s).max()).astype(np.float64)


# --------------------------------------------------------------------------- SI-SDR by hand


def test_si_sdr_worked_example_orthogonal_noise():
    # ref = [1, -1, 1, -1] (already zero-mean, ||ref||^2 = 4)
    # n   = [1, 1, -1, -1] (zero-mean, <n, ref> = 1 - 1 - 1 + 1 = 0: orthogonal)
    # est = ref + 0.5 n -> alpha = <est, ref>/||ref||^2 = 4/4 = 1, target = ref (energy 4),
    # residual = 0.5 n (energy 0.25 * 4 = 1) -> SI-SDR = 10 log10(4 / 1) = 6.0206 dB
    ref = np.array([1.0, -1.0, 1.0, -1.0])
    n = np.array([1.0, 1.0, -1.0, -1.0])
    assert si_sdr(ref + 0.5 * n, ref) == pytest.approx(10 * math.log10(4.0), abs=1e-12)
    # twice the noise amplitude: residual energy 4 -> 0 dB; four times: 16 -> -6.02 dB
    assert si_sdr(ref + n, ref) == pytest.approx(0.0, abs=1e-12)
    assert si_sdr(ref + 2 * n, ref) == pytest.approx(-10 * math.log10(4.0), abs=1e-12)


def test_si_sdr_worked_example_with_means_removed():
    # ref = [1, 2, 3, 4] -> zero-mean r0 = [-1.5, -0.5, 0.5, 1.5], ||r0||^2 = 2.25+.25+.25+2.25 = 5
    # n = [1, -1, -1, 1]: zero-mean, <n, r0> = -1.5 + 0.5 - 0.5 + 1.5 = 0, ||n||^2 = 4
    # est = ref + 10 (a DC offset, removed by the zero-mean convention) + 0.5 n
    # -> target = r0 (energy 5), residual = 0.5 n (energy 1): SI-SDR = 10 log10(5) = 6.9897 dB
    ref = np.array([1.0, 2.0, 3.0, 4.0])
    n = np.array([1.0, -1.0, -1.0, 1.0])
    est = ref + 10.0 + 0.5 * n
    assert si_sdr(est, ref) == pytest.approx(10 * math.log10(5.0), abs=1e-12)


def test_si_sdr_scaled_projection():
    # est = 2 ref + n with n orthogonal: alpha = 2, target = 2 ref (energy 4 * 4 = 16),
    # residual n (energy 4) -> 10 log10(16 / 4) = 6.0206 dB, same as ref + 0.5 n
    ref = np.array([1.0, -1.0, 1.0, -1.0])
    n = np.array([1.0, 1.0, -1.0, -1.0])
    assert si_sdr(2 * ref + n, ref) == pytest.approx(si_sdr(ref + 0.5 * n, ref), abs=1e-12)


def test_si_sdr_scale_and_sign_invariance():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal(4000)
    est = ref + 0.3 * rng.standard_normal(4000)
    base = si_sdr(est, ref)
    for scale in (1e-3, 0.5, 7.0, -1.0, -20.0):  # alpha absorbs any gain, including polarity
        assert si_sdr(scale * est, ref) == pytest.approx(base, abs=1e-9)
    assert si_sdr(est, 3.0 * ref) == pytest.approx(base, abs=1e-9)
    # sign of the result: better than 0 dB when the target dominates, negative otherwise
    assert base > 0
    assert si_sdr(ref + 3.0 * rng.standard_normal(4000), ref) < 0


def test_si_sdr_edge_cases():
    ref = np.array([1.0, -1.0, 1.0, -1.0])
    assert si_sdr(ref, ref) == math.inf
    with pytest.raises(InputError, match="silent"):
        si_sdr(ref, np.ones(4))  # constant reference: zero energy once the mean is removed
    with pytest.raises(InputError, match="length"):
        si_sdr(ref, ref[:3])
    with pytest.raises(InputError, match="NaN"):
        si_sdr(np.array([1.0, np.nan, 0.0, 1.0]), ref)


# --------------------------------------------------------------------------- torch version


def test_si_sdr_torch_matches_numpy():
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((4, 8000))
    est = ref + rng.uniform(0.1, 2.0, (4, 1)) * rng.standard_normal((4, 8000)) + 0.2
    got = si_sdr_torch(torch.from_numpy(est), torch.from_numpy(ref)).numpy()
    want = np.array([si_sdr(e, r) for e, r in zip(est, ref, strict=True)])
    np.testing.assert_allclose(got, want, atol=1e-6)
    # float32 and extra batch dimensions work too
    got32 = si_sdr_torch(
        torch.from_numpy(est).float().view(2, 2, -1), torch.from_numpy(ref).float().view(2, 2, -1)
    )
    np.testing.assert_allclose(got32.reshape(-1).numpy(), want, atol=1e-3)


def test_si_sdr_torch_gradient_sign():
    torch.manual_seed(0)
    ref = torch.randn(3, 4000, dtype=torch.float64)
    noise = torch.randn(3, 4000, dtype=torch.float64)
    est = (ref + noise).requires_grad_(True)
    score = si_sdr_torch(est, ref)
    (-score.mean()).backward()  # the loss
    g = est.grad
    assert torch.isfinite(g).all()
    # descending the loss moves the estimate against the noise ...
    assert ((g * noise).sum(-1) > 0).all()
    # ... and a small gradient step raises SI-SDR for every item
    with torch.no_grad():
        better = si_sdr_torch(est - 100.0 * g, ref)
    assert (better > score.detach()).all()


def test_si_sdr_torch_silent_is_finite():
    zeros = torch.zeros(2, 1000, requires_grad=True)
    out = si_sdr_torch(zeros, torch.zeros(2, 1000))
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(zeros.grad).all()


# --------------------------------------------------------------------------- lengths


def test_match_lengths_trims_within_tolerance_and_errors_beyond():
    a, b = np.ones(16000), np.ones(16000 - 100)
    ta, tb = match_lengths(a, b)
    assert len(ta) == len(tb) == 15900
    with pytest.raises(InputError, match="tolerance 256"):
        match_lengths(a, np.ones(15000))
    # tolerance scales with the sample rate (one 16-ms hop)
    assert metrics.default_len_tolerance(48000) == 768


# --------------------------------------------------------------------------- PESQ / STOI


def test_identical_signals_give_best_scores():
    x = speechlike()
    assert pesq_wb(x, x) == pytest.approx(4.644, abs=0.01)
    assert pesq_nb(x, x) == pytest.approx(4.549, abs=0.01)  # the top of the P.862.1 mapping
    assert estoi(x, x) == pytest.approx(1.0, abs=1e-3)
    assert stoi(x, x) == pytest.approx(1.0, abs=1e-3)


def test_pesq_silence_is_nan_with_warning(monkeypatch):
    with pytest.warns(UserWarning, match="no utterance"):
        assert math.isnan(pesq_wb(np.zeros(SR), speechlike()[:SR]))
    with pytest.warns(UserWarning, match="no utterance"):
        assert math.isnan(pesq_nb(np.zeros(SR), speechlike()[:SR]))

    import pesq as pesq_pkg

    def raise_no_utterance(*args, **kwargs):
        raise pesq_pkg.NoUtterancesError()

    monkeypatch.setattr(pesq_pkg, "pesq", raise_no_utterance)
    with pytest.warns(UserWarning, match="no utterance"):
        assert math.isnan(pesq_wb(speechlike(), speechlike()))


def test_evaluate_pair_keys_and_improvements():
    rng = np.random.default_rng(2)
    clean = speechlike()
    noisy = clean + 0.1 * rng.standard_normal(len(clean))
    est = clean + 0.02 * rng.standard_normal(len(clean))
    m = evaluate_pair(est[:-50], clean, SR, noisy=noisy)  # a 50-sample shortfall is trimmed
    assert set(m) == {"si_sdr", "pesq", "pesq_nb", "stoi", "estoi", "si_sdr_i", "pesq_i", "estoi_i"}
    # white noise at 1/5 of the amplitude: SI-SDR improves by ~20 log10(5) = 14 dB
    assert m["si_sdr_i"] == pytest.approx(20 * math.log10(5), abs=0.5)
    assert m["pesq_i"] > 0 and m["estoi_i"] > 0
    assert set(evaluate_pair(est, clean, SR)) == {"si_sdr", "pesq", "pesq_nb", "stoi", "estoi"}
    # narrow band hears less of the white noise above 4 kHz than wide band does
    assert m["pesq_nb"] > m["pesq"]


# --------------------------------------------------------------------------- summaries


def test_summarize_mean_std_ci_by_hand():
    rows = [
        {"file": "a", "si_sdr": 1.0},
        {"file": "b", "si_sdr": 2.0},
        {"file": "c", "si_sdr": 3.0},
        {"file": "d", "si_sdr": float("nan")},
    ]
    s = summarize(rows)["si_sdr"]
    # NaN left out: n = 3, mean 2, sample std 1, CI half-width t_{0.975,2} / sqrt(3) = 4.3027/1.7321
    assert s["n"] == 3 and s["mean"] == pytest.approx(2.0) and s["std"] == pytest.approx(1.0)
    assert s["ci95"] == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)


def test_markdown_table():
    rows = [
        {"method": "a", "si_sdr": 1.234, "pesq": 2.0},
        {"method": "b|c", "si_sdr": 3.0, "pesq": 4.0},
    ]
    md = markdown_table(rows, summary=True)
    lines = md.strip().splitlines()
    assert lines[0] == "| method | SI-SDR (dB) | PESQ-WB |"
    assert lines[1] == "| --- | --- | --- |"
    assert lines[2] == "| a | 1.23 | 2.00 |"
    assert lines[3] == "| b\\|c | 3.00 | 4.00 |"
    assert lines[4] == "| **mean ± std** | 2.12 ± 1.25 | 3.00 ± 1.41 |"
    with pytest.raises(ReaviseError):
        markdown_table([])


# --------------------------------------------------------------------------- folders + CLI


def _write_set(root: Path, n: int = 3) -> None:
    rng = np.random.default_rng(3)
    for d in ("est", "ref", "noisy"):
        (root / d).mkdir(parents=True)
    for i in range(n):
        clean = speechlike(seed=i, dur=1.5)
        sf.write(root / "ref" / f"utt{i}.wav", clean, SR, subtype="FLOAT")
        sf.write(
            root / "noisy" / f"utt{i}.wav",
            clean + 0.1 * rng.standard_normal(len(clean)),
            SR,
            subtype="FLOAT",
        )
        est_name = f"utt{i}_enhanced.wav" if i % 2 == 0 else f"utt{i}.wav"  # both forms match
        sf.write(
            root / "est" / est_name,
            clean + 0.03 * rng.standard_normal(len(clean)),
            SR,
            subtype="FLOAT",
        )


def test_evaluate_folders_matching_and_errors(tmp_path):
    _write_set(tmp_path)
    seen = []
    rows = evaluate_folders(
        tmp_path / "est",
        tmp_path / "ref",
        tmp_path / "noisy",
        callback=lambda p: seen.append(p.name),
    )
    assert [r["file"] for r in rows] == ["utt0", "utt1", "utt2"] == seen
    assert all(r["si_sdr_i"] > 5 for r in rows)

    (tmp_path / "est" / "stray_enhanced.wav").write_bytes(
        (tmp_path / "ref" / "utt0.wav").read_bytes()
    )
    (tmp_path / "ref" / "utt1.wav").unlink()
    with pytest.raises(InputError) as err:
        evaluate_folders(tmp_path / "est", tmp_path / "ref")
    assert "stray" in str(err.value) and "utt1" in str(err.value)


def test_subset_scores_the_estimates_only_and_still_refuses_strays(tmp_path, caplog):
    from reavise.metrics import match_files

    _write_set(tmp_path)
    (tmp_path / "est" / "utt1.wav").unlink()
    with pytest.raises(InputError, match="utt1"):
        match_files(tmp_path / "est", tmp_path / "ref")
    with caplog.at_level("WARNING", logger="reavise.metrics"):
        pairs = match_files(tmp_path / "est", tmp_path / "ref", tmp_path / "noisy", subset=True)
    assert "scoring 2 of the 3 references" in caplog.text
    assert [p.name for p in pairs] == ["utt0", "utt2"] and pairs[1].noisy.name == "utt2.wav"
    full = {r["file"]: r["si_sdr"] for r in evaluate_folders(tmp_path / "est", tmp_path / "ref", subset=True)}
    assert set(full) == {"utt0", "utt2"}
    (tmp_path / "est" / "stray_enhanced.wav").write_bytes((tmp_path / "ref" / "utt0.wav").read_bytes())
    with pytest.raises(InputError, match="stray"):
        match_files(tmp_path / "est", tmp_path / "ref", subset=True)


def _cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:  # a group, so the command is invoked by name as in `reavise evaluate`
        pass

    register(app)
    return app


def test_cli_folders_writes_csv(tmp_path):
    _write_set(tmp_path)
    out = tmp_path / "res" / "m.csv"
    res = CliRunner().invoke(
        _cli(),
        [
            "evaluate",
            str(tmp_path / "est"),
            str(tmp_path / "ref"),
            "--noisy",
            str(tmp_path / "noisy"),
            "--csv",
            str(out),
            "--seed",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "mean ± std" in res.output and "SI-SDRi" in res.output
    lines = out.read_text().splitlines()
    assert lines[0] == "file,si_sdr,pesq,pesq_nb,stoi,estoi,si_sdr_i,pesq_i,estoi_i"
    assert len(lines) == 4
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp file left


def test_cli_single_pair_and_bad_args(tmp_path):
    _write_set(tmp_path, n=1)
    res = CliRunner().invoke(
        _cli(),
        [
            "evaluate",
            str(tmp_path / "est" / "utt0_enhanced.wav"),
            str(tmp_path / "ref" / "utt0.wav"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "SI-SDR (dB)" in res.output and "ESTOI" in res.output
    res = CliRunner().invoke(
        _cli(), ["evaluate", str(tmp_path / "est"), str(tmp_path / "ref" / "utt0.wav")]
    )
    assert isinstance(res.exception, InputError)


# --------------------------------------------------------------------------- real sample


def _read(path: Path) -> np.ndarray:
    x, sr = sf.read(str(path), dtype="float64")
    assert sr == SR
    return x


@pytest.mark.skipif(not NTCD.is_dir(), reason="shared NTCD-TIMIT sample not available")
def test_ntcd_noisy_matches_readme():
    clean, noisy = _read(NTCD / "clean.wav"), _read(NTCD / "noisy.wav")
    m = evaluate_pair(noisy, clean, SR)
    assert m["si_sdr"] == pytest.approx(-0.54, abs=0.02)
    assert m["pesq"] == pytest.approx(1.11, abs=0.02)
    assert m["pesq_nb"] == pytest.approx(1.41, abs=0.02)
    assert m["estoi"] == pytest.approx(0.36, abs=0.01)


@pytest.mark.skipif(not RVAE.is_dir(), reason="shared RVAE reference outputs not available")
@pytest.mark.parametrize(
    "name, sdr, pq, es",
    [
        ("vem", 7.55, 1.37, 0.28),
        ("mhem", 9.01, 1.30, 0.48),
        ("malaem", 9.52, 1.48, 0.46),
        ("ldem", 9.86, 1.56, 0.48),
    ],
)
def test_rvae_reference_outputs_match_readme(name, sdr, pq, es):
    clean = _read(NTCD / "clean.wav")
    m = evaluate_pair(_read(RVAE / f"{name}.wav"), clean, SR)
    assert m["si_sdr"] == pytest.approx(sdr, abs=0.02)
    assert m["pesq"] == pytest.approx(pq, abs=0.02)
    assert m["estoi"] == pytest.approx(es, abs=0.01)
