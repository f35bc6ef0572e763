"""The one backbone registry: the torchvision trunks that teachers, `saliency pretrain` and the caption encoder
build, under one name each (`mobilenetv2`, `resnet50`, `resnet18`, `vgg16`, `densenet121`, `mobilenetv3-small`,
and `small-cnn`, a random one for CPU demos).

A trunk is built randomly initialised, its blocks in order (strides up to 32, VGG-16's up to 16), and gets its
weights from local files only (`load_backbone_weights`): torchvision's ImageNet file, a `saliency pretrain` run, or
none. Nothing is downloaded and nothing is unpickled.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import nn
from torchvision import models
from torchvision.models.vgg import cfgs, make_layers

from saliency.infra.errors import UserError
from saliency.infra.weights import load_imagenet_backbone
from saliency.models.components import conv_bn_relu

RESNET_STEM = ("conv1", "bn1", "relu", "maxpool")
RESNET_STAGES = ("layer1", "layer2", "layer3", "layer4")
VGG16_BLOCK5_CONVS = (24, 26, 28)  # dilated: VGG-16 keeps stride 16 while seeing the context pool5 would add
SMALL_CNN_WIDTHS = (16, 32, 64, 128, 128)  # five stride-2 stages: stride 32, like the torchvision backbones
# torchvision's own DenseNet files spell `denselayer1.norm1` as `denselayer1.norm.1`
LEGACY_DENSENET_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12]\.(?:weight|bias|running_mean|running_var))$")


@dataclass(frozen=True)
class Backbone:
    """How to build a trunk (`make`: randomly initialised) and where its pretrained weights come from: torchvision's
    ImageNet `weights` (None: there are none), the key `prefix` its files keep the trunk under, and `rename` for
    legacy key spellings."""
    make: Callable[[], nn.Sequential]
    weights: object | None
    prefix: str = ""
    rename: Callable[[str], str] | None = None


def resnet_trunk(net: models.ResNet) -> nn.Sequential:
    """A torchvision ResNet without its average pool and classifier: stem, then layer1..layer4 (stride 32)."""
    return nn.Sequential(OrderedDict((name, getattr(net, name)) for name in RESNET_STEM + RESNET_STAGES))


def vgg16_trunk() -> nn.Sequential:
    """torchvision's `vgg16().features` without pool5 (and without building its 120M-parameter classifier), block 5
    dilated so it keeps stride 16."""
    trunk = make_layers(cfgs["D"], batch_norm=False)[:30]  # conv1_1 … relu5_3
    for conv in trunk:
        if isinstance(conv, nn.Conv2d):  # torchvision's VGG initialisation
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
    for index in VGG16_BLOCK5_CONVS:
        trunk[index].dilation, trunk[index].padding = (2, 2), (2, 2)
    return trunk


def densenet121_trunk() -> nn.Sequential:
    """torchvision's `densenet121().features` (conv0 … denseblock4, norm5) and the ReLU its forward applies."""
    trunk = models.densenet121(weights=None).features
    trunk.add_module("relu5", nn.ReLU(inplace=True))
    return trunk


def modern_densenet_key(key: str) -> str:
    match = LEGACY_DENSENET_KEY.match(key)
    return match.group(1) + match.group(2) if match else key


def small_cnn() -> nn.Sequential:
    """Five stride-2 conv stages, randomly initialised (for CPU demos)."""
    widths = (3,) + SMALL_CNN_WIDTHS
    return nn.Sequential(*(conv_bn_relu(i, o, 3, stride=2) for i, o in pairwise(widths)))


BACKBONES: dict[str, Backbone] = {
    "mobilenetv2": Backbone(lambda: models.mobilenet_v2(weights=None).features,
                            models.MobileNet_V2_Weights.IMAGENET1K_V1, "features."),
    "resnet50": Backbone(lambda: resnet_trunk(models.resnet50(weights=None)), models.ResNet50_Weights.IMAGENET1K_V1),
    "resnet18": Backbone(lambda: resnet_trunk(models.resnet18(weights=None)), models.ResNet18_Weights.IMAGENET1K_V1),
    "vgg16": Backbone(vgg16_trunk, models.VGG16_Weights.IMAGENET1K_V1, "features."),
    "densenet121": Backbone(densenet121_trunk, models.DenseNet121_Weights.IMAGENET1K_V1, "features.",
                            modern_densenet_key),
    "mobilenetv3-small": Backbone(lambda: models.mobilenet_v3_small(weights=None).features,
                                  models.MobileNet_V3_Small_Weights.IMAGENET1K_V1, "features."),
    "small-cnn": Backbone(small_cnn, None),
}


def available_backbones() -> list[str]:
    return sorted(BACKBONES)


def backbone(name: str) -> Backbone:
    """The registered backbone `name`, or a one-line UserError listing the known ones."""
    if name not in BACKBONES:
        raise UserError(f"unknown backbone {name!r} (known: {', '.join(available_backbones())})")
    return BACKBONES[name]


def backbone_trunk(name: str) -> nn.Sequential:
    """Backbone `name`'s trunk, randomly initialised."""
    return backbone(name).make()


def load_backbone_weights(name: str, trunk: nn.Module, pretrained: bool | str) -> None:
    """Fill `trunk` (backbone `name`'s trunk, or its leading blocks) from local files: `pretrained` False keeps the
    random weights; True takes torchvision's cached ImageNet file if present (else random, with one warning); a path
    is that `.pth` or `.safetensors` file or a `saliency pretrain` run directory. `small-cnn` has no weights: it
    ignores True and refuses a file."""
    entry = backbone(name)
    if entry.weights is None:
        if isinstance(pretrained, str):
            raise UserError(f"backbone {name} has no pretrained weights; got pretrained={pretrained!r}")
        return
    load_imagenet_backbone(trunk, entry.weights, pretrained, name=name, prefix=entry.prefix, rename=entry.rename)


def build_backbone(name: str, pretrained: bool | str, stride: int = 32) -> tuple[nn.Sequential, int]:
    """Backbone `name` cut after its last stage of `stride` (the cut comes first, so a weights file needs only the
    blocks kept), its weights loaded (`load_backbone_weights`), and its output channels."""
    trunk, channels = cut_at_stride(backbone_trunk(name), stride)
    load_backbone_weights(name, trunk, pretrained)
    return trunk, channels


def cut_at_stride(trunk: nn.Sequential, stride: int, probe: int = 64) -> tuple[nn.Sequential, int]:
    """The leading blocks of `trunk` whose output has at most `stride`, and their output channels (found by running
    a `probe`² image through them: no table of indices per architecture)."""
    x, keep = torch.zeros(1, 3, probe, probe), 0
    with torch.no_grad():
        for index, block in enumerate(trunk.eval()):
            y = block(x)
            if y.shape[-1] < probe // stride:
                break
            x, keep = y, index + 1
    return trunk[:keep], x.shape[1]
