"""``reavise data ...``: each module registers its own commands on this sub-app."""

from __future__ import annotations

import typer

app = typer.Typer(help="Corpora: synthesise, prepare, mix, preview.", no_args_is_help=True)

from . import mix_cli, prepare_cli, synth_cli  # noqa: E402

for _mod in (synth_cli, prepare_cli, mix_cli):
    _mod.register(app)
