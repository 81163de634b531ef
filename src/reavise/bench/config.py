"""The benchmark config (YAML): parsed and validated up front, with one-line errors.

Format (relative paths are relative to the config file's folder)::

    seed: 0
    corpus:
      synth: {hours: 0.12, speakers: 12}     # generated into OUT/corpus (reavise.data.synth)
      # path: ../data/my-corpus               # or a prepared corpus folder
      split: test
    models:
      - name: a-vae
        train: {model: a-vae, epochs: 30, max_minutes: 1.5}   # cached in OUT/models/NAME
      - name: av-cvae                  # a recipe file (``reavise train --config`` format),
        recipe: models/av-cvae.yaml    # or a list of them, merged in order; train: on top
        train: {epochs: 10}            # overrides it (model_config key by key)
      - name: published
        checkpoint: ../models/A-VAE.pt           # or a shipped prior: checkpoint: a-vae-synth
    algorithms: [vem, {name: mcem, settings: {max_iter: 30}}]
    baselines: [noisy, oracle_wiener, mmse_lsa, rnnoise]
    noise_types: [white, babble]
    # noise_dir: ../../shared/data/noise-real   # real noise, one subfolder per type
    snrs: [0, 5]
    visual: [clean, occlusion:0.5]
    # visual_on: face_video   # draw the conditions on the face video, then detect (below)
    # reference: [a-vae]      # paired-difference tables: each prior minus each of these
    n_utterances: 6
    examples: 4

``visual_on``: ``rois`` (default) degrades the mouth ROIs the corpus already holds
(``reavise data mix``: the model is told which frames are bad); ``face_video`` draws the
conditions on the full-face video and runs the project's detector on what it gets, as
``reavise enhance VIDEO`` does (``reavise data mix-video``; needs a prepared corpus with its
videos and ``noise_dir``; conditions as ``mix-video --visual``: clean, occlusion:F, blur:F,
dropped:F, missing).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import paths
from ..errors import ReaviseError, SettingError

TOP_KEYS = (
    "seed", "corpus", "models", "algorithms", "baselines", "noise_types", "snrs", "visual",
    "n_utterances", "examples", "title", "noise_dir", "visual_on", "reference",
)  # fmt: skip
VISUAL_ON = ("rois", "face_video")
SYNTH_KEYS = ("hours", "speakers", "seed", "min_utterance_seconds", "max_utterance_seconds")


@dataclass
class CorpusSpec:
    """Where the test speech comes from: a prepared corpus or a synthetic one to generate."""

    path: Path | None = None
    synth: dict[str, Any] | None = None
    split: str = "test"


@dataclass
class ModelSpec:
    """A speech prior: an existing checkpoint, or a training recipe (TrainConfig values: the
    config's ``recipe`` files merged in order, then its ``train`` settings on top)."""

    name: str
    checkpoint: Path | None = None
    train: dict[str, Any] | None = None


@dataclass
class AlgoSpec:
    """An inference algorithm and its settings (``reavise.inference.build_algorithm``)."""

    name: str
    settings: dict[str, Any] = field(default_factory=dict)
    #: the method's name in the tables (default: the algorithm's name); lets one algorithm
    #: appear twice with different settings
    tag: str | None = None

    @property
    def label(self) -> str:
        return self.tag or self.name


@dataclass
class BenchConfig:
    """A whole benchmark: corpus, methods and the condition grid."""

    path: Path
    corpus: CorpusSpec
    models: list[ModelSpec]
    algorithms: list[AlgoSpec]
    baselines: list[str]
    noise_types: list[str]
    snrs: list[float]
    visual: list[str]
    n_utterances: int
    examples: int = 4
    seed: int = 0
    title: str = ""
    #: a folder of real noise recordings, one subfolder per type (``noise_types`` then names
    #: those subfolders; ``reavise data mix --noise-dir``)
    noise_dir: Path | None = None
    #: where the visual conditions are drawn: "rois" (the mouth ROIs) or "face_video"
    visual_on: str = "rois"
    #: model names: tables of each prior's paired difference against each of them
    reference: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-friendly copy (paths as strings) for the run record."""

        def conv(v):
            if isinstance(v, Path):
                return str(v)
            if isinstance(v, dict):
                return {k: conv(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [conv(x) for x in v]
            return v

        return conv(dataclasses.asdict(self))


def spec_hash(obj: Any) -> str:
    """Short stable hash of a JSON-able spec (cache keys change when settings change)."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=4).hexdigest()


def safe_name(name: str) -> str:
    """File-name-safe form of a method or model name (:func:`reavise.paths.safe_name`)."""
    return paths.safe_name(name)


class _Checker:
    """Raises one-line errors that name the config file and the offending entry."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, where: str, msg: str) -> None:
        raise ReaviseError(f"{self.path}: {where}: {msg}" if where else f"{self.path}: {msg}")

    def mapping(self, v: Any, where: str, known: tuple[str, ...] | None = None) -> dict:
        if not isinstance(v, dict):
            self.fail(where, f"expected a mapping, got {type(v).__name__} {v!r}")
        if known is not None:
            bad = sorted(str(k) for k in v if k not in known)
            if bad:
                self.fail(where, f"unknown key(s) {bad}; known: {list(known)}")
        return v

    def seq(self, v: Any, where: str, allow_empty: bool = False) -> list:
        if isinstance(v, (str, int, float)):
            v = [v]
        if not isinstance(v, list):
            self.fail(where, f"expected a list, got {type(v).__name__}")
        if not v and not allow_empty:
            self.fail(where, "is empty")
        return v

    def integer(self, v: Any, where: str, minimum: int) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            self.fail(where, f"expected an integer >= {minimum}, got {v!r}")
        return v

    def number(self, v: Any, where: str, positive: bool = False) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            self.fail(where, f"expected a number, got {v!r}")
        if positive and v <= 0:
            self.fail(where, f"must be positive, got {v!r}")
        return float(v)

    def path_of(self, v: Any, where: str) -> Path:
        if not isinstance(v, str) or not v:
            self.fail(where, f"expected a path, got {v!r}")
        p = Path(v).expanduser()
        return p if p.is_absolute() else (self.path.parent / p)


def _corpus(c: _Checker, v: Any) -> CorpusSpec:
    m = c.mapping(v, "corpus", ("path", "synth", "split"))
    if ("path" in m) == ("synth" in m):
        c.fail("corpus", "give exactly one of 'path' (a prepared corpus) or 'synth' (generate one)")
    split = m.get("split", "test")
    if split not in ("train", "val", "test"):
        c.fail("corpus.split", f"expected train, val or test, got {split!r}")
    if "path" in m:
        p = c.path_of(m["path"], "corpus.path")
        if not (p / "manifest.jsonl").exists():
            c.fail("corpus.path", f"{p} is not a reavise corpus (no manifest.jsonl)")
        return CorpusSpec(path=p, split=split)
    s = dict(c.mapping(m["synth"] or {}, "corpus.synth", SYNTH_KEYS))
    c.number(s.setdefault("hours", 0.1), "corpus.synth.hours", positive=True)
    c.integer(s.setdefault("speakers", 10), "corpus.synth.speakers", 3)
    for k in ("min_utterance_seconds", "max_utterance_seconds"):
        if k in s:
            c.number(s[k], f"corpus.synth.{k}", positive=True)
    if "seed" in s:
        c.integer(s["seed"], "corpus.synth.seed", 0)
    return CorpusSpec(synth=s, split=split)


def _merge_recipe(base: dict, top: dict) -> dict:
    """``top``'s train settings over ``base``'s; their ``model_config`` merged key by key."""
    out = {**base, **top}
    if "model_config" in base and "model_config" in top:
        out["model_config"] = {**base["model_config"], **top["model_config"]}
    return out


def _recipe(c: _Checker, v: Any, where: str, known: tuple[str, ...]) -> dict:
    """The train settings of a model's ``recipe``: one YAML file of TrainConfig values (the
    format of ``reavise train --config``, relative to the config), or a list merged in order."""
    from ..validate import load_yaml

    values: dict = {}
    for j, item in enumerate(c.seq(v, where)):
        at = where if isinstance(v, str) else f"{where}[{j}]"
        path = c.path_of(item, at)
        try:
            data = load_yaml(path)
        except ReaviseError as exc:
            c.fail(at, str(exc))
        data = dict(c.mapping({} if data is None else data, f"{at} ({item})", known))
        if "model_config" in data:
            c.mapping(data["model_config"] or {}, f"{at} ({item}).model_config")
            data["model_config"] = dict(data["model_config"] or {})
        values = _merge_recipe(values, data)
    return values


def _models(c: _Checker, v: Any) -> list[ModelSpec]:
    from ..models import PRIORS
    from ..train import TrainConfig

    known_train = tuple(f.name for f in dataclasses.fields(TrainConfig))
    out: list[ModelSpec] = []
    for i, item in enumerate(c.seq(v, "models", allow_empty=True)):
        where = f"models[{i}]"
        if isinstance(item, str):
            item = {"name": item, "train": {}}
        m = c.mapping(item, where, ("name", "checkpoint", "recipe", "train"))
        name = m.get("name")
        if not isinstance(name, str) or not name.strip():
            c.fail(where, "needs a 'name'")
        where = f"models[{i}] ({name})"
        if any(o.name == name for o in out):
            c.fail(where, "the same name is used twice")
        if ("checkpoint" in m) == ("train" in m or "recipe" in m):
            c.fail(where, "give exactly one of 'checkpoint' (a .pt file) or 'train' (a recipe)")
        if "checkpoint" in m:
            from ..pretrained import resolve

            c.path_of(m["checkpoint"], f"{where}.checkpoint")  # a non-empty string
            try:  # a file (relative to the config), or a shipped prior's name
                p = resolve(m["checkpoint"], base=c.path.parent)
            except ReaviseError as exc:
                c.fail(f"{where}.checkpoint", str(exc))
            out.append(ModelSpec(name=name, checkpoint=p))
            continue
        t = dict(c.mapping(m.get("train") or {}, f"{where}.train", known_train))
        if "recipe" in m:
            if "model_config" in t:
                c.mapping(t["model_config"] or {}, f"{where}.train.model_config")
                t["model_config"] = dict(t["model_config"] or {})
            t = _merge_recipe(_recipe(c, m["recipe"], f"{where}.recipe", known_train), t)
        t.setdefault("model", name)
        if t["model"] not in PRIORS:
            c.fail(
                f"{where}.train.model",
                f"unknown model {t['model']!r}; registered: {', '.join(sorted(PRIORS))}",
            )
        try:
            from ..models.registry import make_config

            make_config(t["model"], t.get("model_config") or {})
        except (ReaviseError, TypeError) as exc:
            c.fail(f"{where}.train.model_config", str(exc))
        try:  # types and ranges of the recipe (epochs: ten, lr: -1) before anything runs
            TrainConfig(**t)
        except SettingError as exc:
            c.fail(f"{where}.train.{exc.key}", exc.problem)
        out.append(ModelSpec(name=name, train=t))
    return out


def _algorithms(c: _Checker, v: Any) -> list[AlgoSpec]:
    from ..inference import build_algorithm

    out: list[AlgoSpec] = []
    for i, item in enumerate(c.seq(v, "algorithms")):
        where = f"algorithms[{i}]"
        if isinstance(item, str):
            item = {"name": item}
        m = c.mapping(item, where, ("name", "settings", "label"))
        label = m.get("label")
        spec = AlgoSpec(
            str(m.get("name", "")),
            dict(c.mapping(m.get("settings") or {}, where)),
            None if label is None else str(label),
        )
        try:
            build_algorithm(spec.name, **spec.settings)
        except (ReaviseError, TypeError) as exc:
            c.fail(where, str(exc))
        if any(o.label == spec.label for o in out):
            c.fail(where, f"algorithm {spec.label!r} listed twice (give one a 'label')")
        out.append(spec)
    return out


def parse_config(data: Any, path: Path) -> BenchConfig:
    """Validate a loaded YAML document; every problem is a one-line ReaviseError."""
    from ..baselines import BASELINES
    from ..data.degrade import parse_visual
    from ..data.noise import check_noise_type
    from ..data.video_degrade import parse_face_visual

    c = _Checker(path)
    if data is None:
        c.fail("", "config is empty")
    m = c.mapping(data, "", TOP_KEYS)
    for key in ("corpus", "noise_types", "snrs", "visual", "n_utterances"):
        if key not in m:
            c.fail("", f"missing required key '{key}'")
    seed = c.integer(m.get("seed", 0), "seed", 0)
    models = _models(c, m.get("models", []))
    if models and "algorithms" not in m:
        c.fail("", "models are listed but no 'algorithms' to run them with")
    algorithms = _algorithms(c, m["algorithms"]) if models else []
    baselines = [str(b) for b in c.seq(m.get("baselines", ["noisy"]), "baselines", True)]
    for b in baselines:
        if b not in BASELINES:
            c.fail("baselines", f"unknown baseline {b!r}; known: {', '.join(BASELINES)}")
    if not models and not baselines:
        c.fail("", "nothing to run: no models and no baselines")
    noises = [str(n) for n in c.seq(m["noise_types"], "noise_types")]
    noise_dir = None
    if m.get("noise_dir") is not None:
        from ..data.mix import real_noise_types

        noise_dir = c.path_of(m["noise_dir"], "noise_dir")
        if not noise_dir.is_dir():
            c.fail("noise_dir", f"{noise_dir}: no such folder")
        real = real_noise_types(noise_dir) or {"file": []}  # a flat folder: one type, "file"
        for n in noises:
            if n not in real:
                c.fail("noise_types", f"{n!r} is not a subfolder of {noise_dir} (found: {', '.join(sorted(real)) or 'none'})")
    for n in [] if noise_dir is not None else noises:
        try:
            check_noise_type(n)
        except ReaviseError as exc:
            c.fail("noise_types", str(exc))
    snrs = [c.number(s, "snrs") for s in c.seq(m["snrs"], "snrs")]
    visual = [str(s) for s in c.seq(m["visual"], "visual")]
    visual_on = str(m.get("visual_on", "rois"))
    if visual_on not in VISUAL_ON:
        c.fail("visual_on", f"expected one of {', '.join(VISUAL_ON)}, got {visual_on!r}")
    corpus = _corpus(c, m["corpus"])
    if visual_on == "face_video":
        from .face_video import check_face_video_args

        why = check_face_video_args(noise_dir, corpus.path)
        if why:
            c.fail("visual_on", f"face_video {why}")
    for s in visual:
        try:
            (parse_face_visual if visual_on == "face_video" else parse_visual)(s)
        except ReaviseError as exc:
            c.fail("visual", str(exc))
    reference = [str(r) for r in c.seq(m.get("reference", []), "reference", allow_empty=True)]
    for r in reference:
        if r not in [spec.name for spec in models]:
            c.fail("reference", f"{r!r} is not one of the models ({', '.join(s.name for s in models) or 'none'})")
    return BenchConfig(
        path=path,
        corpus=corpus,
        models=models,
        algorithms=algorithms,
        baselines=baselines,
        noise_types=noises,
        snrs=snrs,
        visual=visual,
        n_utterances=c.integer(m["n_utterances"], "n_utterances", 1),
        examples=c.integer(m.get("examples", 4), "examples", 0),
        seed=seed,
        title=str(m.get("title", "") or path.stem),
        noise_dir=noise_dir,
        visual_on=visual_on,
        reference=reference,
    )


def load_config(path: str | Path) -> BenchConfig:
    """Read and validate a benchmark YAML file."""
    from ..validate import load_yaml

    path = Path(path)
    if path.exists() and not path.is_file():
        raise ReaviseError(f"{path}: no such config file (it is a folder)")
    return parse_config(load_yaml(path), path)
