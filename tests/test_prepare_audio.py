"""``reavise data prepare audio``: a folder of clean speech without video (issue 12, item 1).

Tiny generated wav/flac folders: resampling to 16 kHz mono, manifest rows without lips,
speaker split (disjoint, seeded), one-line errors; then the audio-only corpus through
``data mix``, ``train`` (A-VAE) and ``enhance`` with an AV prior (audio-only). One test reads
three speechocean762 files from ../shared/data (skipped without it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import run_cli
from reavise.data.manifest import read_manifest
from reavise.data.prepare import prepare_corpus
from reavise.errors import InputError


def _speech(seconds: float, sr: int, seed: int) -> np.ndarray:
    """A voiced-ish signal: 140 Hz harmonics under a slow envelope, plus a little noise."""
    t = np.arange(int(round(seconds * sr))) / sr
    rng = np.random.default_rng(seed)
    x = sum(np.sin(2 * np.pi * 140 * k * t + rng.uniform(0, 6)) / k for k in range(1, 12))
    x *= 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2
    return (0.2 * x / np.max(np.abs(x)) + 0.005 * rng.standard_normal(t.size)).astype(np.float32)


def _folder(root: Path, n_speakers: int = 6, per: int = 2) -> Path:
    """``<root>/spk<k>/u<j>.{wav,flac}``: 44.1 kHz stereo wavs, 8 kHz and 16 kHz flacs."""
    for s in range(n_speakers):
        for u in range(per):
            d = root / f"spk{s}"
            d.mkdir(parents=True, exist_ok=True)
            kind = (s + u) % 3
            if kind == 0:
                x = _speech(0.5, 44100, 10 * s + u)
                sf.write(d / f"u{u}.wav", np.stack([x, 0.5 * x], axis=1), 44100, subtype="PCM_16")
            elif kind == 1:
                sf.write(d / f"u{u}.flac", _speech(0.5, 8000, 10 * s + u), 8000, subtype="PCM_16")
            else:
                sf.write(d / f"u{u}.flac", _speech(0.5, 16000, 10 * s + u), 16000, subtype="PCM_16")
    return root


def test_audio_folder_resampled_rows_and_speaker_split(tmp_path):
    root = _folder(tmp_path / "speech")
    out = tmp_path / "out"
    res = prepare_corpus("audio", root, out, seed=0, val_frac=0.2, test_frac=0.2, progress=False)
    assert not res.skipped and len(res.rows) == 12 and res.split_by == "speaker"
    rows = {r["id"]: r for r in read_manifest(out)}
    assert sorted(rows) == [f"spk{s}_u{u}" for s in range(6) for u in range(2)]
    for r in rows.values():
        x, sr = sf.read(out / r["audio"])
        assert sr == 16000 and x.ndim == 1 and len(x) == 8000  # 0.5 s at any rate -> 8000 samples
        assert r["duration"] == pytest.approx(0.5)
        assert r["lips"] is None and r["valid"] is None and r["fps"] is None and r["n_video_frames"] == 0
        assert r["audio"] == f"audio/{r['speaker']}/{r['id']}.wav"
    assert rows["spk0_u0"]["source"] == "spk0/u0.wav" and rows["spk0_u1"]["source"] == "spk0/u1.flac"
    # the 44.1 kHz stereo file became the mean of its channels, resampled
    x44, _ = sf.read(root / "spk0" / "u0.wav")
    y, _ = sf.read(out / rows["spk0_u0"]["audio"])
    ref = 0.75 * _speech(0.5, 44100, 0)
    assert np.max(np.abs(y)) == pytest.approx(np.max(np.abs(ref)), rel=0.05)
    # split by speaker: each speaker in exactly one split, the three splits used
    by_spk: dict[str, set[str]] = {}
    for r in rows.values():
        by_spk.setdefault(r["speaker"], set()).add(r["split"])
    assert all(len(v) == 1 for v in by_spk.values())
    counts = {k: sum(next(iter(v)) == k for v in by_spk.values()) for k in ("train", "val", "test")}
    assert counts == {"train": 4, "val": 1, "test": 1}
    assert not (out / "lips").exists() and not (out / "valid").exists()
    meta = json.loads((out / "corpus.json").read_text())
    assert meta["kind"] == "audio" and meta["split_by"] == "speaker" and meta["n_utterances"] == 12
    assert sorted(meta["splits"]["test"] + meta["splits"]["val"] + meta["splits"]["train"]) == sorted(by_spk)


def test_audio_split_is_seeded(tmp_path):
    root = _folder(tmp_path / "speech", n_speakers=10, per=1)
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 3)):
        res = prepare_corpus("audio", root, tmp_path / name, seed=seed, val_frac=0.2, test_frac=0.2, progress=False)
        runs[name] = {r["speaker"]: r["split"] for r in res.rows}
    assert runs["a"] == runs["b"]  # same seed, other folder: the same split
    assert runs["a"] != runs["c"]
    for split in runs.values():
        assert sorted(split.values()).count("test") == 2 and sorted(split.values()).count("val") == 2
    # same files, same bytes
    a = sorted((tmp_path / "a" / "audio").rglob("*.wav"))
    assert [p.read_bytes() for p in a] == [(tmp_path / "b" / p.relative_to(tmp_path / "a")).read_bytes() for p in a]


def test_flat_audio_folder_is_one_speaker_split_by_utterance(tmp_path):
    root = tmp_path / "mytalker"
    root.mkdir()
    for u in range(10):
        sf.write(root / f"take{u}.wav", _speech(0.3, 22050, u), 22050)
    res = prepare_corpus("audio", root, tmp_path / "out", seed=0, val_frac=0.2, test_frac=0.2, progress=False)
    assert {r["speaker"] for r in res.rows} == {"mytalker"} and res.split_by == "utterance"
    assert res.split_utterances == {"train": 6, "val": 2, "test": 2}
    x, sr = sf.read(tmp_path / "out" / res.rows[0]["audio"])
    assert sr == 16000 and len(x) == 4800


def test_bad_folders_are_one_line_errors(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "empty"
    (empty / "spk0").mkdir(parents=True)
    (empty / "spk0" / "notes.txt").write_text("no audio here")
    code, out, err = run_cli(monkeypatch, capsys, "data", "prepare", "audio", empty, "--out", tmp_path / "o1", "--no-progress")
    assert code == 2 and "no audio utterances found" in err and str(empty) in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    broken = tmp_path / "broken"
    (broken / "spk0").mkdir(parents=True)
    (broken / "spk0" / "a.wav").write_bytes(b"RIFF....WAVEnot really")
    code, out, err = run_cli(monkeypatch, capsys, "data", "prepare", "audio", broken, "--out", tmp_path / "o2", "--no-progress")
    assert code == 2 and "a.wav" in err.splitlines()[-1] and "Traceback" not in err
    assert not (tmp_path / "o2" / "manifest.jsonl").exists()
    with pytest.raises(InputError, match="none of its 1 audio items"):
        prepare_corpus("audio", broken, tmp_path / "o3", progress=False)
    # one bad file among good ones: skipped, named, listed; the rest prepared
    good = _folder(tmp_path / "mixed", n_speakers=3, per=1)
    (good / "spk1" / "bad.flac").write_bytes(b"fLaC garbage")
    code, out, err = run_cli(monkeypatch, capsys, "data", "prepare", "audio", good, "--out", tmp_path / "o4", "--no-progress")
    assert code == 0 and "prepared 3 utterances" in out and "bad.flac" in err
    skipped = [json.loads(x) for x in (tmp_path / "o4" / "skipped.jsonl").read_text().splitlines()]
    assert [s["id"] for s in skipped] == ["spk1_bad"]
    code, out, err = run_cli(monkeypatch, capsys, "data", "prepare", "audi", good, "--out", tmp_path / "o5")
    assert code == 2 and "audio" in err and len(err.strip().splitlines()) == 1


def test_audio_corpus_mixes_trains_and_enhances(tmp_path, monkeypatch, capsys, tiny_av_model):
    """No lips anywhere: mix writes none, an A-VAE trains on it, an AV prior enhances audio-only."""
    corpus = tmp_path / "corpus"
    prepare_corpus("audio", _folder(tmp_path / "speech", per=3), corpus, seed=0, progress=False)
    code, out, err = run_cli(monkeypatch, capsys, "data", "mix", corpus, "--out", tmp_path / "mix", "--split", "test",
                             "--snrs", "0", "--noises", "white", "--visual", "clean")  # fmt: skip
    assert code == 0, err
    rows = read_manifest(tmp_path / "mix")
    assert len(rows) == 3 and all(r["lips"] is None for r in rows)
    assert not list((tmp_path / "mix").glob("lips/*.npy"))
    assert all(abs(r["snr_db_written"]) < 0.05 for r in rows)
    code, out, err = run_cli(monkeypatch, capsys, "train", corpus, "--out", tmp_path / "run", "--model", "a-vae",
                             "--model-set", "z_dim=4", "--model-set", "hidden=[16]", "--epochs", "1",
                             "--set", "examples_per_epoch=128", "--batch-size", "32", "--threads", "1", "--quiet")  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "run" / "model.pt").exists()
    code, out, err = run_cli(monkeypatch, capsys, "enhance", tmp_path / "mix" / "noisy", "-o", tmp_path / "enh",
                             "--model", tiny_av_model, "--algo", "mcem", "--set", "max_iter=2", "--threads", "1")  # fmt: skip
    assert code == 0, err
    assert "no lips beside them" in err and "enhanced audio-only" in err
    for r in rows:
        y, sr = sf.read(tmp_path / "enh" / f"{r['id']}_enhanced.wav")
        assert sr == 16000 and len(y) == 8000 and np.isfinite(y).all() and np.abs(y).max() > 0


def test_speechocean762_files(shared_data, tmp_path):
    """Three real speechocean762 files (two talkers): 16 kHz, durations and transcripts as listed."""
    so = shared_data / "speechocean762"
    if not (so / "utterances.tsv").exists():
        pytest.skip("speechocean762 not present in ../shared/data")
    lines = (so / "utterances.tsv").read_text().splitlines()
    head = lines[0].split("\t")
    meta = [dict(zip(head, x.split("\t"), strict=True)) for x in lines[1:]]
    spk = sorted({m["speaker"] for m in meta})[:2]
    pick = [m for m in meta if m["speaker"] == spk[0]][:2] + [m for m in meta if m["speaker"] == spk[1]][:1]
    root = tmp_path / "so"
    for m in pick:
        (root / m["speaker"]).mkdir(parents=True, exist_ok=True)
        os.symlink(so / m["file"], root / m["file"])
    (root / "utterances.tsv").write_text("\n".join(["\t".join(head)] + ["\t".join(m[k] for k in head) for m in pick]) + "\n")
    res = prepare_corpus("audio", root, tmp_path / "out", seed=0, progress=False)
    assert not res.skipped and len(res.rows) == 3
    rows = {r["source"]: r for r in res.rows}
    for m in pick:
        r = rows[m["file"]]
        assert r["speaker"] == m["speaker"] and r["text"] == m["text"] and r["lips"] is None
        assert r["duration"] == pytest.approx(float(m["seconds"]), abs=0.002)
        x, sr = sf.read(tmp_path / "out" / r["audio"])
        ref, sr0 = sf.read(so / m["file"])
        assert sr == 16000 and len(x) == len(ref) and sr0 == 16000
        assert np.max(np.abs(x - ref)) < 1e-3  # already 16 kHz mono: copied, not altered
    assert {r["split"] for r in res.rows if r["speaker"] == spk[0]} != {r["split"] for r in res.rows if r["speaker"] == spk[1]}
