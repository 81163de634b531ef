"""GRID one-talker layout, audio-only folders and real noise by type (issue 12).

The end-to-end test runs the user's commands on a few real GRID s1 videos from
../shared/data (skipped without it): data prepare -> data mix (real noise) -> train (tiny)
-> enhance -> evaluate.
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
from reavise.data.mix import make_mixtures, noise_part, real_noise_types
from reavise.data.prepare import prepare_corpus, split_utterances

ALIGN = "0 5000 sil\n5000 10000 bin\n10000 15000 blue\n15000 20000 at\n20000 37500 sil\n"


def _tone(seconds: float, sr: int = 16000, f: float = 220.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(2 * np.pi * f * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def test_split_utterances_is_seeded_and_disjoint():
    ids = [f"u{i:03d}" for i in range(900)]
    a = split_utterances(ids, seed=0, val_frac=0.0556, test_frac=0.0556)
    assert a == split_utterances(list(reversed(ids)), seed=0, val_frac=0.0556, test_frac=0.0556)
    counts = {k: sum(v == k for v in a.values()) for k in ("train", "val", "test")}
    assert counts == {"train": 800, "val": 50, "test": 50}
    b = split_utterances(ids, seed=1, val_frac=0.0556, test_frac=0.0556)
    assert a != b and sum(v == "test" for v in b.values()) == 50


def test_grid_one_talker_layout_with_flac(tmp_path):
    """``grid-s1/{video,audio,align}``: mp4 without audio + FLAC; speaker from the folder name,
    split by utterance and said so in corpus.json."""
    from reavise.video import write_video
    from test_prepare import face_frames

    root = tmp_path / "grid-s1"
    utts = [f"bb{c}a1n" for c in "abcdefghij"]
    for i, u in enumerate(utts):
        (root / "video").mkdir(parents=True, exist_ok=True)
        write_video(root / "video" / f"{u}.mp4", face_frames(15, size=128), 25.0)
        (root / "audio").mkdir(parents=True, exist_ok=True)
        sf.write(root / "audio" / f"{u}.flac", _tone(0.6, seed=i), 16000, subtype="PCM_16")
        (root / "align").mkdir(parents=True, exist_ok=True)
        (root / "align" / f"{u}.align").write_text(ALIGN)
    out = tmp_path / "out"
    res = prepare_corpus("grid", root, out, seed=0, val_frac=0.2, test_frac=0.2, progress=False)
    assert not res.skipped and res.split_by == "utterance"
    rows = read_manifest(out)
    assert {r["speaker"] for r in rows} == {"s1"} and rows[0]["id"] == "s1_bbaa1n"
    assert res.split_utterances == {"train": 6, "val": 2, "test": 2}
    assert sorted(r["split"] for r in rows) == sorted(["train"] * 6 + ["val"] * 2 + ["test"] * 2)
    assert all(r["text"] == "bin blue at" and r["fps"] == pytest.approx(25.0) for r in rows)
    meta = json.loads((out / "corpus.json").read_text())
    assert meta["split_by"] == "utterance" and meta["split_utterances"]["test"] == 2


def test_audio_only_folder_prepares(tmp_path):
    """A folder of clean speech without video (speechocean762 layout) prepares as ``generic``."""
    root = tmp_path / "so"
    for s in range(5):
        for u in range(2):
            p = root / f"SPEAKER{s:04d}" / f"{s:04d}{u:03d}.flac"
            p.parent.mkdir(parents=True, exist_ok=True)
            sf.write(p, _tone(0.5, seed=10 * s + u), 16000, subtype="PCM_16")
    (root / "utterances.tsv").write_text("file\tspeaker\ttext\nSPEAKER0000/0000000.flac\tSPEAKER0000\tHELLO\n")
    out = tmp_path / "out"
    res = prepare_corpus("generic", root, out, seed=0, progress=False)
    assert not res.skipped and len(res.rows) == 10
    rows = {r["id"]: r for r in read_manifest(out)}
    assert rows["SPEAKER0000_0000000"]["text"] == "HELLO"
    assert all(r["lips"] is None and r["fps"] is None for r in rows.values())
    assert {r["split"] for r in rows.values()} == {"train", "val", "test"}
    x, sr = sf.read(out / rows["SPEAKER0001_0001001"]["audio"])
    assert sr == 16000 and len(x) == 8000


def test_real_noise_parts_are_disjoint(tmp_path):
    for t, n in (("cafe", 1), ("street", 3)):
        for k in range(n):
            p = tmp_path / "noise" / t / f"{t}{k}.flac"
            p.parent.mkdir(parents=True, exist_ok=True)
            sf.write(p, _tone(1.0, f=300 + 100 * k, seed=k), 16000)
    types = real_noise_types(tmp_path / "noise")
    assert sorted(types) == ["cafe", "street"]
    val, test = noise_part(types["street"], "val"), noise_part(types["street"], "test")
    assert len(test) == 2 and len(val) == 1 and not {v[0] for v in val} & {t[0] for t in test}
    assert noise_part(types["cafe"], "val") == [(types["cafe"][0], 0.0, 0.5)]
    assert noise_part(types["cafe"], "test") == [(types["cafe"][0], 0.5, 1.0)]


def test_mix_real_noise_by_type(tmp_path):
    """``data mix --noise-dir`` with type sub-folders: noise type = sub-folder, test mixtures
    only hear the test part of each recording."""
    corpus = tmp_path / "corpus"
    rows = []
    for i in range(3):
        a = corpus / "audio" / f"u{i}.wav"
        a.parent.mkdir(parents=True, exist_ok=True)
        sf.write(a, _tone(1.0, seed=i), 16000, subtype="PCM_16")
        rows.append({"id": f"u{i}", "speaker": "s1", "split": "test", "audio": f"audio/u{i}.wav", "duration": 1.0, "fps": None})
    (corpus / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    noise = tmp_path / "noise"
    for t in ("babble", "rain"):
        p = noise / t / f"{t}.flac"
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(p, np.random.default_rng(len(t)).standard_normal(16000 * 4).astype(np.float32) * 0.1, 16000)
    out = make_mixtures(corpus, tmp_path / "mix", split="test", snrs="-5", visual_conditions="clean",
                        noise_dir=noise, progress=False)  # fmt: skip
    assert len(out) == 6 and {r["noise_type"] for r in out} == {"babble", "rain"}
    assert all(r["noise_source"] == "real" and r["noise_offset_s"] >= 2.0 for r in out)
    assert all(abs(r["snr_db_written"] + 5) < 0.05 for r in out)
    settings = json.loads((tmp_path / "mix" / "mixtures.json").read_text())
    assert settings["noise_split"] == "test" and settings["real_noise"]["rain"] == [["rain/rain.flac", 0.5, 1.0]]


def _grid_subset(shared: Path, dst: Path, n: int) -> list[str]:
    grid = shared / "grid-s1"
    if not (grid / "video").is_dir():
        pytest.skip("GRID s1 not present in ../shared/data")
    utts = sorted(p.stem for p in (grid / "video").glob("*.mp4"))[:n]
    for sub, ext in (("video", "mp4"), ("audio", "flac"), ("align", "align")):
        (dst / sub).mkdir(parents=True)
        for u in utts:
            os.symlink(grid / sub / f"{u}.{ext}", dst / sub / f"{u}.{ext}")
    return utts


def test_grid_real_prepare_train_enhance(shared_data, tmp_path, monkeypatch, capsys):
    """Three real GRID s1 videos through the commands: prepare (every frame tracked, ROIs
    centred), mix with real noise, train a tiny AV prior for a few steps, enhance, evaluate."""
    utts = _grid_subset(shared_data, tmp_path / "grid-s1", 3)
    corpus = tmp_path / "corpus"
    code, out, err = run_cli(monkeypatch, capsys, "data", "prepare", "grid", tmp_path / "grid-s1",
                             "--out", corpus, "--val-frac", "0.34", "--test-frac", "0.34", "--no-progress")  # fmt: skip
    assert code == 0, err
    assert "one talker, split by utterance: train 1, val 1, test 1" in out
    rows = read_manifest(corpus)
    assert [r["id"] for r in rows] == [f"s1_{u}" for u in utts]
    for r in rows:
        assert r["n_video_frames"] == 75 and r["n_valid_frames"] >= 70
        lips = np.load(corpus / r["lips"]).astype(np.float32)
        # the lip line (darkest row of the mean ROI) lies in the middle band of the crop
        dark = int(np.argmin(lips.mean(axis=(0, 2))[10:-10])) + 10
        assert 25 <= dark <= 50, dark
    code, out, err = run_cli(monkeypatch, capsys, "data", "mix", corpus, "--out", tmp_path / "mix",
                             "--split", "test", "--snrs", "0", "--visual", "clean", "--n-utterances", "1",
                             "--noises", "cafe", "--noise-dir", shared_data / "noise-real")  # fmt: skip
    assert code == 0, err
    (mrow,) = read_manifest(tmp_path / "mix")
    assert mrow["noise_type"] == "cafe" and mrow["noise_source"] == "real"
    code, out, err = run_cli(monkeypatch, capsys, "train", corpus, "--out", tmp_path / "run", "--model", "av-vae",
                             "--model-set", "z_dim=4", "--model-set", "hidden=[16]", "--epochs", "1",
                             "--set", "examples_per_epoch=256", "--batch-size", "64", "--threads", "1",
                             "--quiet")  # fmt: skip
    assert code == 0, err
    model = tmp_path / "run" / "model.pt"
    assert model.exists()
    code, out, err = run_cli(monkeypatch, capsys, "enhance", tmp_path / "mix" / "noisy", "-o", tmp_path / "enh",
                             "--model", model, "--algo", "mcem", "--set", "max_iter=2", "--threads", "1")  # fmt: skip
    assert code == 0, err
    assert "no lips beside" not in err  # the mixture's lips/<id>.npy were found
    enh = tmp_path / "enh" / f"{mrow['id']}_enhanced.wav"
    y, sr = sf.read(enh)
    x, _ = sf.read(tmp_path / "mix" / mrow["noisy"])
    assert sr == 16000 and len(y) == len(x) and np.isfinite(y).all() and np.abs(y).max() > 0
    code, out, err = run_cli(monkeypatch, capsys, "evaluate", tmp_path / "enh", tmp_path / "mix" / "clean")
    assert code == 0, err
    assert "si_sdr" in out.lower() or "SI-SDR" in out
