"""`reavise benchmark`: config validation, a tiny end-to-end grid, and resuming without rework."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from reavise.audio import load_audio
from reavise.bench.config import load_config
from reavise.bench.grid import run_benchmark
from reavise.bench.tables import COLUMNS, fmt
from reavise.errors import ReaviseError
from reavise.metrics import evaluate_pair, si_sdr, summarize

REPO = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------- the tiny benchmark


def _manual_corpus(root: Path) -> Path:
    """Speech-like wavs + lips + manifest (used only when the synth generator is missing)."""
    from reavise.audio import write_wav
    from reavise.data.manifest import write_manifest
    from reavise.lips import save_lips

    rows = []
    rng = np.random.default_rng(0)
    for i in range(10):
        spk, split = (("s0", "train"), ("s1", "val"), ("s2", "test"))[0 if i < 6 else 1 if i < 8 else 2]
        t = np.arange(int(1.6 * 16000)) / 16000
        f0 = rng.uniform(90, 220) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.3, 1.5) * t))
        ph = 2 * np.pi * np.cumsum(f0) / 16000
        x = sum(np.sin(k * ph) / k for k in range(1, 30))
        env = np.clip(np.sin(2 * np.pi * rng.uniform(1.5, 3.5) * t), 0, None) ** 2
        uid = f"{spk}_u{i:02d}"
        write_wav(root / f"audio/{spk}/{uid}.wav", 0.5 * x * env / np.abs(x * env).max())
        n_v = round(len(t) / 16000 * 30)
        save_lips(root / f"lips/{spk}/{uid}.npy", rng.uniform(0, 1, (n_v, 67, 67)))
        rows.append({"id": uid, "speaker": spk, "split": split, "text": "", "duration": 1.6,
                     "fps": 30.0, "n_video_frames": n_v, "audio": f"audio/{spk}/{uid}.wav",
                     "lips": f"lips/{spk}/{uid}.npy", "valid": None})  # fmt: skip
    write_manifest(root, rows)
    return root


def tiny_config(base: Path) -> Path:
    """A 2-utterance, 1-noise, 1-SNR, 2-visual-condition benchmark with a tiny A-VAE."""
    try:
        from reavise.data.synth import synthesize_corpus  # noqa: F401

        corpus = {"synth": {"hours": 0.006, "speakers": 3, "min_utterance_seconds": 1.0,
                            "max_utterance_seconds": 2.0}}  # fmt: skip
    except ImportError:
        corpus = {"path": str(_manual_corpus(base / "corpus-manual"))}
    cfg = {
        "seed": 0,
        "corpus": corpus,
        "models": [{"name": "tiny", "train": {
            "model": "a-vae", "model_config": {"z_dim": 8, "hidden": [64]}, "epochs": 2,
            "batch_size": 64, "examples_per_epoch": 512}}],
        "algorithms": [{"name": "vem", "settings": {"max_iter": 8}}],
        "baselines": ["noisy", "oracle_wiener"],
        "noise_types": ["white"],
        "snrs": [0],
        "visual": ["clean", "occlusion:0.5"],
        "n_utterances": 2,
        "examples": 2,
    }  # fmt: skip
    path = base / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def tiny_benchmark(tmp_path_factory) -> Path:
    """Run the tiny benchmark once per session (a second call just finds it finished)."""
    base = tmp_path_factory.getbasetemp() / "tiny-bench"
    out = base / "run"
    if not (out / "benchmark.json").exists():
        base.mkdir(parents=True, exist_ok=True)
        rec = run_benchmark(tiny_config(base), out, workers=2, progress=False, echo=lambda m: None)
        assert rec["errors"] == []
    return out


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    return tiny_benchmark(tmp_path_factory)


def _rows(out: Path) -> list[dict]:
    with open(out / "results.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_results_have_expected_rows_and_values(bench):
    with open(bench / "results.csv", newline="") as fh:
        header = next(csv.reader(fh))
    assert tuple(header) == COLUMNS
    rows = _rows(bench)
    methods = ["noisy", "oracle_wiener", "tiny/vem"]
    assert len(rows) == 2 * 2 * len(methods)  # utterances x visual conditions x methods
    assert sorted({r["method"] for r in rows}) == sorted(methods)
    assert len({(r["id"], r["method"]) for r in rows}) == len(rows)
    assert {r["noise_type"] for r in rows} == {"white"} and {r["snr_db"] for r in rows} == {"0"}
    assert {(r["visual"], r["severity"]) for r in rows} == {("clean", "0"), ("occlusion", "0.5")}
    assert len({r["source_id"] for r in rows}) == 2
    for r in rows:
        for k in ("si_sdr", "pesq", "estoi", "stoi", "si_sdr_i", "wall_s", "rtf", "duration_s"):
            assert math.isfinite(float(r[k])), (k, r)
        assert float(r["rtf"]) == pytest.approx(float(r["wall_s"]) / float(r["duration_s"]), rel=1e-3)
        if r["method"] == "noisy":
            assert float(r["si_sdr_i"]) == 0 and float(r["pesq_i"]) == 0
        assert r["model"] == ("tiny" if r["method"] == "tiny/vem" else "")
    by = {(r["id"], r["method"]): r for r in rows}
    for r in rows:
        if r["method"] == "oracle_wiener":  # the upper bound beats doing nothing
            assert float(r["si_sdr"]) > float(by[(r["id"], "noisy")]["si_sdr"]) + 3


def test_values_match_the_metrics_module(bench):
    """Recompute SI-SDR of a row from the written mixture files and of an example's audio."""
    rec = json.loads((bench / "benchmark.json").read_text())
    mix = {json.loads(line)["id"]: json.loads(line) for line in
           (bench / "mixtures/manifest.jsonl").read_text().splitlines()}  # fmt: skip
    rows = _rows(bench)
    r = next(r for r in rows if r["method"] == "noisy")
    m = mix[r["id"]]
    noisy = load_audio(bench / "mixtures" / m["noisy"])
    clean = load_audio(bench / "mixtures" / m["clean"])
    assert float(r["si_sdr"]) == pytest.approx(si_sdr(noisy, clean), abs=1e-3)
    ex = rec["examples"][0]
    assert set(ex["methods"]) == {"noisy", "oracle_wiener", "tiny/vem"}
    est = load_audio(bench / ex["methods"]["tiny/vem"]["audio"])
    r = next(r for r in rows if r["method"] == "tiny/vem" and r["id"] == ex["id"])
    noisy = load_audio(bench / ex["noisy"])
    clean = load_audio(bench / ex["clean"])
    scores = evaluate_pair(est, clean, noisy=noisy)  # the stored example is 16-bit PCM
    assert float(r["si_sdr"]) == pytest.approx(scores["si_sdr"], abs=0.05)
    assert float(r["estoi"]) == pytest.approx(scores["estoi"], abs=0.01)


def test_tables_md_holds_the_means(bench):
    text = (bench / "tables.md").read_text()
    rows = _rows(bench)
    for meth in ("noisy", "oracle_wiener", "tiny/vem"):
        sel = [{"si_sdr_i": float(r["si_sdr_i"])} for r in rows if r["method"] == meth]
        cell = fmt(summarize(sel, ["si_sdr_i"])["si_sdr_i"])
        assert f"| {meth} | {cell} | {cell} |" in text  # per SNR: one SNR column + "all"
    assert "Speed" in text and "torch" in text and "CPU core" in text


def test_rerun_resumes_without_recomputing(bench, tmp_path_factory):
    cells = sorted((bench / "cells").rglob("*.json"))
    assert len(cells) == 2 * 3  # audio-only methods run once per (utterance, noise, SNR)
    before = {p: p.stat().st_mtime_ns for p in cells}
    csv_before = (bench / "results.csv").read_text()
    cfg = tmp_path_factory.getbasetemp() / "tiny-bench" / "tiny.yaml"
    first = json.loads((bench / "benchmark.json").read_text())
    rec = run_benchmark(cfg, bench, workers=1, progress=False, echo=lambda m: None)
    assert rec["n_run"] == 0
    # the record keeps what the first run cost: a table-only rerun adds its own timings after
    assert rec["timings_history"][:-1] == first["timings_history"] and rec["timings_history"][-1] == rec["timings"]
    assert rec["timings_history"][0]["grid_s"] > rec["timings"]["grid_s"]
    assert {p: p.stat().st_mtime_ns for p in cells} == before
    assert (bench / "results.csv").read_text() == csv_before
    # a lost cell (e.g. interrupted run) is the only one recomputed, with the same numbers
    victim = next(p for p in cells if "tiny" in p.parent.name)
    victim.unlink()
    rec = run_benchmark(cfg, bench, workers=1, progress=False, echo=lambda m: None)
    assert rec["n_run"] == 1 and victim.exists()
    assert {p: p.stat().st_mtime_ns for p in cells if p != victim} == {
        p: t for p, t in before.items() if p != victim
    }
    assert (bench / "results.csv").read_text().count("\n") == csv_before.count("\n")


# --------------------------------------------------------------------------- config errors

GOOD = {
    "corpus": {"synth": {"hours": 0.01, "speakers": 3}},
    "models": [{"name": "a-vae", "train": {"epochs": 1}}],
    "algorithms": ["vem"],
    "baselines": ["noisy"],
    "noise_types": ["white"],
    "snrs": [0],
    "visual": ["clean"],
    "n_utterances": 2,
}


def _with(**changes) -> dict:
    cfg = json.loads(json.dumps(GOOD))
    for k, v in changes.items():
        if v is None:
            cfg.pop(k)
        else:
            cfg[k] = v
    return cfg


@pytest.mark.parametrize(
    "cfg, expected",
    [
        (_with(corpus=None), "missing required key 'corpus'"),
        (_with(snr=[0]), "unknown key(s) ['snr']"),
        (_with(algorithms=["vemm"]), "algorithms[0]: unknown algorithm 'vemm'"),
        (_with(algorithms=[{"name": "vem", "settings": {"iters": 3}}]), "unknown settings ['iters']"),
        (_with(visual=["occlusion:2"]), "severity must be in 0..1"),
        (_with(visual=["fog"]), "unknown visual condition 'fog'"),
        (_with(baselines=["wiener"]), "unknown baseline 'wiener'"),
        (_with(noise_types=["rain"]), "noise_types:"),
        (_with(n_utterances=0), "n_utterances: expected an integer >= 1"),
        (_with(snrs=["loud"]), "snrs: expected a number"),
        (_with(models=[{"name": "x", "train": {}, "checkpoint": "m.pt"}]), "exactly one of"),
        (_with(models=[{"name": "x", "checkpoint": "nope.pt"}]), "nope.pt: no such file"),
        (_with(models=[{"name": "m", "train": {"model": "zz"}}]), "train.model: unknown model 'zz'"),
        (_with(models=[{"name": "a-vae", "train": {"epoch": 1}}]), "unknown key(s) ['epoch']"),
        (_with(models=[{"name": "a-vae", "train": {"model_config": {"zdim": 3}}}]), "['zdim']"),
        (_with(corpus={"path": "missing-corpus"}), "not a reavise corpus"),
        (_with(corpus={"synth": {"hours": -1}}), "corpus.synth.hours: must be positive"),
        (_with(algorithms=None), "no 'algorithms'"),
        (_with(algorithms=["mcem", {"name": "mcem"}]), "'mcem' listed twice (give one a 'label')"),
        (_with(algorithms=[{"name": "mcem", "settings": {"init": "video"}}]), "init must be one of"),
        ([1, 2], "expected a mapping"),
    ],
)
def test_config_errors_are_one_clear_line(tmp_path, cfg, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ReaviseError) as err:
        load_config(path)
    msg = str(err.value)
    assert "\n" not in msg and expected in msg and str(path) in msg


def test_config_file_problems(tmp_path):
    with pytest.raises(ReaviseError, match="no such config file"):
        load_config(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("corpus: [1,\n")
    with pytest.raises(ReaviseError, match="YAML syntax error at line"):
        load_config(bad)
    bad.write_text("")
    with pytest.raises(ReaviseError, match="config is empty"):
        load_config(bad)


def test_one_algorithm_twice_under_two_labels(tmp_path):
    algos = ["mcem", {"name": "mcem", "label": "mcem-vinit", "settings": {"init": "prior"}}]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_with(algorithms=algos)))
    cfg = load_config(path)
    assert [(a.name, a.label, a.settings) for a in cfg.algorithms] == [
        ("mcem", "mcem", {}), ("mcem", "mcem-vinit", {"init": "prior"})
    ]


def test_recipe_files_are_merged_under_train(tmp_path):
    """``recipe:`` names training recipe files (merged in order); ``train:`` goes on top, and
    model_config merges key by key."""
    (tmp_path / "budget.yaml").write_text(yaml.safe_dump(
        {"epochs": 3, "lr": 0.01, "model_config": {"z_dim": 4, "hidden": [8]}}))  # fmt: skip
    (tmp_path / "aug.yaml").write_text(yaml.safe_dump({"modality_dropout": 0.2, "lr": 0.02}))
    models = [
        {"name": "a-vae", "recipe": "budget.yaml"},
        {"name": "b", "recipe": ["budget.yaml", "aug.yaml"],
         "train": {"model": "av-vae", "epochs": 5, "model_config": {"z_dim": 6}}},
    ]  # fmt: skip
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_with(models=models)))
    a, b = load_config(path).models
    assert a.train == {"model": "a-vae", "epochs": 3, "lr": 0.01,
                       "model_config": {"z_dim": 4, "hidden": [8]}}  # fmt: skip
    assert b.train == {"model": "av-vae", "epochs": 5, "lr": 0.02, "modality_dropout": 0.2,
                       "model_config": {"z_dim": 6, "hidden": [8]}}  # fmt: skip
    for recipe, expected in [
        ("none.yaml", "models[0] (a-vae).recipe: "),
        ("aug.yaml\n", "no such config file"),
        (["budget.yaml", 3], "models[0] (a-vae).recipe[1]: expected a path"),
    ]:
        path.write_text(yaml.safe_dump(_with(models=[{"name": "a-vae", "recipe": recipe}])))
        with pytest.raises(ReaviseError, match=re.escape(expected)):
            load_config(path)
    (tmp_path / "typo.yaml").write_text("epoch: 3\n")
    path.write_text(yaml.safe_dump(_with(models=[{"name": "a-vae", "recipe": "typo.yaml"}])))
    with pytest.raises(ReaviseError, match=re.escape("(typo.yaml): unknown key(s) ['epoch']")):
        load_config(path)
    (tmp_path / "bad.yaml").write_text("epochs: ten\n")
    path.write_text(yaml.safe_dump(_with(models=[{"name": "a-vae", "recipe": "bad.yaml"}])))
    with pytest.raises(ReaviseError, match=re.escape("(a-vae).train.epochs: must be an integer")):
        load_config(path)
    path.write_text(yaml.safe_dump(_with(models=[
        {"name": "a-vae", "recipe": "budget.yaml", "checkpoint": "m.pt"}])))  # fmt: skip
    with pytest.raises(ReaviseError, match="exactly one of"):
        load_config(path)


def test_shipped_configs_share_their_recipes():
    """paper.yaml and lowsnr.yaml name configs/recipes/ instead of copying the budget."""
    cfg = load_config(REPO / "configs" / "paper.yaml")
    common = {"epochs": 15, "examples_per_epoch": 16384, "batch_size": 128, "lr": 0.001,
              "patience": 5, "max_minutes": 2.0}  # fmt: skip
    for spec in cfg.models:
        assert {k: spec.train[k] for k in common} == common, spec.name
        assert spec.train["model_config"]["z_dim"] == 16
        assert spec.train.get("modality_dropout", 0.0) == (0.0 if spec.name == "a-vae" else 0.2)
    by = {s.name: s.train for s in load_config(REPO / "configs" / "lowsnr.yaml").models}
    assert by["a-vae"]["max_minutes"] == 4.0 and by["av-vae-concat"]["max_minutes"] == 10.0
    assert by["av-cvae-concat-drop05"]["modality_dropout"] == 0.5
    assert by["av-cvae-reliability-adec"]["model_config"] == {
        "fusion": "reliability", "decoder_video": False, "z_dim": 16, "input_transform": "power"}


@pytest.mark.parametrize("name", ["quick.yaml", "paper.yaml", "lowsnr.yaml"])
def test_shipped_configs_are_valid(name):
    """The repository configs parse (models not registered yet are reported, not crashed on)."""
    try:
        cfg = load_config(REPO / "configs" / name)
    except ReaviseError as exc:
        assert "unknown model" in str(exc), str(exc)
        pytest.skip(f"{name} names a prior that is not registered here: {exc}")
    assert cfg.noise_types and cfg.snrs and cfg.visual


def test_cli_prints_one_line_and_exits_2(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_with(visual=["fog"])))
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    res = subprocess.run(
        [str(Path(sys.executable).parent / "reavise"), "benchmark", str(path), "--out", str(tmp_path / "o")],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "fog" in lines[0]


# --------------------------------------------------------------------------- killing the parent


def _children(pid: int) -> list[int]:
    """Live child processes of ``pid`` that are pool workers (Linux /proc)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmd = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z" and b"spawn_main" in cmd:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL"])
def test_killing_the_benchmark_stops_its_workers(tmp_path_factory, tmp_path, sig):
    """kill PARENT (only the parent pid) mid-grid: no worker goes on, no cell is half-written."""
    import signal
    import time

    base = tiny_benchmark(tmp_path_factory)
    out = tmp_path / "run"
    cfg = yaml.safe_load((base.parent / "tiny.yaml").read_text())
    # the trained model of the tiny benchmark, run slowly: a short and a long method
    cfg["algorithms"] = [{"name": "vem", "label": "short", "settings": {"max_iter": 300}},
                         {"name": "vem", "label": "long", "settings": {"max_iter": 20000}}]  # fmt: skip
    cfg_path = tmp_path / "slow.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    code = f"""if True:
        import json, sys
        from pathlib import Path
        from reavise.bench.config import load_config
        from reavise.bench.grid import build_methods, plan_cells, run_tasks
        base, out = Path({str(base)!r}), Path({str(out)!r})
        cfg = load_config({str(cfg_path)!r})
        methods = build_methods(cfg, {{"tiny": base / "models/tiny/model.pt"}}, [])
        lines = (base / "mixtures/manifest.jsonl").read_text().splitlines()
        tasks, _ = plan_cells(methods, [json.loads(x) for x in lines], base / "mixtures", out,
                              [], 0, "cpu")
        run_tasks(tasks, 2, False, print)
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    cells = out / "cells"
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            workers |= set(_children(proc.pid))
            if len(workers) >= 2 and any(cells.glob("*/[!.]*.json")):  # a cell done, more to go
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the benchmark ended before it could be killed"
        assert len(workers) == 2
        proc.send_signal(getattr(signal, sig))
        proc.wait(timeout=60)
        deadline = time.monotonic() + 20
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [w for w in workers if _alive(w)], "workers outlived the benchmark"
    finally:
        for w in workers:
            if _alive(w):
                os.kill(w, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
    written = [p for p in cells.rglob("*") if p.is_file()]
    finished = [p for p in written if not p.name.startswith(".")]
    assert not [p for p in written if p.name.startswith(".")], "temp files left behind"
    for p in finished:
        assert json.loads(p.read_text())["method"]  # whole, valid cells only
    assert len(finished) < 2 * 4  # the kill came mid-grid (2 audio inputs x 4 methods)
    assert not list(cells.glob("tiny_long*/*"))  # the long cells were cut short


def test_sigterm_becomes_a_clean_exit_and_stale_temps_go(tmp_path):
    """In the parent, SIGTERM unwinds (finally blocks, temp cleanup) instead of ending it."""
    import signal
    import time

    from reavise.bench.grid import remove_stale_temps, sigterm_exits
    from reavise.bench.worker import Cell

    before = signal.getsignal(signal.SIGTERM)
    cleaned = []
    with pytest.raises(SystemExit) as stop:
        with sigterm_exits():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
            finally:
                cleaned.append(True)
    assert stop.value.code == 128 + signal.SIGTERM and cleaned == [True]
    assert signal.getsignal(signal.SIGTERM) is before
    cells, ex = tmp_path / "cells" / "m-1", tmp_path / "examples" / "x"
    for d in (cells, ex):
        d.mkdir(parents=True)
    keep = [cells / "a.json", ex / "m.wav"]
    stale = [cells / ".b.json.k3j2.json", ex / ".m.wav.zz1.wav", ex / ".m.weights.npz.q.npz"]
    for p in keep + stale:
        p.write_text("{}")
    tasks = [Cell(method="m", kind="baseline", mixture="a", noisy="", clean="",
                  file=str(cells / "a.json"), seed=0, example=str(ex / "m"))]  # fmt: skip
    assert remove_stale_temps(tasks) == 3
    assert all(p.exists() for p in keep) and not any(p.exists() for p in stale)


def _noise_folder(root: Path) -> Path:
    import numpy as np
    import soundfile as sf

    for kind in ("babble", "cafe"):
        (root / kind).mkdir(parents=True)
        sf.write(root / kind / "a.flac", np.random.default_rng(0).standard_normal(16000) * 0.1, 16000)
    return root


def test_real_noise_folder_in_the_config(tmp_path):
    """noise_dir: its subfolders are the noise types; unknown ones and a missing folder are
    one-line errors."""
    noise = _noise_folder(tmp_path / "noise")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_with(noise_dir="noise", noise_types=["cafe", "babble"])))
    cfg = load_config(path)
    assert cfg.noise_dir == noise and cfg.noise_types == ["cafe", "babble"]
    assert cfg.to_dict()["noise_dir"] == str(noise)  # in the run record (and its cache key)
    for bad, expected in ((dict(noise_dir="noise", noise_types=["white"]), "'white' is not a subfolder"),
                          (dict(noise_dir="nope", noise_types=["cafe"]), "no such folder")):  # fmt: skip
        path.write_text(yaml.safe_dump(_with(**bad)))
        with pytest.raises(ReaviseError) as err:
            load_config(path)
        assert "\n" not in str(err.value) and expected in str(err.value)


def test_the_grid_study_config_is_valid(tmp_path):
    """configs/grid.yaml (the GRID fusion study) parses against a prepared corpus and a real
    noise folder in its relative places."""
    text = (REPO / "configs" / "grid.yaml").read_text()
    cfg_dir = tmp_path / "configs"
    cfg_dir.mkdir()
    (tmp_path / "runs" / "grid" / "corpus").mkdir(parents=True)
    (tmp_path / "runs" / "grid" / "corpus" / "manifest.jsonl").write_text("")
    for part in ("av-concat", "av-attention"):  # the AV parts `make pretrained-grid` trains
        (tmp_path / "runs" / "grid" / part).mkdir()
        (tmp_path / "runs" / "grid" / part / "model.pt").write_bytes(b"")
    noise = tmp_path.parent / "shared" / "data" / "noise-real"
    if not noise.exists():
        _noise_folder(noise)
        for kind in ("street", "car"):
            (noise / kind).mkdir()
            (noise / kind / "a.flac").write_bytes((noise / "cafe" / "a.flac").read_bytes())
    (cfg_dir / "grid.yaml").write_text(text)
    cfg = load_config(cfg_dir / "grid.yaml")
    assert [m.name for m in cfg.models] == ["grid-s1-a-vae", "grid-s1-av-concat", "grid-s1-av-attention",
                                            "av-concat-no-fallback", "av-attention-no-fallback"]  # fmt: skip
    assert cfg.noise_types == ["babble", "cafe", "street", "car"]
    assert cfg.snrs == [-10.0, -5.0, 0.0, 5.0] and len(cfg.visual) == 6 and cfg.n_utterances == 6
    assert cfg.visual_on == "face_video" and cfg.reference == ["grid-s1-a-vae", "grid-s1-av-concat"]
    assert [a.label for a in cfg.algorithms] == ["mcem", "vem"] and cfg.noise_dir.name == "noise-real"
