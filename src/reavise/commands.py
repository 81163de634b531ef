"""Top-level subcommands (train, enhance, evaluate, import-checkpoint, ...)."""

from __future__ import annotations

from .cli import app  # noqa: F401
