"""End-to-end `reavise enhance` / `import-checkpoint` through the real CLI entry point."""


import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import run_cli, write
from reavise.lips import save_lips


def test_enhance_folder_resume_overwrite_and_bad_file(tmp_path, tiny_model, speechlike, monkeypatch, capsys):
    src = tmp_path / "noisy"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        x = speechlike(i) + 0.05 * rng.standard_normal(32000).astype(np.float32)
        write(src / f"u{i}.wav", x)
    (src / "broken.wav").write_text("not audio")
    out = tmp_path / "out"
    code, stdout, err = run_cli(
        monkeypatch, capsys, "enhance", src, "-o", out, "-m", tiny_model, "--set", "max_iter=3"
    )
    assert code == 2  # one input failed
    assert "broken.wav: not a readable audio file" in err + stdout
    assert sorted(p.name for p in out.iterdir()) == ["u0_enhanced.wav", "u1_enhanced.wav"]
    y, sr = sf.read(out / "u0_enhanced.wav")
    assert sr == 16000 and len(y) == 32000 and np.isfinite(y).all() and np.abs(y).max() > 0
    (src / "broken.wav").unlink()
    mtime = (out / "u0_enhanced.wav").stat().st_mtime_ns
    code, stdout, _ = run_cli(monkeypatch, capsys, "enhance", src, "-o", out, "-m", tiny_model)
    assert code == 0 and "skipped 2 existing" in stdout
    assert (out / "u0_enhanced.wav").stat().st_mtime_ns == mtime
    # same seed, same numbers; --overwrite recomputes
    code, _, _ = run_cli(
        monkeypatch, capsys, "enhance", src, "-o", out, "-m", tiny_model, "--set", "max_iter=3",
        "--overwrite",
    )
    assert code == 0 and np.array_equal(sf.read(out / "u0_enhanced.wav")[0], y)


def test_enhance_refuses_to_overwrite_an_input(tmp_path, tiny_model, speechlike, monkeypatch, capsys):
    a = write(tmp_path / "a.wav", speechlike(0))
    b = write(tmp_path / "a_enhanced.wav", speechlike(1))
    code, _, err = run_cli(monkeypatch, capsys, "enhance", a, b, "-o", tmp_path, "-m", tiny_model)
    assert code == 2 and "would overwrite an input" in err
    assert np.allclose(sf.read(b)[0], speechlike(1), atol=1e-4)


def test_wrong_checkpoint_is_one_line(tmp_path, speechlike, monkeypatch, capsys):
    a = write(tmp_path / "a.wav", speechlike(0))
    bad = tmp_path / "bad.pt"
    torch.save({"x": torch.zeros(2)}, bad)
    code, _, err = run_cli(monkeypatch, capsys, "enhance", a, "-o", tmp_path / "o", "-m", bad)
    assert code == 2 and err.strip().count("\n") == 0 and "not a reavise checkpoint" in err


def test_av_model_uses_lips_beside_audio_and_checks_length(tmp_path, tiny_av_model, speechlike, monkeypatch, capsys):
    a = write(tmp_path / "a.wav", speechlike(0, 2.0))
    save_lips(tmp_path / "a.npy", np.full((60, 67, 67), 0.5, np.float32))  # 2 s at 30 fps
    out = tmp_path / "o"
    code, _, err = run_cli(
        monkeypatch, capsys, "enhance", a, "-o", out, "-m", tiny_av_model, "--set", "max_iter=2"
    )
    assert code == 0, err
    assert len(sf.read(out / "a_enhanced.wav")[0]) == 32000
    save_lips(tmp_path / "a.npy", np.full((30, 67, 67), 0.5, np.float32))  # 1 s: mismatch
    code, _, err = run_cli(
        monkeypatch, capsys, "enhance", a, "-o", tmp_path / "o2", "-m", tiny_av_model
    )
    assert code == 2 and "a.npy: lips last 1.00 s" in err


def test_video_in_video_out(tmp_path, tiny_model, speechlike, monkeypatch, capsys):
    from reavise.video import read_audio_track, read_video, write_video

    frames = np.random.default_rng(0).integers(0, 255, (50, 64, 64, 3), dtype=np.uint8)
    audio = speechlike(2, 2.0)
    src = write_video(tmp_path / "talk.mp4", frames, 25.0, audio=audio, sr=16000)
    out = tmp_path / "o"
    code, _, err = run_cli(
        monkeypatch, capsys, "enhance", src, "-o", out, "-m", tiny_model, "--set", "max_iter=2"
    )
    assert code == 0, err
    wav, _ = sf.read(out / "talk_enhanced.wav")
    assert abs(len(wav) - 32000) <= 1
    v, fps = read_video(out / "talk_enhanced.mp4")
    assert len(v) == 50 and fps == pytest.approx(25.0)
    track = read_audio_track(out / "talk_enhanced.mp4")
    assert track is not None and abs(len(track) - 32000) < 2048


def test_import_checkpoint_cli(shared_data, tmp_path, monkeypatch, capsys):
    src = shared_data / "reference-checkpoints" / "a-vae" / "A-VAE.pt"
    code, stdout, _ = run_cli(monkeypatch, capsys, "import-checkpoint", src, tmp_path / "a.pt")
    assert code == 0 and (tmp_path / "a.pt").exists()
    code, _, err = run_cli(
        monkeypatch, capsys, "import-checkpoint", tmp_path / "a.pt", tmp_path / "b.pt"
    )
    assert code == 2 and "not a published A-VAE" in err


def test_batch_size_and_order_do_not_change_outputs(tmp_path, tiny_model, speechlike, monkeypatch, capsys):
    src = tmp_path / "noisy"
    src.mkdir()
    rng = np.random.default_rng(1)
    for i, secs in enumerate((1.0, 2.5, 1.6)):
        x = speechlike(i, secs) + 0.05 * rng.standard_normal(int(secs * 16000)).astype(np.float32)
        write(src / f"u{i}.wav", x)
    outs = {}
    for bs in (1, 3):
        out = tmp_path / f"o{bs}"
        code, _, err = run_cli(
            monkeypatch, capsys, "enhance", src, "-o", out, "-m", tiny_model, "--algo", "mcem",
            "--set", "max_iter=3", "--batch-size", bs,
        )  # fmt: skip
        assert code == 0, err
        outs[bs] = [sf.read(out / f"u{i}_enhanced.wav")[0] for i in range(3)]
    for a, b in zip(outs[1], outs[3], strict=True):
        assert np.abs(a - b).max() <= 1.0 / 32768  # equal up to a 16-bit rounding flip


def test_long_file_is_chunked_through_the_cli(tmp_path, tiny_model, speechlike, monkeypatch, capsys):
    x = np.concatenate([speechlike(i, 5.0) for i in range(9)])  # 45 s: two 30 s chunks
    src = write(tmp_path / "long.wav", x)
    short = write(tmp_path / "short.wav", speechlike(3, 1.0))
    out = tmp_path / "o"
    code, stdout, err = run_cli(
        monkeypatch, capsys, "enhance", src, short, "-o", out, "-m", tiny_model,
        "--set", "max_iter=2",
    )  # fmt: skip
    assert code == 0, err
    assert "enhanced 2 file(s)" in stdout
    y, sr = sf.read(out / "long_enhanced.wav")
    assert sr == 16000 and len(y) == len(x) and np.isfinite(y).all() and np.abs(y).max() > 0
    assert sorted(p.name for p in out.iterdir()) == ["long_enhanced.wav", "short_enhanced.wav"]


def test_default_threads_and_short_openmp_spin(tmp_path, tiny_model, speechlike, monkeypatch, capsys):
    import os

    from reavise.cli.options import MAX_DEFAULT_THREADS, default_threads

    n = default_threads()
    assert 1 <= n <= min(len(os.sched_getaffinity(0)), MAX_DEFAULT_THREADS)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    a = write(tmp_path / "a.wav", speechlike(0, 1.0))
    code, _, err = run_cli(
        monkeypatch, capsys, "enhance", a, "-o", tmp_path / "o", "-m", tiny_model, "--set",
        "max_iter=1", "--threads", 1,
    )  # fmt: skip
    assert code == 0, err
    assert os.environ["GOMP_SPINCOUNT"] == "20000"
