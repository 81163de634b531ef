"""Self-describing checkpoints: one file with model name, config, weights and versions.

Any command loads a checkpoint with :func:`load_checkpoint` and no other flag. Published
state_dicts (the av-dkf/DVAE ``A-VAE.pt`` layout) are converted by :func:`import_published`.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..audio import DEFAULT_STFT, atomic_write
from ..errors import CheckpointError, ReaviseError
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


def load_weights_file(path: str | os.PathLike, kind: str = "checkpoint") -> Any:
    """``torch.load`` of a weights-only file (no code is unpickled) on the CPU; a missing or
    unreadable file is one CheckpointError line naming it as a ``kind``."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such {kind}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unreadable for any reason: one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable {kind} ({first[:160]})") from None


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load and validate a reavise checkpoint file (weights only: no code is unpickled)."""
    path = Path(path)
    payload = load_weights_file(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        hint = ""
        if isinstance(payload, dict) and any(k.startswith("mlp_x_z") for k in payload):
            hint = "; it looks like a published A-VAE state_dict: run `reavise import-checkpoint`"
        elif isinstance(payload, dict) and any(k.startswith(("rnn_g_x.", "rnn_gx.")) for k in payload):
            hint = "; it looks like a published RVAE/A-DKF state_dict: run `reavise import-checkpoint`"
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
        cfg = payload.get("config") or {}
        parts = [v for v in cfg.values() if isinstance(v, dict)]  # a combined prior: its parts'
        for x_dim in [cfg.get("x_dim")] + [p.get("x_dim") for p in parts]:
            check_bins(Path(path), x_dim)
    try:
        model = build_prior(payload["model"], payload["config"])
        model.load_state_dict(payload["state_dict"])
    except Exception as exc:
        raise CheckpointError(f"{path}: weights do not fit model {payload['model']!r} ({exc})") from None
    model.checkpoint_extra = payload.get("extra", {})
    return model.eval().to(device)


_LIN = re.compile(r"^(mlp_x_z|mlp_z_x)\.linear(\d+)\.(weight|bias)$")


#: published state_dict layouts: name -> (reavise prior, keys that identify it)
LAYOUTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "A-VAE": ("a-vae", ("mlp_x_z.linear0.weight", "inf_mean.weight", "inf_logvar.weight",
                        "mlp_z_x.linear0.weight", "gen_logvar.weight")),
    "RVAE": ("rvae", ("rnn_g_x.weight_ih_l0", "rnn_g_z.weight_ih_l0", "inf_mean.weight",
                      "inf_logvar.weight", "rnn_h.weight_ih_l0", "gen_logvar.weight")),
    "A-DKF": ("dkf", ("mlp_x_gx.linear0.weight", "rnn_gx.weight_ih_l0", "mlp_ztm1_g.linear_last.weight",
                      "inf_mean.weight", "inf_logvar.weight", "mlp_gate.linear1.weight",
                      "mlp_z_prop.linear1.weight", "prior_mean.weight", "prior_logvar.1.weight",
                      "mlp_z_x.linear0.weight", "gen_logvar.weight")),
}  # fmt: skip


def recognise_layout(src: Path, sd: dict) -> str:
    """The name of the published layout (``LAYOUTS``) whose keys ``sd`` holds; otherwise a
    one-line CheckpointError naming the closest layout's missing keys."""
    found = [name for name, (_, keys) in LAYOUTS.items() if all(k in sd for k in keys)]
    if found:
        return found[-1]  # the most specific (the A-DKF also holds inf_* like the A-VAE)
    names = ", ".join(LAYOUTS)
    if not isinstance(sd, dict) or not sd:
        raise CheckpointError(f"{src}: not a published A-VAE, RVAE or A-DKF state_dict (layouts: {names})")
    best = max(LAYOUTS, key=lambda n: sum(k in sd for k in LAYOUTS[n][1]) / len(LAYOUTS[n][1]))
    missing = [k for k in LAYOUTS[best][1] if k not in sd]
    raise CheckpointError(
        f"{src}: not a published A-VAE, RVAE or A-DKF state_dict (closest: {best}, missing keys "
        f"{', '.join(missing)})"
    )


def read_published_config(src: Path) -> dict[str, str]:
    """The [Network] section of the ``config.ini`` beside ``src`` ({} when there is none)."""
    import configparser

    ini = src.parent / "config.ini"
    if not ini.exists():
        return {}
    cp = configparser.ConfigParser(inline_comment_prefixes=("#",))
    try:
        cp.read(ini)
    except configparser.Error as exc:
        raise CheckpointError(f"{ini}: unreadable config ({str(exc).splitlines()[0][:120]})") from None
    return dict(cp["Network"]) if cp.has_section("Network") else {}


def _lstm_shape(sd: dict, name: str) -> tuple[int, int, int, bool]:
    """(input size, hidden size, layers, bidirectional) of the LSTM ``name`` in ``sd``."""
    n_layers = 0
    while f"{name}.weight_ih_l{n_layers}" in sd:
        n_layers += 1
    w = sd[f"{name}.weight_ih_l0"]
    return int(w.shape[1]), int(sd[f"{name}.weight_hh_l0"].shape[1]), n_layers, f"{name}.weight_ih_l0_reverse" in sd


def _dense_sizes(sd: dict, name: str, last: bool = False) -> tuple[int, ...]:
    """Output sizes of the layers ``name.linear{i}`` (and ``linear_last`` when ``last``)."""
    idx = sorted(int(m.group(1)) for k in sd if (m := re.match(rf"^{re.escape(name)}\.linear(\d+)\.weight$", k)))
    return tuple(int(sd[f"{name}.linear{i}.weight"].shape[0]) for i in idx)


def _rvae_config(src: Path, sd: dict, ini: dict) -> dict:
    extra = sorted({k.split(".")[0] for k in sd if k.startswith(("mlp_x_gx.", "mlp_z_gz.", "mlp_g_z.", "mlp_z_h.", "mlp_h_x."))})
    if extra:
        raise CheckpointError(f"{src}: RVAE with dense layers ({', '.join(extra)}) is not supported")
    x_dim, gx, ngx, bgx = _lstm_shape(sd, "rnn_g_x")
    _, gz, ngz, _ = _lstm_shape(sd, "rnn_g_z")
    _, h, nh, bh = _lstm_shape(sd, "rnn_h")
    return {"x_dim": x_dim, "z_dim": int(sd["inf_mean.weight"].shape[0]), "dim_rnn_g_x": gx,
            "num_rnn_g_x": ngx, "bidir_g_x": bgx, "dim_rnn_g_z": gz, "num_rnn_g_z": ngz,
            "dim_rnn_h": h, "num_rnn_h": nh, "bidir_h": bh}  # fmt: skip


def _dkf_config(src: Path, sd: dict, ini: dict) -> dict:
    _, gx, ngx, bgx = _lstm_shape(sd, "rnn_gx")
    transition = ini.get("inference", "gated").strip() or "gated"
    activation = ini.get("activation", "tanh").strip() or "tanh"
    mode = ini.get("vae_mode", "A-DKF").strip()
    if mode not in ("", "A-DKF"):
        raise CheckpointError(f"{src}: {mode} checkpoints are not supported (audio-only A-DKF only)")
    if ini.get("rnn", "LSTM").strip() not in ("", "LSTM"):
        raise CheckpointError(f"{src}: DKF with rnn = {ini['rnn']} is not supported (LSTM only)")
    return {"x_dim": int(sd["gen_logvar.weight"].shape[0]), "z_dim": int(sd["inf_mean.weight"].shape[0]),
            "activation": activation, "dense_x_gx": _dense_sizes(sd, "mlp_x_gx"), "dim_rnn_gx": gx,
            "num_rnn_gx": ngx, "bidir_gx": bgx, "dense_ztm1_g": _dense_sizes(sd, "mlp_ztm1_g"),
            "dense_g_z": _dense_sizes(sd, "mlp_g_z"), "dense_z_x": _dense_sizes(sd, "mlp_z_x"),
            "transition": transition, "gate_layers": sum(1 for k in sd if re.match(r"^mlp_gate\.linear\d+\.weight$", k)),
            "prop_layers": sum(1 for k in sd if re.match(r"^mlp_z_prop\.linear\d+\.weight$", k))}  # fmt: skip


def import_published(
    src: str | os.PathLike, dst: str | os.PathLike, report: Callable[[str], None] | None = None
) -> Path:
    """Convert a published state_dict to a reavise checkpoint; the layout is recognised by
    its keys (:data:`LAYOUTS`): the audio-only VAE of av-dkf / DVAE (A-VAE), the DVAE RVAE,
    or the av-dkf A-DKF (whose activation and transition are read from the ``config.ini``
    beside ``src`` when there is one). ``report`` receives one line naming what was found.
    """
    src = Path(src)
    try:
        sd = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{src}: not a readable PyTorch file ({str(exc).splitlines()[0][:160]})") from None
    if isinstance(sd, dict) and sd.get("format") == FORMAT:
        raise CheckpointError(f"{src}: not a published A-VAE, RVAE or A-DKF state_dict (already a reavise checkpoint)")
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    layout = recognise_layout(src, sd if isinstance(sd, dict) else {})
    if layout == "A-VAE":
        if any(k.startswith(("rnn_", "rnn.")) for k in sd):
            raise CheckpointError(f"{src}: recurrent checkpoint of an unknown layout")
        model = _import_a_vae(src, sd)
    else:
        ini = read_published_config(src)
        name = LAYOUTS[layout][0]
        cfg = (_rvae_config if layout == "RVAE" else _dkf_config)(src, sd, ini)
        check_bins(src, cfg["x_dim"])
        try:
            model = build_prior(name, cfg)
            model.load_state_dict({k: v for k, v in sd.items()})
        except (RuntimeError, ReaviseError) as exc:
            raise CheckpointError(f"{src}: layer sizes do not fit the {layout} layout ({str(exc).splitlines()[0][:200]})") from None
    if report is not None:
        n = sum(p.numel() for p in model.parameters())
        beside = " (with the config.ini beside it)" if layout != "A-VAE" and (src.parent / "config.ini").exists() else ""
        report(f"found the published {layout} layout{beside}: reavise model {model.registry_name!r}, {n:,} parameters")
    return save_checkpoint(dst, model, extra={"imported_from": src.name, "layout": layout})


def _import_a_vae(src: Path, sd: dict):
    """The published A-VAE state_dict as a reavise ``a-vae``: keys ``mlp_x_z.linear{i}``
    (encoder MLP), ``inf_mean``, ``inf_logvar``, ``mlp_z_x.linear{i}`` (decoder MLP),
    ``gen_logvar``; activation tanh."""
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
    return model
