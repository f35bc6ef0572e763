"""Frame encoder: a backbone of the one registry (`saliency.build_backbone`) cut after its last stage of `stride`, and
the config of the captioner's front end (`EncoderConfig`, whose weighting `vidcap.model.weighting` applies).

Grounding needs tokens that differ from position to position: a backbone that knows the objects (ImageNet, or the
synthetic pretraining of `saliency pretrain`), cut at `stride` 16 so that a small object keeps a token of its own,
and `normalise` (a LayerNorm without parameters per token) so that every token reaches the decoder's projection at
the same, sane scale. A per-token gain applied before the projection's LayerNorm is largely undone by it; `gate`
hands the maps to the decoder, which applies the gain after that LayerNorm (`vidcap.model.weighting`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from saliency import available_backbones, build_backbone
from saliency.infra.config import require, require_positive, to_dict
from vidcap.model.weighting import STRATEGIES, WEIGHTINGS

BACKBONES = tuple(available_backbones())  # the one backbone registry's names (`saliency.models.backbones`)
NORMALISE_EPS = 1e-12  # of the per-token LayerNorm (`normalise`)
STRIDES = (16, 32)  # where the backbone may be cut: after its last stride-16 stage, or after its last stage


@dataclass
class EncoderConfig:
    backbone: Literal[BACKBONES] = "resnet50"  # `saliency.available_backbones()` ("small-cnn": random, for CPU demos)
    pretrained: bool | str = True  # True: torchvision's cached ImageNet file if present; str: that file
    trainable: bool = False  # False freezes the backbone (eval-mode BatchNorm), so features can be cached
    grid: int | None = None  # adaptive-avg-pool the feature map to grid×grid (grid² tokens per frame)
    weighting: Literal[WEIGHTINGS] = "residual"  # how saliency weights the features (`vidcap.model.weighting`)
    alpha: float = 1.0  # strength of the `residual` and `gate` weightings (1 + alpha·S)
    stride: int = 32  # 16: cut the backbone after its last stride-16 stage (more, finer tokens)
    normalise: bool = False  # LayerNorm without parameters over each token's channels (before the weighting)
    track: bool = False  # append a track token per frame: where the map's peak went since the first frame (motion)

    def __post_init__(self) -> None:
        require(self.backbone in available_backbones(), "backbone",
                f"unknown backbone {self.backbone!r} (known: {', '.join(available_backbones())})")
        require(self.weighting in WEIGHTINGS, "weighting",
                f"unknown saliency weighting {self.weighting!r} (known: {', '.join(WEIGHTINGS)})")
        require_positive(self, "grid")
        require(self.stride in STRIDES, "stride", f"must be one of {', '.join(map(str, STRIDES))}, got {self.stride}")
        require(self.alpha >= -1, "alpha", f"must be >= -1, so that the weights (1 + alpha·S) stay >= 0; got {self.alpha}")

    def token_settings(self) -> dict:
        """The settings that shape the tokens and signals the front end returns (what a feature cache must key on):
        all but `alpha` where the weighting leaves it to the decoder (`gate`) or ignores it."""
        settings = to_dict(self)
        if not STRATEGIES[self.weighting].alpha_in_tokens:
            del settings["alpha"]
        return settings


class FrameEncoder(nn.Module):
    """Frames `[N,3,H,W]` (ImageNet-normalised RGB) → feature maps `[N,C,h,w]` of the last conv stage
    (h ≈ H/stride, or `grid` when set), each position's C channels LayerNorm'ed when `normalise`; `out_channels`
    is C."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self.backbone, self.out_channels = build_backbone(config.backbone, config.pretrained, config.stride)
        self.pool = nn.AdaptiveAvgPool2d(config.grid) if config.grid else nn.Identity()
        self.backbone.requires_grad_(config.trainable)
        # an onnxruntime export of this frozen encoder (`vidcap.inference.front_end_backend`), for frames of its size
        self.session = None
        self.train()

    def train(self, mode: bool = True) -> FrameEncoder:
        super().train(mode)
        if not self.config.trainable:
            self.backbone.eval()  # frozen: BatchNorm keeps its ImageNet statistics, features stay cacheable
        return self

    def forward(self, frames: Tensor) -> Tensor:
        if self.session is not None and self.session.accepts(frames):
            return self.session(frames)  # [N,C,h,w]
        with torch.set_grad_enabled(self.config.trainable and torch.is_grad_enabled()):
            features = self.pool(self.backbone(frames))  # [N,C,h,w]
        if not self.config.normalise:
            return features
        # eps far below any feature's variance: the scale of the backbone's output must not decide the token's
        tokens = F.layer_norm(features.movedim(1, -1), (features.shape[1],), eps=NORMALISE_EPS)  # [N,h,w,C]
        return tokens.movedim(-1, 1)  # [N,C,h,w]

    def extra_repr(self) -> str:
        return f"stride={self.config.stride}, normalise={self.config.normalise}"
