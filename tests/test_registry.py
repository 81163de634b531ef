"""The one registry helper (reavise.registry) and the registries built on it."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from reavise.errors import ReaviseError, SettingError
from reavise.registry import Registry, load_dataclass


@dataclass
class _Cfg:
    size: int = 2
    shape: tuple[int, ...] = (1, 2)

    def __post_init__(self):
        if self.size < 1:
            raise SettingError("size", f"must be at least 1, got {self.size}")


def _registry() -> Registry:
    reg = Registry("widget")

    @reg.register("box", _Cfg)
    class Box:
        def __init__(self, cfg):
            self.cfg = cfg

    reg.add("plain", len)
    return reg


def test_unknown_name_is_one_error_listing_the_known_ones():
    reg = _registry()
    with pytest.raises(ReaviseError, match=r"^unknown widget 'boxx'; known: box, plain$"):
        reg.get("boxx")
    with pytest.raises(ReaviseError, match="unknown widget 'boxx'"):
        reg["boxx"]
    assert reg.names() == ["box", "plain"] == list(reg) == sorted(reg)
    assert "box" in reg and "boxx" not in reg and len(reg) == 2
    assert reg["plain"] is len and reg.get("box").registry_name == "box"


def test_duplicate_registration_is_refused():
    reg = _registry()
    with pytest.raises(ValueError, match="widget 'box' registered twice"):
        reg.add("box", object)
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("plain")(len)
    assert reg.get("plain") is len  # the first entry is kept


def test_unknown_config_key_names_it_and_the_known_ones():
    reg = _registry()
    with pytest.raises(ReaviseError, match=r"widget 'box': unknown settings \['sise'\]; known: \['shape', 'size'\]"):
        reg.build("box", {"sise": 3})
    with pytest.raises(ReaviseError, match=r"^unknown settings \['x'\]"):
        load_dataclass(_Cfg, {"x": 1})
    with pytest.raises(SettingError, match=r"widget 'box': size must be at least 1, got 0"):
        reg.build("box", {"size": 0})
    assert reg.build("box", {"size": 5}).cfg == _Cfg(size=5)
    assert reg.build("box").cfg == _Cfg()  # no values: the defaults
    assert reg.config("plain", {"a": 1}) == {"a": 1}  # no config class: values as given


def test_lists_become_tuples():
    cfg = load_dataclass(_Cfg, {"shape": [3, 4]})
    assert cfg.shape == (3, 4) and isinstance(cfg.shape, tuple)
    assert _registry().build("box", {"shape": [5]}).cfg.shape == (5,)


def test_data_registries_use_the_helper():
    from reavise.baselines import BASELINES, NOISE_ESTIMATORS
    from reavise.data.degrade import VISUAL_DEGRADATIONS
    from reavise.data.noise import NOISE_TYPES, register_noise
    from reavise.data.prepare import CORPORA, SCANNERS

    for reg in (BASELINES, NOISE_ESTIMATORS, VISUAL_DEGRADATIONS, NOISE_TYPES, SCANNERS):
        assert isinstance(reg, Registry)
    assert sorted(SCANNERS) == sorted(CORPORA)
    assert "mmse_lsa" in BASELINES and "occlusion" in VISUAL_DEGRADATIONS
    with pytest.raises(ValueError, match="noise type 'white' registered twice"):
        register_noise("white")(lambda n, rng, **_: rng.standard_normal(n))
    with pytest.raises(ReaviseError, match="unknown noise estimator 'median'; known: first_frames"):
        NOISE_ESTIMATORS["median"]
