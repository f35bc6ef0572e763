"""Saliency model zoo: one file per family, all registered in `saliency.models.registry`.

`build(name, **options)` makes a model (`saliency.run.load` rebuilds a trained one from its run directory);
`build_backbone(name, pretrained)` makes a trunk of the one backbone registry (`saliency.models.backbones`).
"""
from saliency.models import densenet, mobilenet, resnet, student, vgg  # noqa: F401  (registers every family)
from saliency.models.components import (
    SaliencyNet,
    conv_bn_relu,
    count_parameters,
    log_density_to_map,
    model_size_mb,
    to_probability,
)
from saliency.models.backbones import available_backbones, build_backbone, load_backbone_weights
from saliency.models.registry import available_models, build, build_untrained, register_model

__all__ = [
    "SaliencyNet", "available_backbones", "available_models", "build", "build_backbone", "build_untrained",
    "conv_bn_relu", "count_parameters", "load_backbone_weights", "log_density_to_map", "model_size_mb",
    "register_model", "to_probability",
]
