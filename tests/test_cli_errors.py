"""Bad command lines end as one ``error:`` line and exit code 2; silent fallbacks warn.

The sweep walks the real command tree (so a new option is covered without editing this file)
and feeds every option wrong types and out-of-range values through the real entry point.
"""

from __future__ import annotations

import typing
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from conftest import run_cli, write
from reavise import cli
from reavise.cli import build_command, is_float_param, iter_commands, options
from reavise.lips import save_lips
from reavise.models import build_prior
from reavise.models.checkpoint import save_checkpoint

#: str options whose every value is valid
FREE_TEXT = {("evaluate", "--suffix")}


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


# --- the sweep over every command and option ---------------------------------------------
def _info(param):
    return param.type_descriptor.parameter_info


def _base(param):
    """The annotation without ``| None`` (and list[X] -> X)."""
    ann = param.type_descriptor.annotation
    if typing.get_origin(ann) is list:
        ann = typing.get_args(ann)[0]
    args = [a for a in typing.get_args(ann) if a is not type(None)]
    return args[0] if typing.get_origin(ann) is not None and len(args) == 1 else ann


def _name(param) -> str:
    return cli._param_name(param)


def bad_values(path: tuple[str, ...], param) -> list[tuple[str, str, bool]]:
    """(label, value, names_param) for one parameter; value may use {file}, {dir}, {missing}."""
    info, base = _info(param), _base(param)
    if param.param_type_name == "option" and getattr(param, "is_flag", False):
        return []
    if base is int:
        assert param.min is not None, f"{path} {param.opts}: integer option without min="
        cases = [("abc", "abc", True), ("min-1", str(param.min - 1), True), ("float", "1.5", True)]
        if param.max is not None:
            cases.append(("max+1", str(param.max + 1), True))
        return cases
    if is_float_param(param):
        return [("abc", "abc", True), ("nan", "nan", True), ("inf", "inf", True), ("-1", "-1", True)]
    if base is Path:
        cases = []
        if info.exists:
            cases.append(("missing", "{missing}", True))
            if not info.dir_okay:
                cases.append(("a folder", "{dir}", True))
            if not info.file_okay:
                cases.append(("a file", "{file}", True))
        if info.callback is options.checkpoint:
            cases += [("missing", "{missing}", True), ("a folder", "{dir}", True)]
        if info.callback is options.output_dir:
            cases += [("a file", "{file}", True), ("under a file", "{file}/sub", True)]
        if info.callback is options.output_file:
            cases += [("a folder", "{dir}", True), ("under a file", "{file}/sub.x", True)]
        assert cases, f"{path} {param.opts}: a path neither checked to exist nor a checked output"
        return cases
    if base is str:
        if info.callback is options.device:
            return [("tpu", "tpu", True), ("cuda:99", "cuda:99", True)]
        if (path[-1], _name(param)) in FREE_TEXT:
            return []
        if typing.get_origin(param.type_descriptor.annotation) is list:
            return [("no =", "novalue", True)]
        return [("bogus", "bogus!", False)]
    return []


def sweep_cases():
    cases = []
    for path, cmd in iter_commands(build_command()):
        for param in cmd.params:
            for label, value, named in bad_values(path, param):
                cases.append(
                    pytest.param(path, param.name, value, named, id=f"{' '.join(path)} {_name(param)} {label}")
                )
    return cases


@pytest.fixture
def files(tmp_path, speechlike):
    torch.manual_seed(0)
    d = tmp_path / "in"
    d.mkdir()
    return {
        "file": write(tmp_path / "a.wav", speechlike(0)),
        "dir": d,
        "missing": tmp_path / "missing" / "x",
        "out": tmp_path / "out",
    }


def valid_value(param, files, n: int) -> str:
    """A value that passes parse-time checks for a required parameter."""
    info, base = _info(param), _base(param)
    if base is Path:
        if info.exists or info.callback is options.checkpoint:
            return str(files["dir"] if not info.file_okay else files["file"])
        return str(files["out"] / f"o{n}")
    if base in (int, float):  # a required number (e.g. data holdout --n)
        return "1"
    return "generic"


def command_line(path, cmd, bad_name: str, bad_value: str, files) -> list[str]:
    """The command with the bad value first (click checks values in the order given)."""
    positional, options, bad = [], [], []
    for n, param in enumerate(cmd.params):
        if param.name == bad_name:
            value = bad_value.format(**{k: str(v) for k, v in files.items()})
            if param.param_type_name == "option":
                bad = [param.opts[0], value]
            else:
                positional.append(value)
        elif param.required:
            value = valid_value(param, files, n)
            if param.param_type_name == "option":
                options += [param.opts[0], value]
            else:
                positional.append(value)
    return [*path, *bad, *positional, *options]


@pytest.mark.parametrize("path, name, value, named", sweep_cases())
def test_every_option_refuses_bad_values_in_one_line(path, name, value, named, files, monkeypatch, capsys):
    cmd = dict(iter_commands(build_command()))[path]
    param = next(p for p in cmd.params if p.name == name)
    argv = command_line(path, cmd, name, value, files)
    code, out, err = run_cli(monkeypatch, capsys, *argv)
    assert code == 2, (argv, out, err)
    line = one_error_line(err)
    if named:
        assert _name(param) in line, line
    assert not files["out"].exists(), f"{argv} left output behind"


def test_the_sweep_covers_every_command():
    paths = {c.values[0] for c in sweep_cases()}
    assert {("enhance",), ("train",), ("evaluate",), ("benchmark",), ("report",),
            ("import-checkpoint",), ("models",), ("data", "synth"), ("data", "mix"),
            ("data", "prepare"), ("data", "preview")} <= paths  # fmt: skip


# --- the cases reported in the issue --------------------------------------------------------
@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--seed", "abc"], "error: --seed: must be an integer, got 'abc'"),
        (["--batch-size", "0"], "error: --batch-size: must be at least 1, got 0"),
        (["--threads", "-1"], "error: --threads: must be at least 1, got -1"),
        (["--device", "tpu"], "error: --device: unknown device 'tpu'"),
        (["--set", "max_iter=abc"], "error: --set max_iter=abc: max_iter must be an integer, got 'abc'"),
        (["--set", "max_iter=-1"], "error: --set max_iter=-1: max_iter must be at least 1, got -1"),
        (["--set", "max_iter=0"], "error: --set max_iter=0: max_iter must be at least 1, got 0"),
        (["--set", "lr=nan"], "error: --set lr=nan: lr must be a finite number"),
        (["--set", "nmf_rank=0"], "error: --set nmf_rank=0: nmf_rank must be at least 1, got 0"),
        (["--algo", "mcem", "--set", "burn_in=40"], "error: --set burn_in=40: burn_in must be smaller"),
        (["--set", "x=[1"], "error: --set x=[1: not a YAML value"),
        (["--set", "max_iter"], "error: --set 'max_iter': expected key=value"),
        (["--lips-fps", "0"], "error: --lips-fps: must be positive, got 0"),
    ],
)
def test_enhance_usage_errors(extra, expected, tmp_path, tiny_model, speechlike, monkeypatch, capsys):
    a = write(tmp_path / "a.wav", speechlike(0))
    out = tmp_path / "o"
    code, _, err = run_cli(monkeypatch, capsys, "enhance", a, "-o", out, "-m", tiny_model, *extra)
    assert code == 2 and one_error_line(err).startswith(expected), err
    assert not out.exists()


def test_missing_inputs_and_cuda_without_gpu(tmp_path, tiny_model, speechlike, monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "enhance", "-o", tmp_path / "o", "-m", tiny_model)
    assert code == 2 and one_error_line(err).startswith("error: missing argument INPUTS")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    a = write(tmp_path / "a.wav", speechlike(0))
    code, _, err = run_cli(monkeypatch, capsys, "enhance", a, "-o", tmp_path / "o", "-m", tiny_model, "--device", "cuda")
    assert code == 2 and "--device: 'cuda' needs CUDA" in one_error_line(err)


def test_unwritable_and_misnamed_outputs(tmp_path, tiny_model, speechlike, monkeypatch, capsys):
    a = write(tmp_path / "a.wav", speechlike(0))
    ro = tmp_path / "ro"
    ro.mkdir()
    import reavise.validate as V

    real_access = V.os.access
    monkeypatch.setattr(V.os, "access", lambda p, m: False if Path(p) == ro else real_access(p, m))
    code, _, err = run_cli(monkeypatch, capsys, "enhance", a, "-o", ro / "x", "-m", tiny_model)
    assert code == 2 and "is not writable" in one_error_line(err) and not (ro / "x").exists()
    code, _, err = run_cli(monkeypatch, capsys, "enhance", a, "-o", a, "-m", tiny_model)
    assert code == 2 and "--out" in one_error_line(err)
    code, _, err = run_cli(monkeypatch, capsys, "evaluate", a, a, "--csv", tmp_path)
    assert code == 2 and "--csv" in one_error_line(err)
    code, _, err = run_cli(monkeypatch, capsys, "import-checkpoint", tiny_model, tmp_path)
    assert code == 2 and "DST" in one_error_line(err)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("epochs: [1\n", "YAML syntax error at line 2"),
        ("- 1\n- 2\n", "expected a mapping of train settings, got a list"),
        ("epochs: ten\n", "epochs must be an integer, got 'ten'"),
        ("lr: -1\n", "lr must be positive, got -1.0"),
        ("batch_size: 0\n", "batch_size must be at least 1, got 0"),
        ("epochs: -1\n", "epochs must be at least 1, got -1"),
        ("model_config: {z_dim: abc}\n", "model_config.z_dim must be an integer, got 'abc'"),
        ("model_config: 3\n", "model_config must be a mapping"),
        ("modality_dropout: 2\n", "modality_dropout must be between 0 and 1"),
        ("devices: 0\n", "devices must be auto"),
        ("epoch: 3\n", "unknown train settings ['epoch']"),
    ],
)
def test_train_config_errors_name_the_file(text, expected, tmp_path, monkeypatch, capsys):
    cfg = tmp_path / "x.yaml"
    cfg.write_text(text)
    out = tmp_path / "run"
    code, _, err = run_cli(monkeypatch, capsys, "train", tmp_path, "-o", out, "--config", cfg)
    line = one_error_line(err)
    assert code == 2 and line.startswith(f"error: {cfg}: ") and expected in line, line
    assert not out.exists()


def test_train_flags_name_the_flag(tmp_path, monkeypatch, capsys):
    for args, expected in (
        (["--set", "epochs=ten"], "error: --set epochs=ten: epochs must be an integer"),
        (["--model-set", "z_dim=abc"], "error: --model-set z_dim=abc: model_config.z_dim must be"),
        (["--precision", "17"], "error: --precision: precision must be one of"),
        (["--model", "nope"], "error: --model: model must be one of"),
    ):
        code, _, err = run_cli(monkeypatch, capsys, "train", tmp_path, "-o", tmp_path / "r", *args)
        assert code == 2 and one_error_line(err).startswith(expected), err


def test_checkpoint_with_other_stft_is_refused(tmp_path, speechlike, monkeypatch, capsys):
    a = write(tmp_path / "a.wav", speechlike(0))
    bins = save_checkpoint(tmp_path / "b.pt", build_prior("a-vae", {"x_dim": 257, "z_dim": 4, "hidden": [16]}))
    code, _, err = run_cli(monkeypatch, capsys, "enhance", a, "-o", tmp_path / "o", "-m", bins)
    assert code == 2 and "b.pt: model has 257 frequency bins" in one_error_line(err)
    payload = torch.load(bins, weights_only=True)
    payload["config"]["x_dim"] = 513
    payload["stft"]["n_fft"] = 512
    torch.save(payload, tmp_path / "c.pt")
    code, _, err = run_cli(monkeypatch, capsys, "enhance", a, "-o", tmp_path / "o", "-m", tmp_path / "c.pt")
    line = one_error_line(err)
    assert code == 2 and "c.pt: trained with another STFT (n_fft 512;" in line and "n_fft 1024" in line


def test_published_state_dict_with_257_bins_is_refused(tmp_path, monkeypatch, capsys):
    sd = {
        "mlp_x_z.linear0.weight": torch.zeros(16, 257), "mlp_x_z.linear0.bias": torch.zeros(16),
        "inf_mean.weight": torch.zeros(4, 16), "inf_mean.bias": torch.zeros(4),
        "inf_logvar.weight": torch.zeros(4, 16), "inf_logvar.bias": torch.zeros(4),
        "mlp_z_x.linear0.weight": torch.zeros(16, 4), "mlp_z_x.linear0.bias": torch.zeros(16),
        "gen_logvar.weight": torch.zeros(257, 16), "gen_logvar.bias": torch.zeros(257),
    }  # fmt: skip
    torch.save(sd, tmp_path / "pub.pt")
    code, _, err = run_cli(monkeypatch, capsys, "import-checkpoint", tmp_path / "pub.pt", tmp_path / "r.pt")
    assert code == 2 and "257 frequency bins" in one_error_line(err)
    assert not (tmp_path / "r.pt").exists()


# --- silent fallbacks now say so -------------------------------------------------------------
def warnings_in(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("warning: ")]


def test_av_model_without_lips_warns(tmp_path, tiny_av_model, speechlike, monkeypatch, capsys):
    a = write(tmp_path / "a.wav", speechlike(0))
    code, _, err = run_cli(monkeypatch, capsys, "enhance", a, "-o", tmp_path / "o", "-m", tiny_av_model, "--set", "max_iter=2")
    assert code == 0 and (tmp_path / "o" / "a_enhanced.wav").exists()
    (w,) = warnings_in(err)
    assert "a.wav: no lips beside it" in w and "audio-only" in w


def test_lips_for_an_audio_only_model_warn(tmp_path, tiny_model, speechlike, monkeypatch, capsys):
    a = write(tmp_path / "a.wav", speechlike(0))
    lips = save_lips(tmp_path / "l.npy", np.full((60, 67, 67), 0.5, np.float32))
    code, _, err = run_cli(monkeypatch, capsys, "enhance", a, "-o", tmp_path / "o", "-m", tiny_model, "--lips", lips, "--set", "max_iter=2")
    assert code == 0
    (w,) = warnings_in(err)
    assert "audio-only; the lips are ignored" in w


def test_lips_at_25_fps_are_inferred_or_set(tmp_path, tiny_av_model, speechlike, monkeypatch, capsys):
    a = write(tmp_path / "a.wav", speechlike(0, 2.0))
    lips = save_lips(tmp_path / "a.npy", np.full((50, 67, 67), 0.5, np.float32))  # 2 s at 25 fps
    args = ("enhance", a, "-m", tiny_av_model, "--set", "max_iter=2")
    code, _, err = run_cli(monkeypatch, capsys, *args, "-o", tmp_path / "o1")
    (w,) = warnings_in(err)
    assert code == 0 and "50 lips frames fit a.wav (2.00 s) at 25 fps, not 30" in w
    code, _, err = run_cli(monkeypatch, capsys, *args, "-o", tmp_path / "o2", "--lips-fps", "25")
    assert code == 0 and not warnings_in(err) and not err.strip()
    # same numbers whether the rate was inferred or given
    assert np.array_equal(sf.read(tmp_path / "o1" / "a_enhanced.wav")[0], sf.read(tmp_path / "o2" / "a_enhanced.wav")[0])
    code, _, err = run_cli(monkeypatch, capsys, *args, "-o", tmp_path / "o3", "--lips-fps", "30")
    assert code == 2 and "lips last 1.67 s (50 frames at 30 fps)" in err
    save_lips(lips, np.full((40, 67, 67), 0.5, np.float32))  # fits neither
    code, _, err = run_cli(monkeypatch, capsys, *args, "-o", tmp_path / "o4")
    assert code == 2 and "at 30 fps or 1.60 s at 25 fps" in err and "a.wav lasts 2.00 s" in err
    assert not (tmp_path / "o4" / "a_enhanced.wav").exists()


def test_complex_lips_are_refused(tmp_path, tiny_av_model, speechlike, monkeypatch, capsys):
    a = write(tmp_path / "a.wav", speechlike(0))
    np.save(tmp_path / "a.npy", np.zeros((60, 67, 67), np.complex64))
    code, _, err = run_cli(monkeypatch, capsys, "enhance", a, "-o", tmp_path / "o", "-m", tiny_av_model)
    assert code == 2 and "a.npy: lips array has dtype complex64" in err
    assert not (tmp_path / "o" / "a_enhanced.wav").exists()


def test_near_silent_input_is_refused(tmp_path, tiny_model, speechlike, monkeypatch, capsys):
    x = speechlike(0) / np.abs(speechlike(0)).max() * 10 ** (-80 / 20)
    a = write(tmp_path / "quiet.wav", x.astype(np.float32), subtype="FLOAT")
    code, _, err = run_cli(monkeypatch, capsys, "enhance", a, "-o", tmp_path / "o", "-m", tiny_model)
    assert code == 2 and "quiet.wav: near-silent (peak -80 dBFS" in err
    assert not (tmp_path / "o" / "quiet_enhanced.wav").exists()
    # -50 dBFS is quiet but fine: the 16-bit output is not all zeros
    write(a, (x * 10 ** (30 / 20)).astype(np.float32), subtype="FLOAT")
    code, _, err = run_cli(monkeypatch, capsys, "enhance", a, "-o", tmp_path / "o", "-m", tiny_model, "--set", "max_iter=2")
    assert code == 0, err
    assert np.abs(sf.read(tmp_path / "o" / "quiet_enhanced.wav")[0]).max() > 0


def test_benchmark_with_bad_settings_fails_validation(tmp_path):
    from reavise.bench.config import load_config
    from reavise.errors import ReaviseError

    cfg = yaml.safe_load((Path(__file__).parents[1] / "configs" / "quick.yaml").read_text())
    cfg["algorithms"] = [{"name": "mcem", "settings": {"max_iter": -5}}]
    path = tmp_path / "b.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ReaviseError, match=r"algorithms\[0\]: algorithm 'mcem': max_iter must be at least 1, got -5"):
        load_config(path)
    cfg["algorithms"] = ["vem"]
    cfg["models"][0] = {"name": "a-vae", "train": {"model": "a-vae", "epochs": "ten"}}
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ReaviseError, match=r"models\[0\] \(a-vae\)\.train\.epochs: must be an integer"):
        load_config(path)


def _video(tmp_path, name, n_frames, audio):
    pytest.importorskip("av")
    from reavise.video import write_video

    frames = np.random.default_rng(0).integers(0, 255, (n_frames, 48, 48, 3), dtype=np.uint8)
    return write_video(tmp_path / name, frames, 25.0, audio=audio, sr=16000)


def test_video_without_a_face_warns(tmp_path, tiny_av_model, speechlike, monkeypatch, capsys):
    pytest.importorskip("cv2")
    src = _video(tmp_path, "noface.mp4", 25, speechlike(0, 1.0))
    code, _, err = run_cli(monkeypatch, capsys, "enhance", src, "-o", tmp_path / "o", "-m", tiny_av_model, "--set", "max_iter=2")
    assert code == 0, err
    (w,) = warnings_in(err)
    assert "noface.mp4: no face found in any frame" in w


def test_short_audio_track_in_a_long_video_warns(tmp_path, tiny_model, speechlike, monkeypatch, capsys):
    src = _video(tmp_path, "short.mp4", 120, speechlike(0, 1.0))  # 4.8 s of video, 1 s of audio
    code, _, err = run_cli(monkeypatch, capsys, "enhance", src, "-o", tmp_path / "o", "-m", tiny_model, "--set", "max_iter=2")
    assert code == 0, err
    (w,) = warnings_in(err)
    assert "short.mp4: the audio track lasts 1.0" in w and "but the video 4.80 s" in w
