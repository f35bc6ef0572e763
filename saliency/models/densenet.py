"""DenseNet-121 teacher (TranSalNet style, a light top-down fusion in place of the transformer):
the outputs of the four dense blocks."""
from __future__ import annotations

from saliency.models.backbones import backbone_trunk, load_backbone_weights
from saliency.models.components import TappedBackboneNet, TopDownDecoder, check_positive_ints
from saliency.models.registry import register_model

TAPS = ("denseblock1", "denseblock2", "denseblock3", "relu5")


class DenseNetSaliency(TappedBackboneNet):
    """Features: [256@/4, 512@/8, 1024@/16, 1024@/32]."""

    family = "densenet121"
    taps = TAPS

    def __init__(self, pretrained: bool | str = True, decoder_width: int = 64):
        super().__init__(feature_channels=[256, 512, 1024, 1024], feature_strides=[4, 8, 16, 32])
        self.backbone = backbone_trunk(self.family)
        load_backbone_weights(self.family, self.backbone, pretrained)
        self.decoder = TopDownDecoder(self.feature_channels, decoder_width)


@register_model("teacher-densenet121")
def teacher_densenet121(pretrained: bool | str = True, decoder_width: int = 64) -> DenseNetSaliency:
    check_positive_ints("teacher-densenet121", decoder_width=decoder_width)
    return DenseNetSaliency(pretrained=pretrained, decoder_width=decoder_width)
