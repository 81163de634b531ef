"""Reference: a straightforward NumPy port of the published MCEM (Sadeghi et al. 2020 code).

Kept in the benchmarks only, to measure reavise's torch MCEM against it. It follows the
published structure: frequency-major arrays, float64, the decoder evaluated twice per
Metropolis-Hastings step (proposal, then the accepted state), then the NMF M-step.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-10


def _decoder(weights: dict[str, np.ndarray]):
    W1, b1 = weights["dec.0.weight"], weights["dec.0.bias"]
    W2, b2 = weights["dec_logvar.weight"], weights["dec_logvar.bias"]

    def decode(Z: np.ndarray) -> np.ndarray:  # Z [N, D] -> speech variance [F, N]
        return np.exp(np.tanh(Z @ W1.T + b1) @ W2.T + b2).T

    return decode


def numpy_mcem(
    X: np.ndarray,
    weights: dict[str, np.ndarray],
    n_iter: int = 100,
    n_mh: int = 40,
    burn_in: int = 30,
    var_mh: float = 0.01,
    rank: int = 10,
    seed: int = 0,
) -> np.ndarray:
    """Enhance one STFT ``X`` [F, N] (complex); returns the speech STFT estimate [F, N]."""
    rng = np.random.default_rng(seed)
    F, N = X.shape
    X2 = np.abs(X) ** 2
    decode = _decoder(weights)
    W = np.maximum(rng.random((F, rank)), EPS)
    H = np.maximum(rng.random((rank, N)), EPS)
    g = np.ones((1, N))
    h = np.tanh(X2.T @ weights["enc.0.weight"].T + weights["enc.0.bias"])
    Z = h @ weights["enc_mean.weight"].T + weights["enc_mean.bias"]  # [N, D]
    D = Z.shape[1]
    R = n_mh - burn_in
    Vb = W @ H
    Vx = g * decode(Z) + Vb
    Zs = np.zeros((N, D, R))
    for _ in range(n_iter):
        # E-step: Metropolis-Hastings, as published
        cpt = 0
        for m in range(n_mh):
            Z_new = Z + np.sqrt(var_mh) * rng.standard_normal((N, D))
            Vs_new = decode(Z_new) * g
            acc = np.sum(
                np.log(Vx) - np.log(Vs_new + Vb) + (1 / Vx - 1 / (Vs_new + Vb)) * X2, axis=0
            ) + 0.5 * np.sum(Z**2 - Z_new**2, axis=1)
            idx = np.log(rng.random(N)) < acc
            Z[idx] = Z_new[idx]
            Vx = decode(Z) * g + Vb
            if m >= burn_in:
                Zs[:, :, cpt] = Z
                cpt += 1
        # M-step
        Vs = np.stack([decode(Zs[:, :, r]) for r in range(R)], axis=-1)  # [F, N, R]
        Vx = g[..., None] * Vs + Vb[..., None]
        W = W * (((X2 * np.sum(Vx**-2, -1)) @ H.T) / (np.sum(Vx**-1, -1) @ H.T)) ** 0.5
        Vb = W @ H
        Vx = g[..., None] * Vs + Vb[..., None]
        H = H * ((W.T @ (X2 * np.sum(Vx**-2, -1))) / (W.T @ np.sum(Vx**-1, -1))) ** 0.5
        Vb = W @ H
        Vx = g[..., None] * Vs + Vb[..., None]
        g = g * (
            np.sum(X2 * np.sum(Vs * Vx**-2, -1), 0) / np.sum(np.sum(Vs * Vx**-1, -1), 0)
        ) ** 0.5
        Vx = decode(Z) * g + Vb
    Vs = np.stack([decode(Zs[:, :, r]) for r in range(R)], axis=-1) * g[..., None]
    gain = np.mean(Vs / (Vs + Vb[..., None]), axis=-1)
    return gain * X
