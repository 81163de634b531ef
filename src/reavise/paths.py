"""File names made from names: one sanitiser for corpus ids, mixture ids and benchmark folders."""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(name: object, fill: str = "_") -> str:
    """``name`` as one file-name component: every run of characters other than ASCII letters,
    digits, ``.``, ``_`` and ``-`` becomes ``fill``, ``fill`` is trimmed from both ends, and a
    result that is empty or only dots (``""``, ``"."``, ``".."``: no name, or this or the
    parent folder) becomes ``"x"``.

    ``fill`` is ``"-"`` for the utterance ids of ``data prepare`` and ``"_"`` elsewhere;
    each is kept as it was because corpora, mixtures and benchmark caches on disk are named
    with it.

    >>> safe_name("a-vae (z=16)"), safe_name("s 01/take 2", fill="-"), safe_name("..")
    ('a-vae_z_16', 's-01-take-2', 'x')
    """
    s = _UNSAFE.sub(fill, str(name)).strip(fill)
    return s if s.strip(".") else "x"
