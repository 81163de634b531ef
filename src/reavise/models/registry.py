"""Registry of speech priors by name, each with its typed config dataclass."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import ReaviseError

PRIORS: dict[str, tuple[type, type]] = {}


def register_prior(name: str, config_cls: type):
    """Class decorator: make a prior buildable by ``name`` from a config dict."""

    def deco(cls):
        if name in PRIORS:
            raise ValueError(f"prior {name!r} registered twice")
        PRIORS[name] = (cls, config_cls)
        cls.registry_name = name
        return cls

    return deco


def prior_names() -> list[str]:
    return sorted(PRIORS)


def make_config(name: str, values: dict[str, Any] | None = None):
    """Build the config dataclass of prior ``name``; unknown keys are an error."""
    if name not in PRIORS:
        raise ReaviseError(f"unknown model {name!r}; known: {', '.join(prior_names())}")
    cfg_cls = PRIORS[name][1]
    values = dict(values or {})
    fields = {f.name for f in dataclasses.fields(cfg_cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ReaviseError(f"model {name!r}: unknown config keys {unknown}; known: {sorted(fields)}")
    for f in dataclasses.fields(cfg_cls):  # JSON/YAML gives lists where configs hold tuples
        if f.name in values and isinstance(values[f.name], list):
            values[f.name] = tuple(values[f.name])
    config = cfg_cls(**values)
    from ..validate import check_fields

    check_fields(config, scope=f"model {name!r}")  # types: z_dim=abc is one line, not a crash
    check_ranges(config, scope=f"model {name!r}")
    return config


#: least value of the integer sizes every prior config may hold (by field name)
_MIN_SIZE = {"x_dim": 1, "z_dim": 1, "embedding_dim": 0, "visual_hidden": 1, "roi_size": 8,
             "fusion_heads": 1, "fusion_window": 0, "temporal_kernel": 1}  # fmt: skip
#: fields that are probabilities
_FRACTIONS = ("mix_visual", "switch_stay")


def check_ranges(config: Any, scope: str = "") -> None:
    """Sizes and probabilities of a prior config in range (z_dim=0 is one line, not a crash)."""
    from ..errors import SettingError
    from ..validate import at_least, within

    names = {f.name for f in dataclasses.fields(config)}
    for key, low in _MIN_SIZE.items():
        if key in names:
            at_least(config, key, low, scope)
    for key in _FRACTIONS:
        if key in names:
            within(config, key, 0.0, 1.0, scope)
    hidden = getattr(config, "hidden", None)
    if hidden is not None and (len(hidden) == 0 or min(hidden) < 1):
        raise SettingError("hidden", f"must list one or more layer sizes >= 1, got {hidden!r}", scope)


def build_prior(name: str, config: dict[str, Any] | Any | None = None):
    """Instantiate prior ``name`` from a config dataclass or dict."""
    if config is None or isinstance(config, dict):
        config = make_config(name, config)
    return PRIORS[name][0](config)
