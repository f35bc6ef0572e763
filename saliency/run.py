"""A saliency run: its config (the dataclasses `saliency train` and `saliency distill` write to config.yaml), `load`,
the one way a trained saliency model is opened, and `save`, which writes any model as a run directory `load` opens
(as `save_pretrained` does)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from saliency.distill import DistillConfig
from saliency.infra.config import require, require_positive
from saliency.infra.errors import UserError
from saliency.infra.rundir import CONFIG, WEIGHTS, RunDir
from saliency.infra.training import OptimConfig, validate_run_basics
from saliency.infra.weights import load_state_strictly
from saliency.losses import LossConfig
from saliency.metrics import METRICS
from saliency.models import build_untrained
from saliency.models.components import SaliencyNet
from saliency.models.registry import motion_frames


@dataclass
class ModelSpec:
    """Registry name and build options; stored in config.yaml so `saliency.load` can rebuild it."""
    name: str = "student"
    options: dict = field(default_factory=dict)


@dataclass
class DataConfig:
    root: str = "data/generated/salicon"  # any layout `open_dataset` detects (SALICON, MIT1003, CAT2000, folder)
    kind: str = "auto"
    train_split: str = "train"
    val_split: str = "val"
    size: tuple[int, int] = (96, 128)  # training and evaluation resolution (H, W)
    hflip: float = 0.5
    scale_jitter: float = 0.0
    batch_size: int = 16
    workers: int = 0
    limit: Optional[int] = None  # use only the first N labelled training images (quick experiments, label budgets)
    unlabeled: Optional[str] = None  # folder of images/videos without maps, seen only through the teacher (distill)
    unlabeled_every: int = 8  # videos in the pool: every N-th frame ...
    unlabeled_frames: int = 16  # ... and at most this many per video

    def __post_init__(self) -> None:
        require_positive(self, "batch_size", "limit", "unlabeled_every", "unlabeled_frames")
        require(len(self.size) == 2 and min(self.size) >= 1, "size", f"expected two positive integers (H, W), got {self.size!r}")
        require(0 <= self.hflip <= 1, "hflip", f"a probability in [0, 1], got {self.hflip}")
        require(self.scale_jitter >= 0, "scale_jitter", f"must be >= 0, got {self.scale_jitter}")
        require(self.workers >= 0, "workers", f"must be >= 0, got {self.workers}")


@dataclass
class SaliencyRunConfig:
    """Everything that defines one saliency training run (written to the run's config.yaml)."""
    model: ModelSpec = field(default_factory=ModelSpec)
    teacher: Optional[str] = None  # teacher run directory; set by `saliency distill`
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    seed: int = 0
    threads: int = 0  # torch CPU threads; 0 = all cores
    val_metrics: list[str] = field(default_factory=lambda: ["CC", "KLD", "NSS", "SIM", "AUC_Judd"])
    select_by: str = "CC"  # validation metric that picks model.safetensors

    @property
    def motion(self) -> int:
        """How many frames back a model that sees motion compares each frame with (`model.options.motion`, true:
        1), its samples carrying that frame; 0 for a model of single frames."""
        return motion_frames(self.model.options.get("motion", False))

    def inert_sections(self) -> tuple[str, ...]:
        """Sections that do not affect this run: the distillation weights when there is no teacher."""
        return () if self.teacher else ("distill",)

    def __post_init__(self) -> None:
        validate_run_basics(self)
        unknown = [name for name in self.val_metrics if name not in METRICS]
        require(not unknown, "val_metrics", f"unknown metric {unknown[0] if unknown else ''!r} (known: {', '.join(METRICS)})")
        require(self.select_by in self.val_metrics, "select_by", f"{self.select_by!r} must be one of val_metrics {self.val_metrics}")
        require(not self.data.unlabeled or self.teacher, "data.unlabeled",
                "an unlabeled pool is learnt from a teacher only: use `saliency distill --teacher RUN --unlabeled DIR`")


def load(run_dir: str | Path) -> SaliencyNet:
    """Rebuild the model a run directory describes and load its weights strictly; returned in eval mode. The
    whole config is checked first, then that it is the config the weights were saved with."""
    run = RunDir(run_dir).require()
    where = run.file(CONFIG)
    spec = run.config_dict().get("model")
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise UserError(f"{where}: no valid 'model' section, so not a saliency run "
                        f"(expected model: {{name: ..., options: {{...}}}})")
    options = spec.get("options") or {}
    if not isinstance(options, dict):
        raise UserError(f"{where}: model.options must be a mapping")
    run.load_config(SaliencyRunConfig)
    weights = run.load_weights()
    run.check_unchanged_since(WEIGHTS)
    try:
        model = build_untrained(spec["name"], **options)
    except UserError as error:  # an unknown model or option: the config names it
        raise UserError(f"{where}: {error}") from None
    load_state_strictly(model, weights, run.file(WEIGHTS), spec["name"])
    return model.eval()


def save(model: SaliencyNet, out: str | Path, config: SaliencyRunConfig | None = None) -> Path:
    """Write `model` (made by `saliency.build`) as a new run directory that `load` opens: `config.yaml` (`config`, or
    a run config naming the model's registry name and options) and `model.safetensors`; returns its path."""
    run = RunDir(out)
    if run.exists():
        raise UserError(f"{run.path}: run directory already exists; save into another folder")
    spec = getattr(model, "spec", None)
    if spec is None:
        raise UserError("only a model made by saliency.build (or loaded by saliency.load) can be saved: it records "
                        "the name and options that rebuild it")
    config = config or SaliencyRunConfig(model=ModelSpec(spec["name"], dict(spec["options"])))
    if config.model.name != spec["name"]:
        raise UserError(f"config.model.name {config.model.name!r} is not the model's {spec['name']!r}")
    run.path.mkdir(parents=True, exist_ok=True)
    run.save_config(config)
    run.save_weights(model.state_dict(), {"model": spec["name"]})
    return run.path
