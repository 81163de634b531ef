"""Speech priors (VAEs conditioned or not on video), fusion modules, visual front-ends."""

# Importing the modules registers their priors.
from . import vae  # noqa: E402,F401
from .base import SpeechPrior
from .registry import PRIORS, build_prior, prior_names, register_prior

__all__ = ["SpeechPrior", "PRIORS", "build_prior", "prior_names", "register_prior"]
