"""ResNet-50 teacher (SAM / EML-Net style): layer1..layer4 features fused top-down (FPN-like)."""
from __future__ import annotations

from saliency.models.backbones import RESNET_STAGES, backbone_trunk, load_backbone_weights
from saliency.models.components import TappedBackboneNet, TopDownDecoder, check_positive_ints
from saliency.models.registry import register_model


class ResNetSaliency(TappedBackboneNet):
    """Features: [256@/4, 512@/8, 1024@/16, 2048@/32]."""

    family = "resnet50"
    taps = RESNET_STAGES

    def __init__(self, pretrained: bool | str = True, decoder_width: int = 64):
        super().__init__(feature_channels=[256, 512, 1024, 2048], feature_strides=[4, 8, 16, 32])
        self.backbone = backbone_trunk(self.family)
        load_backbone_weights(self.family, self.backbone, pretrained)
        self.decoder = TopDownDecoder(self.feature_channels, decoder_width)


@register_model("teacher-resnet50")
def teacher_resnet50(pretrained: bool | str = True, decoder_width: int = 64) -> ResNetSaliency:
    check_positive_ints("teacher-resnet50", decoder_width=decoder_width)
    return ResNetSaliency(pretrained=pretrained, decoder_width=decoder_width)
