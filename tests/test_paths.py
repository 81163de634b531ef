"""One file-name sanitiser (reavise.paths.safe_name) and one speaker split (data.manifest)."""

from __future__ import annotations

import numpy as np
import pytest

from reavise.bench.config import safe_name as bench_safe_name
from reavise.data.degrade import parse_visual
from reavise.data.manifest import speakers_by_split, split_speakers
from reavise.data.mix import mixture_id
from reavise.data.prepare import _safe as prepare_safe
from reavise.data.prepare import split_speakers as prepare_split
from reavise.data.synth import _SPLIT, _rng
from reavise.data.synth import split_speakers as synth_split
from reavise.paths import safe_name


@pytest.mark.parametrize(
    "name, underscore, dash",
    [
        ("a b", "a_b", "a-b"),  # the three agreed on inner runs (but for the fill)
        ("a/b", "a_b", "a-b"),
        ("x__y", "x__y", "x__y"),
        ("a..b", "a..b", "a..b"),
        (" a ", "a", "a"),  # data mix kept leading/trailing runs: '_a_'
        ("_a_", "a", "_a_"),  # bench trimmed '_', prepare kept it
        ("-a-", "-a-", "a"),  # prepare trimmed '-', bench kept it
        ("", "x", "x"),  # data mix gave ''
        ("_", "x", "_"),
        ("é", "x", "x"),  # data mix gave '_'
        ("..", "x", "x"),  # all three gave '..': the parent folder
        (".", "x", "x"),
        ("...", "x", "x"),
        (".hidden", ".hidden", ".hidden"),
    ],
)
def test_safe_name_one_behaviour(name, underscore, dash):
    assert safe_name(name) == underscore == bench_safe_name(name)
    assert safe_name(name, fill="-") == dash == prepare_safe(name)


def test_mixture_ids_of_corpus_ids_unchanged():
    occ = parse_visual("occlusion:0.3")
    assert mixture_id("spk000_000001", "pink", -5, occ) == "spk000_000001_pink_snr-5_occlusion0.3"
    assert mixture_id("09F_sa1", "white", 0.0, parse_visual("missing")) == "09F_sa1_white_snr0_missing"
    assert mixture_id("s1 x", "hum", 10, occ) == "s1_x_hum_snr10_occlusion0.3"


def test_split_speakers_prepare_behaviour_from_an_int_seed():
    """``data prepare``: an int seed (np.random.default_rng), order-free, official splits kept."""
    spk = [f"s{i}" for i in range(10)]
    a = split_speakers(spk, 7)
    assert a == prepare_split(reversed(spk), seed=7)
    assert {s for s, k in a.items() if k != "train"} == {"s8", "s0"}
    assert a["s8"] == "test" and a["s0"] == "val"
    b = split_speakers(spk, 7, fixed={"s3": "test"})
    assert b["s3"] == "test" and [s for s, k in b.items() if k != "train"] == ["s3", "s9"]
    assert split_speakers(["a", "b"], 7) == {"a": "test", "b": "train"}
    assert split_speakers(["a"], 7) == {"a": "train"}


def test_split_speakers_synth_behaviour_from_a_generator():
    """``data synth``: the corpus's own split stream passed as the Generator."""
    ids = [f"spk{i:03d}" for i in range(10)]
    got = speakers_by_split(split_speakers(ids, _rng(7, _SPLIT, 0)))
    assert got == synth_split(ids, 7)
    assert got == {"train": ["spk000", "spk001", "spk002", "spk003", "spk004", "spk005", "spk006",
                             "spk009"], "val": ["spk008"], "test": ["spk007"]}  # fmt: skip
    assert list(got) == ["train", "val", "test"]  # corpus.json key order
    assert synth_split(["spk000", "spk001"], 7) == {"train": ["spk000"], "val": [], "test": ["spk001"]}
    assert synth_split(["spk000"], 7) == {"train": ["spk000"], "val": [], "test": []}
    # the parameter is the difference: an int seed is np.random.default_rng(seed)
    assert split_speakers(ids, 7) == split_speakers(ids, np.random.default_rng(7))
    assert speakers_by_split(split_speakers(ids, 7)) != got
