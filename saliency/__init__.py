"""Saliency prediction and its knowledge distillation.

The public surface, re-exported lazily (importing `saliency` stays cheap): `build(name, **options)`,
`build_untrained`, `load(run_dir)`, `available_models()`, `log_density_to_map`; `open_dataset(root)`;
`evaluate_model(model, reader, size)` and `ALL_METRICS`; `SaliencyRunConfig` and `SaliencyTrainer`
(what `saliency train`/`distill` run); `colour_overlay` for display. `saliency.metrics` holds the metrics,
`saliency.synthetic` the synthetic world, `saliency.infra` the plumbing `vidcap` shares.
"""

_PUBLIC = {
    "available_models": "saliency.models", "build": "saliency.models", "build_untrained": "saliency.models",
    "load": "saliency.models", "log_density_to_map": "saliency.models",
    "open_dataset": "saliency.data",
    "ALL_METRICS": "saliency.evaluate", "evaluate_model": "saliency.evaluate",
    "SaliencyRunConfig": "saliency.train", "SaliencyTrainer": "saliency.train",
    "colour_overlay": "saliency.predict",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'saliency' has no attribute {name!r}")
