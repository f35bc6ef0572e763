"""What every trainer shares: seeding, the random generators' state, the LR schedule, and bringing a run
directory to its configured number of epochs."""
from __future__ import annotations

import csv
import io
import logging
import math
import random
from pathlib import Path

import numpy as np
import torch

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


def validate_optimiser(optim) -> None:
    """The checks every trainer's optimiser config shares (epochs, lr, warm-up, clipping), as `InvalidValue`s."""
    require_positive(optim, "epochs")
    require(optim.lr > 0, "lr", f"must be > 0, got {optim.lr}")
    require(optim.weight_decay >= 0, "weight_decay", f"must be >= 0, got {optim.weight_decay}")
    require(optim.warmup_steps >= 0, "warmup_steps", f"must be >= 0, got {optim.warmup_steps}")
    require(optim.grad_clip > 0, "grad_clip", f"must be > 0, got {optim.grad_clip}")


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
