"""Self-describing checkpoints: one file with model name, config, weights and versions.

Any command loads a checkpoint with :func:`load_checkpoint` and no other flag. Published
state_dicts (the av-dkf/DVAE ``A-VAE.pt`` layout) are converted by :func:`import_published`.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import re
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..audio import DEFAULT_STFT, atomic_write
from ..errors import CheckpointError
from .registry import PRIORS, build_prior

FORMAT = "reavise-checkpoint"
FORMAT_VERSION = 1


def _config_dict(config: Any) -> dict:
    d = dataclasses.asdict(config)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def save_checkpoint(
    path: str | os.PathLike, model, extra: dict[str, Any] | None = None
) -> Path:
    """Atomically write ``model`` (a registered prior) with everything needed to rebuild it."""
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model.registry_name,
        "config": _config_dict(model.config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "stft": dataclasses.asdict(DEFAULT_STFT),
        "versions": {
            "reavise": __version__,
            "torch": str(torch.__version__),
            "python": platform.python_version(),
        },
        "extra": extra or {},
    }
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load and validate a reavise checkpoint file (weights only: no code is unpickled)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({first[:160]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        hint = ""
        if isinstance(payload, dict) and any(k.startswith("mlp_x_z") for k in payload):
            hint = "; it looks like a published A-VAE state_dict: run `reavise import-checkpoint`"
        elif isinstance(payload, dict) and "pytorch-lightning_version" in payload:
            hint = "; it is a Lightning training checkpoint: use the exported .pt beside it"
        raise CheckpointError(f"{path}: not a reavise checkpoint{hint}")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {payload['format_version']} is newer than this reavise "
            f"understands ({FORMAT_VERSION}); upgrade reavise"
        )
    if payload.get("model") not in PRIORS:
        raise CheckpointError(
            f"{path}: checkpoint of unknown model {payload.get('model')!r}; known: {sorted(PRIORS)}"
        )
    check_stft(path, payload.get("stft"))
    return payload


def check_stft(path: Path, stored: Any) -> None:
    """Refuse a checkpoint whose stored ``stft`` settings differ from reavise's STFT.

    ``stored``: the checkpoint's ``stft`` dict (absent in files written without it: taken
    as :data:`reavise.audio.DEFAULT_STFT`).
    """
    if stored is None:
        return
    if not isinstance(stored, dict):
        raise CheckpointError(f"{path}: malformed 'stft' entry ({type(stored).__name__})")
    ours = dataclasses.asdict(DEFAULT_STFT)
    diff = [f"{k} {stored[k]!r}" for k in ours if k in stored and stored[k] != ours[k]]
    if diff:
        want = ", ".join(f"{k} {v!r}" for k, v in ours.items())
        raise CheckpointError(f"{path}: trained with another STFT ({', '.join(diff)}; reavise uses {want})")


def check_bins(path: Path, x_dim: Any) -> None:
    """Refuse a prior whose number of frequency bins is not the one reavise's STFT gives."""
    if x_dim is not None and x_dim != DEFAULT_STFT.n_bins:
        raise CheckpointError(
            f"{path}: model has {x_dim} frequency bins, but reavise's STFT (n_fft "
            f"{DEFAULT_STFT.n_fft}) gives {DEFAULT_STFT.n_bins}"
        )


def load_checkpoint(
    path: str | os.PathLike, device: str | torch.device = "cpu", check_x_dim: bool = True
):
    """Rebuild the prior stored in ``path``, in eval mode on ``device``.

    The prior must take reavise's spectrograms (513 bins); ``check_x_dim=False`` skips that
    check (synthetic tests with a few bins).
    """
    payload = read_checkpoint(path)
    if check_x_dim:
        check_bins(Path(path), (payload.get("config") or {}).get("x_dim"))
    try:
        model = build_prior(payload["model"], payload["config"])
        model.load_state_dict(payload["state_dict"])
    except Exception as exc:
        raise CheckpointError(f"{path}: weights do not fit model {payload['model']!r} ({exc})") from None
    model.checkpoint_extra = payload.get("extra", {})
    return model.eval().to(device)


_LIN = re.compile(r"^(mlp_x_z|mlp_z_x)\.linear(\d+)\.(weight|bias)$")


def import_published(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Convert a published audio-only VAE state_dict (av-dkf / DVAE layout) to reavise.

    Keys ``mlp_x_z.linear{i}`` (encoder MLP), ``inf_mean``, ``inf_logvar``,
    ``mlp_z_x.linear{i}`` (decoder MLP), ``gen_logvar``; activation tanh.
    """
    src = Path(src)
    try:
        sd = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{src}: not a readable PyTorch file ({str(exc).splitlines()[0][:160]})") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or "gen_logvar.weight" not in sd or "inf_mean.weight" not in sd:
        raise CheckpointError(
            f"{src}: not a published A-VAE state_dict (expected keys mlp_x_z.*, inf_mean.*, "
            "inf_logvar.*, mlp_z_x.*, gen_logvar.*)"
        )
    rnn = [k for k in sd if k.startswith(("rnn_", "rnn."))]
    if rnn:
        raise CheckpointError(f"{src}: recurrent (RVAE/DVAE) checkpoints are not supported yet")
    enc_layers = sorted({int(m.group(2)) for k in sd if (m := _LIN.match(k)) and m.group(1) == "mlp_x_z"})
    dec_layers = sorted({int(m.group(2)) for k in sd if (m := _LIN.match(k)) and m.group(1) == "mlp_z_x"})
    hidden = tuple(int(sd[f"mlp_x_z.linear{i}.weight"].shape[0]) for i in enc_layers)
    x_dim = int(sd["gen_logvar.weight"].shape[0])
    check_bins(src, x_dim)
    z_dim = int(sd["inf_mean.weight"].shape[0])
    new: dict[str, torch.Tensor] = {}
    for n, i in enumerate(enc_layers):
        for p in ("weight", "bias"):
            new[f"enc.{2 * n}.{p}"] = sd[f"mlp_x_z.linear{i}.{p}"]
    for n, i in enumerate(dec_layers):
        for p in ("weight", "bias"):
            new[f"dec.{2 * n}.{p}"] = sd[f"mlp_z_x.linear{i}.{p}"]
    for p in ("weight", "bias"):
        new[f"enc_mean.{p}"] = sd[f"inf_mean.{p}"]
        new[f"enc_logvar.{p}"] = sd[f"inf_logvar.{p}"]
        new[f"dec_logvar.{p}"] = sd[f"gen_logvar.{p}"]
    model = build_prior(
        "a-vae", {"x_dim": x_dim, "z_dim": z_dim, "hidden": hidden, "activation": "tanh"}
    )
    try:
        model.load_state_dict(new)
    except RuntimeError as exc:
        raise CheckpointError(f"{src}: layer sizes do not fit an A-VAE ({exc})") from None
    return save_checkpoint(dst, model, extra={"imported_from": src.name})
