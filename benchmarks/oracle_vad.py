"""Upper bound of lips used only as a voice-activity cue: gate an enhancement with an oracle VAD.

    python benchmarks/oracle_vad.py runs/lowsnr [--model a-vae] [--threshold-db 20]

Enhances the clean-video mixtures of a ``reavise benchmark`` run with one of its priors (MCEM,
30 EM iterations, as in configs/lowsnr.yaml). The oracle marks silent the STFT frames whose
clean power is more than ``--threshold-db`` below the utterance's loudest frame. Two ways to
use it, SI-SDR per noise type: (1) zero those frames of the output; (2) inside EM, scale
sigma2 of those frames by 1e-12 (what a perfect visual activity head does, see
``FusedConfig.activity_weight``), so the NMF explains them as noise. A perfect visual
speech-activity detector could do no better than these.
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
from reavise.inference.pipeline import VideoInput
from reavise.lips import load_lips
from reavise.metrics import si_sdr
from reavise.models.base import SpeechPrior
from reavise.models.checkpoint import load_checkpoint


class OracleGated(SpeechPrior):
    """``inner`` with log sigma2 shifted by ``log_gate`` [1, T] (0 active, -27.6 silent)."""

    def __init__(self, inner: SpeechPrior, log_gate: torch.Tensor):
        super().__init__()
        self.inner, self.log_gate = inner, log_gate
        self.uses_video, self.standard_prior = inner.uses_video, inner.standard_prior

    def context(self, video, valid):
        return self.inner.context(video, valid)

    def batch_context(self, video, valid, lengths):
        return self.inner.batch_context(video, valid, lengths)

    def encode(self, power, ctx=None):
        return self.inner.encode(power, ctx)

    def decoder(self, ctx=None):
        inner = self.inner.decoder(ctx)
        return lambda z: inner(z) + self.log_gate[..., None]

    def prior(self, z_like, ctx=None):
        return self.inner.prior(z_like, ctx)


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
    scores: dict[str, list[tuple[float, ...]]] = defaultdict(list)
    for r in (r for r in rows if r["visual"] == "clean"):
        noisy, clean = load_audio(mix / r["noisy"]), load_audio(mix / r["clean"])
        video = VideoInput(load_lips(mix / r["lips"]), r["fps"]) if prior.uses_video else None
        out = enhance_waveforms(prior, algo, [noisy], [video], seed=args.seed)[0].speech
        power = stft(torch.from_numpy(clean).float()).abs().square().sum(-1)
        active = power > power.max() * 10 ** (-args.threshold_db / 10)
        gated = istft(stft(torch.from_numpy(out).float()) * active[:, None], length=len(out))
        log_gate = torch.where(active, 0.0, -27.6)[None]  # sigma2 x 1e-12 in silent frames
        in_em = OracleGated(prior, log_gate)
        out_em = enhance_waveforms(in_em, algo, [noisy], [video], seed=args.seed)[0].speech
        scores[r["noise_type"]].append(
            (si_sdr(out, clean), si_sdr(gated.numpy(), clean), si_sdr(out_em, clean),
             float(active.float().mean()))
        )  # fmt: skip
    print(f"{args.model} + MCEM, oracle VAD at -{args.threshold_db:g} dB (SI-SDR in dB)")
    print("| noise | MCEM | output gated | gated in EM | active frames |")
    print("| --- | --- | --- | --- | --- |")
    everything = [x for per_noise in scores.values() for x in per_noise]
    for noise, v in [*scores.items(), ("all", everything)]:
        m = np.mean(np.array(v), 0)
        print(f"| {noise} | {m[0]:.2f} | {m[1]:.2f} | {m[2]:.2f} | {m[3]:.2f} |")


if __name__ == "__main__":
    main()
