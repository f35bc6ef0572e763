"""Training loop for saliency models: from ground truth (`saliency train`) or from a teacher (`saliency distill`).

One loop for both: distillation only adds a frozen teacher and a `Distiller` whose terms are summed
with the ground-truth loss. Every epoch checkpoints atomically, so `--resume` continues exactly.
Under `torchrun` each process trains on its share of every batch (`saliency.infra.distributed`).
"""
from __future__ import annotations

import logging

import torch
from torch.utils.data import DataLoader, DistributedSampler, Subset

from saliency.infra import distributed
from saliency.data import SaliencyTorchDataset, SaliencyTransform, open_dataset
from saliency.data.unlabeled import PooledReader, UnlabeledReader
from saliency.distill import Distiller
from saliency.infra.errors import UserError
from saliency.evaluate import describe_left_out, evaluate_model, scorable
from saliency.losses import SaliencyLoss
from saliency.metrics import METRICS
from saliency.models import build, count_parameters
from saliency.infra.rundir import RunDir
from saliency.infra.training import (Checkpoint, EpochLog, Trainer, adamw_with_schedule, optimiser_step,
                                     require_finite, seed_everything)
from saliency.run import SaliencyRunConfig, load

logger = logging.getLogger(__name__)


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


class SaliencyTrainer(Trainer):
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
        self.optimizer, self.scheduler = adamw_with_schedule(params, config.optim,
                                                             config.optim.epochs * max(1, len(self.train_loader)))
        self.log = EpochLog(self.run, config.select_by, METRICS[config.select_by].higher_is_better)
        parts = {"model": self.model, "optimizer": self.optimizer, "scheduler": self.scheduler}
        self.checkpoint = Checkpoint(self.run, self.world, **parts, **({"distiller": self.distiller} if self.distiller else {}))
        self.epoch = 0
        if resume:
            self.train_loader.generator.set_state(self.resume()["loader_rng"])

    def batches(self) -> DataLoader:
        self.train_set.set_epoch(self.epoch)
        self.train_loader.sampler.set_epoch(self.epoch)
        return self.train_loader

    def step(self, batch: dict) -> dict[str, float]:
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

    def validate(self) -> dict[str, float]:
        return evaluate_model(self.model, self.val_reader, self.config.data.size, metrics=self.val_metrics,
                              progress=False)

    def best_weights(self) -> tuple[dict, dict]:
        return self.model.state_dict(), {"model": self.config.model.name}

    def progress_state(self) -> dict:
        return {"loader_rng": self.train_loader.generator.get_state()}

    def metrics(self, seconds: float) -> dict:
        return self.log.metrics(seconds, params=count_parameters(self.model))
