"""Frame encoder (a torchvision backbone's last conv stage) and saliency weighting of its features.

The weighting is the core of the method: frame feature maps `F: [B,T,C,h,w]` and saliency
`S: [B,T,1,H,W]` (resized to h×w, scaled to [0,1] per frame) become the visual tokens `[B, T·k, C]`
the decoder attends to, under one of the modes `none`, `multiply`, `residual`, `pool`, `prior`, `gate`.

Grounding needs tokens that differ from position to position: a backbone that knows the objects (ImageNet, or the
synthetic pretraining of `saliency pretrain`), cut at `stride` 16 so that a small object keeps a token of its own,
and `normalise` (a LayerNorm without parameters per token) so that every token reaches the decoder's projection at
the same, sane scale. A per-token gain applied before the projection's LayerNorm is largely undone by it; `gate`
hands the maps to the decoder, which applies the gain after that LayerNorm (`vidcap.model.decoder`).

Per-frame tokens carry no motion: to name it, the decoder would have to compare which token positions the maps
highlight from frame to frame. `track` makes it explicit: one *track token* per frame whose only content is
TRACK_CHANNELS extra channels saying where the map's sharpened peak is and how wide it is (x, y, log spread),
relative to the clip's first frame, so a displacement or a growth reads directly (after the decoder's projection
LayerNorm the direction of the motion is all such a token says). Every token then has those channels (zero on the
grid tokens), with or without maps, so the arms of a comparison keep identical decoders.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from saliency.infra.config import require, require_positive, to_dict
from saliency.infra.errors import UserError
from saliency import available_backbones, build_backbone

BACKBONES = tuple(available_backbones())  # the one backbone registry's names (`saliency.models.backbones`)
Weighting = Literal["none", "multiply", "residual", "pool", "prior", "gate"]
WEIGHTINGS: tuple[str, ...] = get_args(Weighting)
ALPHA_WEIGHTINGS: tuple[str, ...] = ("residual", "gate")  # the weightings `alpha` sets the strength of
TOKEN_ALPHA: tuple[str, ...] = ("residual",)  # the weightings whose `alpha` is in the tokens (for `gate` the decoder's)
PRIOR_EPS = 1e-6  # floor of S in the `prior` bias: log(1e-6) ≈ -13.8 all but masks saliency-free tokens
NORMALISE_EPS = 1e-12  # of the per-token LayerNorm (`normalise`)
STRIDES = (16, 32)  # where the backbone may be cut: after its last stride-16 stage, or after its last stage
TRACK_CHANNELS = 3  # a track token's geometry: x, y (fractions of the frame) and log spread, minus the first frame's
TRACK_SHARPNESS = 8.0  # the track follows S**8 (S max-normalised): the peak, not the mass of the distractors
# Each geometry channel at about unit scale for a typical motion (a travel of 0.1–0.2 of the frame, a growth of ±0.5
# in log spread), the scale of the normalised features
TRACK_SCALE = (8.0, 8.0, 2.0)


@dataclass
class EncoderConfig:
    backbone: Literal[BACKBONES] = "resnet50"  # `saliency.available_backbones()` ("small-cnn": random, for CPU demos)
    pretrained: bool | str = True  # True: torchvision's cached ImageNet file if present; str: that file
    trainable: bool = False  # False freezes the backbone (eval-mode BatchNorm), so features can be cached
    grid: int | None = None  # adaptive-avg-pool the feature map to grid×grid (grid² tokens per frame)
    weighting: Weighting = "residual"  # how saliency weights the features (see `weight_features`)
    alpha: float = 1.0  # strength of the `residual` and `gate` weightings (1 + alpha·S)
    stride: int = 32  # 16: cut the backbone after its last stride-16 stage (more, finer tokens)
    normalise: bool = False  # LayerNorm without parameters over each token's channels (before the weighting)
    track: bool = False  # append a track token per frame: where the map's peak went since the first frame (motion)

    def __post_init__(self) -> None:
        require(self.backbone in available_backbones(), "backbone",
                f"unknown backbone {self.backbone!r} (known: {', '.join(available_backbones())})")
        require_positive(self, "grid")
        require(self.stride in STRIDES, "stride", f"must be one of {', '.join(map(str, STRIDES))}, got {self.stride}")
        require(self.alpha >= -1, "alpha", f"must be >= -1, so that the weights (1 + alpha·S) stay >= 0; got {self.alpha}")

    def token_settings(self) -> dict:
        """The settings that shape the tokens and maps `weight_features` returns (what a feature cache must key
        on): all but `alpha` where the weighting leaves it to the decoder (`gate`) or ignores it."""
        settings = to_dict(self)
        if self.weighting not in TOKEN_ALPHA:
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
        self.session = None  # an onnxruntime export of this frozen encoder (`vidcap.app.front_end_backend`), for frames of its size
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


def weight_features(features: Tensor, saliency: Tensor | None, mode: str, alpha: float = 1.0,
                    track: bool = False) -> tuple[Tensor, Tensor | None]:
    """Saliency-weighted visual tokens.

    features `[B,T,C,h,w]` (or `[T,C,h,w]`, one video); saliency: probability or log-density maps of
    any size, `[B,T,1,H,W]` or flattened `[B·T,1,H,W]` (`[T,1,H,W]` for one video); None is allowed
    for `none`. Returns tokens `[B, T·k, C]` ordered (frame, row, column), with k = h·w (k = 1 for
    `pool`), and for `prior` the additive attention bias `[B, T·k]` = log(max(S, 1e-6)), for `gate` the maps
    themselves `[B, T·k]` in [0, 1] (the decoder's gain after its LayerNorm), else None. With `track`, every token
    has C + TRACK_CHANNELS channels and, given maps, T track tokens (`track_tokens`) follow, with bias 0 (`prior`)
    or 1 (`gate`).
    """
    if mode not in WEIGHTINGS:
        raise UserError(f"unknown saliency weighting {mode!r} (known: {', '.join(WEIGHTINGS)})")
    video = features if features.dim() == 5 else features.unsqueeze(0)  # [B,T,C,h,w]
    B, T, _, h, w = video.shape
    if mode == "none":
        return (F.pad(to_tokens(video), (0, TRACK_CHANNELS)) if track else to_tokens(video)), None
    if saliency is None:
        raise UserError(f"saliency weighting {mode!r} needs saliency maps; use weighting 'none' without them")
    if saliency.numel() != B * T * saliency.shape[-2] * saliency.shape[-1]:
        raise ValueError(f"saliency {tuple(saliency.shape)} does not give one map per frame of {tuple(video.shape)}")
    flat = saliency.reshape(B * T, 1, *saliency.shape[-2:])  # [B·T,1,H,W]
    S = saliency_weights(flat, (h, w)).to(video.dtype).view(B, T, 1, h, w)  # [B,T,1,h,w]
    tokens, bias = _weighted_tokens(video, S, mode, alpha)
    if not track:
        return tokens, bias
    tracked = track_tokens(flat, B, T, video.shape[2]).to(video.dtype)  # [B,T,C+TRACK_CHANNELS]
    tokens = torch.cat([F.pad(tokens, (0, TRACK_CHANNELS)), tracked], dim=1)  # [B,T·k+T,C+TRACK_CHANNELS]
    if bias is not None:
        bias = torch.cat([bias, bias.new_full((B, T), 1.0 if mode == "gate" else 0.0)], dim=1)  # [B,T·k+T]
    return tokens, bias


def _weighted_tokens(video: Tensor, S: Tensor, mode: str, alpha: float) -> tuple[Tensor, Tensor | None]:
    """Features `[B,T,C,h,w]` and weights `[B,T,1,h,w]` in [0,1] → `weight_features`' tokens and bias."""
    B, T, _, h, w = video.shape
    if mode == "multiply":
        return to_tokens(video * S), None
    if mode == "residual":
        return to_tokens((1 + alpha * S) * video), None
    if mode == "pool":
        pooled = (S * video).sum(dim=(-2, -1)) / S.sum(dim=(-2, -1))  # [B,T,C]; ΣS ≥ 1 (peak is 1)
        return pooled, None
    if mode == "gate":
        return to_tokens(video), S.reshape(B, T * h * w)  # [B,T·h·w], same order as the tokens
    bias = S.clamp_min(PRIOR_EPS).log().reshape(B, T * h * w)  # [B,T·h·w], same order as the tokens
    return to_tokens(video), bias


def track_tokens(saliency: Tensor, B: int, T: int, C: int) -> Tensor:
    """One track token per frame `[B,T,C+TRACK_CHANNELS]` from the maps `[B·T,1,H,W]` of B clips of T frames: zero in
    the C feature channels, then the centre x, y (fractions of the frame) and log spread of the sharpened map
    (S**TRACK_SHARPNESS, S max-normalised at the maps' own resolution), each minus its value in the clip's first
    frame and scaled by TRACK_SCALE."""
    peak = saliency_weights(saliency, saliency.shape[-2:]) ** TRACK_SHARPNESS  # [B·T,1,H,W], max 1
    mass = peak / peak.sum(dim=(-2, -1), keepdim=True)  # [B·T,1,H,W], sums to 1
    H, W = mass.shape[-2:]
    ys = (torch.arange(H, dtype=mass.dtype, device=mass.device) + 0.5) / H  # [H]
    xs = (torch.arange(W, dtype=mass.dtype, device=mass.device) + 0.5) / W  # [W]
    x = (mass.sum(dim=-2) * xs).sum(dim=-1)  # [B·T,1]
    y = (mass.sum(dim=-1) * ys).sum(dim=-1)  # [B·T,1]
    variance = (mass * ((xs - x[..., None, None]) ** 2 + (ys[:, None] - y[..., None, None]) ** 2)).sum(dim=(-2, -1))
    geometry = torch.cat([x, y, 0.5 * variance.clamp_min(1e-12).log()], dim=-1).view(B, T, TRACK_CHANNELS)
    # Since the first frame, not about the clip's mean: attention that spreads over the track tokens alike then still
    # reads the mean displacement (a mean-centred track averages to 0 whatever the motion)
    geometry = (geometry - geometry[:, :1]) * geometry.new_tensor(TRACK_SCALE)  # [B,T,3]
    return F.pad(geometry, (C, 0))  # [B,T,C+3]


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
        self.track = config.track

    def forward(self, features: Tensor, saliency: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """features `[B,T,C,h,w]`, saliency `[B,T,1,H,W]` → tokens `[B,T·k,C]`, bias `[B,T·k]` | None."""
        return weight_features(features, saliency, self.mode, self.alpha, self.track)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, alpha={self.alpha}, track={self.track}"
