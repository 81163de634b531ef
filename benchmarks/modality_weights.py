"""Mean per-frame visual weight of each fusion site on the damaged and the intact video frames
of a ``reavise benchmark`` run's examples (the report's weight plots, as numbers).

    python benchmarks/modality_weights.py runs/grid-study [--method grid-s1-av-attention/mcem]

Reads ``RUN/benchmark.json``: every example's ``degraded_s`` spans (the frames its visual
condition damaged) and the ``.weights.npz`` of the method (site -> [..., T, 2], audio and
visual weight per STFT frame, as ``bench.worker.fusion_weights`` stores them). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from reavise.audio import DEFAULT_STFT


def site_weights(path: Path) -> dict[str, np.ndarray]:
    """Visual weight per STFT frame of each fusion site (the file holds [T, 2] per site)."""
    with np.load(path) as z:
        return {k: z[k][:, 1] for k in z.files}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--method", default="grid-s1-av-attention/mcem")
    args = ap.parse_args(argv)
    run = Path(args.run)
    rec = json.loads((run / "benchmark.json").read_text())
    rows, sites = [], []
    for ex in rec.get("examples", []):
        meth = ex.get("methods", {}).get(args.method) or {}
        if not meth.get("weights"):
            continue
        w = site_weights(run / meth["weights"])
        sites += [k for k in w if k not in sites]
        rows.append((ex, w))
    if not rows:
        print(f"{run}: no example of {args.method} has modality weights", file=sys.stderr)
        return 1
    head = ["example"] + [f"{s} {k}" for s in sites for k in ("damaged", "intact")]
    print("| " + " | ".join(head) + " |\n|" + " --- |" * len(head))
    for ex, w in rows:
        cells = [f"{ex['visual']}:{ex['severity']:g} ({ex['id']})"]
        for site in sites:
            if site not in w:  # this site gave no weights here (e.g. no video: no p(z|v) fusion)
                cells += ["", ""]
                continue
            t = np.arange(len(w[site])) / DEFAULT_STFT.frames_per_second
            bad = np.zeros(len(t), bool)
            for a, b in ex.get("degraded_s", []):
                bad |= (t >= a) & (t < b)
            cells += [f"{w[site][bad].mean():.2f}" if bad.any() else "", f"{w[site][~bad].mean():.2f}" if (~bad).any() else ""]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
