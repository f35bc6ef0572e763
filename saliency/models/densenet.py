"""DenseNet-121 teacher (TranSalNet style, a light top-down fusion in place of the transformer):
the outputs of the four dense blocks."""
from __future__ import annotations

import re

from torch import nn
from torchvision.models import DenseNet121_Weights, densenet121

from saliency.infra.weights import load_imagenet_backbone
from saliency.models.registry import register_model
from saliency.models.components import (
    TappedBackboneNet,
    TopDownDecoder,
    check_positive_ints,
)

TAPS = ("denseblock1", "denseblock2", "denseblock3", "relu5")
# torchvision's own DenseNet files spell `denselayer1.norm1` as `denselayer1.norm.1`.
LEGACY_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12]\.(?:weight|bias|running_mean|running_var))$")


def modern_densenet_key(key: str) -> str:
    match = LEGACY_KEY.match(key)
    return match.group(1) + match.group(2) if match else key


class DenseNetSaliency(TappedBackboneNet):
    """Features: [256@/4, 512@/8, 1024@/16, 1024@/32]."""

    taps = TAPS
    backbone_prefix = "features."  # where torchvision's ImageNet files keep the backbone's keys

    def __init__(self, pretrained: bool | str = True, decoder_width: int = 64):
        super().__init__(feature_channels=[256, 512, 1024, 1024], feature_strides=[4, 8, 16, 32])
        self.backbone = densenet121(weights=None).features  # conv0 … denseblock4, norm5
        self.backbone.add_module("relu5", nn.ReLU(inplace=True))  # as torchvision's forward applies
        load_imagenet_backbone(self.backbone, DenseNet121_Weights.IMAGENET1K_V1, pretrained, name="densenet121",
                               prefix=self.backbone_prefix, rename=modern_densenet_key)
        self.decoder = TopDownDecoder(self.feature_channels, decoder_width)


@register_model("teacher-densenet121")
def teacher_densenet121(pretrained: bool | str = True, decoder_width: int = 64) -> DenseNetSaliency:
    check_positive_ints("teacher-densenet121", decoder_width=decoder_width)
    return DenseNetSaliency(pretrained=pretrained, decoder_width=decoder_width)
