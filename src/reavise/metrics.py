"""Speech-enhancement metrics: SI-SDR, PESQ-WB, PESQ-NB, STOI, ESTOI, and folder-level evaluation.

Conventions (used everywhere in reavise, and matching the figures in the shared-data README):

* **SI-SDR** follows Le Roux et al., "SDR - half-baked or well done?", ICASSP 2019. Both signals
  are made zero-mean first (the paper's reference code does the same), then the reference is
  scaled by the optimal ``alpha = <est, ref> / ||ref||^2`` and
  ``SI-SDR = 10 log10(||alpha ref||^2 / ||est - alpha ref||^2)`` in dB.
* **PESQ** is ITU-T P.862.2 wide-band (``pesq`` package, mode ``'wb'``) at 16 kHz; its range
  is about 1.04 .. 4.64 (identical signals). **PESQ-NB** is P.862 narrow-band with the
  P.862.1 MOS-LQO mapping (mode ``'nb'``) on the signals resampled to 8 kHz (1.02 .. 4.55).
* **STOI / ESTOI** are Taal et al. 2011 / Jensen & Taal 2016 via ``pystoi`` (which resamples to
  10 kHz internally); range 0 .. 1.
* Argument order is always ``(est, ref)`` (estimate first, clean reference second).
"""

from __future__ import annotations

import csv
import logging
import math
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .audio import DEFAULT_STFT, SAMPLE_RATE, atomic_write, load_audio, resample
from .errors import InputError, ReaviseError

log = logging.getLogger(__name__)

#: the sample rate of narrow-band PESQ (P.862)
NB_RATE = 8000

#: Metric columns produced by :func:`evaluate_pair`, in display order.
METRICS: tuple[str, ...] = ("si_sdr", "pesq", "pesq_nb", "stoi", "estoi")
#: Improvement columns added by :func:`evaluate_pair` when the noisy input is given.
IMPROVEMENTS: tuple[str, ...] = ("si_sdr_i", "pesq_i", "estoi_i")
#: Display names / units for tables.
LABELS: dict[str, str] = {
    "si_sdr": "SI-SDR (dB)",
    "pesq": "PESQ-WB",
    "pesq_nb": "PESQ-NB",
    "stoi": "STOI",
    "estoi": "ESTOI",
    "si_sdr_i": "SI-SDRi (dB)",
    "pesq_i": "PESQ-WB i",
    "estoi_i": "ESTOI i",
}


# --------------------------------------------------------------------------- input checks


def _as_1d(x: np.ndarray | torch.Tensor | Sequence[float], name: str) -> np.ndarray:
    """Float64 1-D copy of ``x`` with a clear error for wrong shapes or non-finite values."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 2 and 1 in a.shape:
        a = a.reshape(-1)
    if a.ndim != 1:
        raise InputError(f"{name}: expected a mono 1-D signal, got shape {tuple(a.shape)}")
    if a.size == 0:
        raise InputError(f"{name}: empty signal")
    if not np.all(np.isfinite(a)):
        raise InputError(f"{name}: signal contains NaN or infinite samples")
    return a


def default_len_tolerance(sr: int = SAMPLE_RATE) -> int:
    """Largest accepted est/ref length difference: one STFT hop at 16 kHz (16 ms), scaled to sr.

    An iSTFT without an explicit ``length`` loses at most hop-1 samples; anything larger means
    the two files are not the same utterance (or one is delayed) and must not be trimmed.
    """
    return int(math.ceil(DEFAULT_STFT.hop * sr / DEFAULT_STFT.sample_rate))


def match_lengths(
    est: np.ndarray,
    ref: np.ndarray,
    sr: int = SAMPLE_RATE,
    tolerance: int | None = None,
    names: tuple[str, str] = ("estimate", "reference"),
) -> tuple[np.ndarray, np.ndarray]:
    """Trim both signals to the shorter length; error if they differ by more than ``tolerance``."""
    tol = default_len_tolerance(sr) if tolerance is None else tolerance
    n_e, n_r = len(est), len(ref)
    if abs(n_e - n_r) > tol:
        raise InputError(
            f"{names[0]} has {n_e} samples but {names[1]} has {n_r} "
            f"(difference {abs(n_e - n_r)} > tolerance {tol} samples at {sr} Hz); "
            "are they the same utterance?"
        )
    n = min(n_e, n_r)
    return est[:n], ref[:n]


# --------------------------------------------------------------------------- SI-SDR


def si_sdr(est: np.ndarray | torch.Tensor, ref: np.ndarray | torch.Tensor) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019) of one estimate against its reference.

    Both signals are made zero-mean, then ``alpha = <est, ref> / ||ref||^2`` projects the
    estimate on the reference: target ``s = alpha ref``, residual ``e = est - s``, and
    ``SI-SDR = 10 log10(||s||^2 / ||e||^2)``. Equal lengths are required (see
    :func:`match_lengths`). A perfect estimate gives ``+inf``; a silent reference raises.
    """
    e = _as_1d(est, "estimate")
    r = _as_1d(ref, "reference")
    if e.shape != r.shape:
        raise InputError(f"si_sdr: length mismatch ({len(e)} vs {len(r)} samples)")
    e = e - e.mean()
    r = r - r.mean()
    ref_energy = float(r @ r)
    if ref_energy == 0.0:
        raise InputError("si_sdr: the reference is silent (zero energy after removing the mean)")
    alpha = float(e @ r) / ref_energy
    target = alpha * r
    resid = e - target
    num = float(target @ target)
    den = float(resid @ resid)
    if den == 0.0:
        return math.inf
    if num == 0.0:
        return -math.inf
    return 10.0 * math.log10(num / den)


def si_sdr_torch(est: torch.Tensor, ref: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Batched, differentiable SI-SDR in dB: ``est``, ``ref`` [..., N] -> [...].

    Same definition as :func:`si_sdr` (zero-mean, optimal scaling of the reference); ``eps``
    keeps the ratio and its gradient finite for silent inputs. Use ``-si_sdr_torch(...).mean()``
    as a training loss.
    """
    if est.shape != ref.shape:
        raise InputError(f"si_sdr_torch: shape mismatch {tuple(est.shape)} vs {tuple(ref.shape)}")
    e = est - est.mean(dim=-1, keepdim=True)
    r = ref - ref.mean(dim=-1, keepdim=True)
    # alpha = <e, r> / ||r||^2, per batch element
    alpha = (e * r).sum(-1, keepdim=True) / (r.square().sum(-1, keepdim=True) + eps)
    target = alpha * r
    resid = e - target
    ratio = (target.square().sum(-1) + eps) / (resid.square().sum(-1) + eps)
    return 10.0 * torch.log10(ratio)


# --------------------------------------------------------------------------- PESQ / STOI


def pesq_wb(est: np.ndarray, ref: np.ndarray, sr: int = SAMPLE_RATE) -> float:
    """Wide-band PESQ (P.862.2) via the ``pesq`` package; signals are resampled to 16 kHz.

    Returns NaN (with a warning) when PESQ finds no utterance, e.g. on silence.
    """
    e = _as_1d(est, "estimate")
    r = _as_1d(ref, "reference")
    if sr != SAMPLE_RATE:  # P.862.2 is defined at 16 kHz only
        e = resample(e, sr, SAMPLE_RATE).astype(np.float64)
        r = resample(r, sr, SAMPLE_RATE).astype(np.float64)
    e, r = match_lengths(e, r, SAMPLE_RATE, tolerance=default_len_tolerance(SAMPLE_RATE) + 8)
    return _pesq(e, r, SAMPLE_RATE, "wb")


def pesq_nb(est: np.ndarray, ref: np.ndarray, sr: int = SAMPLE_RATE) -> float:
    """Narrow-band PESQ (P.862 with the P.862.1 mapping) via the ``pesq`` package, on the
    signals resampled to 8 kHz (its only narrow-band rate). NaN (with a warning) when PESQ
    finds no utterance."""
    e = _as_1d(est, "estimate")
    r = _as_1d(ref, "reference")
    e, r = match_lengths(e, r, sr, tolerance=default_len_tolerance(sr) + 8)
    if sr != NB_RATE:
        e = resample(e, sr, NB_RATE).astype(np.float64)
        r = resample(r, sr, NB_RATE).astype(np.float64)
    return _pesq(e, r, NB_RATE, "nb")


def _pesq(e: np.ndarray, r: np.ndarray, rate: int, mode: str) -> float:
    """The ``pesq`` package's score, NaN (with a warning) where it finds no utterance."""
    from pesq import NoUtterancesError, pesq

    msg = "PESQ: no utterance detected (silent signal?); returning NaN"
    if not (np.any(e) and np.any(r)):  # the pesq C code crashes on an all-zero signal
        warnings.warn(msg, stacklevel=3)
        return math.nan
    try:
        return float(pesq(rate, r, e, mode))
    except NoUtterancesError:
        warnings.warn(msg, stacklevel=3)
        return math.nan


def stoi(est: np.ndarray, ref: np.ndarray, sr: int = SAMPLE_RATE) -> float:
    """Short-time objective intelligibility (Taal et al. 2011) via ``pystoi``."""
    from pystoi import stoi as _stoi

    e = _as_1d(est, "estimate")
    r = _as_1d(ref, "reference")
    e, r = match_lengths(e, r, sr)
    return float(_stoi(r, e, sr, extended=False))


def estoi(est: np.ndarray, ref: np.ndarray, sr: int = SAMPLE_RATE) -> float:
    """Extended STOI (Jensen & Taal 2016) via ``pystoi``; better for modulated noise."""
    from pystoi import stoi as _stoi

    e = _as_1d(est, "estimate")
    r = _as_1d(ref, "reference")
    e, r = match_lengths(e, r, sr)
    return float(_stoi(r, e, sr, extended=True))


def evaluate_pair(
    est: np.ndarray,
    ref: np.ndarray,
    sr: int = SAMPLE_RATE,
    noisy: np.ndarray | None = None,
    tolerance: int | None = None,
) -> dict[str, float]:
    """All metrics of one estimate; with ``noisy``, also the improvements over the noisy input.

    Lengths are trimmed to the shortest signal when they differ by at most ``tolerance``
    samples (default: one STFT hop), else :class:`InputError`.
    """
    e = _as_1d(est, "estimate")
    r = _as_1d(ref, "reference")
    e, r = match_lengths(e, r, sr, tolerance)
    y = None
    if noisy is not None:
        # all three signals are trimmed to the common length so the improvements are paired
        y, r = match_lengths(_as_1d(noisy, "noisy"), r, sr, tolerance, names=("noisy", "reference"))
        e = e[: len(r)]
    out = {
        "si_sdr": si_sdr(e, r),
        "pesq": pesq_wb(e, r, sr),
        "pesq_nb": pesq_nb(e, r, sr),
        "stoi": stoi(e, r, sr),
        "estoi": estoi(e, r, sr),
    }
    if y is not None:
        out["si_sdr_i"] = out["si_sdr"] - si_sdr(y, r)
        out["pesq_i"] = out["pesq"] - pesq_wb(y, r, sr)
        out["estoi_i"] = out["estoi"] - estoi(y, r, sr)
    return out


# --------------------------------------------------------------------------- folders


@dataclass(frozen=True)
class FilePair:
    """One evaluation item: a name and the estimate / reference / optional noisy files."""

    name: str
    est: Path
    ref: Path
    noisy: Path | None = None


def _wav_index(root: Path, strip_suffix: str = "") -> dict[str, Path]:
    """Map 'relative/path/stem' (with ``strip_suffix`` removed from the stem) -> file."""
    index: dict[str, Path] = {}
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.suffix.lower() not in {".wav", ".flac"} or p.name.startswith("."):
            continue
        rel = p.relative_to(root).with_suffix("")
        stem = rel.name
        if strip_suffix and stem.endswith(strip_suffix) and len(stem) > len(strip_suffix):
            stem = stem[: -len(strip_suffix)]
        key = (rel.parent / stem).as_posix()
        if key in index:
            raise InputError(
                f"{root}: two files map to the same name '{key}': {index[key].name} and {p.name}"
            )
        index[key] = p
    return index


def _listing(names: Iterable[str], limit: int = 8) -> str:
    names = sorted(names)
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def match_files(
    est_dir: str | os.PathLike,
    ref_dir: str | os.PathLike,
    noisy_dir: str | os.PathLike | None = None,
    suffix: str = "_enhanced",
    subset: bool = False,
) -> list[FilePair]:
    """Pair ``est_dir/X{suffix}.wav`` (or ``X.wav``) with ``ref_dir/X.wav``, ``noisy_dir/X.wav``.

    Sub-folders are kept in the name (``spk1/X``). Any unmatched file on either side is an error
    that lists the unmatched names, so a partial run is never silently averaged; ``subset``
    (the caller says so) allows references without an estimate: only the estimates are scored.
    """
    est_root, ref_root = Path(est_dir), Path(ref_dir)
    for root in (est_root, ref_root) + ((Path(noisy_dir),) if noisy_dir is not None else ()):
        if not root.is_dir():
            raise InputError(f"{root}: not a directory")
    est = _wav_index(est_root, suffix)
    ref = _wav_index(ref_root)
    if not est:
        raise InputError(f"{est_root}: no .wav files")
    only_est = set(est) - set(ref)
    only_ref = set(ref) - set(est)
    if subset:
        if only_ref and not only_est:
            log.warning(f"subset: scoring {len(ref) - len(only_ref)} of the {len(ref)} references in {ref_root}")
        ref = {k: v for k, v in ref.items() if k in est}
        only_ref = set()
    if only_est or only_ref:
        parts = []
        if only_est:
            parts.append(
                f"{len(only_est)} estimate(s) without reference in {ref_root}: {_listing(only_est)}"
            )
        if only_ref:
            parts.append(
                f"{len(only_ref)} reference(s) without estimate in {est_root}: {_listing(only_ref)}"
            )
        raise InputError("unmatched files: " + "; ".join(parts))
    noisy: dict[str, Path] = {}
    if noisy_dir is not None:
        noisy = _wav_index(Path(noisy_dir))
        missing = set(ref) - set(noisy)
        if missing:
            raise InputError(
                f"{noisy_dir}: no noisy file for {len(missing)} item(s): {_listing(missing)}"
            )
    return [FilePair(k, est[k], ref[k], noisy.get(k)) for k in sorted(ref)]


def evaluate_files(
    est_path: str | os.PathLike,
    ref_path: str | os.PathLike,
    noisy_path: str | os.PathLike | None = None,
    name: str | None = None,
    tolerance: int | None = None,
) -> dict[str, float | str]:
    """Read one estimate/reference(/noisy) triple at 16 kHz and return its metrics row."""
    est = load_audio(est_path)
    ref = load_audio(ref_path)
    noisy = load_audio(noisy_path) if noisy_path is not None else None
    try:
        metrics = evaluate_pair(est, ref, SAMPLE_RATE, noisy=noisy, tolerance=tolerance)
    except InputError as exc:
        raise InputError(f"{est_path} vs {ref_path}: {exc}") from None
    return {"file": name if name is not None else Path(est_path).stem, **metrics}


def evaluate_folders(
    est_dir: str | os.PathLike,
    ref_dir: str | os.PathLike,
    noisy_dir: str | os.PathLike | None = None,
    suffix: str = "_enhanced",
    callback: Callable[[FilePair], None] | None = None,
    tolerance: int | None = None,
    subset: bool = False,
) -> list[dict[str, float | str]]:
    """Evaluate every matched file (see :func:`match_files`, ``subset`` too); one row per file.

    ``callback`` is called after each file (the CLI advances its progress bar with it).
    """
    rows = []
    for pair in match_files(est_dir, ref_dir, noisy_dir, suffix, subset=subset):
        rows.append(evaluate_files(pair.est, pair.ref, pair.noisy, pair.name, tolerance))
        if callback is not None:
            callback(pair)
    return rows


# --------------------------------------------------------------------------- summaries


def metric_columns(rows: Sequence[dict]) -> list[str]:
    """Numeric columns present in ``rows``, known metrics first, in a stable order."""
    seen: list[str] = []
    for row in rows:
        for k, v in row.items():
            if k not in seen and isinstance(v, (int, float)) and not isinstance(v, bool):
                seen.append(k)
    order = list(METRICS) + list(IMPROVEMENTS)
    return sorted(seen, key=lambda k: (order.index(k) if k in order else len(order), seen.index(k)))


def summarize(rows: Sequence[dict], columns: Sequence[str] | None = None) -> dict[str, dict]:
    """Per metric: n, mean, std (ddof=1) and the 95 % confidence half-width of the mean.

    The CI uses Student's t with n-1 degrees of freedom (``t_{0.975} * std / sqrt(n)``); NaN
    entries (e.g. PESQ on silence) are left out and n counts the remaining ones.
    """
    from scipy.stats import t as student_t

    out: dict[str, dict] = {}
    for col in columns or metric_columns(rows):
        vals = np.array([float(r[col]) for r in rows if col in r], dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        n = int(vals.size)
        mean = float(vals.mean()) if n else math.nan
        std = float(vals.std(ddof=1)) if n > 1 else (0.0 if n == 1 else math.nan)
        ci = float(student_t.ppf(0.975, n - 1) * std / math.sqrt(n)) if n > 1 else math.nan
        out[col] = {"n": n, "mean": mean, "std": std, "ci95": ci}
    return out


def write_csv(rows: Sequence[dict], path: str | os.PathLike) -> Path:
    """Atomically write the per-file rows (plus nothing else) as CSV."""
    if not rows:
        raise ReaviseError(f"{path}: no rows to write")
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]

    def _fmt(v):
        return f"{v:.6g}" if isinstance(v, float) else v

    def _write(tmp: str) -> None:
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=fields)
            w.writeheader()
            for row in rows:
                w.writerow({k: _fmt(v) for k, v in row.items()})

    return atomic_write(path, _write)


def _fmt_num(v: float, digits: int) -> str:
    return "nan" if not math.isfinite(v) else f"{v:.{digits}f}"


def summary_table(rows: Sequence[dict], title: str | None = None, digits: int = 2):
    """A rich Table with mean ± std and the 95 % CI per metric."""
    from rich.table import Table

    table = Table(title=title)
    for head in ("metric", "n", "mean ± std", "95 % CI"):
        table.add_column(head, justify="left" if head == "metric" else "right")
    for col, s in summarize(rows).items():
        ci = (
            f"[{_fmt_num(s['mean'] - s['ci95'], digits)}, "
            f"{_fmt_num(s['mean'] + s['ci95'], digits)}]"
            if math.isfinite(s["ci95"])
            else "-"
        )
        table.add_row(
            LABELS.get(col, col),
            str(s["n"]),
            f"{_fmt_num(s['mean'], digits)} ± {_fmt_num(s['std'], digits)}",
            ci,
        )
    return table


def print_summary(rows: Sequence[dict], title: str | None = None, console=None) -> None:
    """Print :func:`summary_table` to ``console`` (default: a new rich Console on stdout)."""
    from rich.console import Console

    (console or Console()).print(summary_table(rows, title))


def markdown_table(
    rows: Sequence[dict],
    columns: Sequence[str] | None = None,
    digits: int = 2,
    summary: bool = False,
    labels: dict[str, str] | None = None,
) -> str:
    """GitHub Markdown table of ``rows`` (e.g. one per file, or one per method) for reports.

    Floats are printed with ``digits`` decimals; other values as text. ``columns`` defaults to
    all keys in first-seen order. With ``summary=True`` a last row ``mean ± std`` is added.
    """
    if not rows:
        raise ReaviseError("markdown_table: no rows")
    if columns is None:
        columns = []
        for row in rows:
            columns += [k for k in row if k not in columns]
    names = {**LABELS, **(labels or {})}

    def cell(v) -> str:
        if isinstance(v, float):
            return _fmt_num(v, digits)
        return str(v).replace("|", "\\|")

    lines = [
        "| " + " | ".join(names.get(c, c) for c in columns) + " |",
        "| " + " | ".join("---" for _ in columns) + " |",
    ]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    if summary:
        stats = summarize(rows, [c for c in columns if c in metric_columns(rows)])
        cells = [
            f"{_fmt_num(stats[c]['mean'], digits)} ± {_fmt_num(stats[c]['std'], digits)}"
            if c in stats
            else ("**mean ± std**" if i == 0 else "")
            for i, c in enumerate(columns)
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
