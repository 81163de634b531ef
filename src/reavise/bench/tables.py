"""Result tables from ``results.csv``: mean ± 95 % CI per method and condition, paired
differences against a reference prior, and speed.

The same :class:`Table` objects are rendered as Markdown (``tables.md``) by the benchmark and
as HTML by the report, so both always show the same numbers.
"""

from __future__ import annotations

import csv
import html
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..data.degrade import VisualCondition
from ..errors import ReaviseError
from ..metrics import LABELS, markdown_table, summarize

#: Columns of results.csv, in order.
COLUMNS: tuple[str, ...] = (
    "id", "method", "model", "algorithm", "noise_type", "snr_db", "visual", "severity",
    "si_sdr", "pesq", "pesq_nb", "estoi", "stoi", "si_sdr_i", "pesq_i", "estoi_i", "wall_s",
    "rtf", "source_id", "duration_s",
)  # fmt: skip
NUMERIC = {"snr_db", "severity", "si_sdr", "pesq", "pesq_nb", "estoi", "stoi", "si_sdr_i",
           "pesq_i", "estoi_i", "wall_s", "rtf", "duration_s"}  # fmt: skip
#: Metrics of the overall table; the per-condition tables show the first three.
OVERALL = ("si_sdr", "si_sdr_i", "pesq", "pesq_i", "pesq_nb", "estoi", "estoi_i", "stoi")
PIVOT_METRICS = ("si_sdr_i", "pesq_i", "estoi_i")
#: Metrics of the SNR x visual-condition tables (absolute scores, averaged over noise types).
CONDITION_METRICS = ("si_sdr", "pesq", "pesq_nb", "stoi", "estoi")
#: Metrics of the paired-difference tables (a prior minus the reference prior, same mixture).
PAIRED_METRICS = ("si_sdr", "pesq", "estoi")


@dataclass
class Table:
    """A titled table of display strings (header + rows)."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    note: str = ""
    key: str = ""
    numbers: dict[tuple[str, str], float] = field(default_factory=dict)

    def markdown(self) -> str:
        dict_rows = [dict(zip(self.columns, r, strict=True)) for r in self.rows]
        text = f"### {self.title}\n\n" + markdown_table(dict_rows, self.columns)
        return text + (f"\n{self.note}\n" if self.note else "")

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in self.rows
        )
        note = f'<p class="note">{html.escape(self.note)}</p>' if self.note else ""
        return (
            f'<table class="results" id="table-{html.escape(self.key)}">'
            f"<caption>{html.escape(self.title)}</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>{note}"
        )


def read_results(path: str | Path) -> list[dict]:
    """Rows of a results.csv with numeric columns as floats."""
    path = Path(path)
    if not path.exists():
        raise ReaviseError(f"{path}: no results file (run `reavise benchmark` first)")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ReaviseError(f"{path}: results file has no rows")
    missing = [c for c in ("method", "snr_db", "visual", "si_sdr") if c not in rows[0]]
    if missing:
        raise ReaviseError(f"{path}: not a benchmark results file (no columns {missing})")
    for r in rows:
        for k in NUMERIC & set(r):
            try:
                r[k] = float(r[k]) if r[k] != "" else math.nan
            except ValueError:
                r[k] = math.nan
    return rows


def visual_label(row: dict) -> str:
    """The condition as written in configs, e.g. ``occlusion:0.3``."""
    return VisualCondition(str(row["visual"]), float(row.get("severity") or 0.0)).spec


def snr_label(v: float) -> str:
    return f"{v:g} dB"


def fmt(stats: dict, digits: int = 2) -> str:
    """``mean ± ci95`` (just the mean when the CI is undefined, i.e. n = 1)."""
    m, ci = stats["mean"], stats["ci95"]
    if not math.isfinite(m):
        return "–"
    return f"{m:.{digits}f} ± {ci:.{digits}f}" if math.isfinite(ci) else f"{m:.{digits}f}"


def _ordered(values: Sequence) -> list:
    out: list = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def methods_of(rows: list[dict]) -> list[str]:
    return _ordered([r["method"] for r in rows])


def overall_table(rows: list[dict]) -> Table:
    """Every metric per method over all conditions."""
    cols = [c for c in OVERALL if any(math.isfinite(r.get(c, math.nan)) for r in rows)]
    out = []
    for m in methods_of(rows):
        sel = [r for r in rows if r["method"] == m]
        st = summarize(sel, cols)
        out.append([m, str(len(sel))] + [fmt(st[c]) for c in cols])
    return Table(
        "All conditions (mean ± 95 % CI)",
        ["method", "n"] + [LABELS.get(c, c) for c in cols],
        out,
        key="overall",
    )


def pivot_table(
    rows: list[dict], metric: str, by: Callable[[dict], str], by_name: str, key: str
) -> Table:
    """Methods x condition values of ``by`` (plus 'all') for one metric, mean ± 95 % CI."""
    groups = _ordered([by(r) for r in rows])
    out = []
    numbers: dict[tuple[str, str], float] = {}
    for m in methods_of(rows):
        sel = [r for r in rows if r["method"] == m]
        cells = [m]
        for g in [*groups, "all"]:
            part = sel if g == "all" else [r for r in sel if by(r) == g]
            st = summarize(part, [metric])[metric] if part else {"mean": math.nan, "ci95": math.nan}
            numbers[(m, g)] = st["mean"]
            cells.append(fmt(st))
        out.append(cells)
    return Table(
        f"{LABELS.get(metric, metric)} per method and {by_name} (mean ± 95 % CI)",
        ["method", *groups, "all"],
        out,
        key=key,
        numbers=numbers,
    )


def condition_label(row: dict) -> str:
    """``-5 dB / occlusion:0.7``: one SNR and visual condition (noise types pooled)."""
    return f"{snr_label(row['snr_db'])} / {visual_label(row)}"


def condition_table(rows: list[dict], metric: str) -> Table:
    """Methods x (SNR, visual condition) for one metric, averaged over noise types.

    The fusion comparison reads off this table: e.g. the ``-5 dB / clean`` column compares
    each audio-visual prior with the audio-only one at low SNR with clean video, and the
    ``occlusion:0.7`` / ``missing`` columns show how much each loses when the video fails.
    """
    snrs = sorted({r["snr_db"] for r in rows})
    vis = _ordered([visual_label(r) for r in rows])
    order = {f"{snr_label(s)} / {v}": (i, j) for i, s in enumerate(snrs) for j, v in enumerate(vis)}
    t = pivot_table(rows, metric, condition_label, "SNR and visual condition", f"cond-{metric}")
    # columns sorted by SNR, then visual condition (pivot_table keeps first-seen order)
    head = t.columns[1:-1]
    perm = sorted(range(len(head)), key=lambda k: order.get(head[k], (len(order), k)))
    t.columns = [t.columns[0], *[head[k] for k in perm], t.columns[-1]]
    t.rows = [[r[0], *[r[1 + k] for k in perm], r[-1]] for r in t.rows]
    t.title = f"{LABELS.get(metric, metric)} per method, SNR and visual condition (mean over noise types ± 95 % CI)"
    return t


def paired_table(rows: list[dict], metric: str, reference: str) -> Table | None:
    """Each prior minus the ``reference`` prior (a model name) run with the same algorithm,
    mixture by mixture: one row per (method, visual condition), one column per SNR (noise
    types pooled) and all SNRs; mean difference ± 95 % CI (Student's t over the paired
    mixtures). None when no row is the reference's."""
    ref = {(r["algorithm"], r["id"]): r[metric] for r in rows if r.get("model") == reference}
    diffs = []
    for r in rows:
        other = ref.get((r.get("algorithm"), r["id"]))
        if r.get("model") not in ("", reference, None) and other is not None:
            diffs.append({**r, metric: r[metric] - other})
    if not diffs:
        return None
    snrs = sorted({r["snr_db"] for r in diffs})
    out, numbers = [], {}
    for m in methods_of(diffs):
        sel = [r for r in diffs if r["method"] == m]
        for v in _ordered([visual_label(r) for r in sel]):
            part = [r for r in sel if visual_label(r) == v]
            cells = [m, v]
            for key, group in [*((snr_label(x), [r for r in part if r["snr_db"] == x]) for x in snrs), ("all", part)]:
                st = summarize(group, [metric])[metric] if group else {"mean": math.nan, "ci95": math.nan}
                numbers[(f"{m} | {v}", key)] = st["mean"]
                cells.append(fmt(st))
            out.append(cells)
    return Table(
        f"{LABELS.get(metric, metric)}: each prior minus {reference} with the same algorithm, "
        "paired by mixture (mean ± 95 % CI over mixtures, noise types pooled)",
        ["method", "visual", *[snr_label(x) for x in snrs], "all SNRs"],
        out,
        key=f"paired-{safe_key(reference)}-{metric}",
        numbers=numbers,
    )


def safe_key(name: str) -> str:
    """``name`` as an HTML id part."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name)


def speed_table(rows: list[dict], machine: dict | None = None) -> Table:
    """Real-time factor (wall time / audio duration) per method, i.e. per model and algorithm."""
    out = []
    for m in methods_of(rows):
        sel = [r for r in rows if r["method"] == m]
        st = summarize(sel, ["rtf"])["rtf"]
        vals = sorted(r["rtf"] for r in sel if math.isfinite(r["rtf"]))
        med = vals[len(vals) // 2] if vals else math.nan
        out.append(
            [m, sel[0].get("model") or "–", sel[0].get("algorithm") or "–", str(len(sel)),
             fmt(st, 4), f"{med:.4f}", f"{sum(r['duration_s'] for r in sel) / len(sel):.2f}"]
        )  # fmt: skip
    note = ""
    if machine:
        note = (
            f"Machine: {machine.get('cpu_count')} CPU core(s) ({machine.get('processor') or '?'}), "
            f"torch {machine.get('torch')}, device {machine.get('device')}, "
            f"{machine.get('workers')} worker process(es) x {machine.get('threads_per_worker')} "
            "torch thread(s). RTF < 1 is faster than real time."
        )
    return Table(
        "Speed: real-time factor per utterance (wall time / audio duration)",
        ["method", "model", "algorithm", "n", "RTF mean ± 95 % CI", "RTF median", "mean dur. (s)"],
        out,
        note=note,
        key="speed",
    )


def all_tables(rows: list[dict], machine: dict | None = None, references: Sequence[str] = ()) -> list[Table]:
    """Overall, per SNR and per visual condition (for the key metrics), the paired
    differences against each of ``references`` (model names), and speed."""
    tables = [overall_table(rows)]
    for metric in PIVOT_METRICS:
        if any(math.isfinite(r.get(metric, math.nan)) for r in rows):
            tables.append(
                pivot_table(rows, metric, lambda r: snr_label(r["snr_db"]), "SNR", f"snr-{metric}")
            )
    for metric in PIVOT_METRICS:
        if any(math.isfinite(r.get(metric, math.nan)) for r in rows):
            tables.append(pivot_table(rows, metric, visual_label, "visual condition", f"visual-{metric}"))
    for metric in CONDITION_METRICS:
        if any(math.isfinite(r.get(metric, math.nan)) for r in rows):
            tables.append(condition_table(rows, metric))
    for reference in references:
        for metric in PAIRED_METRICS:
            t = paired_table(rows, metric, reference)
            if t is not None:
                tables.append(t)
    tables.append(speed_table(rows, machine))
    return tables


def tables_markdown(rows: list[dict], machine: dict | None = None, notes: Sequence[str] = (),
                    title: str = "", references: Sequence[str] = ()) -> str:  # fmt: skip
    """The whole ``tables.md``."""
    parts = [f"# Benchmark results{': ' + title if title else ''}\n"]
    n_utt = len({r.get("source_id") for r in rows})
    parts.append(
        f"{len(rows)} rows: {n_utt} utterance(s), {len(methods_of(rows))} method(s). "
        "Improvements (i) are over the noisy input. Audio-only methods do not see the video, "
        "so their scores repeat across visual conditions.\n"
    )
    for n in notes:
        parts.append(f"- note: {n}")
    if notes:
        parts.append("")
    parts += [t.markdown() for t in all_tables(rows, machine, references)]
    return "\n".join(parts)
