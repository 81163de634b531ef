"""Top-level subcommands (train, enhance, evaluate, import-checkpoint, ...)."""

from __future__ import annotations

from . import evaluate_cli
from .cli import app

evaluate_cli.register(app)
