"""The condensed student: randomly initialised, MobileNetV2-style inverted residuals behind an
aggressive stem (stride 4 after two cheap layers), and a separable top-down decoder."""
from __future__ import annotations

from torch import Tensor, nn

from saliency.models.registry import register_model
from saliency.models.components import SaliencyNet, TopDownDecoder, check_positive_ints, conv_bn_relu

STAGE_MULTIPLIERS = (1, 2, 4, 6)  # stage widths as multiples of `width`, strides 4, 8, 16, 32


class InvertedResidual(nn.Module):
    """1×1 expand (if expansion > 1) → 3×3 depthwise (stride) → 1×1 linear projection; residual when
    shapes match."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expansion: int):
        super().__init__()
        hidden = in_ch * expansion
        self.residual = stride == 1 and in_ch == out_ch
        expand = [conv_bn_relu(in_ch, hidden, 1)] if expansion > 1 else []
        self.block = nn.Sequential(
            *expand,
            conv_bn_relu(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        )

    def forward(self, x: Tensor) -> Tensor:
        y = self.block(x)  # [B,out,H/s,W/s]
        return x + y if self.residual else y


class StudentSaliency(SaliencyNet):
    """Features: [w@/4, 2w@/8, 4w@/16, 6w@/32] for base width w."""

    def __init__(self, width: int = 16, depth: int = 2, expansion: int = 4, decoder_width: int = 24):
        channels = [width * m for m in STAGE_MULTIPLIERS]
        super().__init__(feature_channels=channels, feature_strides=[4, 8, 16, 32])
        self.stem = nn.Sequential(
            conv_bn_relu(3, width, 3, stride=2),  # [B,w,H/2,W/2]
            conv_bn_relu(width, width, 3, stride=2, groups=width),  # [B,w,H/4,W/4] depthwise
        )
        self.stages = nn.ModuleList()
        in_ch = width
        for i, out_ch in enumerate(channels):
            stride, t = (1, 1) if i == 0 else (2, expansion)  # no expansion at stride 4, as MobileNetV2's first block
            blocks = [InvertedResidual(in_ch, out_ch, stride, t)]
            blocks += [InvertedResidual(out_ch, out_ch, 1, t) for _ in range(depth - 1)]
            self.stages.append(nn.Sequential(*blocks))
            in_ch = out_ch
        self.decoder = TopDownDecoder(channels, decoder_width, separable=True)

    def encode(self, x: Tensor) -> list[Tensor]:
        x = self.stem(x)  # [B,w,H/4,W/4]
        features = []
        for stage in self.stages:
            x = stage(x)  # [B,c_i,H/s_i,W/s_i]
            features.append(x)
        return features

    def decode(self, features: list[Tensor]) -> Tensor:
        return self.decoder(features)  # [B,1,H/4,W/4]


@register_model("student")
def student(width: int = 16, depth: int = 2, expansion: int = 4, decoder_width: int = 24) -> StudentSaliency:
    check_positive_ints("student", width=width, depth=depth, expansion=expansion, decoder_width=decoder_width)
    return StudentSaliency(width=width, depth=depth, expansion=expansion, decoder_width=decoder_width)
