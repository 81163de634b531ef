"""``reavise benchmark``: corpus -> trained priors -> test mixtures -> every method on every
mixture (in parallel, resumable) -> ``results.csv`` + ``tables.md`` + ``benchmark.json``.

Output folder::

    OUT/corpus/            synthetic corpus (when the config asks for one)
    OUT/models/NAME/       trained priors (model.pt; reused when the recipe is unchanged)
    OUT/mixtures/          test mixtures (reavise.data.mix layout)
    OUT/cells/METHOD-HASH/MIXTURE.json   one finished cell each (the resume state)
    OUT/examples/MIXTURE/METHOD.wav      enhanced audio (+ .weights.npy) for the report
    OUT/results.csv  OUT/tables.md  OUT/benchmark.json

Audio-only methods (baselines, audio-only priors) get the same audio under every visual
condition (mixtures differing only in the video share their audio), so they run once per
(utterance, noise, SNR) and their scores are repeated across visual conditions.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import atomic_write
from ..errors import ReaviseError
from .config import BenchConfig, ModelSpec, load_config, safe_name, spec_hash
from .tables import COLUMNS, read_results, tables_markdown
from .worker import Cell

log = logging.getLogger(__name__)

RESULTS = "results.csv"
TABLES = "tables.md"
RECORD = "benchmark.json"


@dataclass
class Method:
    """One row label of the tables: a baseline, or a (model, algorithm) pair."""

    name: str
    kind: str  # "baseline" | "model"
    model: str = ""
    algorithm: str = ""
    baseline: str = ""
    checkpoint: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    uses_video: bool = False
    key: str = ""

    @property
    def folder(self) -> str:
        return f"{safe_name(self.name)}-{self.key}"


def machine_info(device: str, workers: int) -> dict:
    """What the speed table was measured on."""
    import torch

    proc = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                proc = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    dev = device
    if device.startswith("cuda") and torch.cuda.is_available():
        dev = f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return {
        "cpu_count": os.cpu_count(),
        "processor": proc,
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": dev,
        "workers": workers,
        "threads_per_worker": 1,
    }


def _file_hash(path: Path) -> str:
    import hashlib

    h = hashlib.blake2b(digest_size=8)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- stages


def prepare_corpus(cfg: BenchConfig, out: Path, workers: int, progress: bool) -> Path:
    """The prepared corpus of the config, or the synthetic one generated (resumed) in OUT/corpus."""
    if cfg.corpus.path is not None:
        return cfg.corpus.path
    from ..data.synth import synthesize_corpus

    s = dict(cfg.corpus.synth or {})
    dest = out / "corpus"
    synthesize_corpus(
        dest,
        float(s.pop("hours")),
        int(s.pop("speakers")),
        int(s.pop("seed", cfg.seed)),
        workers=workers,
        progress=progress,
        **s,
    )
    return dest


def prepare_model(
    spec: ModelSpec, corpus: Path, out: Path, seed: int, device: str, progress: bool
) -> Path:
    """A checkpoint for ``spec``: the given file, or OUT/models/NAME/model.pt trained if missing.

    A finished training (train.json + model.pt) with the same recipe is reused; an interrupted
    one resumes from its last.ckpt; a changed recipe is an error (rename the model).
    """
    if spec.checkpoint is not None:
        return spec.checkpoint
    from ..train import TrainConfig, train

    values = {"seed": seed, **(spec.train or {})}
    if "accelerator" not in values:
        values["accelerator"] = "gpu" if device.startswith("cuda") else "cpu"
        values.setdefault("devices", 1)
    folder = out / "models" / safe_name(spec.name)
    recipe = folder / "recipe.json"
    if recipe.exists():
        old = json.loads(recipe.read_text())
        if old != values:
            raise ReaviseError(
                f"{folder}: model {spec.name!r} was trained with another recipe; "
                "rename the model in the config or delete that folder"
            )
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(recipe, lambda t: Path(t).write_text(json.dumps(values, indent=1, sort_keys=True)))
    if (folder / "train.json").exists() and (folder / "model.pt").exists():
        return folder / "model.pt"
    return train(corpus, folder, TrainConfig(**values), resume=True, progress=progress)


def baseline_available(name: str) -> str | None:
    """None when baseline ``name`` can run here, else why not (its optional package is missing)."""
    from ..baselines import OPTIONAL

    if name not in OPTIONAL:
        return None
    import importlib

    module = {"rnnoise": "pyrnnoise.rnnoise"}.get(name, OPTIONAL[name])
    try:
        importlib.import_module(module)
    except (ImportError, OSError) as exc:
        return f"baseline {name!r} skipped: optional package {OPTIONAL[name]!r} unavailable ({exc})"
    return None


def build_methods(
    cfg: BenchConfig, checkpoints: dict[str, Path], notes: list[str]
) -> list[Method]:
    """Baselines (config order; unavailable optional ones dropped with a note), then models x algorithms."""
    from ..models.checkpoint import load_checkpoint

    methods: list[Method] = []
    for b in cfg.baselines:
        why = baseline_available(b)
        if why:
            notes.append(why)
            continue
        methods.append(
            Method(b, "baseline", algorithm=b, baseline=b, key=spec_hash([b, cfg.seed]))
        )
    for spec in cfg.models:
        ckpt = checkpoints[spec.name]
        prior = load_checkpoint(ckpt)
        fingerprint = _file_hash(ckpt)
        for algo in cfg.algorithms:
            methods.append(
                Method(
                    name=f"{spec.name}/{algo.label}",
                    kind="model",
                    model=spec.name,
                    algorithm=algo.name,
                    checkpoint=str(ckpt),
                    settings=dict(algo.settings),
                    uses_video=bool(prior.uses_video),
                    key=spec_hash([fingerprint, algo.name, algo.settings, cfg.seed]),
                )
            )
    return methods


def pick_examples(mixtures: list[dict], k: int) -> list[str]:
    """``k`` mixture ids spread over the conditions: the visual condition cycles fastest, the
    (noise, SNR) pairs are spaced evenly, and each example uses another utterance if possible."""
    if k <= 0 or not mixtures:
        return []
    audio = list(dict.fromkeys((m["noise_type"], m["snr_db"]) for m in mixtures))
    visual = list(dict.fromkeys((m["visual"], m["severity"]) for m in mixtures))
    sources = list(dict.fromkeys(m["source_id"] for m in mixtures))
    by_key = {(m["source_id"], m["noise_type"], m["snr_db"], m["visual"], m["severity"]): m["id"]
              for m in mixtures}  # fmt: skip
    picked: list[str] = []
    for i in range(min(k, len(mixtures))):
        a, v = audio[(i * len(audio)) // k], visual[i % len(visual)]
        for j in range(len(sources)):
            mid = by_key.get((sources[(i + j) % len(sources)], *a, *v))
            if mid is not None and mid not in picked:
                picked.append(mid)
                break
    return picked


def plan_cells(
    methods: list[Method], mixtures: list[dict], mixdir: Path, out: Path, examples: list[str],
    seed: int, device: str,
) -> tuple[list[Cell], dict[tuple[str, str], Path]]:  # fmt: skip
    """Cells (one per method x distinct input) and the cell file behind every (method, mixture)."""
    tasks: list[Cell] = []
    cell_of: dict[tuple[str, str], Path] = {}
    for meth in methods:
        groups: dict[Any, list[dict]] = {}
        for m in mixtures:
            key = m["id"] if meth.uses_video else (m["source_id"], m["noise_type"], m["snr_db"])
            groups.setdefault(key, []).append(m)
        for members in groups.values():
            rep = members[0]
            cell = out / "cells" / meth.folder / f"{rep['id']}.json"
            ex = [m["id"] for m in members if m["id"] in examples]
            for m in members:
                cell_of[(meth.name, m["id"])] = cell
            tasks.append(
                Cell(
                    method=meth.name,
                    kind=meth.kind,
                    baseline=meth.baseline,
                    checkpoint=meth.checkpoint,
                    algorithm=meth.algorithm,
                    settings=meth.settings,
                    mixture=rep["id"],
                    noisy=str(mixdir / rep["noisy"]),
                    clean=str(mixdir / rep["clean"]),
                    lips=str(mixdir / rep["lips"]) if rep.get("lips") else None,
                    valid=str(mixdir / rep["valid"]) if rep.get("valid") else None,
                    fps=rep.get("fps"),
                    seed=seed,
                    device=device,
                    file=str(cell),
                    duration=float(rep.get("duration") or 0.0),
                    # one example file per method: the first example mixture of the group
                    example=str(out / "examples" / ex[0] / safe_name(meth.name)) if ex else None,
                    example_mixtures=tuple(ex),
                )
            )
    return tasks, cell_of


@contextmanager
def sigterm_exits() -> Iterator[None]:
    """While inside: SIGTERM raises SystemExit(143) in the main thread instead of ending the
    process at once, so cleanup runs (the worker pool is stopped, temp files are removed)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _exit(signum: int, frame) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop_pool(pool: ProcessPoolExecutor, grace_s: float = 10.0) -> None:
    """Cancel the queued cells and terminate the workers (each unwinds its cell and exits)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + grace_s
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join(1.0)


def remove_stale_temps(tasks: list[Cell]) -> int:
    """Delete the temp files (``.NAME.*``) that a killed run left beside cells and examples;
    finished files are never temp-named. Returns how many were removed."""
    folders = {Path(t.file).parent for t in tasks}
    folders |= {Path(t.example).parent for t in tasks if t.example}
    n = 0
    for folder in folders:
        for tmp in folder.glob(".*") if folder.is_dir() else ():
            if tmp.is_file() and tmp.suffix in {".json", ".wav", ".npz"}:
                tmp.unlink(missing_ok=True)
                n += 1
    return n


def _run_in_pool(
    todo: list[Cell], workers: int, run_cell, init_worker, done: Callable[[Cell, BaseException | None], None]
) -> None:
    """Run ``todo`` on ``workers`` spawned processes; any exception here (SIGTERM, Ctrl-C)
    stops the pool before it propagates, and workers also end if this process is killed."""
    # spawn: the parent may have run torch (training), whose thread pools fork badly
    pool = ProcessPoolExecutor(
        workers, mp_context=get_context("spawn"), initializer=init_worker, initargs=(1, os.getpid())
    )
    try:
        pending = {pool.submit(run_cell, t): t for t in todo}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for f in finished:
                t = pending.pop(f)
                exc = f.exception()
                done(t, exc)
    except BaseException:
        stop_pool(pool)
        raise
    pool.shutdown(wait=True)


def run_tasks(
    tasks: list[Cell],
    workers: int,
    progress: bool,
    on_error: Callable[[str], None],
) -> int:
    """Run the unfinished cells (no cell file yet), in parallel; returns how many were run."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from .worker import init_worker, run_cell

    def pending(t: Cell) -> bool:  # no cell yet, or an example whose audio is missing
        return not Path(t.file).exists() or (
            t.example is not None and not Path(t.example).with_suffix(".wav").exists()
        )

    todo = [t for t in tasks if pending(t)]
    if not todo:
        return 0
    # long utterances and slow methods first: better load balance at the end of the run
    todo.sort(key=lambda t: (t.kind == "baseline", -t.duration))
    bar = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        disable=not progress,
    )

    def fail(t: Cell, exc: BaseException) -> None:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        on_error(f"{t.method} on {t.mixture}: {msg}")

    def done(t: Cell, exc: BaseException | None) -> None:
        if exc is not None:
            fail(t, exc)
        bar.advance(job)

    remove_stale_temps(tasks)
    with bar, sigterm_exits():
        job = bar.add_task("benchmark", total=len(tasks), completed=len(tasks) - len(todo))
        if workers <= 1:
            import torch

            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                for t in todo:
                    try:
                        run_cell(t)
                    except Exception as exc:  # one bad cell must not stop the grid
                        done(t, exc)
                    else:
                        done(t, None)
            finally:
                torch.set_num_threads(threads)
        else:
            _run_in_pool(todo, workers, run_cell, init_worker, done)
    return len(todo)


def _num(v: Any) -> float:
    return float(v) if v is not None else float("nan")


def collect_rows(
    methods: list[Method], mixtures: list[dict], cell_of: dict[tuple[str, str], Path]
) -> list[dict]:
    """One tidy row per (method, mixture) from the finished cells (missing cells are left out)."""
    rows: list[dict] = []
    cache: dict[Path, dict] = {}
    for meth in methods:
        for m in mixtures:
            cell = cell_of[(meth.name, m["id"])]
            if cell not in cache:
                if not cell.exists():
                    continue
                cache[cell] = json.loads(cell.read_text())
            rec = cache[cell]
            row = {
                "id": m["id"],
                "method": meth.name,
                "model": meth.model,
                "algorithm": meth.algorithm,
                "noise_type": m["noise_type"],
                "snr_db": float(m["snr_db"]),
                "visual": m["visual"],
                "severity": float(m["severity"]),
            }
            for k in ("si_sdr", "pesq", "pesq_nb", "estoi", "stoi", "si_sdr_i", "pesq_i", "estoi_i",
                      "wall_s", "rtf"):  # fmt: skip
                row[k] = _num(rec.get(k))
            row["source_id"] = m["source_id"]
            row["duration_s"] = _num(rec.get("duration_s"))
            assert list(row) == list(COLUMNS)
            rows.append(row)
    return rows


def degraded_spans(mixture: dict, mixdir: Path) -> list[list[float]]:
    """[start, end) seconds of the video frames the visual condition damaged: the runs the
    face-video degradation drew (``affected_runs``), else the frames the ROI mixture marks
    invalid (all of it without video); [] for a clean video."""
    fps = float(mixture.get("fps") or 30.0)
    runs = mixture.get("affected_runs")
    if runs is None and mixture.get("valid"):
        path = mixdir / mixture["valid"]
        if path.exists():
            from ..data.degrade import _run_bounds

            runs = _run_bounds(~np.load(path).astype(bool).reshape(-1))
    return [[round(a / fps, 4), round(b / fps, 4)] for a, b in (runs or [])]


def collect_examples(
    methods: list[Method], mixtures: list[dict], examples: list[str], tasks: list[Cell], out: Path
) -> list[dict]:
    """What the report shows per example: mixture files and every method's enhanced audio."""
    by_id = {m["id"]: m for m in mixtures}
    produced: dict[tuple[str, str], dict] = {}
    for t in tasks:
        if t.example is None or not Path(t.file).exists():
            continue
        rec = json.loads(Path(t.file).read_text())
        base = Path(t.example)
        for mid in t.example_mixtures:
            produced[(t.method, mid)] = {
                "audio": os.path.relpath(base.with_suffix(".wav"), out),
                "weights": os.path.relpath(base.with_suffix(".weights.npz"), out)
                if rec.get("weights") else None,  # fmt: skip
            }
    out_list = []
    for mid in examples:
        m = by_id[mid]
        out_list.append(
            {
                "id": mid,
                "source_id": m["source_id"],
                "text": m.get("text", ""),
                "noise_type": m["noise_type"],
                "snr_db": m["snr_db"],
                "visual": m["visual"],
                "severity": m["severity"],
                "noisy": f"mixtures/{m['noisy']}",
                "clean": f"mixtures/{m['clean']}",
                "lips": f"mixtures/{m['lips']}" if m.get("lips") else None,
                "degraded_s": degraded_spans(m, out / "mixtures"),
                "methods": {
                    meth.name: produced[(meth.name, mid)]
                    for meth in methods
                    if (meth.name, mid) in produced
                },
            }
        )
    return out_list


def write_results(rows: list[dict], path: Path) -> Path:
    """Atomic CSV with the fixed column order (floats with 6 significant digits)."""
    import csv

    def _w(tmp: str) -> None:
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(COLUMNS))
            w.writeheader()
            for r in rows:
                w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})

    return atomic_write(path, _w)


# --------------------------------------------------------------------------- entry point


def _previous_timings(path: Path) -> list[dict]:
    """The ``timings_history`` of an earlier run record in ``path`` ([] if none or unreadable)."""
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return []
    hist = old.get("timings_history")
    if isinstance(hist, list):
        return [t for t in hist if isinstance(t, dict)]
    return [old["timings"]] if isinstance(old.get("timings"), dict) else []


def total_compute_s(record: dict) -> float:
    """Wall seconds over every invocation of a run (``timings_history``, else ``timings``)."""
    hist = record.get("timings_history") or [record.get("timings") or {}]
    return float(sum(float(t.get("total_s") or 0.0) for t in hist))


def run_benchmark(
    config: str | Path | BenchConfig,
    out: str | Path,
    workers: int = 0,
    device: str = "cpu",
    seed: int | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> dict:
    """Run (or resume) a whole benchmark; returns the run record (also OUT/benchmark.json)."""
    cfg = config if isinstance(config, BenchConfig) else load_config(config)
    if seed is not None:
        cfg.seed = int(seed)
    if device != "cpu" and not device.startswith("cuda"):
        raise ReaviseError(f"--device must be cpu or cuda[:N], got {device!r}")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ReaviseError("--device cuda: no CUDA GPU is available here")
    if workers < 0:
        raise ReaviseError(f"--workers must be >= 0, got {workers}")
    workers = workers or (1 if device.startswith("cuda") else max(1, os.cpu_count() or 1))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    notes: list[str] = []
    errors: list[str] = []

    t0 = time.perf_counter()
    corpus = prepare_corpus(cfg, out, workers, progress)
    timings["corpus_s"] = time.perf_counter() - t0

    checkpoints: dict[str, Path] = {}
    for spec in cfg.models:
        t1 = time.perf_counter()
        if spec.train is not None:
            echo(f"model {spec.name}: training (or reusing) in {out / 'models' / safe_name(spec.name)}")
        checkpoints[spec.name] = prepare_model(spec, corpus, out, cfg.seed, device, progress)
        timings[f"model_{spec.name}_s"] = time.perf_counter() - t1

    t1 = time.perf_counter()
    from ..data.mix import make_mixtures

    mixdir = out / "mixtures"
    common = dict(
        split=cfg.corpus.split, snrs=cfg.snrs, noise_types=cfg.noise_types, n_utterances=cfg.n_utterances,
        seed=cfg.seed, noise_dir=cfg.noise_dir, workers=workers, progress=progress,
    )  # fmt: skip
    if cfg.visual_on == "face_video":
        from .face_video import make_face_video_mixtures

        mixtures = make_face_video_mixtures(corpus, mixdir, out / "video", visual=cfg.visual, **common)
    else:
        mixtures = make_mixtures(corpus, mixdir, visual_conditions=cfg.visual, **common)
    timings["mixtures_s"] = time.perf_counter() - t1

    methods = build_methods(cfg, checkpoints, notes)
    examples = pick_examples(mixtures, cfg.examples)
    tasks, cell_of = plan_cells(methods, mixtures, mixdir, out, examples, cfg.seed, device)
    t1 = time.perf_counter()
    n_run = run_tasks(tasks, workers, progress, errors.append)
    timings["grid_s"] = time.perf_counter() - t1
    for e in errors:
        echo(f"error: {e}")

    rows = collect_rows(methods, mixtures, cell_of)
    if not rows:
        raise ReaviseError(f"{out}: no cell finished; nothing to write ({len(errors)} error(s))")
    write_results(rows, out / RESULTS)
    machine = machine_info(device, workers)
    notes += [f"failed: {e}" for e in errors]
    text = tables_markdown(read_results(out / RESULTS), machine, notes, cfg.title, cfg.reference)
    atomic_write(out / TABLES, lambda t: Path(t).write_text(text))
    timings["total_s"] = time.perf_counter() - t0
    record = {
        "version": 1,
        "title": cfg.title,
        "config_file": str(cfg.path),
        "config": cfg.to_dict(),
        "seed": cfg.seed,
        "corpus": str(corpus),
        "machine": machine,
        "methods": [
            {"name": m.name, "kind": m.kind, "model": m.model, "algorithm": m.algorithm,
             "uses_video": m.uses_video, "settings": m.settings, "checkpoint": m.checkpoint,
             "cells": m.folder}
            for m in methods
        ],  # fmt: skip
        "examples": collect_examples(methods, mixtures, examples, tasks, out),
        "n_tasks": len(tasks),
        "n_run": n_run,
        "n_rows": len(rows),
        "errors": errors,
        "notes": notes,
        "timings": timings,
        # every invocation's timings, earliest first: a resumed or table-only rerun keeps what
        # the cells cost when they were computed
        "timings_history": [*_previous_timings(out / RECORD), timings],
    }
    atomic_write(out / RECORD, lambda t: Path(t).write_text(json.dumps(record, indent=1)))
    return record
