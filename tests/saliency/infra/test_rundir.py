"""Run directory: atomic writes, safetensors only, resumable train state."""
import pickle
from dataclasses import dataclass

import pytest
import torch

from saliency.infra.errors import UserError
from saliency.infra.rundir import RunDir, atomic_write_text, flatten_state, unflatten_state


@dataclass
class TinyConfig:
    width: int = 4


def test_weights_round_trip_through_safetensors(tmp_path):
    run = RunDir(tmp_path / "run")
    model = torch.nn.Linear(3, 2)
    run.save_config(TinyConfig(width=8))
    run.save_weights(model.state_dict(), {"arch": "linear"})
    loaded = run.require().load_weights()
    assert torch.equal(loaded["weight"], model.weight) and run.load_config(TinyConfig).width == 8


def test_pickled_checkpoint_is_refused_not_loaded(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(pickle.dumps({"weight": [1, 2, 3]}))
    (tmp_path / "config.yaml").write_text("width: 4\n")
    with pytest.raises(UserError, match="pickled checkpoint"):
        RunDir(tmp_path).load_weights()


def test_damaged_weights_give_one_line_error(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(UserError, match="not a valid safetensors file"):
        RunDir(tmp_path).load_weights()


def test_missing_run_dir_is_named(tmp_path):
    with pytest.raises(UserError, match="run directory not found"):
        RunDir(tmp_path / "nope").require()
    with pytest.raises(UserError, match="missing config.yaml"):
        RunDir(tmp_path).require()


def test_optimizer_and_rng_state_round_trip(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    state = {"optimizer": optimizer.state_dict(), "rng": torch.get_rng_state(), "epoch": 3, "best": float("-inf")}
    run = RunDir(tmp_path)
    run.save_train_state(state, {"epoch": 3})
    loaded = run.load_train_state()
    assert loaded["epoch"] == 3 and loaded["best"] == float("-inf")
    assert torch.equal(loaded["rng"], state["rng"])
    fresh = torch.optim.AdamW(model.parameters(), lr=1e-2)
    fresh.load_state_dict(loaded["optimizer"])
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])


def test_flatten_keeps_tuples_and_int_keys():
    state = {0: (1, 2.5, None), "x": [torch.ones(2)]}
    skeleton, tensors = flatten_state(state)
    again = unflatten_state(skeleton, tensors)
    assert again[0] == (1, 2.5, None) and torch.equal(again["x"][0], torch.ones(2))


def test_atomic_write_leaves_no_temp_files(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "one")
    atomic_write_text(tmp_path / "a.txt", "two")
    assert (tmp_path / "a.txt").read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
