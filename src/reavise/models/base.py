"""What a speech prior is: the one interface every inference algorithm works with.

A prior models clean-speech STFT coefficients s_ft ~ CN(0, sigma2_f(z, v)) with latents z
(Leglaive et al. 2018; Sadeghi et al. 2020). Shapes are time-major: power [B, T, F],
latents [..., B, T, D] (leading sample dimensions allowed), video [B, T, H, W] already
aligned to STFT frames (``reavise.align``) with a validity mask [B, T].

The interface is five things: ``context`` (the conditioning, once per utterance batch),
``encode`` (q(z|s, v)), ``decoder`` (log sigma2(z, v)), ``prior`` (p(z|v)) and ``loss``
(training), plus two facts (``framewise``, ``standard_prior``). A prior whose decoder or latent
prior couples frames (RVAE, DKF) says ``framewise = False`` and gets whole sequences. Speed
tricks are not part of it: ``reavise.inference.fastpath`` recognises the decoders it can run
faster (``layers.MLPDecoder``, ``layers.ConditionedMLPDecoder``, ``layers.HeadDecoder``) and decodes anything else as it is.
Two optional, explicit extras: ``modality_weights`` (what each fusion site gave the video) and
:class:`ModalitySwitch` (a per-frame discrete audio / audio-visual state).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from .layers import gaussian_kl, is_divergence, reduce_loss, reparameterise


class SpeechPrior(nn.Module):
    """Base class: encoder q(z|s, v), decoder p(s|z, v), latent prior p(z|v)."""

    registry_name: str = ""
    uses_video: bool = False
    #: True when frames are independent given the video: the decoder maps z_t to frame t alone
    #: and p(z|v) factorises over frames (MH may accept per frame exactly). False: the decoder
    #: or the latent prior couples frames; inference works on whole sequences.
    framewise: bool = True
    #: True when p(z|v) is the standard normal N(0, I) (``prior`` is then not overridden)
    standard_prior: bool = True
    #: EM settings this prior recommends where the user gives none, by algorithm name
    #: (``reavise.inference.sequential.sequence_settings``; sequence priors)
    inference_defaults: dict[str, dict[str, Any]] = {}

    config: Any

    def context(self, video: torch.Tensor | None, valid: torch.Tensor | None) -> Any:
        """Precompute the conditioning (visual features) once per utterance batch.

        ``video`` [B, T, H, W] in 0..1 aligned to STFT frames or None (missing video);
        ``valid`` [B, T] bool, False where the mouth is missing/occluded.
        """
        return None

    def batch_context(self, video: torch.Tensor | None, valid: torch.Tensor | None, lengths: list[int]) -> Any:
        """The context of a padded batch whose utterance b has ``lengths[b]`` real frames.

        What the EM runs use (``inference.pipeline``): a prior whose conditioning is computed
        per utterance overrides it so that an utterance's context depends neither on the
        other utterances of its batch nor on the padding. The default is ``context``."""
        return self.context(video, valid)

    def encode(self, power: torch.Tensor, ctx: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior q(z|s, v): (mean, log-variance), each [B, T, D]."""
        raise NotImplementedError

    def decoder(self, ctx: Any = None) -> Callable[[torch.Tensor], torch.Tensor]:
        """The decoder for this context: z [..., B, T, D] -> log sigma2 [..., B, T, F].

        Return a ``layers.MLPDecoder`` / ``ConditionedMLPDecoder`` / ``HeadDecoder`` where the decoder has that
        structure (inference may then run it its own way), else any callable.
        """
        raise NotImplementedError

    def decode(self, z: torch.Tensor, ctx: Any = None) -> torch.Tensor:
        """Log-variance of speech, log sigma2(z, v): [..., B, T, F] for z [..., B, T, D]."""
        return self.decoder(ctx)(z)

    def prior(self, z_like: torch.Tensor, ctx: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent prior p(z|v): (mean, log-variance) broadcastable to ``z_like``.

        For a frame-wise prior ``z_like`` gives only the shape; a sequence prior may condition
        frame t on z_<t of ``z_like`` (DKF: p(z_t|z_{t-1})). The default is N(0, I).
        """
        zero = torch.zeros((), device=z_like.device, dtype=z_like.dtype)
        return zero, zero

    def modality_weights(self, z: torch.Tensor, ctx: Any = None) -> dict[str, torch.Tensor]:
        """Per-frame (audio, visual) weights [..., B, T, 2] of each site that fuses the video,
        for latents ``z`` [..., B, T, D] in this context; {} for an audio-only prior."""
        return {}

    @property
    def z_dim(self) -> int:
        return self.config.z_dim

    # --- training ---------------------------------------------------------------------
    def loss(
        self,
        power: torch.Tensor,
        ctx: Any = None,
        frame_mask: torch.Tensor | None = None,
        beta: float = 1.0,
    ) -> dict[str, torch.Tensor]:
        """Negative ELBO per frame: Itakura-Saito reconstruction + beta * KL.

        With s ~ CN(0, v), -log p(s|z) = sum_f log v_f + |s_f|^2 / v_f (+ const), which is
        the IS divergence between |s|^2 and v up to terms constant in v (Fevotte et al. 2009).
        """
        mu, logvar = self.encode(power, ctx)
        z = reparameterise(mu, logvar)
        pmu, plogvar = self.prior(z, ctx)
        kl = gaussian_kl(mu, logvar, pmu, plogvar)
        return reduce_loss(is_divergence(power, self.decode(z, ctx)), kl, frame_mask, beta)


@runtime_checkable
class ModalitySwitch(Protocol):
    """A prior with a per-frame discrete state m_t (audio-only or audio-visual decoder).

    The EM loop (``reavise.inference.switch``) scores each state's decoder on the noisy
    frames and asks the prior for the posterior q(m); the prior decodes with it.
    """

    def state_log_variances(self, z: torch.Tensor, ctx: Any) -> list[torch.Tensor]:
        """log sigma2 of each state's decoder [..., B, T, F], in state order."""
        ...

    def state_posterior(self, log_evidence: torch.Tensor, ctx: Any) -> torch.Tensor:
        """q(m_t = each state) [B, T, K] from per-frame log-evidence [B, T, K]."""
        ...

    def with_state_posterior(self, ctx: Any, q: torch.Tensor | None) -> Any:
        """The context with q(m) [B, T, K] (None: the prior's own weights) for ``decode``."""
        ...
