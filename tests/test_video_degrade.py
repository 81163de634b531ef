"""Face-video degradations and ``reavise data mix-video`` (issue 12, "real lips").

Synthetic videos (a textured frame with a drawn face-like blob) keep these fast; the last
test runs the commands on a real GRID s1 video and is skipped without ../shared/data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import SHARED, run_cli
from reavise import video as V
from reavise.data.mix import snr_db
from reavise.data.video_degrade import (
    degrade_face_video,
    mouth_track,
    parse_face_visual,
)
from reavise.errors import ReaviseError
from reavise.metrics import si_sdr

T, H, W = 25, 96, 128


def face_video(seed: int = 0, t: int = T) -> np.ndarray:
    """uint8 [t, H, W, 3]: smooth random texture (every pixel distinct from a flat object)
    with a darker ellipse 'face' and a moving 'mouth' line, so frames differ over time."""
    import cv2

    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(40, 220, (H, W, 3)).astype(np.uint8), (0, 0), 1.5)
    frames = np.repeat(base[None], t, axis=0)
    for k in range(t):
        cv2.ellipse(frames[k], (64, 48), (28, 36), 0, 0, 360, (150, 110, 90), -1)
        cv2.line(frames[k], (54, 70), (74, 70), (40, 20, 20), 1 + k % 3)
    return frames


MOUTH = np.tile([64.0, 70.0, 24.0, 0.0], (T, 1))


def test_parse_face_visual_and_bad_inputs():
    assert parse_face_visual("occlusion:0.7").severity == 0.7
    assert parse_face_visual("blur").severity == 0.5
    with pytest.raises(ReaviseError, match="unknown face-video condition 'pixel_noise'"):
        parse_face_visual("pixel_noise")
    with pytest.raises(ReaviseError, match="severity must be in 0..1"):
        parse_face_visual("occlusion:1.5")
    with pytest.raises(ReaviseError, match=r"uint8 \[T, H, W, 3\]"):
        degrade_face_video(face_video()[..., 0], "clean", MOUTH)
    with pytest.raises(ReaviseError, match=r"mouth poses must be \[T, 4\]"):
        degrade_face_video(face_video(), "clean", MOUTH[:3])


@pytest.mark.parametrize("severity", [0.3, 0.7])
def test_occlusion_changes_only_the_object_box_of_the_right_frames(severity):
    frames = face_video()
    d = degrade_face_video(frames, f"occlusion:{severity}", MOUTH, rng=3, fps=25)
    assert d.affected.sum() == round(severity * T)
    inside = np.zeros(frames.shape[:3], dtype=bool)
    covered = np.zeros(T, dtype=bool)
    for start, stop, x0, y0, x1, y1 in d.boxes:
        inside[start:stop, y0:y1, x0:x1] = True
        covered[start:stop] = True
        assert x0 < 64 < x1 and y0 < 70 < y1  # over the mouth
        assert (x1 - x0) >= 1.4 * 24 and (y1 - y0) >= 0.9 * 24
    assert np.array_equal(covered, d.affected)
    diff = np.any(d.frames != frames, axis=-1)
    assert not diff[~inside].any()  # nothing outside the object's box changed
    for start, stop, *_ in d.boxes:
        # the object is opaque over the mouth: the mouth line no longer shows through
        assert diff[start:stop, 68:73, 56:73].mean() > 0.9
    assert np.array_equal(d.frames[~d.affected], frames[~d.affected])


def test_degradations_are_seeded():
    frames = face_video()
    for spec in ("occlusion:0.5", "dropped:0.4"):
        a = degrade_face_video(frames, spec, MOUTH, rng=7)
        b = degrade_face_video(frames, spec, MOUTH, rng=7)
        c = degrade_face_video(frames, spec, MOUTH, rng=8)
        assert np.array_equal(a.frames, b.frames) and a.boxes == b.boxes
        assert not np.array_equal(a.frames, c.frames)


def test_blur_smooths_whole_frames():
    frames = face_video()
    d = degrade_face_video(frames, "blur:0.5", MOUTH)
    assert d.affected.all() and d.frames.dtype == np.uint8

    def detail(x):
        return float(np.abs(np.diff(x.astype(np.float64), axis=2)).mean())

    assert detail(d.frames) < 0.7 * detail(frames)
    import cv2

    sigma = 0.5 * 0.03 * H  # severity * MAX_BLUR_FRAC * frame height
    ref = cv2.GaussianBlur(frames[3], (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
    assert np.array_equal(d.frames[3], ref)
    assert np.array_equal(degrade_face_video(frames, "blur:0", MOUTH).frames, frames)


def test_dropped_frames_are_black_or_frozen():
    frames = face_video()
    d = degrade_face_video(frames, "dropped:0.4", MOUTH, rng=1)
    assert d.affected.sum() == round(0.4 * T)
    assert np.array_equal(d.frames[~d.affected], frames[~d.affected])
    kinds = set()
    for t in np.flatnonzero(d.affected):
        if not d.frames[t].any():
            kinds.add("black")
        else:
            assert np.array_equal(d.frames[t], d.frames[max(t - 1, 0)])
            kinds.add("frozen")
    assert kinds  # at least one run, of a known kind
    assert degrade_face_video(frames, "missing", MOUTH).frames is None


def test_mouth_track_without_a_face_says_so():
    notes = []
    frames = np.full((4, H, W, 3), 128, np.uint8)
    poses, valid = mouth_track(frames, notes.append)
    assert not valid.any() and len(notes) == 1 and "no face found" in notes[0]
    assert np.allclose(poses[:, :2], [W / 2, 0.72 * H])


def test_degraded_mp4_round_trip_keeps_frames_and_lossless_audio(tmp_path, speechlike):
    frames = face_video()
    d = degrade_face_video(frames, "occlusion:0.5", MOUTH, rng=0)
    audio = speechlike(0, seconds=T / 25)
    path = V.write_video(tmp_path / "x.mp4", d.frames, 25.0, audio=audio, audio_codec="flac")
    back, fps = V.read_video(path)
    assert back.shape == d.frames.shape and fps == 25.0
    assert np.abs(back.astype(int) - d.frames.astype(int)).mean() < 4  # H.264 crf 18
    got = V.read_audio_track(path)
    n = min(len(got), len(audio))
    assert si_sdr(got[:n], audio[:n]) > 40


def test_non_finite_enhanced_speech_is_written_as_silence_with_a_warning(tmp_path, speechlike, caplog):
    """A diverged E-step (NaN frames) must not crash the video writer (AAC refuses NaN)."""
    from reavise.enhance import Job, _write_outputs

    speech = speechlike(0, seconds=T / 25).astype(np.float64)
    speech[1000:3048] = np.nan
    job = Job(tmp_path / "in.mp4", tmp_path / "o.wav", tmp_path / "o.mp4")
    with caplog.at_level("WARNING"):
        _write_outputs(job, speech, (face_video(), 25.0))
    assert "2048 non-finite samples" in caplog.text
    y, _ = sf.read(job.out_audio)
    assert np.all(y[1000:3048] == 0) and np.abs(y[:1000] - speech[:1000]).max() < 1e-4
    assert len(V.read_video(job.out_video)[0]) == T


def _tiny_corpus(root: Path, speechlike, n: int = 2) -> tuple[Path, Path]:
    """A corpus of n test utterances with synthetic face videos, and a noise folder."""
    corpus, videos, noise = root / "corpus", root / "videos", root / "noise" / "hiss"
    for d in (corpus / "audio", videos / "video", noise):
        d.mkdir(parents=True)
    rows = []
    for i in range(n):
        x = speechlike(i, seconds=1.0)
        sf.write(corpus / "audio" / f"u{i}.wav", x, 16000, subtype="PCM_16")
        V.write_video(videos / "video" / f"u{i}.mp4", face_video(i), 25.0)
        rows.append({"id": f"u{i}", "speaker": "s", "split": "test", "audio": f"audio/u{i}.wav",
                     "duration": 1.0, "fps": 25.0, "source": f"video/u{i}.mp4"})  # fmt: skip
    (corpus / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (corpus / "corpus.json").write_text(json.dumps({"source": str(videos)}))
    rng = np.random.default_rng(0)
    sf.write(noise / "hiss.wav", 0.1 * rng.standard_normal(40000), 16000, subtype="PCM_16")
    return corpus, root / "noise"


def test_mix_video_command(tmp_path, speechlike, monkeypatch, capsys):
    corpus, noise = _tiny_corpus(tmp_path, speechlike)
    args = ["data", "mix-video", corpus, noise, "--snr", "-5", "--visual", "occlusion:0.7", "--seed", "3", "--no-progress"]
    code, out, err = run_cli(monkeypatch, capsys, *args, "--out", tmp_path / "a")
    assert code == 0, err
    assert "2 face-video mixtures of 2 utterances" in out
    assert err.count("no face found") == 2  # the synthetic faces fool no Haar cascade: said
    rows = [json.loads(x) for x in (tmp_path / "a" / "manifest.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["u0_hiss_snr-5", "u1_hiss_snr-5"]
    for r in rows:
        assert r["affected_frames"] == round(0.7 * T) and r["audio_si_sdr_db"] > 40
        assert sum(b - a for a, b in r["affected_runs"]) == r["affected_frames"]
        assert [b[:2] for b in r["object_boxes"]] == r["affected_runs"]
        y = V.read_audio_track(tmp_path / "a" / r["noisy"])
        s, _ = sf.read(tmp_path / "a" / r["clean"])
        n = min(len(y), len(s))
        assert abs(snr_db(s[:n], y[:n] - s[:n]) - (-5)) < 0.1
        assert len(V.read_video(tmp_path / "a" / r["noisy"])[0]) == T
    # same seed, same mixtures (a second folder); the audio-only condition writes WAVs
    code, _, err = run_cli(monkeypatch, capsys, *args, "--out", tmp_path / "b")
    assert code == 0, err
    again = [json.loads(x) for x in (tmp_path / "b" / "manifest.jsonl").read_text().splitlines()]
    assert [(r["noise_offset_s"], r["noise_gain"], r["object_boxes"]) for r in again] == [
        (r["noise_offset_s"], r["noise_gain"], r["object_boxes"]) for r in rows
    ]
    code, _, err = run_cli(monkeypatch, capsys, *args[:6], "--visual", "missing", "--seed", "3", "--out", tmp_path / "m")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "m" / "noisy").iterdir()) == ["u0_hiss_snr-5.wav", "u1_hiss_snr-5.wav"]
    y, _ = sf.read(tmp_path / "m" / "noisy" / "u0_hiss_snr-5.wav")
    assert np.abs(y - V.read_audio_track(tmp_path / "a" / rows[0]["noisy"])[: len(y)]).max() < 3 / 32768


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--visual", "pixel_noise"], "error: --visual: unknown face-video condition 'pixel_noise'"),
        (["--visual", "clean,blur"], "error: --visual 'clean,blur': one condition per --out folder"),
        (["--ids", "nope"], "error: --ids: nope not in the 'test' split"),
        (["--snr", "x"], "error: --snr: 'x' is not a number of dB"),
        (["--snr", "inf"], "error: --snr: must be a finite number of dB"),
        (["--audio-codec", "mp3"], "error: --audio-codec must be one of flac, aac"),
        (["--video-root", "{tmp}"], "error: "),  # a folder without the videos
    ],
)
def test_mix_video_usage_errors(extra, expected, tmp_path, speechlike, monkeypatch, capsys):
    corpus, noise = _tiny_corpus(tmp_path, speechlike, n=1)
    extra = [e.replace("{tmp}", str(tmp_path / "corpus")) for e in extra]
    out = tmp_path / "o"
    code, _, err = run_cli(monkeypatch, capsys, "data", "mix-video", corpus, noise, "--out", out, *extra)
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith(expected), err
    assert not out.exists()


def test_grid_mix_video_then_enhance_video(tmp_path, monkeypatch, capsys):
    """A real GRID s1 test video: mix-video (mouth occluded by an object drawn on the
    video), then `reavise enhance` on the mp4: the detector runs on the degraded video."""
    grid = SHARED / "grid-s1"
    if not (grid / "video").is_dir() or not (SHARED / "noise-real").is_dir():
        pytest.skip("GRID s1 / noise-real not present in ../shared/data")
    src = tmp_path / "grid"
    for sub, ext in (("video", "mp4"), ("audio", "flac"), ("align", "align")):
        (src / sub).mkdir(parents=True)
        for u in ("bgbn8n", "bbaf2n", "bbaf3s"):
            (src / sub / f"{u}.{ext}").symlink_to(grid / sub / f"{u}.{ext}")
    corpus = tmp_path / "corpus"
    code, out, err = run_cli(monkeypatch, capsys, "data", "prepare", "grid", src, "--out", corpus,
                             "--val-frac", "0.34", "--test-frac", "0.34", "--no-progress")  # fmt: skip
    assert code == 0, err
    code, out, err = run_cli(monkeypatch, capsys, "data", "mix-video", corpus, SHARED / "noise-real", "--out",
                             tmp_path / "mv", "--noises", "cafe", "--visual", "occlusion:0.7", "--n", "1", "--no-progress")  # fmt: skip
    assert code == 0, err
    (row,) = [json.loads(x) for x in (tmp_path / "mv" / "manifest.jsonl").read_text().splitlines()]
    assert row["clean_face_frames"] >= 70 and row["affected_frames"] == round(0.7 * row["n_video_frames"])
    code, out, err = run_cli(monkeypatch, capsys, "enhance", tmp_path / "mv" / "noisy", "-o", tmp_path / "enh",
                             "--model", "grid-s1-av-concat", "--threads", "1")  # fmt: skip
    assert code == 0, err
    y, sr = sf.read(tmp_path / "enh" / f"{row['id']}_enhanced.wav")
    s, _ = sf.read(tmp_path / "mv" / row["clean"])
    assert sr == 16000 and len(y) == len(s) and np.isfinite(y).all()
    assert si_sdr(y, s) > si_sdr(V.read_audio_track(tmp_path / "mv" / row["noisy"])[: len(s)], s)
    assert (tmp_path / "enh" / f"{row['id']}_enhanced.mp4").exists()


def test_benchmark_on_face_videos_runs_the_enhance_video_path(tmp_path, speechlike):
    """``visual_on: face_video``: the conditions are drawn on the face video, each noisy video
    is decoded and detected once (as ``reavise enhance VIDEO`` does), and the grid enhances
    those very ROIs and that audio track; PESQ-NB and the paired tables come out; a rerun
    detects nothing again."""
    import yaml

    from reavise.bench.grid import run_benchmark
    from reavise.bench.tables import read_results
    from reavise.enhance import load_video_input
    from reavise.lips import load_lips

    corpus, noise = _tiny_corpus(tmp_path, speechlike)
    cfg = {
        "seed": 1, "corpus": {"path": str(corpus), "split": "test"}, "noise_dir": str(noise),
        "noise_types": ["hiss"], "snrs": [0], "visual": ["clean", "occlusion:0.5", "missing"],
        "visual_on": "face_video", "n_utterances": 2, "examples": 3, "reference": "a",
        "models": [{"name": "a", "checkpoint": "a-vae-synth"}, {"name": "av", "checkpoint": "av-cvae-synth"}],
        "algorithms": [{"name": "vem", "settings": {"max_iter": 3}}], "baselines": ["noisy"],
    }  # fmt: skip
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    rec = run_benchmark(path, out, workers=1, progress=False, echo=lambda m: None)
    assert not rec["errors"]
    rows = [json.loads(x) for x in (out / "mixtures" / "manifest.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == sorted(
        f"u{i}_hiss_snr0_{c}" for i in range(2) for c in ("clean", "occlusion0.5", "missing")
    )
    for r in rows:
        if r["visual"] == "missing":
            assert r["lips"] is None
            continue
        audio, lips, _ = load_video_input(Path(r["video"]))  # what `reavise enhance VIDEO` sees
        assert np.array_equal(load_lips(out / "mixtures" / r["lips"]), lips.frames)
        assert np.array_equal(np.load(out / "mixtures" / r["valid"]), lips.valid)
        got, _ = sf.read(out / "mixtures" / r["noisy"])
        assert np.abs(got - audio).max() < 1e-4  # the track, as 16-bit PCM
    # the object is drawn on the video of the occluded condition only
    occ = next(r for r in rows if r["visual"] == "occlusion")
    assert occ["affected_frames"] == round(0.5 * T)
    # the report shades the frames the object covered next to the modality weights
    shown = {e["visual"]: e for e in rec["examples"]}
    assert set(shown) == {"clean", "occlusion", "missing"}
    spans = [[a / T, b / T] for a, b in next(r for r in rows if r["id"] == shown["occlusion"]["id"])["affected_runs"]]
    assert np.allclose(shown["occlusion"]["degraded_s"], spans, atol=1e-4) and spans
    assert shown["clean"]["degraded_s"] == [] and shown["missing"]["degraded_s"] == [[0.0, 1.0]]
    res = read_results(out / "results.csv")
    assert {r["method"] for r in res} == {"noisy", "a/vem", "av/vem"} and len(res) == 3 * 6
    # 1 s of speech-like tones is too short for PESQ to find an utterance: NaN, kept as such
    assert all(not np.isfinite(r["pesq_nb"]) or 1.0 < r["pesq_nb"] < 4.6 for r in res)
    tables = (out / "tables.md").read_text()
    assert "each prior minus a with the same algorithm" in tables
    # the paired table holds av's mean difference to a, mixture by mixture
    d = np.mean([r["si_sdr"] - next(q["si_sdr"] for q in res if q["method"] == "a/vem" and q["id"] == r["id"])
                 for r in res if r["method"] == "av/vem" and r["visual"] == "clean"])  # fmt: skip
    assert f"{d:.2f} ±" in tables
    stamp = {p: p.stat().st_mtime_ns for p in (out / "mixtures" / "lips").iterdir()}
    run_benchmark(path, out, workers=1, progress=False, echo=lambda m: None)
    assert {p: p.stat().st_mtime_ns for p in (out / "mixtures" / "lips").iterdir()} == stamp


def test_degraded_spans_of_roi_mixtures_are_the_invalid_frames(tmp_path):
    from reavise.bench.grid import degraded_spans

    valid = np.ones(30, bool)
    valid[3:9] = valid[20:25] = False
    np.save(tmp_path / "v.npy", valid)
    row = {"visual": "occlusion", "fps": 30.0, "valid": "v.npy"}
    assert degraded_spans(row, tmp_path) == [[0.1, 0.3], [round(20 / 30, 4), round(25 / 30, 4)]]
    np.save(tmp_path / "v.npy", np.ones(30, bool))  # clean frames: nothing to shade
    assert degraded_spans(row, tmp_path) == []


@pytest.mark.parametrize(
    "extra, expected",
    [
        ({"visual_on": "pixels"}, "visual_on: expected one of rois, face_video"),
        ({"visual_on": "face_video", "visual": ["fog"]}, "unknown face-video condition 'fog'"),
        ({"visual_on": "face_video", "noise_dir": None, "noise_types": ["white"]}, "face_video needs noise_dir"),
        ({"reference": "zz"}, "reference: 'zz' is not one of the models (a)"),
    ],
)
def test_face_video_benchmark_config_errors(extra, expected, tmp_path, speechlike):
    import yaml

    from reavise.bench.config import load_config

    corpus, noise = _tiny_corpus(tmp_path, speechlike, n=1)
    cfg = {"corpus": {"path": str(corpus)}, "noise_dir": str(noise), "noise_types": ["hiss"], "snrs": [0],
           "visual": ["clean"], "n_utterances": 1, "models": [{"name": "a", "checkpoint": "a-vae-synth"}],
           "algorithms": ["vem"]}  # fmt: skip
    cfg.update(extra)
    cfg = {k: v for k, v in cfg.items() if v is not None}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ReaviseError) as err:
        load_config(path)
    assert "\n" not in str(err.value) and expected in str(err.value), str(err.value)
