"""Inference: NMF noise model + EM algorithms that combine it with a speech prior."""

# Importing the modules registers the algorithms.
from . import langevin, mala, mcem, vem  # noqa: E402,F401
from .base import ALGORITHMS, EMAlgorithm, EMConfig, EMResult, build_algorithm
from .pipeline import EnhancedUtterance, enhance_waveforms

__all__ = [
    "ALGORITHMS",
    "EMAlgorithm",
    "EMConfig",
    "EMResult",
    "EnhancedUtterance",
    "build_algorithm",
    "enhance_waveforms",
]
