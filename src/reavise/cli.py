"""The ``reavise`` command line: one entry point, one subcommand per job."""

from __future__ import annotations

import logging
import os
import sys

import typer

from .errors import ReaviseError

app = typer.Typer(
    help="reavise: unsupervised audio-visual speech enhancement.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register() -> None:
    """Attach the subcommands; each lives in the module that does the work."""
    from .data.cli import app as data_app

    app.add_typer(data_app, name="data")
    from . import commands  # noqa: F401  (registers train/enhance/evaluate/... on `app`)


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit code 2."""
    # before torch loads libgomp (it reads this once): idle OpenMP threads sleep instead of
    # spinning, which on a busy machine slowed enhancement ~6x (docs/inference.md)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    # libraries' INFO records propagate to the root handler too: print them once (their own)
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.WARNING)
    _register()
    try:
        rc = app(standalone_mode=False)
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except ReaviseError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(1)
        raise
