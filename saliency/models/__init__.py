"""Saliency model zoo: a registry of builders (one file per family) and one factory.

`build(name, **options)` makes a model; `load(run_dir)` rebuilds one from a run directory's
`config.yaml` (`model: {name, options}`) and loads its `model.safetensors` strictly.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

from saliency.errors import UserError
from saliency.models.components import (
    SaliencyNet,
    count_parameters,
    log_density_to_map,
    model_size_mb,
    state_dict_mismatch,
    to_probability,
)
from saliency.rundir import CONFIG, WEIGHTS, RunDir

__all__ = [
    "SaliencyNet", "available_models", "build", "count_parameters", "load", "log_density_to_map",
    "model_size_mb", "register_model", "to_probability",
]

_REGISTRY: dict[str, Callable[..., SaliencyNet]] = {}


def register_model(name: str) -> Callable:
    """Decorator: register a builder `fn(**options) -> SaliencyNet` under `name`."""
    def decorate(fn: Callable[..., SaliencyNet]) -> Callable[..., SaliencyNet]:
        assert name not in _REGISTRY, f"model {name!r} registered twice"
        _REGISTRY[name] = fn
        return fn
    return decorate


def available_models() -> list[str]:
    return sorted(_REGISTRY)


def build(name: str, **options) -> SaliencyNet:
    """Build registered model `name`; `model.spec` records the name and every option (defaults
    included) so a run config can rebuild it."""
    if name not in _REGISTRY:
        raise UserError(f"unknown model {name!r} (known: {', '.join(available_models())})")
    signature = inspect.signature(_REGISTRY[name])
    unknown = sorted(set(options) - set(signature.parameters))
    if unknown:
        raise UserError(f"model {name!r} has no option {unknown[0]!r} (options: {', '.join(signature.parameters)})")
    bound = signature.bind(**options)
    bound.apply_defaults()
    model = _REGISTRY[name](**bound.arguments)
    model.spec = {"name": name, "options": dict(bound.arguments)}
    return model


def load(run_dir: str | Path) -> SaliencyNet:
    """Rebuild the model a run directory describes and load its weights; returned in eval mode."""
    run = RunDir(run_dir).require()
    where = run.file(CONFIG)
    spec = run.config_dict().get("model")
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise UserError(f"{where}: no valid 'model' section, so not a saliency run "
                        f"(expected model: {{name: ..., options: {{...}}}})")
    options = spec.get("options") or {}
    if not isinstance(options, dict):
        raise UserError(f"{where}: model.options must be a mapping")
    name = spec["name"]
    if name in _REGISTRY and "pretrained" in inspect.signature(_REGISTRY[name]).parameters:
        options = {**options, "pretrained": False}  # the run's weights replace ImageNet's
    model = build(name, **options)
    state = run.load_weights()
    problem = state_dict_mismatch(model.state_dict(), state)
    if problem:
        raise UserError(f"{run.file(WEIGHTS)}: weights do not fit {name} ({problem})")
    model.load_state_dict(state, strict=True)
    return model.eval()


# Importing the families registers their variants.
from saliency.models import densenet, mobilenet, resnet, student, vgg  # noqa: E402,F401
