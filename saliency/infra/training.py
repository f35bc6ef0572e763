"""What every trainer shares: the optimiser config and schedule, seeding and the random generators' state, the
checkpoint, the epoch log, the one epoch loop (`Trainer.fit`), and bringing a run directory to its configured number
of epochs."""
from __future__ import annotations

import csv
import io
import logging
import math
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from saliency.infra import distributed
from saliency.infra.config import require, require_positive
from saliency.infra.errors import UserError
from saliency.infra.figures import training_curves_png
from saliency.infra.rundir import (CONFIG, CURVES, LOG, WEIGHTS, RunDir, atomic_write_bytes, atomic_write_text,
                                   settings_change)

TENSORBOARD = "tensorboard"  # folder of TensorBoard event files in a run directory

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """This process's global generators (torch, numpy, Python `random`), storable in a train state."""
    _, keys, position, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss],
            "python": random.getstate()}


def restore_rng_state(state: dict, rank: int = 0) -> None:
    """Set the generators from a train state's per-process list `state["rng"]`, the entry of this `rank`;
    a rank the state lacks (resuming with more processes) keeps its freshly seeded generators."""
    saved = state.get("rng") or [{"torch": state["torch_rng"]}]  # train states written before the per-process list
    if rank >= len(saved):
        return
    torch.set_rng_state(saved[rank]["torch"])
    if "numpy" in saved[rank]:
        keys, position, has_gauss, gauss = saved[rank]["numpy"]
        np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), position, has_gauss, gauss))
        version, internal, gauss_next = saved[rank]["python"]
        random.setstate((version, tuple(internal), gauss_next))


def continue_training(trainer_class, config, out: str | Path, progress: bool = True) -> dict:
    """Bring run `out` to `config.optim.epochs`: start it, continue it from its last checkpoint, or, when it
    is finished, leave it alone. `trainer_class` is SaliencyTrainer or vidcap's CaptionTrainer; returns the
    run's metrics."""
    run = RunDir(out)
    if run.completed_epochs() >= config.optim.epochs and run.file(WEIGHTS).is_file():
        change = settings_change(run.config_dict(), config)
        if change:  # a finished run of other settings must not stand in for this one
            raise UserError(f"{run.file(CONFIG)}: a finished run of other settings ({change}); "
                            "delete it or train these settings into another folder")
        log.info("%s: already trained, skipped", out)
        return run.load_metrics()
    with run.lock(distributed.current()):
        return trainer_class(config, str(out), resume=run.exists() or run.has_train_state(), progress=progress).fit()


def validate_run_basics(config) -> None:
    """The checks every run config shares: a seed numpy and torch take, a thread count torch takes."""
    require(0 <= config.seed < 2**32, "seed", f"must be in [0, 2^32), got {config.seed}")
    require(config.threads >= 0, "threads", f"must be >= 0 (0: all cores), got {config.threads}")


@dataclass
class OptimConfig:
    """AdamW with linear warm-up and cosine decay, and gradient clipping: the optimiser of every trainer (a trainer's
    config may extend it)."""
    epochs: int = 10
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    grad_clip: float = 5.0

    def __post_init__(self) -> None:
        require_positive(self, "epochs")
        require(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        require(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        require(self.warmup_steps >= 0, "warmup_steps", f"must be >= 0, got {self.warmup_steps}")
        require(self.grad_clip > 0, "grad_clip", f"must be > 0, got {self.grad_clip}")




def require_finite(loss: float, run: RunDir, epoch: int) -> None:
    """A one-line UserError when a training loss is no longer a number; nothing of the epoch has been saved, so the
    last good checkpoint stays."""
    if not math.isfinite(loss):
        raise UserError(f"{run.path}: loss became {loss} at epoch {epoch}; the last good checkpoint is kept "
                        "(try a lower optim.lr)")


def optimiser_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scheduler, grad_clip: float) -> None:
    """One step of every trainer: gradients of `loss`, clipped to norm `grad_clip` over the optimiser's parameters,
    the optimiser's step and the learning-rate schedule's."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], grad_clip)
    optimizer.step()
    scheduler.step()


def adamw_with_schedule(parameters, optim: OptimConfig, total_steps: int):
    """AdamW over `parameters` at `optim`'s learning rate and weight decay, and its warm-up/cosine schedule over
    `total_steps` optimiser steps: (optimizer, scheduler)."""
    optimizer = torch.optim.AdamW(parameters, lr=optim.lr, weight_decay=optim.weight_decay)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(optim.warmup_steps, total_steps))


def warmup_cosine(warmup_steps: int, total_steps: int):
    """LR multiplier: linear warm-up, then cosine decay to 5% of the peak."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return factor


class Checkpoint:
    """Everything a trainer needs to continue exactly: named `parts` (objects with `state_dict()` and a strict
    `load_state_dict()`: model, optimiser, scheduler, ...), every process's random generators and the
    trainer's progress, in one atomic `train_state.safetensors` written by rank 0."""

    def __init__(self, run: RunDir, world, **parts):
        self.run, self.world, self.parts = run, world, parts

    def save(self, progress: dict, summary: dict) -> None:
        """Write the parts, the generators of every process and `progress` (epoch, history, ...);
        `summary` is the readable train_state.json beside it."""
        rng = self.world.gather(rng_state())
        if not self.world.is_main:
            return
        state = {name: part.state_dict() for name, part in self.parts.items()}
        self.run.save_train_state({**state, "rng": rng, "progress": progress}, summary)

    def restore(self) -> dict:
        """Load every part strictly and this process's generators; returns the saved progress."""
        state = self.run.load_train_state()
        if self.world.is_main:
            self.run.discard_partial_writes()
            self.run.rewrite_train_state_summary()
        for name, part in self.parts.items():
            part.load_state_dict(state[name])
        restore_rng_state(state, self.world.rank)
        return state["progress"]


class EpochLog:
    """Per-epoch records and the best epoch by one validation metric; writes `metrics.json` (one shape for
    every trainer), `log.csv` and `curves.png` into the run directory."""

    def __init__(self, run: RunDir, select_by: str, higher_is_better: bool = True, train_columns: tuple[str, ...] = ("loss",)):
        self.run, self.select_by, self.higher_is_better = run, select_by, higher_is_better
        self.train_columns = train_columns  # the training figures log.csv shows (every one goes to TensorBoard)
        self.history: list[dict] = []
        self.best = -math.inf  # the best epoch's validation score, oriented so that higher is better
        self._board = None  # TensorBoard writer once opened; False when the package is not installed

    def score(self, val: dict[str, float]) -> float:
        return val[self.select_by] if self.higher_is_better else -val[self.select_by]

    def add(self, record: dict) -> bool:
        """Append `{"epoch", "train": {"loss", ...}, "val": {...}, "lr"}`; True when it is the best epoch so far."""
        self.history.append(record)
        score = self.score(record["val"])
        if score > self.best:
            self.best = score
            return True
        return False

    def epoch_line(self, epochs: int, held_out: str = "val") -> str:
        """The last epoch in one line for the progress log: `epoch 3/8  loss 0.1234  val CC 0.812  KLD 0.301`."""
        record = self.history[-1]
        shown = "  ".join(f"{name} {value:.3f}" for name, value in record["val"].items())
        return f"epoch {record['epoch']}/{epochs}  loss {record['train']['loss']:.4f}  {held_out} {shown}"

    def state_dict(self) -> dict:
        return {"history": self.history, "best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.history, self.best = state["history"], state["best"]

    def metrics(self, seconds: float, **extra) -> dict:
        """What metrics.json holds: the best epoch's validation scores, every epoch's record, and `extra`."""
        best = max(self.history, key=lambda record: self.score(record["val"]))
        return {"final": best["val"], "best_epoch": best["epoch"], "select_by": self.select_by,
                "epochs": self.history, **extra, "train_seconds_this_session": seconds}

    def write(self, metrics: dict) -> None:
        """metrics.json, log.csv (epoch, the `train_columns` figures of training, every validation metric, lr),
        curves.png and, with the optional `tensorboard` package, TensorBoard scalars."""
        self.run.save_metrics(metrics)
        names = list(self.history[0]["val"])
        rows = [["epoch", *(f"train_{name}" for name in self.train_columns), *(f"val_{name}" for name in names), "lr"]]
        rows += [[r["epoch"], *(f"{r['train'][n]:.5f}" for n in self.train_columns), *(f"{r['val'][n]:.5f}" for n in names),
                  f"{r['lr']:.3g}"] for r in self.history]
        text = io.StringIO()
        csv.writer(text).writerows(rows)
        atomic_write_text(self.run.file(LOG), text.getvalue())
        atomic_write_bytes(self.run.file(CURVES), training_curves_png(
            [r["epoch"] for r in self.history], [r["train"]["loss"] for r in self.history], self.select_by,
            [r["val"][self.select_by] for r in self.history], self.higher_is_better, title=self.run.path.name))
        self._tensorboard(self.history[-1])

    def _tensorboard(self, record: dict) -> None:
        """The epoch's training losses, validation scores and learning rate as TensorBoard scalars in
        `RUN/tensorboard/` (`tensorboard --logdir runs`), when the optional `tensorboard` package is installed."""
        if self._board is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self._board = False
                return
            self._board = SummaryWriter(str(self.run.file(TENSORBOARD)))
        if self._board is False:
            return
        epoch = record["epoch"]
        for group in ("train", "val"):
            for name, value in record[group].items():
                self._board.add_scalar(f"{group}/{name}", value, epoch)
        self._board.add_scalar("lr", record["lr"], epoch)
        self._board.flush()


class Trainer:
    """The epoch loop of every trainer, read top to bottom in `fit`. A trainer's `__init__` sets `config`, `run`,
    `world`, `progress`, `model`, `scheduler`, `log` (an EpochLog), `checkpoint` and `epoch` (`resume` restores the
    last two); it says what one epoch's batches, one optimiser step and one validation are, and what its best
    weights and its checkpoint hold."""

    progress_label = "epoch"  # the progress bar's name
    held_out = "val"  # how the epoch line names the validation scores

    def batches(self) -> Iterable:
        """This epoch's batches (setting whatever depends on the epoch first)."""
        raise NotImplementedError

    def step(self, batch) -> dict[str, float]:
        """One optimiser step on `batch`; its losses, `loss` first, as every process sees them."""
        raise NotImplementedError

    def validate(self) -> dict[str, float]:
        """The validation scores that pick the best epoch (run by the main process only)."""
        raise NotImplementedError

    def best_weights(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """What model.safetensors holds after a best epoch: the state dict and its metadata."""
        raise NotImplementedError

    def metrics(self, seconds: float) -> dict:
        """metrics.json (`EpochLog.metrics` with what this trainer adds)."""
        raise NotImplementedError

    def progress_state(self) -> dict:
        """What the checkpoint keeps besides the epoch and the log, to continue exactly (e.g. a loader's generator)."""
        return {}

    def save_description(self) -> None:
        """What a run directory says before its first epoch: config.yaml."""
        self.run.save_config(self.config)

    def resume(self) -> dict:
        """Continue from the last checkpoint: its parts, the epoch and the log; returns the saved progress."""
        progress = self.checkpoint.restore()
        self.epoch = progress["epoch"]
        self.log.load_state_dict(progress["log"])
        return progress

    def fit(self) -> dict:
        """Train the remaining epochs; returns the metrics written to metrics.json."""
        epochs, main = self.config.optim.epochs, self.world.is_main
        if self.epoch == 0 and main:
            self.save_description()
        started = time.perf_counter()
        while self.epoch < epochs:
            self.model.train()
            sums: dict[str, float] = {}
            steps = 0
            bar = tqdm(self.batches(), desc=f"{self.progress_label} {self.epoch + 1}/{epochs}",
                       disable=not self.progress, leave=False)
            for batch in bar:
                losses = self.step(batch)
                for key, value in losses.items():
                    sums[key] = sums.get(key, 0.0) + value
                steps += 1
                bar.set_postfix(loss=f"{losses['loss']:.4f}")
            val = self.world.from_main(self.validate)
            self.epoch += 1
            record = {"epoch": self.epoch, "train": {key: value / max(1, steps) for key, value in sums.items()},
                      "val": val, "lr": self.scheduler.get_last_lr()[0]}
            if self.log.add(record) and main:
                self.run.save_weights(*self.best_weights())
            if main:
                self.log.write(self.metrics(time.perf_counter() - started))
            # The checkpoint is the epoch's last write: a run killed before it redoes the epoch, files included.
            self.checkpoint.save({"epoch": self.epoch, "log": self.log.state_dict(), **self.progress_state()},
                                 {"epoch": self.epoch, f"best_{self.log.select_by}": self.log.best})
            if self.progress:  # through logging, to stderr: stdout keeps only the command's result
                log.info("%s", self.log.epoch_line(epochs, self.held_out))
        return self.metrics(time.perf_counter() - started)
