"""Speech priors shipped with reavise: pretrained on the built-in synthetic corpus, and on the
real face videos of GRID talker s1 (CC BY 4.0).

``resolve(name_or_path)`` is the one place where a checkpoint argument (``--model``, a
benchmark config's ``checkpoint:``) becomes a file: an existing path wins, otherwise a shipped
prior's name. Data, recipe, seed and licence of each file: ``MODEL_CARD.md`` beside this
module; ``make pretrained`` rebuilds the synthetic ones (recipes in ``configs/pretrained/``),
``make pretrained-grid`` the GRID ones (recipes in ``configs/grid/``).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import CheckpointError

HERE = Path(__file__).resolve().parent

#: shipped prior name -> file in this package
SHIPPED: dict[str, str] = {
    "a-vae-synth": "a-vae-synth.pt",
    "av-cvae-synth": "av-cvae-synth.pt",
    "grid-s1-a-vae": "grid-s1-a-vae.pt",
    "grid-s1-av-concat": "grid-s1-av-concat.pt",
    "grid-s1-av-attention": "grid-s1-av-attention.pt",
}


def shipped() -> dict[str, Path]:
    """Every shipped prior's name and file (files missing from this install are left out)."""
    return {name: HERE / f for name, f in SHIPPED.items() if (HERE / f).is_file()}


def resolve(name_or_path: str | os.PathLike, base: str | os.PathLike | None = None) -> Path:
    """The checkpoint file meant by ``name_or_path``: an existing file (relative paths are
    taken relative to ``base`` when given), else the shipped prior of that name.

    Raises CheckpointError (one line) when it is neither.
    """
    text = os.fspath(name_or_path)
    p = Path(text).expanduser()
    if base is not None and not p.is_absolute():
        p = Path(base) / p
    if p.is_file():
        return p
    if text in SHIPPED:
        f = HERE / SHIPPED[text]
        if f.is_file():
            return f
        raise CheckpointError(f"{text}: shipped prior file {f.name} is missing from this install")
    names = ", ".join(sorted(SHIPPED))
    if p.is_dir():
        raise CheckpointError(f"{p}: is a folder, not a checkpoint file")
    raise CheckpointError(f"{p}: no such file, and not the name of a shipped prior ({names})")
