"""VGG-16 teacher (SalGAN / ML-Net style): VGG-16's conv layers without pool5, block 5 dilated so
it keeps stride 16 while seeing the context pool5 would have added (`saliency.models.backbones.vgg16_trunk`);
a top-down decoder."""
from __future__ import annotations

from saliency.models.backbones import backbone_trunk, load_backbone_weights
from saliency.models.components import TappedBackboneNet, TopDownDecoder, check_positive_ints
from saliency.models.registry import register_model

# Indices into torchvision's `vgg16().features`: pool2, pool3, pool4 outputs and block 5's last ReLU.
TAPS = ("9", "16", "23", "29")


class VGGSaliency(TappedBackboneNet):
    """Features: [128@/4, 256@/8, 512@/16, 512@/16]."""

    family = "vgg16"
    taps = TAPS

    def __init__(self, pretrained: bool | str = True, decoder_width: int = 64):
        super().__init__(feature_channels=[128, 256, 512, 512], feature_strides=[4, 8, 16, 16])
        self.backbone = backbone_trunk(self.family)
        load_backbone_weights(self.family, self.backbone, pretrained)
        self.decoder = TopDownDecoder(self.feature_channels, decoder_width)


@register_model("teacher-vgg16")
def teacher_vgg16(pretrained: bool | str = True, decoder_width: int = 64) -> VGGSaliency:
    check_positive_ints("teacher-vgg16", decoder_width=decoder_width)
    return VGGSaliency(pretrained=pretrained, decoder_width=decoder_width)
