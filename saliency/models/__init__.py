"""Saliency model zoo: one file per family, all registered in `saliency.models.registry`.

`build(name, **options)` makes a model; `load(run_dir)` rebuilds one from a run directory's
`config.yaml` (`model: {name, options}`) and loads its `model.safetensors` strictly.
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
from saliency.models.resnet import resnet_trunk
from saliency.models.registry import available_models, build, build_untrained, load, register_model

__all__ = [
    "SaliencyNet", "available_models", "build", "build_untrained", "conv_bn_relu", "count_parameters", "load",
    "log_density_to_map", "model_size_mb", "register_model", "resnet_trunk", "to_probability",
]
