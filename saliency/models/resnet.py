"""ResNet-50 teacher (SAM / EML-Net style): layer1..layer4 features fused top-down (FPN-like)."""
from __future__ import annotations

from collections import OrderedDict

from torch import nn
from torchvision.models import ResNet, ResNet50_Weights, resnet50

from saliency.infra.weights import load_imagenet_backbone
from saliency.models.registry import register_model
from saliency.models.components import (
    TappedBackboneNet,
    TopDownDecoder,
    check_positive_ints,
)

TAPS = ("layer1", "layer2", "layer3", "layer4")
STEM = ("conv1", "bn1", "relu", "maxpool")


def resnet_trunk(net: ResNet) -> nn.Sequential:
    """A torchvision ResNet without its average pool and classifier: stem, then layer1..layer4 (stride 32)."""
    return nn.Sequential(OrderedDict((name, getattr(net, name)) for name in STEM + TAPS))


class ResNetSaliency(TappedBackboneNet):
    """Features: [256@/4, 512@/8, 1024@/16, 2048@/32]."""

    taps = TAPS
    backbone_prefix = ""  # where torchvision's ImageNet files keep the backbone's keys

    def __init__(self, pretrained: bool | str = True, decoder_width: int = 64):
        super().__init__(feature_channels=[256, 512, 1024, 2048], feature_strides=[4, 8, 16, 32])
        self.backbone = resnet_trunk(resnet50(weights=None))
        load_imagenet_backbone(self.backbone, ResNet50_Weights.IMAGENET1K_V1, pretrained, name="resnet50", prefix=self.backbone_prefix)
        self.decoder = TopDownDecoder(self.feature_channels, decoder_width)


@register_model("teacher-resnet50")
def teacher_resnet50(pretrained: bool | str = True, decoder_width: int = 64) -> ResNetSaliency:
    check_positive_ints("teacher-resnet50", decoder_width=decoder_width)
    return ResNetSaliency(pretrained=pretrained, decoder_width=decoder_width)
