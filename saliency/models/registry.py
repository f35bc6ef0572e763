"""The saliency model registry: every family registers its variants here, and `build` is the one way to make a
model by name (`saliency.run.load` opens a trained one)."""
from __future__ import annotations

import inspect
from collections.abc import Callable

from saliency.infra.errors import UserError
from saliency.models.components import SaliencyNet

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


def build(name: str, motion: bool | int = False, **options) -> SaliencyNet:
    """Build registered model `name`; `model.spec` records the name and every option (defaults
    included) so a run config can rebuild it. `motion`, an option of every model, makes it see motion
    (`SaliencyNet.see_motion`: a frame and its difference to the frame before, for video saliency); a number
    says how many frames before (true: 1)."""
    if name not in _REGISTRY:
        raise UserError(f"unknown model {name!r} (known: {', '.join(available_models())})")
    signature = inspect.signature(_REGISTRY[name])
    unknown = sorted(set(options) - set(signature.parameters))
    if unknown:
        raise UserError(f"model {name!r} has no option {unknown[0]!r} "
                        f"(options: {', '.join([*signature.parameters, 'motion'])})")
    gap = motion_frames(motion)
    bound = signature.bind(**options)
    bound.apply_defaults()
    model = _REGISTRY[name](**bound.arguments)
    if gap:
        model.see_motion(gap)
    model.spec = {"name": name, "options": {**bound.arguments, "motion": motion}}
    return model


def motion_frames(motion: object) -> int:
    """The model option `motion` as a distance in frames: false 0, true 1, a positive whole number itself."""
    if isinstance(motion, bool):
        return int(motion)
    if not isinstance(motion, int) or motion < 1:
        raise UserError(f"model option motion must be true, false or a number of frames (≥ 1), got {motion!r}")
    return motion


def build_untrained(name: str, **options) -> SaliencyNet:
    """`build` with random weights everywhere: no ImageNet file is read for models that would load one
    (what `load` fills with a run's weights, and what speed measurements time)."""
    if name in _REGISTRY and "pretrained" in inspect.signature(_REGISTRY[name]).parameters:
        options = {**options, "pretrained": False}
    return build(name, **options)
