"""Visual front-ends: mouth ROIs (or precomputed lip embeddings) -> per-frame features.

All front-ends map ``video`` [B, T, H, W] (ROI pixels in 0..1) or [B, T, E] (embeddings of a
lip-reading network, ``visual_input="embedding"``) to features [B, T, visual_dim]:

* ``mlp``: each frame flattened, 67*67 -> 512 ReLU -> visual_dim tanh, the raw-lips branch of
  the AV-VAE (Sadeghi et al. 2020, IEEE/ACM TASLP, Fig. 2).
* ``cnn``: a small strided CNN per frame, then a residual temporal 1-D convolution over a few
  frames (lip motion, not only lip shape), a cheap cousin of lip-reading front-ends
  (Stafylakis & Tzimiropoulos 2017). A few ms per utterance on CPU.
* ``pretrained``: a lip reader trained beforehand on the clean audio-visual speech of the
  corpus (``models/lipreader.py``, ``reavise lipreader train``: lips -> clean log-mel envelope
  and voice activity), then a linear layer + tanh to visual_dim. The file
  (``frontend_path``) is read once, when the prior is built for training: its architecture
  is copied into ``frontend_config`` and its weights into the prior's own state dict
  (``visual.lipreader.*``), so a trained prior's checkpoint loads without the file. Frozen
  by default (``frontend_trainable``); ``frontend_features`` picks what the prior sees.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import ReaviseError


@dataclass
class VisualConfig:
    """Visual front-end settings shared by every audio-visual prior."""

    #: "roi": mouth pixels [B, T, H, W]; "embedding": precomputed features [B, T, embedding_dim]
    visual_input: str = "roi"
    roi_size: int = 67
    embedding_dim: int = 0
    #: "mlp" (published AV-VAE lips branch), "cnn" (2-D CNN + temporal 1-D conv) or
    #: "pretrained" (a lip reader from ``reavise lipreader train``, see frontend_path)
    visual_frontend: str = "mlp"
    visual_hidden: int = 512
    visual_dim: int = 32
    #: frames seen by the temporal convolution of the cnn front-end (odd)
    temporal_kernel: int = 5
    #: visual_frontend "pretrained": the lip-reader file, read only while frontend_config is
    #: empty (building a prior to train); a trained prior holds the rest itself
    frontend_path: str = ""
    #: the lip reader's architecture (filled in from frontend_path when the prior is built)
    frontend_config: dict[str, Any] = field(default_factory=dict)
    #: fine-tune the lip reader with the prior (False: frozen, eval mode, no gradients)
    frontend_trainable: bool = False
    #: what the prior sees of the lip reader: "embedding", "prediction" (envelope + activity
    #: logit) or "both"
    frontend_features: str = "both"


FRONTENDS = ("mlp", "cnn", "pretrained")
FRONTEND_FEATURES = ("embedding", "prediction", "both")


class VisualFrontend(nn.Module):
    """Per-frame visual features [B, T, visual_dim] from ROIs or embeddings."""

    def __init__(self, cfg: VisualConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.visual_input not in ("roi", "embedding"):
            raise ReaviseError(f"visual_input must be 'roi' or 'embedding', got {cfg.visual_input!r}")
        if cfg.visual_frontend not in FRONTENDS:
            raise ReaviseError(
                f"visual_frontend must be one of {', '.join(FRONTENDS)}, got {cfg.visual_frontend!r}"
            )
        if cfg.visual_input == "embedding" and cfg.embedding_dim < 1:
            raise ReaviseError("visual_input='embedding' needs embedding_dim > 0")
        dv = cfg.visual_dim
        self.cnn: nn.Module | None = None
        self.temporal: nn.Conv1d | None = None
        self.lipreader: nn.Module | None = None
        if cfg.visual_input == "embedding":
            self.frame = nn.Sequential(
                nn.Linear(cfg.embedding_dim, cfg.visual_hidden), nn.ReLU(),
                nn.Linear(cfg.visual_hidden, dv), nn.Tanh(),
            )
        elif cfg.visual_frontend == "pretrained":
            self.lipreader = _build_lipreader(cfg)
            lr = self.lipreader.cfg
            din = {"embedding": lr.embed_dim, "prediction": lr.out_dim,
                   "both": lr.embed_dim + lr.out_dim}[cfg.frontend_features]
            self.frame = nn.Sequential(nn.Linear(din, dv), nn.Tanh())
            if not cfg.frontend_trainable:
                self.lipreader.requires_grad_(False)
                self.lipreader.eval()
        elif cfg.visual_frontend == "mlp":
            self.frame = nn.Sequential(
                nn.Flatten(-2),
                nn.Linear(cfg.roi_size * cfg.roi_size, cfg.visual_hidden), nn.ReLU(),
                nn.Linear(cfg.visual_hidden, dv), nn.Tanh(),
            )
        else:
            # 67x67 -> 34 -> 17 -> 9 with 8/16/32 channels, pooled to 3x3 (288 values)
            self.cnn = nn.Sequential(
                nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.ReLU(),
                nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
                nn.AdaptiveAvgPool2d(3), nn.Flatten(),
            )
            self.frame = nn.Sequential(nn.Linear(288, dv), nn.Tanh())
        if cfg.visual_frontend == "cnn":
            k = cfg.temporal_kernel
            if k < 1 or k % 2 == 0:
                raise ReaviseError(f"temporal_kernel must be odd and positive, got {k}")
            self.temporal = nn.Conv1d(dv, dv, k, padding=k // 2)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        if cfg.visual_input == "embedding":
            if video.dim() != 3 or video.shape[-1] != cfg.embedding_dim:
                raise ReaviseError(
                    f"visual embeddings must be [B, T, {cfg.embedding_dim}], got {tuple(video.shape)}"
                )
            h = self.frame(video)
        elif self.lipreader is not None:
            if video.dim() != 4:
                raise ReaviseError(f"video must be [B, T, H, W], got {tuple(video.shape)}")
            train_it = cfg.frontend_trainable and torch.is_grad_enabled()
            with torch.set_grad_enabled(train_it):
                emb = self.lipreader(video)
                parts = []
                if cfg.frontend_features in ("embedding", "both"):
                    parts.append(emb)
                if cfg.frontend_features in ("prediction", "both"):
                    mel, vad = self.lipreader.heads(emb)
                    parts += [mel, vad[..., None]]
                feats = torch.cat(parts, -1) if len(parts) > 1 else parts[0]
            h = self.frame(feats)
        else:
            if video.dim() != 4:
                raise ReaviseError(f"video must be [B, T, H, W], got {tuple(video.shape)}")
            B, T, H, W = video.shape
            x = (video - 0.5) * 2.0  # centre pixels so blank (0) frames are far from typical ones
            if self.cnn is None:
                if H != cfg.roi_size or W != cfg.roi_size:
                    raise ReaviseError(
                        f"video frames are {H}x{W} but the model expects {cfg.roi_size}x{cfg.roi_size}"
                    )
                h = self.frame(x)
            else:
                h = self.frame(self.cnn(x.reshape(B * T, 1, H, W))).reshape(B, T, -1)
        if self.temporal is not None:
            # residual temporal convolution over neighbouring frames (lip motion)
            h = h + torch.tanh(self.temporal(h.transpose(1, 2))).transpose(1, 2)
        return h

    def train(self, mode: bool = True):
        super().train(mode)
        if self.lipreader is not None and not self.cfg.frontend_trainable:
            self.lipreader.eval()  # frozen: no dropout while the prior trains
        return self


def _build_lipreader(cfg: VisualConfig) -> nn.Module:
    """The lip reader of a ``pretrained`` front-end: from ``frontend_config`` when the config
    holds it (a trained prior: weights come from its state dict), else from the file
    ``frontend_path`` (weights loaded; the architecture is recorded in ``cfg``)."""
    from .lipreader import build_lipreader, read_lipreader

    if cfg.frontend_features not in FRONTEND_FEATURES:
        raise ReaviseError(
            f"frontend_features must be one of {', '.join(FRONTEND_FEATURES)}, got {cfg.frontend_features!r}"
        )
    if cfg.visual_input != "roi":
        raise ReaviseError("visual_frontend 'pretrained' takes mouth ROIs (visual_input 'roi')")
    state = None
    if not cfg.frontend_config:
        if not cfg.frontend_path:
            raise ReaviseError(
                "visual_frontend 'pretrained' needs frontend_path (a file of `reavise lipreader train`)"
            )
        payload = read_lipreader(cfg.frontend_path)
        cfg.frontend_config = dict(payload["config"])
        state = payload["state_dict"]
    model = build_lipreader(cfg.frontend_config)
    if model.cfg.roi_size != cfg.roi_size:
        raise ReaviseError(
            f"the lip reader takes {model.cfg.roi_size}x{model.cfg.roi_size} ROIs, the prior {cfg.roi_size}"
        )
    if state is not None:
        model.load_state_dict(state)
    return model
