"""Saliency prediction and its knowledge distillation: `saliency.build(name, **options)`,
`saliency.load(run_dir)`, `saliency.available_models()` (re-exported lazily from `saliency.models`)."""

__all__ = ["available_models", "build", "load"]


def __getattr__(name: str):
    if name in __all__:
        from saliency import models

        return getattr(models, name)
    raise AttributeError(f"module 'saliency' has no attribute {name!r}")
