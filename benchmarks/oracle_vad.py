"""Upper bound of lips used only as a voice-activity cue: gate an enhancement with an oracle VAD.

    python benchmarks/oracle_vad.py runs/lowsnr [--model a-vae] [--threshold-db 20]

Enhances the clean-video mixtures of a ``reavise benchmark`` run with one of its priors (MCEM,
30 EM iterations, as in configs/lowsnr.yaml), then zeroes the STFT frames whose clean power is
more than ``--threshold-db`` below the utterance's loudest frame, and prints SI-SDR per noise
type before and after. A perfect visual speech-activity detector could do no better than this.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from reavise.audio import istft, load_audio, stft
from reavise.inference import build_algorithm, enhance_waveforms
from reavise.metrics import si_sdr
from reavise.models.checkpoint import load_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="benchmark output folder (mixtures/, models/)")
    ap.add_argument("--model", default="a-vae")
    ap.add_argument("--threshold-db", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    mix = args.run / "mixtures"
    rows = [json.loads(line) for line in (mix / "manifest.jsonl").read_text().splitlines()]
    prior = load_checkpoint(args.run / "models" / args.model / "model.pt")
    algo = build_algorithm("mcem", max_iter=30)
    scores: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for r in (r for r in rows if r["visual"] == "clean"):
        noisy, clean = load_audio(mix / r["noisy"]), load_audio(mix / r["clean"])
        out = enhance_waveforms(prior, algo, [noisy], seed=args.seed)[0].speech
        power = stft(torch.from_numpy(clean).float()).abs().square().sum(-1)
        active = power > power.max() * 10 ** (-args.threshold_db / 10)
        gated = istft(stft(torch.from_numpy(out).float()) * active[:, None], length=len(out))
        scores[r["noise_type"]].append(
            (si_sdr(out, clean), si_sdr(gated.numpy(), clean), float(active.float().mean()))
        )
    print(f"{args.model} + MCEM, oracle VAD at -{args.threshold_db:g} dB (SI-SDR in dB)")
    print("| noise | MCEM | + oracle VAD | active frames |\n| --- | --- | --- | --- |")
    everything = [x for per_noise in scores.values() for x in per_noise]
    for noise, v in [*scores.items(), ("all", everything)]:
        m = np.mean(np.array(v), 0)
        print(f"| {noise} | {m[0]:.2f} | {m[1]:.2f} | {m[2]:.2f} |")


if __name__ == "__main__":
    main()
