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
    return config


def build_prior(name: str, config: dict[str, Any] | Any | None = None):
    """Instantiate prior ``name`` from a config dataclass or dict."""
    if config is None or isinstance(config, dict):
        config = make_config(name, config)
    return PRIORS[name][0](config)
