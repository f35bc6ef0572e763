"""Frame encoder (a torchvision backbone's last conv stage) and saliency weighting of its features.

The weighting is the core of the method: frame feature maps `F: [B,T,C,h,w]` and saliency
`S: [B,T,1,H,W]` (resized to h×w, scaled to [0,1] per frame) become the visual tokens `[B, T·k, C]`
the decoder attends to, under one of the modes `none`, `multiply`, `residual`, `pool`, `prior`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision import models

from saliency.infra.config import require, require_positive
from saliency.infra.errors import UserError
from saliency.infra.weights import load_imagenet_backbone
from saliency.models import conv_bn_relu, resnet_trunk

Backbone = Literal["resnet50", "resnet18", "mobilenet_v3_small", "mobilenet_v2", "small-cnn"]
Weighting = Literal["none", "multiply", "residual", "pool", "prior"]
WEIGHTINGS: tuple[str, ...] = get_args(Weighting)
PRIOR_EPS = 1e-6  # floor of S in the `prior` bias: log(1e-6) ≈ -13.8 all but masks saliency-free tokens
SMALL_CNN_WIDTHS = (16, 32, 64, 128, 128)  # five stride-2 stages: stride 32, like the torchvision backbones


@dataclass
class EncoderConfig:
    backbone: Backbone = "resnet50"  # torchvision ImageNet backbone, or "small-cnn" (random, for CPU demos)
    pretrained: bool | str = True  # True: torchvision's cached ImageNet file if present; str: that file
    trainable: bool = False  # False freezes the backbone (eval-mode BatchNorm), so features can be cached
    grid: int | None = None  # adaptive-avg-pool the feature map to grid×grid (grid² tokens per frame)
    weighting: Weighting = "residual"  # how saliency weights the features (see `weight_features`)
    alpha: float = 1.0  # strength of the `residual` weighting (1 + alpha·S)·F

    def __post_init__(self) -> None:
        require_positive(self, "grid")
        require(self.alpha >= -1, "alpha", f"must be >= -1, so that the weights (1 + alpha·S) stay >= 0; got {self.alpha}")


# ----------------------------------------------------------------------------- backbones

_BACKBONES: dict[str, Callable[[bool | str], tuple[nn.Module, int]]] = {}


def register_backbone(name: str) -> Callable:
    """Decorator: register `fn(pretrained) -> (backbone cut after its last conv stage, output channels)`."""
    def decorate(fn):
        assert name not in _BACKBONES, f"backbone {name!r} registered twice"
        _BACKBONES[name] = fn
        return fn
    return decorate


def build_backbone(name: str, pretrained: bool | str) -> tuple[nn.Module, int]:
    """The named backbone (ImageNet weights from local files only) and its output channels."""
    if name not in _BACKBONES:
        raise UserError(f"unknown encoder backbone {name!r} (known: {', '.join(sorted(_BACKBONES))})")
    return _BACKBONES[name](pretrained)


def _register_resnet(name: str, constructor, weights) -> None:
    @register_backbone(name)
    def build(pretrained: bool | str) -> tuple[nn.Module, int]:
        net = constructor(weights=None)
        backbone = resnet_trunk(net)
        load_imagenet_backbone(backbone, weights, pretrained, name=name, prefix="")
        return backbone, net.fc.in_features


def _register_mobilenet(name: str, constructor, weights) -> None:
    @register_backbone(name)
    def build(pretrained: bool | str) -> tuple[nn.Module, int]:
        backbone = constructor(weights=None).features
        load_imagenet_backbone(backbone, weights, pretrained, name=name, prefix="features.")
        return backbone, backbone[-1].out_channels


_register_resnet("resnet50", models.resnet50, models.ResNet50_Weights.IMAGENET1K_V1)
_register_resnet("resnet18", models.resnet18, models.ResNet18_Weights.IMAGENET1K_V1)
_register_mobilenet("mobilenet_v3_small", models.mobilenet_v3_small, models.MobileNet_V3_Small_Weights.IMAGENET1K_V1)
_register_mobilenet("mobilenet_v2", models.mobilenet_v2, models.MobileNet_V2_Weights.IMAGENET1K_V1)


@register_backbone("small-cnn")
def small_cnn(pretrained: bool | str) -> tuple[nn.Module, int]:
    """Five stride-2 conv stages, randomly initialised (for CPU demos): it ignores `pretrained=True` and
    refuses a file."""
    if isinstance(pretrained, str):
        raise UserError(f"backbone small-cnn has no pretrained weights; got pretrained={pretrained!r}")
    widths = (3,) + SMALL_CNN_WIDTHS
    return nn.Sequential(*(conv_bn_relu(i, o, 3, stride=2) for i, o in pairwise(widths))), widths[-1]


class FrameEncoder(nn.Module):
    """Frames `[N,3,H,W]` (ImageNet-normalised RGB) → feature maps `[N,C,h,w]` of the last conv stage
    (h ≈ H/32, or `grid` when set); `out_channels` is C."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self.backbone, self.out_channels = build_backbone(config.backbone, config.pretrained)
        self.pool = nn.AdaptiveAvgPool2d(config.grid) if config.grid else nn.Identity()
        self.backbone.requires_grad_(config.trainable)
        self.session = None  # an onnxruntime export of this frozen encoder (`vidcap.backends`), for frames of its size
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
            features = self.backbone(frames)  # [N,C,H/32,W/32]
        return self.pool(features)  # [N,C,h,w]


# ----------------------------------------------------------------------------- saliency weighting

def saliency_weights(saliency: Tensor, size: tuple[int, int]) -> Tensor:
    """Saliency `[N,1,H,W]` → weights `[N,1,h,w]` in [0,1], each frame divided by its maximum (a constant
    map → all ones). A frame with any negative value is a log-density (the saliency models' output) and
    is exponentiated first; otherwise it is a probability (or any non-negative) map."""
    is_log = saliency.amin(dim=(-2, -1), keepdim=True) < 0  # [N,1,1,1]
    prob = torch.where(is_log, saliency.clamp(max=0).exp(), saliency)  # [N,1,H,W]; clamp: no inf in either branch
    H, W = prob.shape[-2:]
    if H >= size[0] and W >= size[1]:
        resized = F.interpolate(prob, size=size, mode="area")  # [N,1,h,w], mean over each cell
    else:
        resized = F.interpolate(prob, size=size, mode="bilinear", align_corners=False)  # [N,1,h,w]
    peak = resized.amax(dim=(-2, -1), keepdim=True)  # [N,1,1,1]
    tiny = torch.finfo(resized.dtype).tiny
    return torch.where(peak > tiny, resized / peak.clamp_min(tiny), torch.ones_like(resized))  # [N,1,h,w]


def weight_features(features: Tensor, saliency: Tensor | None, mode: str,
                    alpha: float = 1.0) -> tuple[Tensor, Tensor | None]:
    """Saliency-weighted visual tokens.

    features `[B,T,C,h,w]` (or `[T,C,h,w]`, one video); saliency: probability or log-density maps of
    any size, `[B,T,1,H,W]` or flattened `[B·T,1,H,W]` (`[T,1,H,W]` for one video); None is allowed
    for `none`. Returns tokens `[B, T·k, C]` ordered (frame, row, column), with k = h·w (k = 1 for
    `pool`), and for `prior` the additive attention bias `[B, T·k]` = log(max(S, 1e-6)), else None.
    """
    if mode not in WEIGHTINGS:
        raise UserError(f"unknown saliency weighting {mode!r} (known: {', '.join(WEIGHTINGS)})")
    video = features if features.dim() == 5 else features.unsqueeze(0)  # [B,T,C,h,w]
    B, T, _, h, w = video.shape
    if mode == "none":
        return to_tokens(video), None
    if saliency is None:
        raise UserError(f"saliency weighting {mode!r} needs saliency maps; use weighting 'none' without them")
    if saliency.numel() != B * T * saliency.shape[-2] * saliency.shape[-1]:
        raise ValueError(f"saliency {tuple(saliency.shape)} does not give one map per frame of {tuple(video.shape)}")
    flat = saliency.reshape(B * T, 1, *saliency.shape[-2:])  # [B·T,1,H,W]
    S = saliency_weights(flat, (h, w)).to(video.dtype).view(B, T, 1, h, w)  # [B,T,1,h,w]
    if mode == "multiply":
        return to_tokens(video * S), None
    if mode == "residual":
        return to_tokens((1 + alpha * S) * video), None
    if mode == "pool":
        pooled = (S * video).sum(dim=(-2, -1)) / S.sum(dim=(-2, -1))  # [B,T,C]; ΣS ≥ 1 (peak is 1)
        return pooled, None
    bias = S.clamp_min(PRIOR_EPS).log().reshape(B, T * h * w)  # [B,T·h·w], same order as the tokens
    return to_tokens(video), bias


def to_tokens(video: Tensor) -> Tensor:
    """`[B,T,C,h,w]` → `[B, T·h·w, C]`, tokens ordered (frame, row, column)."""
    B, T, C, h, w = video.shape
    return video.permute(0, 1, 3, 4, 2).reshape(B, T * h * w, C)  # [B,T·h·w,C]


class SaliencyWeighting(nn.Module):
    """`weight_features` with the config's mode and alpha (no parameters)."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        if config.weighting not in WEIGHTINGS:
            raise UserError(f"unknown saliency weighting {config.weighting!r} (known: {', '.join(WEIGHTINGS)})")
        self.mode = config.weighting
        self.alpha = float(config.alpha)

    def forward(self, features: Tensor, saliency: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """features `[B,T,C,h,w]`, saliency `[B,T,1,H,W]` → tokens `[B,T·k,C]`, bias `[B,T·k]` | None."""
        return weight_features(features, saliency, self.mode, self.alpha)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, alpha={self.alpha}"
