"""VGG-16 teacher (SalGAN / ML-Net style): VGG-16's conv layers without pool5, block 5 dilated so
it keeps stride 16 while seeing the context pool5 would have added; a top-down decoder."""
from __future__ import annotations

from torch import nn
from torchvision.models import VGG16_Weights
from torchvision.models.vgg import cfgs, make_layers

from saliency.infra.weights import load_imagenet_backbone
from saliency.models.registry import register_model
from saliency.models.components import (
    TappedBackboneNet,
    TopDownDecoder,
    check_positive_ints,
)

# Indices into torchvision's `vgg16().features`: pool2, pool3, pool4 outputs and block 5's last ReLU.
TAPS = ("9", "16", "23", "29")
BLOCK5_CONVS = (24, 26, 28)


class VGGSaliency(TappedBackboneNet):
    """Features: [128@/4, 256@/8, 512@/16, 512@/16]."""

    taps = TAPS
    backbone_prefix = "features."  # where torchvision's ImageNet files keep the backbone's keys

    def __init__(self, pretrained: bool | str = True, decoder_width: int = 64):
        super().__init__(feature_channels=[128, 256, 512, 512], feature_strides=[4, 8, 16, 16])
        # torchvision's `vgg16().features` without building its 120M-parameter classifier
        self.backbone = make_layers(cfgs["D"], batch_norm=False)[:30]  # conv1_1 … relu5_3, pool5 dropped
        for conv in self.backbone:
            if isinstance(conv, nn.Conv2d):  # torchvision's VGG initialisation
                nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(conv.bias)
        for i in BLOCK5_CONVS:
            conv = self.backbone[i]
            conv.dilation, conv.padding = (2, 2), (2, 2)
        load_imagenet_backbone(self.backbone, VGG16_Weights.IMAGENET1K_V1, pretrained, name="vgg16", prefix=self.backbone_prefix)
        self.decoder = TopDownDecoder(self.feature_channels, decoder_width)


@register_model("teacher-vgg16")
def teacher_vgg16(pretrained: bool | str = True, decoder_width: int = 64) -> VGGSaliency:
    check_positive_ints("teacher-vgg16", decoder_width=decoder_width)
    return VGGSaliency(pretrained=pretrained, decoder_width=decoder_width)
