"""Training loop for saliency models: from ground truth (`saliency train`) or from a teacher (`saliency distill`).

One loop for both: distillation only adds a frozen teacher and a `Distiller` whose terms are summed
with the ground-truth loss. Every epoch checkpoints atomically, so `--resume` continues exactly.
Under `torchrun` each process trains on its share of every batch (`saliency.infra.distributed`).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch.utils.data import DataLoader, DistributedSampler, Subset
from tqdm import tqdm

from saliency.infra import distributed
from saliency.data import SaliencyTorchDataset, SaliencyTransform, open_dataset
from saliency.data.unlabeled import PooledReader, UnlabeledReader
from saliency.distill import DistillConfig, Distiller
from saliency.infra.config import require, require_positive
from saliency.infra.errors import UserError
from saliency.evaluate import describe_left_out, evaluate_model, scorable
from saliency.losses import LossConfig, SaliencyLoss
from saliency.metrics import METRICS
from saliency.models import build, count_parameters, load
from saliency.models.registry import motion_frames
from saliency.infra.rundir import RunDir
from saliency.infra.training import (Checkpoint, EpochLog, optimiser_step, require_finite, seed_everything,
                                     validate_optimiser, validate_run_basics, warmup_cosine)

logger = logging.getLogger(__name__)


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
class OptimConfig:
    epochs: int = 10
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    grad_clip: float = 5.0

    def __post_init__(self) -> None:
        validate_optimiser(self)


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


def check_sees_what_teacher_sees(config: SaliencyRunConfig) -> None:
    """A one-line UserError when the student and its teacher differ in seeing motion (or in how many frames back
    they look): both take the same batches."""
    teacher = RunDir(config.teacher).require().load_config(SaliencyRunConfig)
    if teacher.motion != config.motion:
        def sees(gap: int) -> str:
            return {0: "sees single frames", 1: "sees motion"}.get(gap, f"sees motion over {gap} frames")

        option = {0: "false", 1: "true"}.get(teacher.motion, teacher.motion)
        raise UserError(f"teacher {config.teacher} {sees(teacher.motion)} but the student {sees(config.motion)}: "
                        f"set model.options.motion={option}")


def open_split(config: SaliencyRunConfig, split: str):
    reader = open_dataset(config.data.root, kind=config.data.kind, split=split, frame_gap=config.motion or 1)
    if len(reader) == 0:
        raise UserError(f"{config.data.root}: no images in split {split!r}")
    return reader


def _train_loader(config: SaliencyRunConfig, world: distributed.World) -> tuple[DataLoader, SaliencyTorchDataset]:
    """Shuffled, augmented batches, this process's share of each: the order depends only on (seed, epoch),
    and the union of the shares of batch k is batch k of a single process, so any number of processes
    trains the same weights. (The loader's own generator seeds workers, whose augmentations are seeded per item.)"""
    reader = open_split(config, config.data.train_split)
    transform = SaliencyTransform(
        size=config.data.size,
        hflip=config.data.hflip,
        scale_jitter=config.data.scale_jitter,
    )
    if config.data.unlabeled:
        pool = UnlabeledReader(config.data.unlabeled, config.data.size, config.data.unlabeled_every,
                               config.data.unlabeled_frames, previous=config.motion)
        for _, reason in pool.skipped:
            logger.warning("unlabeled pool: skipped %s", reason)
        reader = PooledReader(reader, config.data.limit, pool)
        logger.info("training on %d labelled images and %d unlabelled ones", reader.n_labelled, len(pool))
    dataset = SaliencyTorchDataset(reader, transform, seed=config.seed, motion=config.motion)
    subset = Subset(dataset, range(len(reader) if config.data.unlabeled else min(config.data.limit or len(reader), len(reader))))
    batch_size = config.data.batch_size
    if world.distributed and batch_size % world.size:
        raise UserError(f"data.batch_size {batch_size} is not divisible by the {world.size} processes; "
                        "the batch size is global, each process takes an equal share")
    if world.distributed and len(subset) < batch_size:
        raise UserError(f"{config.data.root}: {len(subset)} training images, fewer than one batch of {batch_size}")
    sampler = DistributedSampler(subset, num_replicas=world.size, rank=world.rank, shuffle=True, seed=config.seed,
                                 drop_last=world.distributed)
    generator = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(subset, batch_size=batch_size // world.size, sampler=sampler, drop_last=len(subset) > batch_size,
                        num_workers=config.data.workers, generator=generator)
    return loader, dataset


def _validation_metrics(config: SaliencyRunConfig, reader) -> list[str]:
    """`config.val_metrics` less those the validation split has no ground truth for (said once in the log);
    checked before the first epoch, so a run never fails after training for want of fixations."""
    usable, lacking = scorable(reader, config.val_metrics)
    if config.select_by in lacking:
        raise UserError(f"select_by: {config.select_by} cannot be scored on split {config.data.val_split!r} "
                        f"({lacking[config.select_by]}); choose one of {usable or ['CC', 'KLD']} with --set select_by=...")
    if lacking:
        logger.warning("validation leaves out %s", describe_left_out(lacking))
    return usable


class SaliencyTrainer:
    """Trains `config.model` into run directory `out`; distils from `config.teacher` when set."""

    def __init__(self, config: SaliencyRunConfig, out: str, resume: bool = False, progress: bool = True):
        self.config = config
        self.run = RunDir(out)
        self.world = distributed.current()
        self.progress = progress and self.world.is_main
        if config.teacher:
            check_sees_what_teacher_sees(config)  # before the run directory is made
        resume = self.run.prepare(resume, config)
        seed_everything(config.seed)
        device = self.world.device
        self.model = build(config.model.name, **config.model.options).to(device)
        self.teacher = None
        self.distiller = None
        if config.teacher:
            self.teacher = load(config.teacher).eval().requires_grad_(False).to(device)
            self.distiller = Distiller(config.distill, self.model.feature_channels, self.teacher.feature_channels).to(device)
        if self.world.rank:  # rank 0 continues the single-process random stream; the others branch off it
            seed_everything(config.seed + self.world.rank)
        self.loss = SaliencyLoss(config.loss)
        self.train_loader, self.train_set = _train_loader(config, self.world)
        self.val_reader = open_split(config, config.data.val_split)
        self.val_metrics = _validation_metrics(config, self.val_reader)
        self.world.barrier()  # every process has checked the run directory before rank 0 writes to it
        # training passes go through these (DDP across processes); the plain modules are evaluated and saved
        self.student = distributed.data_parallel(self.model, self.world)
        self.adapters = distributed.data_parallel(self.distiller, self.world) if self.distiller else None
        params = list(self.model.parameters()) + (list(self.distiller.parameters()) if self.distiller else [])
        self.optimizer = torch.optim.AdamW(params, lr=config.optim.lr, weight_decay=config.optim.weight_decay)
        total = config.optim.epochs * max(1, len(self.train_loader))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, warmup_cosine(config.optim.warmup_steps, total))
        self.log = EpochLog(self.run, config.select_by, METRICS[config.select_by].higher_is_better)
        parts = {"model": self.model, "optimizer": self.optimizer, "scheduler": self.scheduler}
        self.checkpoint = Checkpoint(self.run, self.world, **parts, **({"distiller": self.distiller} if self.distiller else {}))
        self.epoch = 0
        if resume:
            progress = self.checkpoint.restore()
            self.epoch = progress["epoch"]
            self.log.load_state_dict(progress["log"])
            self.train_loader.generator.set_state(progress["loader_rng"])

    def _step(self, batch: dict) -> dict[str, float]:
        """One optimiser step on this process's share of a batch; returns the losses averaged over processes."""
        images, density, fixations, has_density = (batch[k].to(self.world.device)
                                                    for k in ("image", "density", "fixations", "has_density"))
        log_pred, features = self.student(images, return_features=True)
        total, parts = self.loss(log_pred, density, fixations, has_density)
        total = total * (self.config.distill.ground_truth if self.distiller else 1.0)
        if self.distiller is not None:
            with torch.no_grad():
                teacher_log, teacher_features = self.teacher(images, return_features=True)
            terms = self.adapters(features, teacher_features, log_pred, teacher_log)
            for name, value in terms.items():
                total = total + value
                parts[f"kd_{name}"] = value.detach()
        logs = self.world.mean({"loss": total, **parts})  # every process sees the same losses, and stops together
        require_finite(logs["loss"], self.run, self.epoch + 1)
        optimiser_step(total, self.optimizer, self.scheduler, self.config.optim.grad_clip)
        return logs

    def fit(self) -> dict:
        """Train the remaining epochs; returns the metrics written to metrics.json."""
        config = self.config
        main = self.world.is_main
        if self.epoch == 0 and main:
            self.run.save_config(config)
        started = time.perf_counter()
        while self.epoch < config.optim.epochs:
            self.train_set.set_epoch(self.epoch)
            self.train_loader.sampler.set_epoch(self.epoch)
            self.model.train()
            sums: dict[str, float] = {}
            bar = tqdm(self.train_loader, desc=f"epoch {self.epoch + 1}/{config.optim.epochs}", disable=not self.progress, leave=False)
            for batch in bar:
                logs = self._step(batch)
                for key, value in logs.items():
                    sums[key] = sums.get(key, 0.0) + value
                bar.set_postfix(loss=f"{logs['loss']:.4f}")
            steps = max(1, len(self.train_loader))
            val = self.world.from_main(lambda: evaluate_model(self.model, self.val_reader, config.data.size,
                                                              metrics=self.val_metrics, progress=False))
            self.epoch += 1
            record = {"epoch": self.epoch, "train": {k: v / steps for k, v in sums.items()}, "val": val,
                      "lr": self.scheduler.get_last_lr()[0]}
            if self.log.add(record) and main:
                self.run.save_weights(self.model.state_dict(), {"model": config.model.name})
            if main:
                self.log.write(self._metrics(time.perf_counter() - started))
            # The checkpoint is the epoch's last write: a run killed before it redoes the epoch, files included.
            self.checkpoint.save({"epoch": self.epoch, "log": self.log.state_dict(),
                                  "loader_rng": self.train_loader.generator.get_state()},
                                 {"epoch": self.epoch, "best_" + config.select_by: self.log.best})
            if self.progress:  # through logging, to stderr: stdout keeps only the command's result
                logger.info("%s", self.log.epoch_line(config.optim.epochs))
        return self._metrics(time.perf_counter() - started)

    def _metrics(self, seconds: float) -> dict:
        return self.log.metrics(seconds, params=count_parameters(self.model))
