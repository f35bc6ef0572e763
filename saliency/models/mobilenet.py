"""MobileNetV2 teacher (UNISAL / FastSal style), the cheap one for CPU demos: MobileNetV2's
features up to the 320-channel block (the 1280-channel 1×1 conv dropped), a separable decoder."""
from __future__ import annotations

from saliency.models.backbones import backbone_trunk, load_backbone_weights
from saliency.models.components import TappedBackboneNet, TopDownDecoder, check_positive_ints
from saliency.models.registry import register_model

# Indices into torchvision's `mobilenet_v2().features`: the last block at strides 4, 8, 16, 32.
TAPS = ("3", "6", "13", "17")


class MobileNetSaliency(TappedBackboneNet):
    """Features: [24@/4, 32@/8, 96@/16, 320@/32]."""

    family = "mobilenetv2"
    taps = TAPS

    def __init__(self, pretrained: bool | str = True, decoder_width: int = 32):
        super().__init__(feature_channels=[24, 32, 96, 320], feature_strides=[4, 8, 16, 32])
        self.backbone = backbone_trunk(self.family)[:18]
        load_backbone_weights(self.family, self.backbone, pretrained)
        self.decoder = TopDownDecoder(self.feature_channels, decoder_width, separable=True)


@register_model("teacher-mobilenetv2")
def teacher_mobilenetv2(pretrained: bool | str = True, decoder_width: int = 32) -> MobileNetSaliency:
    check_positive_ints("teacher-mobilenetv2", decoder_width=decoder_width)
    return MobileNetSaliency(pretrained=pretrained, decoder_width=decoder_width)
