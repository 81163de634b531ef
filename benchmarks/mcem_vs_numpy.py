"""Time one implementation of MCEM (published setting) on the NTCD-TIMIT sample.

    python benchmarks/mcem_vs_numpy.py --impl torch|numpy [--iters 100]

Prints SI-SDR and wall time; used as a whole process by external timers and in-process
by benchmarks/run.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import fair_blas  # noqa: E402, F401, I001  (first: may re-execute without OpenBLAS overrides)
import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import SHARED, published_prior  # noqa: E402
from numpy_mcem import numpy_mcem  # noqa: E402
from reavise.audio import istft, load_audio, stft  # noqa: E402
from reavise.inference import build_algorithm, enhance_waveforms  # noqa: E402
from reavise.metrics import si_sdr  # noqa: E402


def load_sample():
    d = SHARED / "ntcd-timit-sample"
    return load_audio(d / "noisy.wav"), load_audio(d / "clean.wav")


def run_numpy(prior, noisy: np.ndarray, iters: int, seed: int = 0) -> np.ndarray:
    weights = {k: v.double().numpy() for k, v in prior.state_dict().items()}
    scale = 1.0 / np.abs(noisy).max()
    X = stft(torch.from_numpy(noisy * scale).double()).numpy().T  # [F, N]
    S = numpy_mcem(X, weights, n_iter=iters, seed=seed)
    return istft(torch.from_numpy(S.T), length=len(noisy)).numpy() / scale


def run_torch(prior, noisy: np.ndarray, iters: int, seed: int = 0, **settings) -> np.ndarray:
    algo = build_algorithm("mcem", max_iter=iters, **settings)
    return enhance_waveforms(prior, algo, [noisy], seed=seed)[0].speech


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--impl", choices=["torch", "numpy"], required=True)
    ap.add_argument("--iters", type=int, default=100)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        prior = published_prior(Path(tmp))
    if prior is None:
        sys.exit("../shared/data is absent: nothing to time")
    noisy, clean = load_sample()
    fn = run_torch if args.impl == "torch" else run_numpy
    t0 = time.perf_counter()
    out = fn(prior, noisy, args.iters)
    dt = time.perf_counter() - t0
    print(f"{args.impl}: {dt:.3f} s, SI-SDR {si_sdr(out, clean):.2f} dB")


if __name__ == "__main__":
    main()
