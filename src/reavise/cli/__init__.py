"""The ``reavise`` command line: one entry point, one subcommand per job.

This package holds the app, :func:`main` and the error mapping; ``options`` the option
callbacks and helpers the commands share; one module per command group (``train``,
``enhance``, ``evaluate``, ``models``, ``import_checkpoint`` (also ``combine``), ``benchmark``, ``report``,
``data``, ``lipreader``), each a thin call into the library with a ``register(app)`` that adds its commands.
The command modules import ``options``, never this module, and this module imports them only
when the command tree is built: no import cycle, and ``--help`` loads no torch.

Every user error ends as one line ``error: ...`` on stderr and exit code 2: ReaviseError
from the work, usage errors from typer (which bundles its own click: ``typer._click``), and
file-system errors. Option values are checked while the command line is parsed: integer
bounds with ``min=``, every float must be finite, and the callbacks of ``options``.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import types
import typing

import typer
from typer import _click

from ..errors import ReaviseError

app = typer.Typer(
    help="reavise: unsupervised audio-visual speech enhancement.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# --- the command tree ----------------------------------------------------------------------
def _register() -> None:
    """Attach the subcommands: each module adds its own (in the order of ``reavise --help``;
    ``data`` is a group, listed last)."""
    if getattr(_register, "done", False):
        return
    from . import (
        benchmark,
        data,
        enhance,
        evaluate,
        import_checkpoint,
        lipreader,
        models,
        report,
        train,
    )

    for module in (evaluate, train, lipreader, enhance, import_checkpoint, models, benchmark, report):
        module.register(app)
    data_app = typer.Typer(help=data.HELP, no_args_is_help=True)
    data.register(data_app)
    app.add_typer(data_app, name="data")
    _register.done = True


def iter_commands(command, path: tuple[str, ...] = ()):
    """(path, click command) for every leaf command of the tree under ``command``."""
    subs = getattr(command, "commands", None)
    if subs:
        for name, sub in sorted(subs.items()):
            yield from iter_commands(sub, (*path, name))
    else:
        yield path, command


def is_float_param(param) -> bool:
    """Whether a typer parameter holds a float (``float`` or ``float | None``)."""
    ann = param.type_descriptor.annotation
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        ann = args[0] if len(args) == 1 else None
    return ann is float


def _finite(callback):
    def check(ctx, param, value):
        if isinstance(value, float) and not math.isfinite(value):
            raise _click.exceptions.BadParameter(
                f"must be a finite number, got {value}", ctx=ctx, param=param
            )
        return callback(ctx, param, value) if callback is not None else value

    return check


def build_command():
    """The click command tree of ``app``, with every float option checked to be finite."""
    _register()
    root = typer.main.get_command(app)
    for _, cmd in iter_commands(root):
        for param in cmd.params:
            if hasattr(param, "type_descriptor") and is_float_param(param):
                param.callback = _finite(param.callback)
    return root


# --- errors as one line --------------------------------------------------------------------
def _param_name(param) -> str:
    if param is None:
        return ""
    if param.param_type_name == "option":
        longs = [o for o in param.opts if o.startswith("--")]
        return (longs or param.opts)[0]
    return param.metavar or (param.name or "").upper()


_PYDANTIC = {
    "int_parsing": "must be an integer, got {input!r}",
    "int_from_float": "must be an integer, got {input}",
    "float_parsing": "must be a number, got {input!r}",
    "bool_parsing": "must be true or false, got {input!r}",
    "greater_than_equal": "must be at least {ge}, got {input}",
    "greater_than": "must be greater than {gt}, got {input}",
    "less_than_equal": "must be at most {le}, got {input}",
    "less_than": "must be less than {lt}, got {input}",
    "finite_number": "must be a finite number, got {input}",
}


def _bad_value(exc) -> str:
    """What is wrong with the value of a BadParameter (pydantic's reason made short)."""
    cause = exc.__cause__
    errors = getattr(cause, "errors", None)
    if callable(errors):
        try:
            err = errors()[0]
        except Exception:  # noqa: BLE001  (fall back to typer's text)
            err = None
        if err is not None:
            fmt = _PYDANTIC.get(err.get("type"))
            fields = {"input": err.get("input"), **(err.get("ctx") or {})}
            if fmt is not None:
                return fmt.format(**fields)
            msg = str(err.get("msg", "")).rstrip(".")
            return f"{msg[:1].lower()}{msg[1:]}, got {fields['input']!r}"
    msg = str(exc.message).strip().rstrip(".")
    return msg[:1].lower() + msg[1:]


def usage_message(exc) -> str:
    """One line for a typer/click usage error."""
    param = getattr(exc, "param", None)
    ctx = getattr(exc, "ctx", None)
    see = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    if isinstance(exc, _click.exceptions.MissingParameter):
        kind = exc.param_type or (param.param_type_name if param is not None else "parameter")
        return f"missing {kind} {_param_name(param)}{see}".replace("  ", " ")
    if isinstance(exc, _click.exceptions.BadParameter):
        name = _param_name(param) or (exc.param_hint if isinstance(exc.param_hint, str) else "")
        return f"{name}: {_bad_value(exc)}" if name else _bad_value(exc)
    msg = " ".join(str(exc.format_message()).split())
    return f"{msg[:1].lower()}{msg[1:]}{see}"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _fail(message: str, code: int = 2) -> typing.NoReturn:
    typer.echo(f"error: {_one_line(message)}", err=True)
    sys.exit(code)


class _LowerLevel(logging.Formatter):
    """``warning: message`` (the project's one-line style)."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


class _StderrHandler(logging.StreamHandler):
    """Writes to the current ``sys.stderr`` (also when a caller swapped it, as tests do)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it
        pass


def _setup_logging() -> None:
    """Warnings (ours and libraries') as ``warning: ...`` lines on stderr, once each."""
    root = logging.getLogger()
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler()
        handler.setLevel(logging.WARNING)  # libraries' INFO records propagate here too
        handler.setFormatter(_LowerLevel())
        root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one line on stderr and exit code 2."""
    # before torch loads libgomp (it reads this once): idle OpenMP threads spin ~0.2 ms, then
    # sleep. libgomp's default (~3 ms of spinning) slowed enhancement ~6x on a busy machine;
    # sleeping at once (OMP_WAIT_POLICY=PASSIVE) costs ~10 % on a quiet one (docs/inference.md)
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", "20000")
    _setup_logging()
    command = build_command()
    try:
        rc = command.main(
            args=sys.argv[1:] if argv is None else argv, prog_name="reavise", standalone_mode=False
        )
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except ReaviseError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    except _click.exceptions.NoArgsIsHelpError:
        sys.exit(2)  # the help text is already printed
    except _click.exceptions.ClickException as exc:
        _fail(usage_message(exc))
    except OSError as exc:  # a file the checks above did not foresee (disk full, permissions)
        where = exc.filename if exc.filename is not None else ""
        _fail(f"{where}: {exc.strerror or exc}" if where else f"{exc.strerror or exc}")
