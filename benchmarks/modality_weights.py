"""Mean per-frame visual weight of each fusion site on the damaged and the intact video frames
of a ``reavise benchmark`` run's examples (the report's weight plots, as numbers).

    python benchmarks/modality_weights.py runs/grid-study [--method grid-s1-av-attention/mcem]

Reads ``RUN/benchmark.json``: every example's ``degraded_s`` spans (the frames its visual
condition damaged) and the ``.weights.npz`` of the method (site -> [..., T, 2], audio and
visual weight per STFT frame; leading sample dimensions are averaged). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

FRAMES_PER_S = 16000 / 256  # STFT frames per second (reavise's default hop)


def site_weights(path: Path) -> dict[str, np.ndarray]:
    """Visual weight per STFT frame of each fusion site (sample dimensions averaged)."""
    with np.load(path) as z:
        return {k: z[k].reshape(-1, *z[k].shape[-2:]).mean(0)[:, 1] for k in z.files}


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
            t = np.arange(len(w[site])) / FRAMES_PER_S
            bad = np.zeros(len(t), bool)
            for a, b in ex.get("degraded_s", []):
                bad |= (t >= a) & (t < b)
            cells += [f"{w[site][bad].mean():.2f}" if bad.any() else "", f"{w[site][~bad].mean():.2f}" if (~bad).any() else ""]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
