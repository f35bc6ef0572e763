"""Synthetic pretraining, the stand-in for ImageNet: a teacher's backbone learns to recognise the world's objects.

The renderer of `saliency.world` makes an endless object-recognition task: for every cell of the stride-16
grid that holds an object's centre, say that it does and name the object's shape, colour and size. Images are
generated on the fly from (data seed, index), so an epoch's images depend only on the epoch and a resumed run
sees what an uninterrupted one would; a fixed held-out set (the first `held_out` indices) measures recognition.
The run directory's `model.safetensors` holds the backbone under torchvision's key names (and the head, which
loaders ignore), so `pretrained: RUN/model.safetensors` loads it exactly as it loads a torchvision ImageNet file.
Teachers and the caption encoder start from it; students never do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from saliency.data import imagenet_normalise
from saliency.infra import distributed
from saliency.infra.config import require, require_positive
from saliency.infra.errors import UserError
from saliency.infra.rundir import RunDir
from saliency.infra.training import (Checkpoint, EpochLog, OptimConfig, Trainer, adamw_with_schedule,
                                     optimiser_step, require_finite, seed_everything, validate_run_basics)
from saliency.models import build, count_parameters
from saliency.models.backbones import backbone
from saliency.models.components import run_with_taps
from saliency.world import COLOURS, SHAPES, SIZES, WORLDS, SceneObject, image_scene, render_frame

TEACHER_FAMILIES = ("mobilenetv2", "resnet50", "vgg16", "densenet121")
ATTRIBUTES = {"shape": SHAPES, "colour": tuple(COLOURS), "size": tuple(SIZES)}
GRID_STRIDE = 16  # the recognition grid: the backbone's stride-16 stage (stride 32 upsampled onto it)


@dataclass
class PretrainConfig:
    """One pretraining run (written to the run's config.yaml)."""
    family: Literal[TEACHER_FAMILIES] = "mobilenetv2"  # a teacher's backbone (`saliency.models.backbones`)
    world: Literal["v1", "v2"] = "v2"
    size: tuple[int, int] = (96, 128)  # image (H, W); use the size the teachers train at
    images_per_epoch: int = 8192  # fresh images each epoch
    held_out: int = 512  # images of the fixed held-out set
    data_seed: int = 1_000_003  # seed of the generated images (apart from the seeds `synth` uses by default)
    batch_size: int = 32
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(epochs=4, lr=2e-3, warmup_steps=50))
    seed: int = 0  # weights' initialisation
    threads: int = 0

    def __post_init__(self) -> None:
        validate_run_basics(self)
        require(self.family in TEACHER_FAMILIES, "family", f"{self.family!r} is not one of {', '.join(TEACHER_FAMILIES)}")
        require(self.world in WORLDS, "world", f"{self.world!r} is not one of {', '.join(WORLDS)}")
        require(len(self.size) == 2 and min(self.size) >= 32 and not self.size[0] % 32 and not self.size[1] % 32,
                "size", f"expected (H, W), multiples of 32 (the backbones' stride), got {self.size!r}")
        require_positive(self, "images_per_epoch", "held_out", "batch_size")
        require(self.data_seed >= 0, "data_seed", f"must be >= 0, got {self.data_seed}")
        self.size = (int(self.size[0]), int(self.size[1]))


class RecognitionHead(nn.Module):
    """Per stride-16 cell: objectness and the shape, colour and size logits of the object centred there."""

    def __init__(self, channels16: int, channels32: int, width: int = 128):
        super().__init__()
        self.fuse = nn.Sequential(nn.Conv2d(channels16 + channels32, width, 3, padding=1), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True))
        self.out = nn.Conv2d(width, 1 + sum(len(v) for v in ATTRIBUTES.values()), 1)

    def forward(self, f16: torch.Tensor, f32: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(f32, size=f16.shape[-2:], mode="bilinear", align_corners=False)
        return self.out(self.fuse(torch.cat([f16, up], 1)))  # [B, 1+5+6+2, h, w]


class Recogniser(nn.Module):
    """A teacher's backbone (randomly initialised) with the recognition head on its first stride-16 stage and its
    deepest one (stride 32; VGG-16's deepest stays at 16)."""

    def __init__(self, family: str):
        super().__init__()
        teacher = build(f"teacher-{family}", pretrained=False)
        self.i16, self.i32 = list(teacher.feature_strides).index(GRID_STRIDE), len(teacher.feature_strides) - 1
        self.taps = teacher.taps
        self.prefix = backbone(family).prefix  # where torchvision's files keep the trunk's keys
        self.backbone = teacher.backbone
        self.head = RecognitionHead(teacher.feature_channels[self.i16], teacher.feature_channels[self.i32])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = run_with_taps(self.backbone, images, self.taps)
        return self.head(features[self.i16], features[self.i32])

    def torchvision_state(self) -> dict[str, torch.Tensor]:
        """The backbone under torchvision's key names, and the head under `head.`."""
        state = {self.prefix + k: v for k, v in self.backbone.state_dict().items()}
        return state | {f"head.{k}": v for k, v in self.head.state_dict().items()}


def grid_shape(size: tuple[int, int]) -> tuple[int, int]:
    """Cells of the recognition grid for images of `size` (what a stride-16 backbone stage gives)."""
    return math.ceil(size[0] / GRID_STRIDE), math.ceil(size[1] / GRID_STRIDE)


def render_batch(config: PretrainConfig, indices: range) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Images `indices` of the task, normalised as the backbones expect, and their per-cell targets:
    `objectness` [B,h,w] in {0,1} and `shape`/`colour`/`size` [B,h,w] class indices (-1 where no object)."""
    h, w = config.size
    gh, gw = grid_shape(config.size)
    images = np.empty((len(indices), h, w, 3), np.uint8)
    targets = {name: np.full((len(indices), gh, gw), -1, np.int64) for name in ATTRIBUTES}
    for row, index in enumerate(indices):
        scene, _ = image_scene(config.data_seed, index, config.size, config.world)
        images[row] = render_frame(scene, 0)
        # v1 names only its actor (its muted distractors have no words); v2 names every object
        objects = scene.objects or (SceneObject(scene.shape, scene.colour, scene.size, scene.motion, scene.actor),)
        for obj in objects:
            cx, cy = obj.sprite.centre(0.0)
            cell = (min(int(cy / GRID_STRIDE), gh - 1), min(int(cx / GRID_STRIDE), gw - 1))
            for name, values in ATTRIBUTES.items():
                targets[name][(row, *cell)] = values.index(getattr(obj, name))
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    out = {name: torch.from_numpy(value) for name, value in targets.items()}
    out["objectness"] = (out["shape"] >= 0).float()
    return imagenet_normalise(pixels), out


def split_logits(logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """[B, 1+Σclasses, h, w] → objectness [B,h,w] and per attribute [B, classes, h, w]."""
    parts = {"objectness": logits[:, 0]}
    start = 1
    for name, values in ATTRIBUTES.items():
        parts[name] = logits[:, start:start + len(values)]
        start += len(values)
    return parts


def recognition_loss(logits: torch.Tensor, targets: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
    """Objectness BCE on every cell plus cross-entropy of each attribute on the cells holding an object."""
    parts = split_logits(logits)
    losses = {"objectness": F.binary_cross_entropy_with_logits(parts["objectness"], targets["objectness"])}
    present = bool((targets["shape"] >= 0).any())
    for name in ATTRIBUTES:  # no object in the batch: no attribute signal (cross-entropy would be NaN)
        losses[name] = (F.cross_entropy(parts[name], targets[name], ignore_index=-1) if present
                        else parts[name].sum() * 0.0)
    total = sum(losses.values())
    return total, {key: value.detach() for key, value in losses.items()}


@torch.no_grad()
def recognition_accuracy(model: Recogniser, config: PretrainConfig, batch_size: int = 64) -> dict[str, float]:
    """On the held-out images: share of objects whose shape, colour and size are named right at their cell,
    all three right (`object_accuracy`), and the share of cells whose objectness is right."""
    model.eval()
    right = {name: 0 for name in (*ATTRIBUTES, "object", "cells")}
    objects = cells = 0
    for start in range(0, config.held_out, batch_size):
        images, targets = render_batch(config, range(start, min(start + batch_size, config.held_out)))
        parts = split_logits(model(images))
        present = targets["shape"] >= 0
        correct_all = present.clone()
        for name in ATTRIBUTES:
            correct = parts[name].argmax(1) == targets[name]
            right[name] += int((correct & present).sum())
            correct_all &= correct
        right["object"] += int(correct_all.sum())
        right["cells"] += int(((parts["objectness"] > 0).float() == targets["objectness"]).sum())
        objects += int(present.sum())
        cells += present.numel()
    scores = {f"{name}_accuracy": right[name] / max(objects, 1) for name in (*ATTRIBUTES, "object")}
    return scores | {"objectness_accuracy": right["cells"] / cells}


class Pretrainer(Trainer):
    """Trains `config.family`'s backbone on the recognition task into run directory `out`."""

    progress_label = "pretrain"
    held_out = "held-out"
    select_by = "object_accuracy"

    def __init__(self, config: PretrainConfig, out: str, resume: bool = False, progress: bool = True):
        self.config, self.run, self.progress = config, RunDir(out), progress
        self.world = distributed.current()
        if self.world.size > 1:
            raise UserError("saliency pretrain runs in one process; start it without torchrun")
        resume = self.run.prepare(resume, config)
        seed_everything(config.seed)
        self.model = Recogniser(config.family)
        self.steps = math.ceil(config.images_per_epoch / config.batch_size)
        self.optimizer, self.scheduler = adamw_with_schedule(self.model.parameters(), config.optim,
                                                             config.optim.epochs * self.steps)
        self.log = EpochLog(self.run, self.select_by)
        self.checkpoint = Checkpoint(self.run, self.world, model=self.model, optimizer=self.optimizer,
                                     scheduler=self.scheduler)
        self.epoch = 0
        if resume:
            self.resume()

    def batches(self) -> range:
        """Step numbers: each step renders its own images (`_indices`)."""
        return range(self.steps)

    def _indices(self, step: int) -> range:
        """Image indices of step `step` of the current epoch: after the held-out ones, never repeated."""
        first = self.config.held_out + self.epoch * self.config.images_per_epoch + step * self.config.batch_size
        last = self.config.held_out + (self.epoch + 1) * self.config.images_per_epoch
        return range(first, min(first + self.config.batch_size, last))

    def step(self, step: int) -> dict[str, float]:
        images, targets = render_batch(self.config, self._indices(step))
        total, parts = recognition_loss(self.model(images), targets)
        loss = total.item()
        require_finite(loss, self.run, self.epoch + 1)
        optimiser_step(total, self.optimizer, self.scheduler, self.config.optim.grad_clip)
        return {"loss": loss, **{key: float(value) for key, value in parts.items()}}

    def validate(self) -> dict[str, float]:
        return recognition_accuracy(self.model, self.config)

    def best_weights(self) -> tuple[dict, dict]:
        return self.model.torchvision_state(), {"model": f"pretrain-{self.config.family}"}

    def metrics(self, seconds: float) -> dict:
        return self.log.metrics(seconds, params=count_parameters(self.model.backbone))
