"""EpochLog: one shape of metrics.json, log.csv and curves for every trainer, and TensorBoard scalars when the
optional package is installed."""

from __future__ import annotations

import builtins
import json

import pytest

from saliency.infra.rundir import RunDir
from saliency.infra.training import TENSORBOARD, EpochLog


def record(epoch: int, loss: float, cc: float) -> dict:
    return {"epoch": epoch, "train": {"loss": loss, "kld": loss / 2}, "val": {"CC": cc}, "lr": 1e-3 / epoch}


def test_every_epoch_is_a_tensorboard_scalar(tmp_path):
    pytest.importorskip("tensorboard", reason="the optional tensorboard package is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = EpochLog(RunDir(tmp_path), "CC")
    for epoch, (loss, cc) in enumerate([(2.0, 0.3), (1.5, 0.5)], 1):
        log.add(record(epoch, loss, cc))
        log.write(log.metrics(1.0))
    events = EventAccumulator(str(tmp_path / TENSORBOARD))
    events.Reload()
    assert {"train/loss", "train/kld", "val/CC", "lr"} <= set(events.Tags()["scalars"])
    assert [(e.step, round(e.value, 4)) for e in events.Scalars("val/CC")] == [(1, 0.3), (2, 0.5)]
    assert json.loads((tmp_path / "metrics.json").read_text())["best_epoch"] == 2


def test_without_tensorboard_the_run_directory_is_as_before(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    log = EpochLog(RunDir(tmp_path), "CC")
    log.add(record(1, 2.0, 0.3))
    log.write(log.metrics(1.0))
    assert not (tmp_path / TENSORBOARD).exists() and (tmp_path / "log.csv").is_file()


def test_the_epoch_line_shows_the_last_epochs_loss_and_held_out_scores(tmp_path):
    from saliency.infra.rundir import RunDir
    from saliency.infra.training import EpochLog

    log = EpochLog(RunDir(tmp_path), "CC")
    log.add({"epoch": 3, "train": {"loss": 0.12344}, "val": {"CC": 0.8123, "KLD": 0.3}, "lr": 1e-3})
    assert log.epoch_line(8) == "epoch 3/8  loss 0.1234  val CC 0.812  KLD 0.300"
    assert log.epoch_line(8, "held-out").endswith("held-out CC 0.812  KLD 0.300")
