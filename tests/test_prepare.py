"""``reavise data prepare`` on tiny fake corpora in each real layout (built by the tests)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io
import soundfile as sf
import typer
from skimage import data
from typer.testing import CliRunner

from reavise.cli import data as data_cli
from reavise.data.manifest import read_manifest
from reavise.data.prepare import prepare_corpus, read_grid_align, split_speakers
from reavise.errors import InputError
from reavise.lips import ROI_SIZE, load_lips
from reavise.video import write_video

SHARED_SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ntcd-timit-sample"


def face_frames(n: int, size: int = 128, shift: int = 2) -> np.ndarray:
    """The astronaut's face, translated a few pixels per frame (a talking-head stand-in)."""
    face = cv2.resize(data.astronaut()[40:296, 96:352], (size, size), interpolation=cv2.INTER_AREA)
    return np.stack([np.roll(face, (shift * t, shift * t // 2), axis=(0, 1)) for t in range(n)])


def tone(seconds: float, sr: int = 16000, f: float = 200.0) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (0.3 * np.sin(2 * np.pi * f * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def face_video(path: Path, n: int = 10, fps: float = 25.0, audio: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    a = tone(n / fps) if audio else None
    return write_video(path, face_frames(n, size=128), fps, audio=a, sr=16000)


def noise_video(path: Path, n: int = 8, fps: float = 25.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.random.default_rng(0).integers(0, 256, (n, 96, 96, 3), dtype=np.uint8)
    return write_video(path, frames, fps, audio=tone(n / fps), sr=16000)


def wav(path: Path, seconds: float, sr: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(seconds, sr), sr, subtype="PCM_16")
    return path


def ntcd_lips(n: int, seed: int = 0) -> np.ndarray:
    """Lips in the NTCD-TIMIT release layout: float (4489, T), column-major images."""
    frames = np.random.default_rng(seed).uniform(0.2, 0.8, (n, ROI_SIZE, ROI_SIZE)).astype(np.float32)
    return frames.transpose(0, 2, 1).reshape(n, -1).T.copy()


def check_outputs(out: Path, rows: list[dict]) -> None:
    for r in rows:
        lips = load_lips(out / r["lips"])
        assert lips.shape == (r["n_video_frames"], ROI_SIZE, ROI_SIZE)
        assert 0.0 <= lips.min() and lips.max() <= 1.0
        valid = np.load(out / r["valid"])
        assert valid.dtype == bool and valid.shape == (r["n_video_frames"],)
        info = sf.info(str(out / r["audio"]))
        assert info.samplerate == 16000 and info.channels == 1
        assert info.duration == pytest.approx(r["duration"], abs=1e-3)
    by_split: dict[str, set] = {}
    for r in rows:
        by_split.setdefault(r["split"], set()).add(r["speaker"])
    splits = list(by_split.values())
    for i in range(len(splits)):
        for j in range(i + 1, len(splits)):
            assert not splits[i] & splits[j]  # disjoint speakers


# --------------------------------------------------------------------------- generic


@pytest.fixture
def generic_root(tmp_path) -> Path:
    root = tmp_path / "videos"
    face_video(root / "alice" / "a1.mp4")
    face_video(root / "alice" / "a2.mp4")
    face_video(root / "bob" / "b1.mkv", audio=False)
    wav(root / "bob" / "b1.wav", 10 / 25, sr=22050)  # same-name wav supplies the audio
    (root / "bob" / "b1.txt").write_text("hello there\n")
    face_video(root / "carol" / "c1.avi")
    face_video(root / "dave" / "d1.mp4")
    (root / "eve").mkdir()
    (root / "eve" / "broken.mp4").write_bytes(b"not a video at all" * 100)
    noise_video(root / "frank" / "noise.mp4")
    return root


def test_generic_prepare_skips_bad_items(generic_root, tmp_path):
    out = tmp_path / "corpus"
    notes: list[str] = []
    res = prepare_corpus("generic", generic_root, out, seed=3, progress=False, warn=notes.append)
    ids = [r["id"] for r in res.rows]
    assert ids == ["alice_a1", "alice_a2", "bob_b1", "carol_c1", "dave_d1"]
    rows = read_manifest(out)
    assert [r["id"] for r in rows] == ids
    for r in rows:
        assert r["fps"] == pytest.approx(25.0)
        assert r["n_video_frames"] == 10
        assert r["duration"] == pytest.approx(0.4, abs=0.06)
        assert r["valid"] and r["lips"] and r["audio"]
        assert np.load(out / r["valid"]).all()  # a face in every frame
    assert next(r for r in rows if r["id"] == "bob_b1")["text"] == "hello there"
    check_outputs(out, rows)
    # The corrupt and the faceless video are skipped, named, and listed.
    assert sorted(s["id"] for s in res.skipped) == ["eve_broken", "frank_noise"]
    reasons = {s["id"]: s["reason"] for s in res.skipped}
    assert "broken.mp4" in reasons["eve_broken"] and "\n" not in reasons["eve_broken"]
    assert "noise.mp4" in reasons["frank_noise"] and "no face" in reasons["frank_noise"]
    assert len(notes) == 2 and any("broken.mp4" in n for n in notes)
    skipped = [json.loads(x) for x in (out / "skipped.jsonl").read_text().splitlines()]
    assert sorted(s["id"] for s in skipped) == ["eve_broken", "frank_noise"]
    meta = json.loads((out / "corpus.json").read_text())
    assert meta["kind"] == "generic" and meta["version"] == 1 and meta["seed"] == 3
    assert sorted(sum(meta["splits"].values(), [])) == ["alice", "bob", "carol", "dave"]
    assert meta["splits"]["test"] and meta["splits"]["val"]

    # Resumable: a second run reuses finished items without rewriting them.
    lips_file = out / rows[0]["lips"]
    mtime = os.stat(lips_file).st_mtime_ns
    res2 = prepare_corpus("generic", generic_root, out, seed=3, progress=False, warn=lambda m: None)
    assert [r["id"] for r in res2.rows] == ids
    assert os.stat(lips_file).st_mtime_ns == mtime
    assert read_manifest(out) == rows


def test_generic_output_inside_root_is_not_rescanned(generic_root):
    out = generic_root / "prepared"
    res = prepare_corpus("generic", generic_root, out, progress=False, warn=lambda m: None)
    assert len(res.rows) == 5 and not any("prepared" in r["id"] for r in res.rows)


def test_empty_or_missing_root(tmp_path):
    with pytest.raises(InputError, match="no such corpus folder"):
        prepare_corpus("generic", tmp_path / "nope", tmp_path / "out", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no generic utterances"):
        prepare_corpus("generic", tmp_path / "empty", tmp_path / "out", progress=False)


def test_generic_parallel_matches_serial(generic_root, tmp_path):
    a = prepare_corpus("generic", generic_root, tmp_path / "a", progress=False, warn=lambda m: None)
    b = prepare_corpus("generic", generic_root, tmp_path / "b", workers=2, progress=False, warn=lambda m: None)
    assert a.rows == b.rows and [s["id"] for s in a.skipped] == [s["id"] for s in b.skipped]


def test_cli_prepare(generic_root, tmp_path):
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        pass

    data_cli.register(app)
    out = tmp_path / "cli"
    res = CliRunner().invoke(app, ["prepare", "generic", str(generic_root), "--out", str(out), "--no-progress", "--seed", "1"])
    assert res.exit_code == 0, res.output
    assert "prepared 5 utterances" in res.output
    assert "skipped 2 items" in res.output and "broken.mp4" in res.output
    assert (out / "manifest.jsonl").exists()
    res = CliRunner().invoke(app, ["prepare", "timit", str(generic_root), "--out", str(out)])
    assert res.exit_code != 0


# --------------------------------------------------------------------------- GRID


def test_grid_layout(tmp_path):
    root = tmp_path / "grid"
    align = "0 5000 sil\n5000 10000 bin\n10000 15000 blue\n15000 20000 at\n20000 25000 f\n" \
            "25000 30000 two\n30000 35000 now\n35000 37500 sil\n"
    for spk in ("s1", "s2", "s3"):
        for utt in ("bbaf2n", "lgwz5a"):
            face_video(root / spk / "video" / "mpg_6000" / f"{utt}.mpg", n=15, audio=False)
            wav(root / "audio_25k" / spk / f"{utt}.wav", 15 / 25, sr=25000)
            p = root / "alignments" / spk / "align" / f"{utt}.align"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(align)
    out = tmp_path / "out"
    res = prepare_corpus("grid", root, out, seed=0, progress=False, warn=lambda m: None)
    assert not res.skipped
    rows = read_manifest(out)
    assert [r["id"] for r in rows][:2] == ["s1_bbaf2n", "s1_lgwz5a"]
    assert len(rows) == 6 and {r["speaker"] for r in rows} == {"s1", "s2", "s3"}
    for r in rows:
        assert r["text"] == "bin blue at f two now"
        assert r["words"][0] == [0.2, 0.4, "bin"]
        assert r["fps"] == pytest.approx(25.0) and r["n_video_frames"] == 15
        assert r["duration"] == pytest.approx(0.6, abs=1e-3)  # 25 kHz wav resampled
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    check_outputs(out, rows)
    # The same seed gives the same split, a different one may differ but stays disjoint.
    again = prepare_corpus("grid", root, tmp_path / "out2", seed=0, progress=False)
    assert [r["split"] for r in again.rows] == [r["split"] for r in rows]
    assert read_grid_align(root / "alignments" / "s1" / "align" / "bbaf2n.align")[-1] == (1.2, 1.4, "now")


# --------------------------------------------------------------------------- LRS3


def test_lrs3_layout(tmp_path):
    root = tmp_path / "lrs3"
    for subset, vid, utt in [
        ("pretrain", "0af00UcTOSc", "00001"),
        ("trainval", "0af00UcTOSc", "50001"),
        ("trainval", "0d6iSvF1UmA", "00009"),
        ("trainval", "1BHOflzxPjI", "00002"),
        ("test", "0Fi83BHQsMA", "00002"),
    ]:
        face_video(root / subset / vid / f"{utt}.mp4", n=10)
        (root / subset / vid / f"{utt}.txt").write_text(
            "Text:  THE FIRST WORDS\nConf:  4\n\nWORD START END ASDSCORE\nTHE 0.05 0.2 4.1\n"
        )
    out = tmp_path / "out"
    res = prepare_corpus("lrs3", root, out, seed=0, progress=False)
    assert not res.skipped
    rows = {r["id"]: r for r in read_manifest(out)}
    assert len(rows) == 5
    assert rows["0Fi83BHQsMA_00002"]["split"] == "test"
    assert rows["0af00UcTOSc_00001"]["subset"] == "pretrain"
    assert rows["0af00UcTOSc_00001"]["split"] == rows["0af00UcTOSc_50001"]["split"] != "test"
    assert all(r["text"] == "THE FIRST WORDS" for r in rows.values())
    assert {r["split"] for r in rows.values()} == {"train", "val", "test"}
    check_outputs(out, list(rows.values()))


# --------------------------------------------------------------------------- TCD-TIMIT


def test_tcd_timit_layout(tmp_path):
    root = tmp_path / "tcd"
    # 09F is an official test speaker; lipspeakers are always training data.
    face_video(root / "volunteers" / "09F" / "Clips" / "straightcam" / "sa1.mp4", n=12, fps=30.0)
    face_video(root / "volunteers" / "09F" / "Clips" / "30degcam" / "sa1.mp4", n=12, fps=30.0)
    face_video(root / "volunteers" / "01M" / "straightcam" / "sx2.mp4", n=12, fps=30.0, audio=False)
    wav(root / "volunteers" / "01M" / "audio" / "sx2.wav", 12 / 30, sr=48000)
    face_video(root / "volunteers" / "02F" / "straightcam" / "si3.mp4", n=12, fps=30.0)
    # NTCD-TIMIT lips release: a .mat beside the video, (4489, T) column-major.
    lips = ntcd_lips(12, seed=1)
    scipy.io.savemat(root / "volunteers" / "02F" / "straightcam" / "si3.mat", {"lips": lips})
    face_video(root / "lipspeakers" / "Lipspkr1" / "Clips" / "straightcam" / "sa2.mp4", n=12, fps=30.0)
    face_video(root / "volunteers" / "03M" / "straightcam" / "sa1.mp4", n=12, fps=30.0)
    out = tmp_path / "out"
    res = prepare_corpus("tcd-timit", root, out, seed=0, progress=False)
    assert not res.skipped
    rows = {r["id"]: r for r in read_manifest(out)}
    assert sorted(rows) == ["01M_sx2", "02F_si3", "03M_sa1", "09F_sa1", "Lipspkr1_sa2"]
    assert rows["09F_sa1"]["split"] == "test"
    assert rows["Lipspkr1_sa2"]["split"] == "train" and rows["Lipspkr1_sa2"]["group"] == "lipspeakers"
    assert rows["09F_sa1"]["source"] == "volunteers/09F/Clips/straightcam/sa1.mp4"
    for r in rows.values():
        assert r["fps"] == pytest.approx(30.0) and r["n_video_frames"] == 12
        assert r["duration"] == pytest.approx(0.4, abs=0.06)
    # The ready-made ROI is used as is (uint8 quantisation aside).
    got = load_lips(out / rows["02F_si3"]["lips"])
    want = lips.T.reshape(-1, ROI_SIZE, ROI_SIZE).transpose(0, 2, 1)
    assert np.abs(got - want).max() <= 0.5 / 255 + 1e-6
    check_outputs(out, list(rows.values()))


# --------------------------------------------------------------------------- NTCD-TIMIT


def test_ntcd_timit_layout_and_bad_items(tmp_path):
    root = tmp_path / "ntcd"
    clean = root / "clean" / "volunteers"
    lips_dir = root / "lips" / "volunteers"
    for spk, utt, n in [("01M", "sa1", 30), ("05F", "sx7", 45), ("24M", "si1", 30), ("06M", "sa2", 30)]:
        wav(clean / spk / "straightcam" / f"{utt}.wav", n / 30)
        p = lips_dir / spk / "straightcam" / f"{utt}Raw.npy"
        p.parent.mkdir(parents=True, exist_ok=True)
        np.save(p, ntcd_lips(n))
        wav(root / "noisy" / "LR" / "5" / "volunteers" / spk / "straightcam" / f"{utt}.wav", n / 30)
        wav(root / "noisy" / "Cafe" / "-5" / "volunteers" / spk / "straightcam" / f"{utt}.wav", n / 30)
    # A .mat lips file, a missing lips file, a wrong ROI shape and a duration mismatch.
    wav(clean / "07F" / "straightcam" / "sx9.wav", 1.0)
    scipy.io.savemat(lips_dir / "01M" / "straightcam" / "sx9.mat", {"x": ntcd_lips(30)})
    (lips_dir / "07F" / "straightcam").mkdir(parents=True)
    scipy.io.savemat(lips_dir / "07F" / "straightcam" / "sx9.mat", {"roi": ntcd_lips(30).T[:, :4000].T})
    wav(clean / "01M" / "straightcam" / "sx9.wav", 1.0)
    wav(clean / "08M" / "straightcam" / "si5.wav", 1.0)  # no lips at all
    wav(clean / "05F" / "straightcam" / "sa9.wav", 2.0)
    np.save(lips_dir / "05F" / "straightcam" / "sa9Raw.npy", ntcd_lips(30))  # 1 s of video, 2 s audio
    out = tmp_path / "out"
    notes: list[str] = []
    res = prepare_corpus("ntcd-timit", root, out, seed=0, progress=False, warn=notes.append)
    rows = {r["id"]: r for r in read_manifest(out)}
    assert sorted(rows) == ["01M_sa1", "01M_sx9", "05F_sx7", "06M_sa2", "24M_si1"]
    assert rows["24M_si1"]["split"] == "test"  # official NTCD-TIMIT test speaker
    assert rows["05F_sx7"]["n_video_frames"] == 45 and rows["05F_sx7"]["fps"] == 30.0
    assert rows["05F_sx7"]["duration"] == pytest.approx(1.5, abs=1e-3)
    reasons = {s["id"]: s["reason"] for s in res.skipped}
    assert sorted(reasons) == ["05F_sa9", "07F_sx9", "08M_si5"]
    assert "sx9.mat" in reasons["07F_sx9"] and "shape" in reasons["07F_sx9"]
    assert "si5.wav" in reasons["08M_si5"] and "no lips" in reasons["08M_si5"]
    assert "sa9Raw.npy" in reasons["05F_sa9"] and "audio" in reasons["05F_sa9"]
    assert len(notes) == 3
    meta = json.loads((out / "corpus.json").read_text())
    assert meta["noise_conditions"] == {"Cafe": ["-5"], "LR": ["5"]}
    check_outputs(out, list(rows.values()))


def test_ntcd_timit_real_sample(tmp_path):
    """The shared real NTCD-TIMIT utterance, in the published clean/<spk>/<utt>Raw.npy layout."""
    if not (SHARED_SAMPLE / "lips.npy").exists():
        pytest.skip("../shared/data/ntcd-timit-sample not present")
    spk = tmp_path / "ntcd" / "clean" / "09F"
    spk.mkdir(parents=True)
    os.symlink(SHARED_SAMPLE / "clean.wav", spk / "sa1.wav")
    os.symlink(SHARED_SAMPLE / "lips.npy", spk / "sa1Raw.npy")
    out = tmp_path / "out"
    res = prepare_corpus("ntcd-timit", tmp_path / "ntcd", out, progress=False)
    assert not res.skipped
    (row,) = read_manifest(out)
    ref = load_lips(SHARED_SAMPLE / "lips.npy")
    assert row["id"] == "09F_sa1" and row["speaker"] == "09F" and row["split"] == "test"
    assert row["n_video_frames"] == len(ref) == 143 and row["fps"] == 30.0
    assert row["duration"] == pytest.approx(sf.info(str(SHARED_SAMPLE / "clean.wav")).duration, abs=1e-3)
    got = load_lips(out / row["lips"])
    assert got.shape == ref.shape and np.abs(got - ref).max() <= 0.5 / 255 + 1e-6


# --------------------------------------------------------------------------- splits


def test_split_speakers_deterministic_and_disjoint():
    spks = [f"s{i}" for i in range(20)]
    a = split_speakers(spks, seed=1)
    assert a == split_speakers(list(reversed(spks)), seed=1)
    counts = {k: sum(v == k for v in a.values()) for k in ("train", "val", "test")}
    assert counts == {"train": 16, "val": 2, "test": 2}
    fixed = split_speakers(spks, seed=1, fixed={"s0": "test", "s1": "train"})
    assert fixed["s0"] == "test" and sum(v == "test" for v in fixed.values()) == 1
    assert split_speakers(["only"], seed=0) == {"only": "train"}


def test_grid_real_clip_rois(shared_data, tmp_path):
    """A real GRID clip through ``data prepare``: every frame tracked, and the saved lips are
    the library's ROIs of that video (same path, deterministic)."""
    from reavise.video import extract_mouth_rois_from_video

    grid = shared_data / "grid-s1"
    clip = grid / "video" / "bbaf2n.mp4"
    if not clip.exists():
        pytest.skip("GRID s1 videos not present")
    root = tmp_path / "grid"
    (root / "s1" / "video").mkdir(parents=True)
    os.symlink(clip, root / "s1" / "video" / clip.name)
    x, sr = sf.read(grid / "audio" / "bbaf2n.flac", dtype="float32")
    wav_path = root / "audio_25k" / "s1" / "bbaf2n.wav"
    wav_path.parent.mkdir(parents=True)
    sf.write(wav_path, x, sr)
    out = tmp_path / "out"
    res = prepare_corpus("grid", root, out, seed=0, progress=False, warn=lambda m: None)
    assert not res.skipped
    (row,) = read_manifest(out)
    assert row["n_video_frames"] == row["n_valid_frames"] == 75
    rois, valid, fps = extract_mouth_rois_from_video(clip)
    assert valid.all() and fps == pytest.approx(25.0)
    assert np.abs(load_lips(out / row["lips"]) - rois).max() <= 0.5 / 255 + 1e-6


def test_hold_out_moves_n_train_utterances_to_a_split_of_their_own(tmp_path):
    import json

    from reavise.data.manifest import hold_out, read_manifest, write_manifest
    from reavise.errors import InputError

    src = tmp_path / "corpus"
    src.mkdir()
    rows = [{"id": f"u{i}", "speaker": "s1", "split": "train" if i < 8 else "test", "audio": f"audio/u{i}.wav",
             "lips": f"lips/u{i}.npy", "duration": 1.0, "fps": 25.0} for i in range(10)]  # fmt: skip
    write_manifest(src, rows)
    (src / "corpus.json").write_text(json.dumps({"kind": "grid"}))
    counts = hold_out(src, tmp_path / "view", 3, seed=1)
    assert counts == {"train": 5, "dev": 3, "test": 2}
    view = read_manifest(tmp_path / "view")
    dev = {r["id"] for r in view if r["split"] == "dev"}
    assert len(dev) == 3 and dev <= {f"u{i}" for i in range(8)}  # drawn from train only
    assert dev == {r["id"] for r in read_manifest(hold_out(src, tmp_path / "again", 3, seed=1) and tmp_path / "again")
                   if r["split"] == "dev"}  # fmt: skip
    assert view[0]["audio"] == str(src.resolve() / "audio/u0.wav")  # the corpus's own files
    meta = json.loads((tmp_path / "view" / "corpus.json").read_text())
    assert meta["kind"] == "grid" and meta["derived"]["held_out"] == 3
    with pytest.raises(InputError, match="--n"):
        hold_out(src, tmp_path / "bad", 8, seed=1)
