"""Synthetic AV corpus: TTS timings, visemes, coarticulated rendering, corpus layout, CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from reavise.data.mouth_render import MouthStyle, render_frames, render_lips
from reavise.data.sentences import SENTENCES, generate_sentence
from reavise.data.synth import split_speakers, synthesize_corpus, synthesize_utterance
from reavise.data.tts import ENGLISH_VOICES, Voice, synthesize
from reavise.data.visemes import (
    PHONEME_VISEMES,
    VISEME_TARGETS,
    segments_from_phonemes,
    strip_stress,
    trajectories,
)
from reavise.errors import ReaviseError
from reavise.lips import load_lips


def _cli():
    import reavise.cli as cli

    if not any(getattr(g, "name", None) == "data" for g in cli.app.registered_groups):
        cli._register()
    return cli.app


def test_tts_audio_and_monotone_phoneme_timings():
    utt = synthesize("The quick brown fox jumps over the lazy dog.", Voice("en-us", "f2"))
    assert utt.sample_rate == 16000
    assert utt.audio.dtype == np.float32 and utt.audio.ndim == 1
    assert np.sqrt(np.mean(utt.audio**2)) > 0.01  # not silent
    starts = np.array([p.start for p in utt.phonemes])
    ends = np.array([p.end for p in utt.phonemes])
    assert len(starts) > 20
    assert np.all(np.diff(starts) >= 0) and np.all(ends >= starts)
    assert starts[0] >= 0 and ends[-1] <= len(utt.audio)
    assert {"k", "w", "b", "f", "d", "g"} <= {strip_stress(p.symbol) for p in utt.phonemes}


def test_viseme_mapping_covers_espeak_english():
    rng = np.random.default_rng(0)
    texts = list(SENTENCES[:40]) + [generate_sentence(rng) for _ in range(20)]
    texts.append(
        "Hmm, measure the genre of the huge onion; ahead, Bob's 42 books cost 3.5 dollars!"
    )
    seen = set()
    for voice in ENGLISH_VOICES:
        for text in texts:
            seen |= {strip_stress(p.symbol) for p in synthesize(text, Voice(voice, "m1")).phonemes}
    missing = sorted(seen - set(PHONEME_VISEMES))
    assert not missing, f"phonemes without a viseme: {missing}"
    assert all(v in VISEME_TARGETS for vis in PHONEME_VISEMES.values() for v in vis)


def _cavity_area(frames: np.ndarray, thresh: float = 0.3) -> np.ndarray:
    """Dark-pixel count per frame: the open mouth cavity (skin and lips are much brighter)."""
    return (frames < thresh).reshape(len(frames), -1).sum(1)


def test_open_vowel_opens_more_than_bilabials():
    style = MouthStyle(noise=0.0, motion=0.0, rotation=0.0, light_drift=0.0, texture=0.0)
    rng = np.random.default_rng(0)
    # Hold /a/ then /p b m/ long enough to reach each target; sample the middle.
    ph = [
        ("_", 0.0, 0.3),
        ("'a", 0.3, 0.8),
        ("p", 0.8, 1.0),
        ("_", 1.0, 1.3),
        ("m", 1.3, 1.6),
        ("_", 1.6, 2.0),
    ]
    frames = render_lips(ph, 2.0, style, rng)
    assert frames.shape == (60, 67, 67) and 0 <= frames.min() and frames.max() <= 1
    area = _cavity_area(frames)
    a_open = area[16:22].mean()  # 0.53..0.73 s: inside /a/
    closed = np.concatenate([area[26:29], area[42:46]]).mean()  # inside /p/ and /m/
    assert a_open > 40 and a_open > 5 * max(closed, 1)


def test_coarticulated_trajectories_are_continuous():
    rng = np.random.default_rng(1)
    utt = synthesize("Papa bought a huge yellow map for Bob.", Voice("en", "m3"))
    sr = utt.sample_rate
    ph = [(p.symbol, p.start / sr, p.end / sr) for p in utt.phonemes]
    segs = segments_from_phonemes(ph)
    t = np.arange(0, utt.duration, 1 / 300)  # 300 Hz: much finer than video
    traj = trajectories(segs, t)
    assert traj.shape == (len(t), 5) and np.all((traj >= 0) & (traj <= 1))
    # Bounded speed: no parameter jumps more than 0.15 per 3.3 ms (a step would be ~1).
    assert np.abs(np.diff(traj, axis=0)).max() < 0.15
    frames = render_lips(ph, utt.duration, MouthStyle(noise=0.0), rng)
    jumps = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2))
    assert jumps.max() < 0.08


def test_render_frames_range_and_speed_shape():
    rng = np.random.default_rng(2)
    params = rng.uniform(0, 1, (30, 5))
    frames = render_frames(params, MouthStyle(), rng)
    assert frames.shape == (30, 67, 67) and frames.dtype == np.float32
    assert 0 <= frames.min() and frames.max() <= 1


def _digest(utt, frames) -> str:
    return hashlib.sha256(
        utt.audio.tobytes() + np.round(frames * 255).astype(np.uint8).tobytes()
    ).hexdigest()


def test_same_seed_same_bytes_different_seed_different():
    a = _digest(*synthesize_utterance(5, 3, 4)[:2])
    b = _digest(*synthesize_utterance(5, 3, 4)[:2])
    c = _digest(*synthesize_utterance(6, 3, 4)[:2])
    assert a == b and a != c


def test_split_speakers_disjoint():
    ids = [f"spk{i:03d}" for i in range(20)]
    s = split_speakers(ids, 0)
    assert sorted(s["train"] + s["val"] + s["test"]) == ids
    assert len(s["val"]) == 2 and len(s["test"]) == 2
    s3 = split_speakers(ids[:3], 1)
    assert all(len(v) == 1 for v in s3.values())


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth") / "corpus"
    stats = synthesize_corpus(out, hours=20 / 3600, speakers=4, seed=3, workers=1, progress=False)
    return out, stats


def test_tiny_corpus_layout(tiny_corpus):
    from reavise.data.manifest import read_manifest, resolve

    out, stats = tiny_corpus
    assert stats["seconds"] >= 20 and stats["rate"] > 0
    info = json.loads((out / "corpus.json").read_text())
    assert info["kind"] == "synthetic" and info["complete"]
    rows = read_manifest(out)
    assert len(rows) == stats["utterances"]
    split_of: dict[str, str] = {}
    for row in rows:
        assert split_of.setdefault(row["speaker"], row["split"]) == row["split"]
        assert row["split"] in ("train", "val", "test")
        for key in ("audio", "lips", "phonemes"):
            assert resolve(row, key).exists()
        lips = load_lips(resolve(row, "lips"))
        assert abs(lips.shape[0] - round(row["duration"] * 30)) <= 1
        assert lips.shape[1:] == (67, 67) and 0 <= lips.min() and lips.max() <= 1
        assert row["n_video_frames"] == lips.shape[0]
        meta = json.loads(resolve(row, "phonemes").read_text())
        starts = [p[1] for p in meta["phonemes"]]
        assert starts == sorted(starts) and meta["phonemes"][-1][2] <= row["duration"] * 16000 + 1
    assert set(split_of.values()) == {"train", "val", "test"}
    assert set(info["splits"]["train"]).isdisjoint(info["splits"]["test"])


def test_rerun_resumes_without_rewriting(tiny_corpus):
    out, stats = tiny_corpus
    files = sorted((out / "audio").rglob("*.wav")) + sorted((out / "lips").rglob("*.npy"))
    mtimes = [f.stat().st_mtime_ns for f in files]
    again = synthesize_corpus(out, hours=20 / 3600, speakers=4, seed=3, workers=1, progress=False)
    assert again["written"] == 0 and again["utterances"] == stats["utterances"]
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    with pytest.raises(ReaviseError, match="other settings"):
        synthesize_corpus(out, hours=0.01, speakers=4, seed=4, workers=1, progress=False)


def test_cli_preview_and_bad_input(tiny_corpus, tmp_path):
    out, _ = tiny_corpus
    runner = CliRunner()
    app = _cli()
    png = tmp_path / "sheet.png"
    res = runner.invoke(app, ["data", "preview", str(out), "--out", str(png), "--n", "4"])
    assert res.exit_code == 0, res.output
    assert png.exists() and png.stat().st_size > 1000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = runner.invoke(app, ["data", "synth", "--out", str(tmp_path / "x"), "--hours", "0"])
    assert res.exit_code == 2 and "--hours" in res.output  # refused while parsing the options
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ReaviseError, match="not a folder|not writable"):
        synthesize_corpus(blocker, hours=0.001, speakers=2, seed=0, workers=1, progress=False)


@pytest.mark.slow
def test_worker_count_does_not_change_corpus(tmp_path):
    kw = dict(hours=12 / 3600, speakers=3, seed=9, progress=False)
    synthesize_corpus(tmp_path / "one", workers=1, **kw)
    synthesize_corpus(tmp_path / "two", workers=2, **kw)
    for sub in ("manifest.jsonl",):
        assert (tmp_path / "one" / sub).read_text() == (tmp_path / "two" / sub).read_text()
    for f in sorted((tmp_path / "one" / "lips").rglob("*.npy")):
        g = tmp_path / "two" / f.relative_to(tmp_path / "one")
        assert f.read_bytes() == g.read_bytes()
