"""Mixing at exact SNR, anti-clipping, and make_mixtures end to end on a tiny fake corpus."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import typer
from typer.testing import CliRunner

from reavise.audio import write_wav
from reavise.cli.data import register
from reavise.data.manifest import read_manifest, write_manifest
from reavise.data.mix import make_mixtures, mix, mix_at_snr, parse_snrs, snr_db, stable_seed
from reavise.data.noise import make_noise
from reavise.errors import InputError, ReaviseError
from reavise.lips import load_lips, save_lips

SR = 16000
LSB = 1.0 / 32768


def _speech_like(n: int, seed: int, peak: float = 0.5) -> np.ndarray:
    """Voiced-like test signal: harmonics of 120-200 Hz with a syllabic envelope."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    f0 = rng.uniform(120, 200)
    x = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.3)) / k for k in range(1, 12))
    x = x * (0.55 + 0.45 * np.sin(2 * np.pi * 4 * t)) + 0.02 * rng.standard_normal(n)
    return peak * x / np.abs(x).max()


@pytest.mark.parametrize("kind", ["white", "pink", "brown", "speech_shaped", "car", "hum"])
@pytest.mark.parametrize("target", [-10.0, -5.0, 0.0, 2.5, 5.0, 10.0, 20.0])
def test_exact_snr(kind: str, target: float) -> None:
    clean = _speech_like(SR, 1)
    noise = make_noise(kind, SR, 2)
    m = mix(clean, noise, target)
    assert snr_db(m.clean, m.noise) == pytest.approx(target, abs=0.01)
    assert np.allclose(m.noisy, m.clean + m.noise)
    assert np.abs(m.noisy).max() <= 1.0 + 1e-12
    noisy, scaled = mix_at_snr(clean, noise, target)
    assert np.array_equal(noisy, m.noisy) and np.array_equal(scaled, m.noise)


def test_anti_clipping_keeps_snr() -> None:
    clean = _speech_like(SR, 3, peak=0.95)
    noise = make_noise("white", SR, 4)
    m = mix(clean, noise, -5.0)  # loud noise: the sum would clip
    assert m.clip_gain < 1.0
    assert np.abs(m.noisy).max() == pytest.approx(1.0)
    assert np.allclose(m.clean, clean * m.clip_gain)  # both scaled by one common factor
    assert snr_db(m.clean, m.noise) == pytest.approx(-5.0, abs=0.01)
    quiet = mix(0.1 * clean, noise, 20.0)
    assert quiet.clip_gain == 1.0 and np.array_equal(quiet.clean, 0.1 * clean)


def test_mix_errors() -> None:
    x = _speech_like(1000, 0)
    with pytest.raises(ReaviseError, match="silent"):
        mix(np.zeros(1000), x, 0.0)
    with pytest.raises(ReaviseError, match="silent"):
        mix(x, np.zeros(1000), 0.0)
    with pytest.raises(ReaviseError, match="samples"):
        mix(x, x[:10], 0.0)
    with pytest.raises(ReaviseError, match="not a number"):
        parse_snrs("-5,zero,5")
    with pytest.raises(ReaviseError, match="no SNR"):
        parse_snrs(" , ")
    with pytest.raises(ReaviseError, match="not finite"):
        parse_snrs("inf")
    assert parse_snrs("-5, 0,5,10,5") == [-5.0, 0.0, 5.0, 10.0]


def test_stable_seed() -> None:
    assert stable_seed(0, "u1", "pink", -5.0) == stable_seed(0, "u1", "pink", -5)
    assert stable_seed(0, "u1", "pink", 5.0) != stable_seed(0, "u1", "pink", -5.0)
    assert stable_seed(1, "u1", "pink", 5.0) != stable_seed(0, "u1", "pink", 5.0)
    assert stable_seed(0, "u1", "pink", 0.0) == 3928243628766528353  # fixed across processes


# ---------------------------------------------------------------- end to end


def make_fake_corpus(root: Path) -> Path:
    """3 speakers: ann and bob in test (2 utterances each), cyd in val (2 utterances)."""
    rows = []
    for si, (spk, split) in enumerate((("ann", "test"), ("bob", "test"), ("cyd", "val"))):
        for u in range(2):
            uid = f"{spk}_{u}"
            n = int(SR * (0.8 + 0.1 * u))
            write_wav(root / f"audio/{spk}/{uid}.wav", _speech_like(n, 10 * si + u))
            t = round(n / SR * 30)
            frames = np.random.default_rng(si * 10 + u).random((t, 67, 67)).astype(np.float32)
            save_lips(root / f"lips/{spk}/{uid}.npy", frames)
            rows.append({
                "id": uid, "speaker": spk, "split": split, "text": f"utterance {u}",
                "audio": f"audio/{spk}/{uid}.wav", "lips": f"lips/{spk}/{uid}.npy",
                "valid": None, "duration": n / SR, "fps": 30.0, "n_video_frames": t,
            })  # fmt: skip
    write_manifest(root, rows)
    (root / "corpus.json").write_text(json.dumps({"kind": "synthetic", "version": 1}))
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_fake_corpus(tmp_path_factory.mktemp("corpus"))


SETTINGS = dict(
    snrs=(0, 5),
    noise_types=("white", "babble"),
    visual_conditions=("clean", "occlusion:0.5", "missing"),
    seed=3,
    progress=False,
)


def test_make_mixtures_end_to_end(corpus, tmp_path) -> None:
    out = tmp_path / "mix"
    rows = make_mixtures(corpus, out, **SETTINGS)
    assert len(rows) == 4 * 2 * 2 * 3  # utterances x noises x SNRs x visual conditions
    assert len({r["id"] for r in rows}) == len(rows)
    assert {r["source_id"] for r in rows} == {"ann_0", "ann_1", "bob_0", "bob_1"}
    assert rows == [{k: v for k, v in r.items() if k != "_root"} for r in read_manifest(out)]
    settings = json.loads((out / "mixtures.json").read_text())
    assert settings["seed"] == 3 and settings["n_mixtures"] == 48
    assert not (out / ".progress.jsonl").exists()

    for r in rows:
        noisy, _ = sf.read(out / r["noisy"], dtype="float64")
        clean, _ = sf.read(out / r["clean"], dtype="float64")
        noise, _ = sf.read(out / r["noise"], dtype="float64")
        assert np.max(np.abs(noisy - (clean + noise))) <= 2 * LSB  # 16-bit quantisation
        assert snr_db(clean, noise) == pytest.approx(r["snr_db"], abs=0.05)
        assert r["snr_db_written"] == pytest.approx(r["snr_db"], abs=0.05)
        valid = np.load(out / r["valid"])
        assert valid.dtype == bool and len(valid) == r["n_video_frames"]
        if r["noise_type"] == "babble":
            assert r["speaker"] not in r["babble_speakers"] and r["babble_speakers"]
        if r["visual"] == "missing":
            assert r["lips"] is None and not valid.any()
        else:
            lips = load_lips(out / r["lips"])
            assert lips.shape == (r["n_video_frames"], 67, 67)
        if r["visual"] == "occlusion":
            assert r["severity"] == 0.5
            assert (~valid).mean() == pytest.approx(0.5, abs=0.03)
        if r["visual"] == "clean":
            assert valid.all()
            src = load_lips(corpus / f"lips/{r['speaker']}/{r['source_id']}.npy")
            assert np.array_equal(lips, src)

    # the visual condition does not change the audio of a mixture
    by_key = {}
    for r in rows:
        key = (r["source_id"], r["noise_type"], r["snr_db"])
        by_key.setdefault(key, []).append(sf.read(out / r["noisy"])[0])
    assert all(all(np.array_equal(v[0], x) for x in v) for v in by_key.values())


def test_resume_and_determinism(corpus, tmp_path) -> None:
    out = tmp_path / "mix"
    kw = dict(SETTINGS, noise_types=("pink",), visual_conditions=("clean", "dropped:0.3"))
    rows = make_mixtures(corpus, out, **kw)
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.suffix in (".wav", ".npy"))
    stamps = {p: p.stat().st_mtime_ns for p in files}
    assert make_mixtures(corpus, out, **kw) == rows  # rerun: nothing rewritten
    assert {p: p.stat().st_mtime_ns for p in files} == stamps

    # an interrupted run leaves only the journal: its rows are reused as well
    (out / "manifest.jsonl").rename(out / ".progress.jsonl")
    assert make_mixtures(corpus, out, **kw) == rows
    assert {p: p.stat().st_mtime_ns for p in files} == stamps

    victim = out / rows[5]["noisy"]
    before = victim.read_bytes()
    victim.unlink()
    assert make_mixtures(corpus, out, **kw) == rows  # only the missing mixture is redone
    assert victim.read_bytes() == before  # same seed -> identical file
    changed = [p for p in files if p.stat().st_mtime_ns != stamps[p]]
    assert set(changed) <= {out / rows[5][k] for k in ("noisy", "clean", "noise", "lips", "valid")}

    other = make_mixtures(corpus, tmp_path / "mix2", **dict(kw, seed=4))
    a = sf.read(out / rows[0]["noise"])[0]
    b = sf.read(tmp_path / "mix2" / other[0]["noise"])[0]
    assert rows[0]["id"] == other[0]["id"] and not np.allclose(a, b)
    with pytest.raises(ReaviseError, match="seed=3"):
        make_mixtures(corpus, out, **dict(kw, seed=4))


def test_n_utterances_and_errors(corpus, tmp_path) -> None:
    kw = dict(SETTINGS, noise_types=("white",), visual_conditions=("clean",), snrs=(0,))
    rows = make_mixtures(corpus, tmp_path / "a", n_utterances=2, **kw)
    assert len(rows) == 2
    with pytest.raises(ReaviseError, match="no 'train' utterances.*test, val"):
        make_mixtures(corpus, tmp_path / "b", split="train", **kw)
    with pytest.raises(ReaviseError, match=r"unknown noise type 'rain' \(known:"):
        make_mixtures(corpus, tmp_path / "b", **dict(kw, noise_types=("rain",)))
    with pytest.raises(ReaviseError, match="--noise-dir"):
        make_mixtures(corpus, tmp_path / "b", **dict(kw, noise_types=("file",)))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no audio files"):
        make_mixtures(corpus, tmp_path / "b", noise_dir=tmp_path / "empty", **kw)
    with pytest.raises(ReaviseError, match="bad SNR list"):
        make_mixtures(corpus, tmp_path / "b", **dict(kw, snrs="0,loud"))
    with pytest.raises(ReaviseError, match="unknown visual condition"):
        make_mixtures(corpus, tmp_path / "b", **dict(kw, visual_conditions=("fog",)))
    # babble for the val split: the only other held-out speakers are ann and bob (test) -> ok;
    # a corpus whose held-out splits hold only the target speaker fails before any work
    solo = tmp_path / "solo"
    rows_c = [r for r in read_manifest(corpus) if r["speaker"] == "cyd"]
    for r in rows_c:
        for key in ("audio", "lips"):
            dst = solo / r[key]
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes((corpus / r[key]).read_bytes())
    write_manifest(solo, rows_c)
    with pytest.raises(ReaviseError, match="no utterance of another speaker"):
        make_mixtures(solo, tmp_path / "c", split="val", **dict(kw, noise_types=("babble",)))
    assert not (tmp_path / "c" / "manifest.jsonl").exists()


def test_noise_dir_and_cli(corpus, tmp_path) -> None:
    noise_dir = tmp_path / "noises"
    write_wav(noise_dir / "fan.wav", 0.3 * np.random.default_rng(0).standard_normal(4000))
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """reavise data (test stand-in)."""

    register(app)
    out = tmp_path / "cli"
    args = ["mix", str(corpus), "--out", str(out), "--snrs", "-5,5", "--noises", "file,hum",
            "--visual", "clean,offset:0.5", "--noise-dir", str(noise_dir), "--seed", "1",
            "--n-utterances", "1"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "8 mixtures of 1 utterances" in res.output
    rows = read_manifest(out)
    assert len(rows) == 1 * 2 * 2 * 2
    assert {r["noise_file"] for r in rows if r["noise_type"] == "file"} == {"fan.wav"}
    offset = [r for r in rows if r["visual"] == "offset"]
    assert all(np.load(out / r["valid"])[:3].sum() == 0 for r in offset)  # 100 ms at 30 fps
    res = CliRunner().invoke(app, args[:-2] + ["--n-utterances", "1", "--noises", "rain"])
    assert isinstance(res.exception, ReaviseError)


def test_workers_give_identical_output(corpus, tmp_path) -> None:
    kw = dict(SETTINGS, noise_types=("babble",), visual_conditions=("occlusion:0.3",))
    one = make_mixtures(corpus, tmp_path / "one", workers=1, **kw)
    two = make_mixtures(corpus, tmp_path / "two", workers=2, **kw)
    assert one == two
    for r in one:
        for key in ("noisy", "lips"):
            assert (tmp_path / "one" / r[key]).read_bytes() == (
                tmp_path / "two" / r[key]
            ).read_bytes()
