"""``python -m reavise``: the same entry point as the ``reavise`` command."""

from .cli import main

main()
