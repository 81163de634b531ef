"""One registry helper for everything reavise builds by name (priors, algorithms, fusion
modules, noise types, visual degradations, ...), and one loader from plain dicts (YAML,
JSON, checkpoints) into typed config dataclasses that refuse unknown keys.

    PRIORS = Registry("model")

    @PRIORS.register("a-vae", AVAEConfig)
    class AVAE(SpeechPrior): ...

    PRIORS.build("a-vae", {"z_dim": 16})      # config from a dict, checked
    PRIORS.names()                              # sorted names

An entry is ``(obj, config_cls)``; ``config_cls`` may be None for entries without settings
(e.g. a noise generator function).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

from .errors import ReaviseError, SettingError


def load_dataclass(cls: type, values: dict[str, Any] | None, scope: str = "") -> Any:
    """``cls(**values)`` for a config dataclass: unknown keys are one error naming them and
    the known ones, lists become tuples where YAML/JSON gives lists for tuple fields, and a
    field's own check (``__post_init__``: SettingError) is scoped to ``scope``."""
    values = dict(values or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        where = f"{scope}: " if scope else ""
        raise ReaviseError(f"{where}unknown settings {unknown}; known: {sorted(fields)}")
    for name, value in values.items():
        if isinstance(value, list):
            values[name] = tuple(value)
    try:
        return cls(**values)
    except SettingError as exc:
        raise exc.within(scope=scope) if scope else exc from None


class Registry:
    """Named entries, each an object and its config dataclass (or None)."""

    def __init__(self, kind: str):
        self.kind = kind  # what an entry is, for messages: "model", "algorithm", ...
        self._entries: dict[str, tuple[Any, type | None]] = {}

    def register(self, name: str, config_cls: type | None = None) -> Callable[[Any], Any]:
        """Decorator: make the class or function buildable by ``name``; sets ``registry_name``
        on classes. A name registered twice is an error."""

        def deco(obj):
            self.add(name, obj, config_cls)
            return obj

        return deco

    def add(self, name: str, obj: Any, config_cls: type | None = None) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._entries[name] = (obj, config_cls)
        if isinstance(obj, type):
            obj.registry_name = name

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def entry(self, name: str) -> tuple[Any, type | None]:
        """``(obj, config_cls)``; an unknown name is one error listing the known ones."""
        if name not in self._entries:
            raise ReaviseError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        return self._entries[name]

    def get(self, name: str) -> Any:
        return self.entry(name)[0]

    def __getitem__(self, name: str) -> Any:
        """``registry[name]``, as for the dicts it replaces (an unknown name: ``entry``'s error)."""
        return self.get(name)

    def config(self, name: str, values: dict[str, Any] | Any | None = None) -> Any:
        """The config dataclass of ``name`` from a dict (checked) or as given."""
        cfg_cls = self.entry(name)[1]
        if cfg_cls is None or not (values is None or isinstance(values, dict)):
            return values
        return load_dataclass(cfg_cls, values, scope=f"{self.kind} {name!r}")

    def build(self, name: str, values: dict[str, Any] | Any | None = None) -> Any:
        """Instantiate ``name`` with its config (a dict is loaded through ``config``)."""
        return self.get(name)(self.config(name, values))
