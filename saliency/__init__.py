"""Saliency prediction and its knowledge distillation.

The public surface, everything `vidcap` and users need of saliency science, re-exported lazily (importing
`saliency` stays cheap):

- models: `build(name, **options)`, `build_untrained`, `available_models()`, `load(run_dir)`, `save(model, out)`;
  the one backbone registry, `build_backbone(name, pretrained, stride)` and `available_backbones()`;
  `count_parameters`, `model_size_mb`; a motion model's input: `sees_motion`, `motion_gap`, `motion_input`;
  maps: `to_probability`, `log_density_to_map`, `colour_overlay`.
- data: `open_dataset(root)` (SALICON, MIT1003, CAT2000, DHF1K or a folder), `SaliencySample`, `frames_before`,
  `imagenet_normalise`.
- evaluation: `evaluate_model(model, reader, size)`, `predict_maps`, `ALL_METRICS` (`saliency.metrics` holds them).
- training: `SaliencyRunConfig` and `SaliencyTrainer` (`saliency train`/`distill`), `PretrainConfig` and
  `Pretrainer` (`saliency pretrain`, for the `TEACHER_FAMILIES`).
- inference backends: `BACKENDS`, `resolve_backend`, `on_backend`, `exported_session`, `EXPORT_FOLDER` (a run's
  exports), `run_calibration_images` (int8 calibration).

`saliency.world` is the synthetic world; `saliency.infra` the plumbing both packages share (docs/design.md).
"""

_PUBLIC = {
    "available_models": "saliency.models", "build": "saliency.models", "build_untrained": "saliency.models",
    "available_backbones": "saliency.models", "build_backbone": "saliency.models",
    "count_parameters": "saliency.models", "model_size_mb": "saliency.models",
    "log_density_to_map": "saliency.models", "to_probability": "saliency.models",
    "sees_motion": "saliency.models.components", "motion_gap": "saliency.models.components",
    "motion_input": "saliency.models.components",
    "load": "saliency.run", "save": "saliency.run", "SaliencyRunConfig": "saliency.run",
    "SaliencyTrainer": "saliency.train",
    "PretrainConfig": "saliency.pretrain", "Pretrainer": "saliency.pretrain", "TEACHER_FAMILIES": "saliency.pretrain",
    "open_dataset": "saliency.data", "SaliencySample": "saliency.data", "frames_before": "saliency.data",
    "imagenet_normalise": "saliency.data",
    "ALL_METRICS": "saliency.evaluate", "evaluate_model": "saliency.evaluate", "predict_maps": "saliency.evaluate",
    "BACKENDS": "saliency.backends", "EXPORT_FOLDER": "saliency.backends", "exported_session": "saliency.backends",
    "on_backend": "saliency.backends", "resolve_backend": "saliency.backends",
    "run_calibration_images": "saliency.export",
    "colour_overlay": "saliency.predict",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'saliency' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
