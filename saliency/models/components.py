"""Parts every saliency model shares: the base class, decoder blocks, the centre-bias prior and size helpers."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from saliency.infra.errors import UserError

PAD_MULTIPLE = 32  # the deepest stride of every encoder
RGB_CHANNELS = 3
MOTION_CHANNELS = 6  # a motion model's input: the frame and its difference to the frame before


def sees_motion(model: nn.Module | None) -> bool:
    """Whether `model` (a saliency net, or one on an inference backend) takes a frame and a frame before it."""
    return getattr(model, "in_channels", RGB_CHANNELS) == MOTION_CHANNELS


def motion_gap(model: nn.Module | None) -> int:
    """How many frames before each frame the one `model` compares it with is (`SaliencyNet.see_motion`); 0: the
    model sees single frames."""
    return getattr(model, "motion_gap", 1) if sees_motion(model) else 0


def motion_input(frames: Tensor, previous: Tensor | None) -> Tensor:
    """A motion model's input `[B,6,H,W]`: normalised frames `[B,3,H,W]` and their difference to the normalised
    frames before them (`previous`, same shape); a still image (None) has no motion, a zero difference."""
    difference = torch.zeros_like(frames) if previous is None else frames - previous
    return torch.cat([frames, difference], dim=1)


class SaliencyNet(nn.Module):
    """Image → log-density. Subclasses set `feature_channels`/`feature_strides`, and define
    `encode` (4 maps, shallow→deep) and `decode` (logits at some stride). A motion model (`see_motion`) takes
    `motion_input(frame, previous)`, 6 channels, instead of the frame's 3 (`in_channels` says which)."""

    feature_channels: list[int]
    feature_strides: list[int]
    spec: dict  # {"name", "options"}, set by `saliency.models.build`

    def __init__(self, feature_channels: Sequence[int], feature_strides: Sequence[int]):
        super().__init__()
        assert len(feature_channels) == len(feature_strides) == 4
        self.feature_channels = list(feature_channels)
        self.feature_strides = list(feature_strides)
        self.in_channels = RGB_CHANNELS
        self.motion_gap = 0  # a motion model's distance, in frames, to the frame it compares each frame with
        self.centre_bias = CentreBias()

    @property
    def motion(self) -> bool:
        """Whether the model sees motion: its input is a frame and its difference to the frame before."""
        return self.in_channels == MOTION_CHANNELS

    def see_motion(self, gap: int = 1) -> None:
        """Widen the input conv to `motion_input`'s 6 channels, the new weights zero: the model starts as the
        single-frame one it was (a pretrained backbone keeps what it knows) and learns what motion adds. Each
        frame is compared with the one `gap` frames before it (a slow growth shows over several frames, not one)."""
        conv = next(m for m in self.modules() if isinstance(m, nn.Conv2d))
        assert conv.in_channels == RGB_CHANNELS and conv.groups == 1, "the first conv must read the RGB input"
        weight = conv.weight.detach()
        conv.weight = nn.Parameter(torch.cat([weight, torch.zeros_like(weight)], dim=1))  # [out,6,k,k]
        conv.in_channels = MOTION_CHANNELS
        self.in_channels, self.motion_gap = MOTION_CHANNELS, gap

    def encode(self, x: Tensor) -> list[Tensor]:
        """[B,C,H,W] (C = `in_channels`) with H, W multiples of 32 → 4 feature maps, shallow→deep."""
        raise NotImplementedError

    def decode(self, features: list[Tensor]) -> Tensor:
        """The 4 feature maps → logits [B,1,h,w] at the decoder's stride."""
        raise NotImplementedError

    def forward(self, x: Tensor, return_features: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        """[B,3,H,W] ImageNet-normalised RGB (a motion model: [B,6,H,W] from `motion_input`) → [B,1,H,W]
        log-density (exp sums to 1 per image); with `return_features`, also the encoder's 4 maps (of the input
        padded to multiples of 32)."""
        B, C, H, W = x.shape
        assert C == self.in_channels, f"expected {self.in_channels} input channels, got {C}"
        padded = pad_to_multiple(x, PAD_MULTIPLE)  # [B,C,H',W']
        features = self.encode(padded)
        logits = self.decode(features)  # [B,1,h,w]
        logits = logits + self.centre_bias(logits.shape[-2:], padded.shape[-2:], (H, W))  # [B,1,h,w]
        logits = F.interpolate(logits, size=padded.shape[-2:], mode="bilinear", align_corners=False)
        logits = logits[..., :H, :W]  # [B,1,H,W]
        log_density = logits.flatten(1).log_softmax(dim=1).view(B, 1, H, W)
        return (log_density, features) if return_features else log_density


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Replicate-pad [B,C,H,W] at the bottom and right up to multiples of `multiple`."""
    H, W = x.shape[-2:]
    pad_h, pad_w = (-H) % multiple, (-W) % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")  # [B,C,H+pad_h,W+pad_w]


class CentreBias(nn.Module):
    """Learned log-prior over image positions: log of a mixture of axis-aligned 2-D Gaussians in
    normalised image coordinates ([-1,1] on both axes), added to the logits. Starts as a mild centre
    bias (centre ≈ 2 nats above the corners)."""

    def __init__(self, sigmas: Sequence[float] = (0.25, 0.5, 1.0)):
        super().__init__()
        K = len(sigmas)
        self.means = nn.Parameter(torch.zeros(K, 2))  # (K, [y, x]); distinct sigmas break the symmetry
        self.log_sigmas = nn.Parameter(torch.tensor(sigmas).log()[:, None].repeat(1, 2))  # (K, [y, x])
        self.mixture_logits = nn.Parameter(torch.zeros(K))  # (K,)

    def forward(self, grid: Sequence[int], padded: Sequence[int], image: Sequence[int]) -> Tensor:
        """Log-prior [1,1,h,w] on a `grid` (h, w) of cells that spans the `padded` input (H', W'),
        in the coordinates of the `image` (H, W) inside it; evaluated at the logits' resolution."""
        ys = self.cell_coordinates(grid[0], padded[0], image[0])  # (h,)
        xs = self.cell_coordinates(grid[1], padded[1], image[1])  # (w,)
        sigmas = self.log_sigmas.exp()  # (K,2)
        dy = (ys[None, :] - self.means[:, :1]) / sigmas[:, :1]  # (K,h)
        dx = (xs[None, :] - self.means[:, 1:]) / sigmas[:, 1:]  # (K,w)
        log_gauss = -0.5 * (dy[:, :, None] ** 2 + dx[:, None, :] ** 2)  # (K,h,w)
        log_weights = self.mixture_logits.log_softmax(dim=0)[:, None, None]  # (K,1,1)
        return torch.logsumexp(log_weights + log_gauss, dim=0)[None, None]  # [1,1,h,w]

    def cell_coordinates(self, cells: int, padded: int, image: int) -> Tensor:
        """Centres of `cells` equal cells over `padded` pixels, as image coordinates: pixel 0 → -1,
        pixel image-1 → +1 (bilinear upsampling with align_corners=False puts them there)."""
        pixels = (torch.arange(cells, device=self.means.device) + 0.5) * (padded / cells) - 0.5  # (cells,)
        return pixels * (2 / max(image - 1, 1)) - 1


def to_probability(log_density: Tensor) -> Tensor:
    """[B,1,H,W] log-density → probability per pixel (sums to 1 per image)."""
    return log_density.exp()


def log_density_to_map(log_density: Tensor) -> Tensor:
    """[B,1,H,W] log-density → [B,1,H,W] display map in [0,1] (per-image min-max of the probability)."""
    p = to_probability(log_density)
    low = p.amin(dim=(-2, -1), keepdim=True)  # [B,1,1,1]
    span = p.amax(dim=(-2, -1), keepdim=True) - low  # [B,1,1,1]
    return (p - low) / span.clamp_min(torch.finfo(p.dtype).tiny)


# ----------------------------------------------------------------------------- decoder blocks

def conv_bn_relu(in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """Conv (no bias) → BatchNorm → ReLU, 'same' padding."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


def separable_conv_bn_relu(in_ch: int, out_ch: int, stride: int = 1) -> nn.Sequential:
    """Depthwise 3×3 (stride) → pointwise 1×1, each with BatchNorm and ReLU."""
    return nn.Sequential(conv_bn_relu(in_ch, in_ch, 3, stride, groups=in_ch), conv_bn_relu(in_ch, out_ch, 1))


def resize_to(x: Tensor, reference: Tensor) -> Tensor:
    """Bilinearly resize [B,C,h,w] to `reference`'s spatial size (no-op when equal)."""
    if x.shape[-2:] == reference.shape[-2:]:
        return x
    return F.interpolate(x, size=reference.shape[-2:], mode="bilinear", align_corners=False)


class TopDownDecoder(nn.Module):
    """FPN-style fusion of 4 maps (shallow→deep): 1×1 laterals to `width` channels, then from the
    deepest map down, upsample + add the next lateral + a 3×3 fuse block; a 1×1 head gives logits at
    the shallowest map's stride."""

    def __init__(self, in_channels: Sequence[int], width: int, separable: bool = False):
        super().__init__()
        fuse = separable_conv_bn_relu if separable else conv_bn_relu
        self.laterals = nn.ModuleList(conv_bn_relu(c, width, 1) for c in in_channels)
        self.fuse = nn.ModuleList(fuse(width, width) for _ in in_channels)
        self.head = nn.Conv2d(width, 1, 1, bias=False)  # a bias would cancel in the log-softmax

    def forward(self, features: list[Tensor]) -> Tensor:
        x = self.fuse[-1](self.laterals[-1](features[-1]))  # [B,D,h4,w4]
        for i in reversed(range(len(features) - 1)):
            skip = self.laterals[i](features[i])  # [B,D,hi,wi]
            x = self.fuse[i](skip + resize_to(x, skip))  # [B,D,hi,wi]
        return self.head(x)  # [B,1,h1,w1]


def run_with_taps(layers: nn.Sequential, x: Tensor, taps: Sequence[str]) -> list[Tensor]:
    """Run `layers` in order, collecting the outputs of the children named in `taps` (in order)."""
    features = []
    for name, layer in layers.named_children():
        x = layer(x)
        if name in taps:
            features.append(x)
    assert len(features) == len(taps), f"taps {taps} not all found"
    return features


class TappedBackboneNet(SaliencyNet):
    """A teacher: the trunk of backbone `family` (`saliency.models.backbones`) tapped at four stages (`taps`), fused
    by `self.decoder`."""

    family: str
    taps: tuple[str, ...] = ()

    def encode(self, x: Tensor) -> list[Tensor]:
        return run_with_taps(self.backbone, x, self.taps)

    def decode(self, features: list[Tensor]) -> Tensor:
        return self.decoder(features)  # [B,1,H/4,W/4]


def check_positive_ints(model: str, **options) -> None:
    """UserError naming the first option that is not a positive integer (config values arrive from YAML)."""
    for key, value in options.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"{model} option {key} must be a positive integer, got {value!r}")


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (all, trainable or not)."""
    return sum(p.numel() for p in model.parameters())


def model_size_mb(model: nn.Module) -> float:
    """Parameter size in MiB at float32 (4 bytes each)."""
    return count_parameters(model) * 4 / 2**20
