"""The EM side of a prior with a per-frame modality switch (``models.base.ModalitySwitch``).

After each M-step, each state's decoder (audio-only, audio-visual) is scored on the noisy
frames with the E-step's z samples and the current NMF noise model; the prior turns these
per-frame log-evidences into the posterior q(m) (forward-backward for the switching VAE), and
decodes with it in the next E-step. The model knows its states and their prior; this module
knows the likelihood p(x|z) and the EM loop.
"""

from __future__ import annotations

from typing import Any

import torch

from ..models.base import ModalitySwitch
from .likelihood import frame_loglik
from .nmf import NMFState


def has_switch(prior) -> bool:
    return isinstance(prior, ModalitySwitch)


def state_posterior(
    prior: ModalitySwitch, ctx: Any, P: torch.Tensor, nmf: NMFState, z: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """q(m) [B, T, K] given z samples [R, B, T, D] (or [B, T, D]) and the noise model.

    Each state's log-evidence per frame is log mean_r p(x_t | z_t^r, m_t); padded frames
    carry none."""
    with torch.no_grad():
        zs = z if z.dim() == 4 else z.unsqueeze(0)
        R = zs.shape[0]
        lls = []
        for logv in prior.state_log_variances(zs, ctx):
            ll = frame_loglik(P, torch.exp(logv), nmf)  # [R, B, T]
            lls.append(torch.logsumexp(ll, 0) - torch.log(torch.tensor(float(R))))
        e = torch.stack(lls, -1)  # [B, T, K] log-evidence of each state
        e = e * mask[..., None]  # padded frames: no evidence
        return prior.state_posterior(e, ctx)
