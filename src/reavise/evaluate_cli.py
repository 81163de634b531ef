"""CLI command `reavise evaluate` (placeholder until implemented)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add `evaluate` to the top-level app."""
