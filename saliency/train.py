"""Training loop for saliency models: from ground truth (`saliency train`) or from a teacher (`saliency distill`).

One loop for both: distillation only adds a frozen teacher and a `Distiller` whose terms are summed
with the ground-truth loss. Every epoch checkpoints atomically, so `--resume` continues exactly.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from saliency.data import SaliencyTorchDataset, SaliencyTransform, open_dataset
from saliency.distill import DistillConfig, Distiller
from saliency.errors import UserError
from saliency.evaluate import evaluate_model
from saliency.losses import LossConfig, SaliencyLoss
from saliency.metrics import METRICS
from saliency.models import build, load
from saliency.rundir import RunDir


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
    limit: Optional[int] = None  # use only the first N training images (quick experiments)


@dataclass
class OptimConfig:
    epochs: int = 10
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    grad_clip: float = 5.0


@dataclass
class SaliencyRunConfig:
    """Everything that defines one saliency training run (written to the run's config.yaml)."""
    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    teacher: Optional[str] = None  # teacher run directory; set by `saliency distill`
    seed: int = 0
    threads: int = 0  # torch CPU threads; 0 = all cores
    val_metrics: list[str] = field(default_factory=lambda: ["CC", "KLD", "NSS", "SIM", "AUC_Judd"])
    select_by: str = "CC"  # validation metric that picks model.safetensors


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def warmup_cosine(warmup_steps: int, total_steps: int):
    """LR multiplier: linear warm-up, then cosine decay to 5% of the peak."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return factor


def open_split(config: SaliencyRunConfig, split: str):
    reader = open_dataset(config.data.root, kind=config.data.kind, split=split)
    if len(reader) == 0:
        raise UserError(f"{config.data.root}: no images in split {split!r}")
    return reader


def _train_loader(config: SaliencyRunConfig) -> tuple[DataLoader, SaliencyTorchDataset]:
    """Shuffled, augmented batches; the loader's own generator makes the order resumable."""
    reader = open_split(config, config.data.train_split)
    transform = SaliencyTransform(
        size=config.data.size,
        hflip=config.data.hflip,
        scale_jitter=config.data.scale_jitter,
    )
    dataset = SaliencyTorchDataset(reader, transform, seed=config.seed)
    subset = Subset(dataset, range(min(config.data.limit or len(reader), len(reader))))
    generator = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(subset, batch_size=config.data.batch_size, shuffle=True, drop_last=len(subset) > config.data.batch_size,
                        num_workers=config.data.workers, generator=generator)
    return loader, dataset


class SaliencyTrainer:
    """Trains `config.model` into run directory `out`; distils from `config.teacher` when set."""

    def __init__(self, config: SaliencyRunConfig, out: str, resume: bool = False, progress: bool = True):
        self.config = config
        self.run = RunDir(out)
        self.progress = progress
        if self.run.exists() and not resume:
            raise UserError(f"{out}: run directory already exists; use --resume to continue it or choose another --out")
        if resume and not self.run.has_train_state():
            raise UserError(f"{out}: nothing to resume (no train_state.safetensors)")
        if config.select_by not in config.val_metrics:
            raise UserError(f"select_by {config.select_by!r} must be one of val_metrics {config.val_metrics}")
        if config.threads:
            torch.set_num_threads(config.threads)
        seed_everything(config.seed)
        self.model = build(config.model.name, **config.model.options)
        self.teacher = None
        self.distiller = None
        if config.teacher:
            self.teacher = load(config.teacher).eval().requires_grad_(False)
            self.distiller = Distiller(config.distill, self.model.feature_channels, self.teacher.feature_channels)
        self.loss = SaliencyLoss(config.loss)
        self.train_loader, self.train_set = _train_loader(config)
        self.val_reader = open_split(config, config.data.val_split)
        params = list(self.model.parameters()) + (list(self.distiller.parameters()) if self.distiller else [])
        self.optimizer = torch.optim.AdamW(params, lr=config.optim.lr, weight_decay=config.optim.weight_decay)
        total = config.optim.epochs * max(1, len(self.train_loader))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, warmup_cosine(config.optim.warmup_steps, total))
        self.epoch = 0
        self.history: list[dict] = []
        self.best = -math.inf
        if resume:
            self._restore()

    def _restore(self) -> None:
        state = self.run.load_train_state()
        self.model.load_state_dict(state["model"])
        if self.distiller is not None:
            self.distiller.load_state_dict(state["distiller"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        self.train_loader.generator.set_state(state["loader_rng"])
        self.epoch, self.history, self.best = state["epoch"], state["history"], state["best"]

    def _checkpoint(self) -> None:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "loader_rng": self.train_loader.generator.get_state(),
            "epoch": self.epoch, "history": self.history, "best": self.best,
        }
        if self.distiller is not None:
            state["distiller"] = self.distiller.state_dict()
        self.run.save_train_state(state, {"epoch": self.epoch, "best_" + self.config.select_by: self.best})

    def _step(self, batch: dict) -> dict[str, float]:
        images, density, fixations = batch["image"], batch["density"], batch["fixations"]
        log_pred, features = self.model(images, return_features=True)
        total, parts = self.loss(log_pred, density, fixations)
        total = total * (self.config.distill.ground_truth if self.distiller else 1.0)
        if self.distiller is not None:
            with torch.no_grad():
                teacher_log, teacher_features = self.teacher(images, return_features=True)
            terms = self.distiller(features, teacher_features, log_pred, teacher_log)
            for name, value in terms.items():
                total = total + value
                parts[f"kd_{name}"] = value.detach()
        if not torch.isfinite(total):
            raise UserError(f"{self.run.path}: loss became {total.item()} at epoch {self.epoch + 1}; "
                            f"the last good checkpoint is kept (try a lower optim.lr)")
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]], self.config.optim.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return {"loss": total.item(), **{k: float(v) for k, v in parts.items()}}

    def fit(self) -> dict:
        """Train the remaining epochs; returns the metrics written to metrics.json."""
        config = self.config
        if self.epoch == 0:
            self.run.save_config(config)
        started = time.perf_counter()
        while self.epoch < config.optim.epochs:
            self.train_set.set_epoch(self.epoch)
            self.model.train()
            sums: dict[str, float] = {}
            bar = tqdm(self.train_loader, desc=f"epoch {self.epoch + 1}/{config.optim.epochs}", disable=not self.progress, leave=False)
            for batch in bar:
                logs = self._step(batch)
                for key, value in logs.items():
                    sums[key] = sums.get(key, 0.0) + value
                bar.set_postfix(loss=f"{logs['loss']:.4f}")
            steps = max(1, len(self.train_loader))
            val = evaluate_model(self.model, self.val_reader, config.data.size, metrics=config.val_metrics, progress=False)
            self.epoch += 1
            record = {"epoch": self.epoch, "train": {k: v / steps for k, v in sums.items()}, "val": val,
                      "lr": self.scheduler.get_last_lr()[0]}
            self.history.append(record)
            score = self._selection_score(val)
            if score > self.best:
                self.best = score
                self.run.save_weights(self.model.state_dict(), {"model": config.model.name})
            self._checkpoint()
            self.run.save_metrics(self._metrics(time.perf_counter() - started))
            if self.progress:
                shown = "  ".join(f"{k} {v:.3f}" for k, v in val.items())
                tqdm.write(f"epoch {self.epoch}/{config.optim.epochs}  loss {record['train']['loss']:.4f}  val {shown}")
        return self._metrics(time.perf_counter() - started)

    def _selection_score(self, val: dict[str, float]) -> float:
        """Validation score that picks model.safetensors, oriented so that higher is better."""
        name = self.config.select_by
        return val[name] if METRICS[name].higher_is_better else -val[name]

    def _metrics(self, seconds: float) -> dict:
        best = max(self.history, key=lambda r: self._selection_score(r["val"]))
        return {"final": best["val"], "best_epoch": best["epoch"], "epochs": self.history,
                "params": sum(p.numel() for p in self.model.parameters()), "train_seconds_this_session": seconds}
