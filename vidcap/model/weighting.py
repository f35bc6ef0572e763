"""Saliency weighting of the frame features, the core of the method: one strategy object per mode.

Frame feature maps `F: [B,T,C,h,w]` and saliency `S: [B,T,1,H,W]` (resized to h×w, scaled to [0,1] per frame)
become the visual tokens `[B, T·k, C]` the decoder attends to and, for some modes, a per-token signal `[B, T·k]`
handed to the decoder. Each mode is a `Weighting` that holds both halves of what it does: `tokens` (the encoder
side, cacheable) and `into_decoder` (what the decoder does with the signal), so no other code asks which mode it is.

- `none`: the features as they are (no maps needed); `multiply`: F·S; `residual`: (1 + αS)·F; `pool`: the
  saliency-weighted spatial average ΣSF/ΣS (one token per frame);
- `prior`: log S (floored at 1e-6) added to the decoder's cross-attention logits over the tokens;
- `gate`: the maps S themselves, a gain (1 + αS) the decoder applies after its projection's LayerNorm, where no
  normalisation undoes it (a gain before it, as `residual` applies, is largely undone by it).

Per-frame tokens carry no motion: to name it, the decoder would have to compare which token positions the maps
highlight from frame to frame. `track` makes it explicit: one *track token* per frame whose only content is
TRACK_CHANNELS extra channels saying where the map's sharpened peak is and how wide it is (x, y, log spread),
relative to the clip's first frame, so a displacement or a growth reads directly (after the decoder's projection
LayerNorm the direction of the motion is all such a token says). Every token then has those channels (zero on the
grid tokens), with or without maps, so the arms of a comparison keep identical decoders.
"""
from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from saliency.infra.errors import UserError

PRIOR_EPS = 1e-6  # floor of S in the `prior` bias: log(1e-6) ≈ -13.8 all but masks saliency-free tokens
TRACK_CHANNELS = 3  # a track token's geometry: x, y (fractions of the frame) and log spread, minus the first frame's
TRACK_SHARPNESS = 8.0  # the track follows S**8 (S max-normalised): the peak, not the mass of the distractors
# Each geometry channel at about unit scale for a typical motion (a travel of 0.1–0.2 of the frame, a growth of ±0.5
# in log spread), the scale of the normalised features
TRACK_SCALE = (8.0, 8.0, 2.0)


class Weighting:
    """One weighting mode: `tokens` turns features `[B,T,C,h,w]` and weights `[B,T,1,h,w]` in [0,1] into tokens
    `[B,T·k,C]` and the per-token signal `[B,T·k]` it hands the decoder (None: none), and `into_decoder` applies
    that signal to the decoder's projected tokens. `alpha` is the strength of the modes that have one."""

    name: ClassVar[str]
    needs_maps: ClassVar[bool] = True
    uses_alpha: ClassVar[bool] = False  # `alpha` sets this mode's strength
    alpha_in_tokens: ClassVar[bool] = False  # ... and shapes its tokens (a feature cache keys on it then)
    track_signal: ClassVar[float | None] = None  # a track token's signal (prior: no bias; gate: a salient token's)

    def __init__(self, alpha: float = 1.0):
        self.alpha = float(alpha)

    def tokens(self, video: Tensor, S: Tensor) -> tuple[Tensor, Tensor | None]:
        return to_tokens(video), None

    def into_decoder(self, memory: Tensor, signal: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """Projected tokens `[B,M,D]` and this mode's signal `[B,M]` → the tokens the decoder attends to and an
        additive cross-attention mask `[B,1,1,M]` (None: no mask)."""
        if signal is not None:
            raise ValueError(f"saliency weighting {self.name!r} hands the decoder no per-token signal")
        return memory, None

    def __call__(self, features: Tensor, saliency: Tensor | None, track: bool = False) -> tuple[Tensor, Tensor | None]:
        """features `[B,T,C,h,w]` (or `[T,C,h,w]`, one video); saliency: probability or log-density maps of any size,
        `[B,T,1,H,W]` or flattened `[B·T,1,H,W]` (`[T,1,H,W]` for one video), None where the mode needs none.
        Returns tokens `[B, T·k, C]` ordered (frame, row, column), with k = h·w (k = 1 for `pool`), and the signal
        `[B, T·k]` or None. With `track`, every token has C + TRACK_CHANNELS channels and, given maps, T track tokens
        (`track_tokens`) follow, with the mode's `track_signal`."""
        video = features if features.dim() == 5 else features.unsqueeze(0)  # [B,T,C,h,w]
        B, T, _, h, w = video.shape
        if not self.needs_maps:
            return (F.pad(to_tokens(video), (0, TRACK_CHANNELS)) if track else to_tokens(video)), None
        if saliency is None:
            raise UserError(f"saliency weighting {self.name!r} needs saliency maps; use weighting 'none' without them")
        if saliency.numel() != B * T * saliency.shape[-2] * saliency.shape[-1]:
            raise ValueError(f"saliency {tuple(saliency.shape)} does not give one map per frame of {tuple(video.shape)}")
        flat = saliency.reshape(B * T, 1, *saliency.shape[-2:])  # [B·T,1,H,W]
        S = saliency_weights(flat, (h, w)).to(video.dtype).view(B, T, 1, h, w)  # [B,T,1,h,w]
        tokens, signal = self.tokens(video, S)
        if not track:
            return tokens, signal
        tracked = track_tokens(flat, B, T, video.shape[2]).to(video.dtype)  # [B,T,C+TRACK_CHANNELS]
        tokens = torch.cat([F.pad(tokens, (0, TRACK_CHANNELS)), tracked], dim=1)  # [B,T·k+T,C+TRACK_CHANNELS]
        if signal is not None:
            signal = torch.cat([signal, signal.new_full((B, T), self.track_signal)], dim=1)  # [B,T·k+T]
        return tokens, signal

    def __repr__(self) -> str:
        return f"{self.name}(alpha={self.alpha})" if self.uses_alpha else self.name


class NoWeighting(Weighting):
    name, needs_maps = "none", False


class Multiply(Weighting):
    name = "multiply"

    def tokens(self, video: Tensor, S: Tensor) -> tuple[Tensor, None]:
        return to_tokens(video * S), None


class Residual(Weighting):
    name, uses_alpha, alpha_in_tokens = "residual", True, True

    def tokens(self, video: Tensor, S: Tensor) -> tuple[Tensor, None]:
        return to_tokens((1 + self.alpha * S) * video), None


class Pool(Weighting):
    name = "pool"

    def tokens(self, video: Tensor, S: Tensor) -> tuple[Tensor, None]:
        return (S * video).sum(dim=(-2, -1)) / S.sum(dim=(-2, -1)), None  # [B,T,C]; ΣS ≥ 1 (peak is 1)


class Prior(Weighting):
    name, track_signal = "prior", 0.0

    def tokens(self, video: Tensor, S: Tensor) -> tuple[Tensor, Tensor]:
        B, T, _, h, w = video.shape
        return to_tokens(video), S.clamp_min(PRIOR_EPS).log().reshape(B, T * h * w)  # [B,T·h·w], tokens' order

    def into_decoder(self, memory: Tensor, signal: Tensor | None) -> tuple[Tensor, Tensor | None]:
        return memory, None if signal is None else signal.to(memory.dtype)[:, None, None, :]  # [B,1,1,M]


class Gate(Weighting):
    name, uses_alpha, track_signal = "gate", True, 1.0

    def tokens(self, video: Tensor, S: Tensor) -> tuple[Tensor, Tensor]:
        B, T, _, h, w = video.shape
        return to_tokens(video), S.reshape(B, T * h * w)  # [B,T·h·w], same order as the tokens

    def into_decoder(self, memory: Tensor, signal: Tensor | None) -> tuple[Tensor, None]:
        if signal is None:
            return memory, None
        return memory * (1 + self.alpha * signal.to(memory.dtype)[..., None]), None  # [B,M,D]


STRATEGIES: dict[str, type[Weighting]] = {mode.name: mode
                                           for mode in (NoWeighting, Multiply, Residual, Pool, Prior, Gate)}
WEIGHTINGS: tuple[str, ...] = tuple(STRATEGIES)
ALPHA_WEIGHTINGS: tuple[str, ...] = tuple(name for name, mode in STRATEGIES.items() if mode.uses_alpha)


def build_weighting(mode: str, alpha: float = 1.0) -> Weighting:
    """The strategy of weighting `mode` at strength `alpha`, or a one-line UserError listing the modes."""
    if mode not in STRATEGIES:
        raise UserError(f"unknown saliency weighting {mode!r} (known: {', '.join(WEIGHTINGS)})")
    return STRATEGIES[mode](alpha)


def weight_features(features: Tensor, saliency: Tensor | None, mode: str, alpha: float = 1.0,
                    track: bool = False) -> tuple[Tensor, Tensor | None]:
    """Saliency-weighted visual tokens and the per-token signal of weighting `mode` (`Weighting.__call__`)."""
    return build_weighting(mode, alpha)(features, saliency, track)


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
    """The configured weighting (`encoder.weighting`, `encoder.alpha`, `encoder.track`) as the front end's module, no
    parameters; `strategy` is the `Weighting` the decoder applies the signal with."""

    def __init__(self, config):
        super().__init__()
        self.strategy = build_weighting(config.weighting, config.alpha)
        self.track = config.track

    def forward(self, features: Tensor, saliency: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """features `[B,T,C,h,w]`, saliency `[B,T,1,H,W]` → tokens `[B,T·k,C]`, signal `[B,T·k]` | None."""
        return self.strategy(features, saliency, self.track)

    def extra_repr(self) -> str:
        return f"{self.strategy!r}, track={self.track}"
