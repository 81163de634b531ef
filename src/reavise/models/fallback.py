"""The audio fallback: an audio-visual prior on the frames with lips, an audio-only prior on
the frames without (no face found, a dropped frame, no video at all).

A hard, per-frame audio / audio-visual switch (the soft, learned one is ``switching.py``,
after Sadeghi & Alameda-Pineda, ICASSP 2021) driven by the validity mask the face and mouth
detector gives. An AV prior trained with modality dropout models the no-video frames with the
decoder it shares with the lips; on GRID s1 that cost 0.7-1.4 dB SI-SDR against the A-VAE at
0 dB (docs/grid-study.md). Here those frames get the A-VAE itself: without video the prior *is*
the A-VAE (same numbers, same seed), with lips on every frame it is the AV prior.

Both parts are frame-wise, share z_dim and x_dim, and for an AV-CVAE the latent prior on the
no-video frames is N(0, I) in both. It is built from two trained checkpoints
(:func:`combine`, ``reavise combine``), or trained as one (each part's own ELBO, summed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, ReaviseError
from .av_base import AVContext
from .base import SpeechPrior
from .layers import FrameSelectDecoder
from .registry import PRIORS, build_prior, register_prior


@dataclass
class AudioFallbackConfig:
    """The two parts: an audio-visual prior and an audio-only one, by registry name and
    config (the audio part's x_dim and z_dim default to the AV part's)."""

    av_model: str = "av-cvae"
    av_config: dict = field(default_factory=dict)
    audio_model: str = "a-vae"
    audio_config: dict = field(default_factory=dict)


@register_prior("audio-fallback", AudioFallbackConfig)
class AudioFallback(SpeechPrior):
    """``av`` on frames with valid lips, ``audio`` on the others (encoder, decoder, prior)."""

    uses_video = True

    def __init__(self, config: AudioFallbackConfig):
        super().__init__()
        self.config = config
        for key in ("av_model", "audio_model"):
            name = getattr(config, key)
            if name not in PRIORS or name == "audio-fallback":
                known = ", ".join(n for n in PRIORS.names() if n != "audio-fallback")
                raise ReaviseError(f"audio-fallback: {key} {name!r} is not a prior to combine; known: {known}")
        self.av = build_prior(config.av_model, config.av_config)
        audio_cfg = dict(config.audio_config)
        for k in ("x_dim", "z_dim"):
            audio_cfg.setdefault(k, getattr(self.av.config, k))
        self.audio = build_prior(config.audio_model, audio_cfg)
        if not self.av.uses_video:
            raise ReaviseError(f"audio-fallback: av_model {config.av_model!r} does not take video")
        if self.audio.uses_video:
            raise ReaviseError(f"audio-fallback: audio_model {config.audio_model!r} takes video; it must be audio-only")
        if not (self.av.framewise and self.audio.framewise):
            raise ReaviseError("audio-fallback: both parts must be frame-wise priors (not RVAE/DKF)")
        for k in ("x_dim", "z_dim"):
            a, b = getattr(self.av.config, k), getattr(self.audio.config, k)
            if a != b:
                raise ReaviseError(f"audio-fallback: the parts differ in {k} ({config.av_model} {a}, {config.audio_model} {b})")
        self.standard_prior = self.av.standard_prior and self.audio.standard_prior

    @property
    def z_dim(self) -> int:
        return self.av.z_dim

    def context(self, video, valid) -> AVContext:
        return self.av.context(video, valid)

    def batch_context(self, video, valid, lengths) -> AVContext:
        return self.av.batch_context(video, valid, lengths)

    @staticmethod
    def _valid(ctx: Any) -> torch.Tensor | None:
        """The frames with lips [B, T] (None: no video at all)."""
        if not isinstance(ctx, AVContext) or ctx.feat is None:
            return None
        if ctx.valid is None:
            return torch.ones(ctx.feat.shape[:-1], dtype=torch.bool, device=ctx.feat.device)
        return ctx.valid

    def _per_frame(self, ctx, av_call, audio_call):
        """(mean, log-variance) of the AV part on frames with lips, the audio part's elsewhere;
        only the part(s) needed are run."""
        valid = self._valid(ctx)
        if valid is None or not valid.any():
            return audio_call()
        out = av_call()
        if valid.all():
            return out
        m = valid[..., None]
        return tuple(torch.where(m, a, b) for a, b in zip(out, audio_call(), strict=True))

    def encode(self, power, ctx=None):
        return self._per_frame(ctx, lambda: self.av.encode(power, ctx), lambda: self.audio.encode(power))

    def decoder(self, ctx=None):
        """The audio part's decoder without lips, the AV part's with lips on every frame (each
        keeps its fast path), else a per-frame choice of the two."""
        valid = self._valid(ctx)
        if valid is None or not valid.any():
            return self.audio.decoder(None)
        if valid.all():
            return self.av.decoder(ctx)
        return FrameSelectDecoder(valid, self.av.decoder(ctx), self.audio.decoder(None))

    def prior(self, z_like, ctx=None):
        return self._per_frame(ctx, lambda: self.av.prior(z_like, ctx), lambda: self.audio.prior(z_like, None))

    def modality_weights(self, z, ctx=None, power=None):
        """The AV part's weights on frames with lips; (1, 0) (audio only) on the others."""
        valid = self._valid(ctx)
        if valid is None:
            return {}
        return {k: torch.where(valid[..., None], w, torch.tensor([1.0, 0.0], dtype=w.dtype, device=w.device))
                for k, w in self.av.modality_weights(z, ctx, power).items()}  # fmt: skip

    def loss(self, power, ctx=None, frame_mask=None, beta=1.0):
        """Each part's negative ELBO on the same clean batch, summed (the parts share nothing)."""
        a = self.av.loss(power, ctx, frame_mask, beta)
        b = self.audio.loss(power, None, frame_mask, beta)
        return {k: a[k] + b[k] for k in a}


def combine(av_path: str | Path, audio_path: str | Path, dst: str | Path, report=None) -> Path:
    """Write the audio-fallback prior of two trained checkpoints (an AV prior, an audio-only
    prior) to ``dst``; one-line errors for a part of the wrong kind or mismatched sizes."""
    from .checkpoint import read_checkpoint, save_checkpoint

    parts = {}
    for role, path in (("av", av_path), ("audio", audio_path)):
        payload = read_checkpoint(path)
        if payload["model"] == "audio-fallback":
            raise CheckpointError(f"{path}: already an audio-fallback prior; give its {role} part")
        parts[role] = payload
    config = {"av_model": parts["av"]["model"], "av_config": parts["av"]["config"],
              "audio_model": parts["audio"]["model"], "audio_config": parts["audio"]["config"]}  # fmt: skip
    try:
        model = build_prior("audio-fallback", config)
    except ReaviseError as exc:
        raise CheckpointError(f"{av_path} + {audio_path}: {exc}") from None
    state = {f"{role}.{k}": v for role in ("av", "audio") for k, v in parts[role]["state_dict"].items()}
    model.load_state_dict(state)
    extra = {"parts": {"av": Path(av_path).name, "audio": Path(audio_path).name},
             "av_extra": parts["av"].get("extra", {}), "audio_extra": parts["audio"].get("extra", {})}  # fmt: skip
    if report is not None:
        report(f"audio-fallback prior: {config['av_model']} on frames with lips, "
               f"{config['audio_model']} on the others")  # fmt: skip
    return save_checkpoint(dst, model, extra=extra)


__all__ = ["AudioFallback", "AudioFallbackConfig", "combine"]
