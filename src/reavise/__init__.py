"""reavise: unsupervised audio-visual speech enhancement in PyTorch."""

__version__ = "0.1.0"
