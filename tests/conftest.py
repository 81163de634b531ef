"""Shared fixtures: the real reference data beside the repo (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED / "ntcd-timit-sample" / "noisy.wav").exists():
        pytest.skip("../shared/data not present")
    return SHARED


@pytest.fixture
def speechlike(tmp_path):
    """A deterministic speech-like signal: harmonic complex with formant-ish envelope, 2 s."""

    def make(seed: int = 0, seconds: float = 2.0, sr: int = 16000) -> np.ndarray:
        rng = np.random.default_rng(seed)
        t = np.arange(int(seconds * sr)) / sr
        f0 = 120 + 20 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6))
        phase = 2 * np.pi * np.cumsum(f0) / sr
        x = sum(np.sin(k * phase) / k for k in range(1, 25))
        env = np.clip(np.sin(2 * np.pi * 2.5 * t + rng.uniform(0, 6)), 0, None) ** 2
        return (0.5 * x * env / np.max(np.abs(x * env) + 1e-9)).astype(np.float32)

    return make


def write(path: Path, x: np.ndarray, sr: int = 16000, subtype: str = "PCM_16") -> Path:
    sf.write(path, x, sr, subtype=subtype)
    return path


@pytest.fixture
def tiny_model(tmp_path):
    """A small untrained A-VAE checkpoint (seeded)."""
    import torch

    from reavise.models import build_prior
    from reavise.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "tiny.pt", build_prior("a-vae", {"z_dim": 4, "hidden": [16]}))


@pytest.fixture
def tiny_av_model(tmp_path):
    """A small untrained AV-VAE checkpoint (seeded)."""
    import torch

    from reavise.models import build_prior
    from reavise.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    prior = build_prior("av-vae", {"z_dim": 4, "hidden": [16], "visual_hidden": 16, "visual_dim": 8})
    return save_checkpoint(tmp_path / "tiny_av.pt", prior)


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``reavise ARGS`` through the real entry point."""
    import sys

    from reavise.cli import main

    monkeypatch.setattr(sys, "argv", ["reavise", *map(str, args)])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err
