"""Registry of speech priors by name, each with its typed config dataclass."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import ReaviseError
from ..registry import Registry, load_dataclass

#: every speech prior by name: ``(class, config dataclass)``
PRIORS = Registry("model")


def register_prior(name: str, config_cls: type):
    """Class decorator: make a prior buildable by ``name`` from a config dict (``PRIORS``)."""
    return PRIORS.register(name, config_cls)


def prior_names() -> list[str]:
    return PRIORS.names()


def make_config(name: str, values: dict[str, Any] | None = None):
    """Build the config dataclass of prior ``name``; unknown keys are an error."""
    cfg_cls = PRIORS.entry(name)[1]
    fields = {f.name for f in dataclasses.fields(cfg_cls)}
    unknown = sorted(set(values or {}) - fields)
    if unknown:
        raise ReaviseError(f"model {name!r}: unknown config keys {unknown}; known: {sorted(fields)}")
    config = load_dataclass(cfg_cls, values, scope=f"model {name!r}")
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
    return PRIORS.get(name)(config)
