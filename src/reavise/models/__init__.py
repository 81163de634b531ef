"""Speech priors (VAEs conditioned or not on video), fusion modules, visual front-ends."""

# Importing the modules registers their priors.
from . import av_cvae, av_dkf, av_vae, dkf, fallback, min_vae, rvae, switching, vae  # noqa: E402,F401
from .base import SpeechPrior
from .fusion import FUSIONS, build_fusion
from .registry import PRIORS, build_prior, prior_names, register_prior

__all__ = [
    "FUSIONS",
    "PRIORS",
    "SpeechPrior",
    "build_fusion",
    "build_prior",
    "prior_names",
    "register_prior",
]
