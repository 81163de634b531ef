"""The E-step's state between EM iterations (typed; each algorithm subclasses it)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class EStepState:
    """What an E-step keeps from one EM iteration to the next (subclassed per algorithm).

    The loop reads ``frame_cost`` (then clears it) and clears ``Vs`` when the prior's
    decoder changed (a modality switch's new posterior)."""

    #: the current latent [B, T, D] (MCEM, Langevin: the chain's state; VEM: q's mean)
    z: torch.Tensor
    logvar: torch.Tensor | None = None
    #: sigma2 of the current z [B, T, F], carried to the next E-step (None: decode again)
    Vs: torch.Tensor | None = None
    #: Monte Carlo -E[log p(x|z)] per frame [B, T] for the M-step (None: the M-step's own)
    frame_cost: torch.Tensor | None = None
