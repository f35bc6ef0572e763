"""Run directory: atomic writes, safetensors only, resumable train state."""
import json
import pickle
import struct
from dataclasses import dataclass

import pytest
import torch

from saliency.infra.errors import UserError
from saliency.infra.rundir import RunDir, atomic_write_text, flatten_state, load_safetensors, unflatten_state


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


def safetensors_with_header_length(path, length: int) -> None:
    """A valid safetensors file holding w = [1, 2] whose JSON header is padded to exactly `length` bytes."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    path.write_bytes(struct.pack("<Q", length) + header.ljust(length) + struct.pack("<2f", 1.0, 2.0))


def test_every_header_length_low_byte_loads(tmp_path):
    """A safetensors file starts with its header length: no first byte (0x80, the pickle marker; 0x50, 'P' of a
    zip) may make a valid file look like a pickle. Lengths 0x0280 and 0x4B50 start with the bytes of pickle
    protocol 2 and of 'PK'."""
    for length in [256 + low for low in range(256)] + [0x0280, 0x4B50]:
        path = tmp_path / f"{length}.safetensors"
        safetensors_with_header_length(path, length)
        assert torch.equal(load_safetensors(path)["w"], torch.tensor([1.0, 2.0])), hex(length)


def test_a_saved_model_whose_header_length_ends_in_0x80_loads(tmp_path):
    """The reported failure: metadata that pads safetensors' own header to a length ending in 0x80."""
    run, weights = RunDir(tmp_path), {"weight": torch.arange(6.0).view(2, 3)}
    for padding in range(0, 512, 8):  # safetensors pads headers to multiples of 8: 0x80 is among them
        run.save_weights(weights, {"note": "x" * padding})
        if run.file("model.safetensors").read_bytes()[0] == 0x80:
            break
    else:
        pytest.fail("no padding gave a header length ending in 0x80")
    assert torch.equal(run.load_weights()["weight"], weights["weight"])


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-pickle"])
def test_torch_save_checkpoints_are_refused_as_pickles(tmp_path, legacy):
    path = tmp_path / "model.safetensors"
    torch.save({"weight": torch.ones(2)}, path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(UserError, match=r"model\.safetensors: this is a pickled checkpoint") as error:
        load_safetensors(path)
    assert "\n" not in str(error.value)


def test_a_truncated_file_is_one_line_error_at_every_cut(tmp_path):
    whole = tmp_path / "whole.safetensors"
    safetensors_with_header_length(whole, 128)
    data = whole.read_bytes()
    for cut in range(len(data)):
        path = tmp_path / f"cut{cut}.safetensors"
        path.write_bytes(data[:cut])
        with pytest.raises(UserError, match=r"not a valid safetensors file") as error:
            load_safetensors(path)
        assert "\n" not in str(error.value), cut


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


def test_atomic_writes_get_the_mode_the_umask_gives_a_new_file(tmp_path):

    from saliency.infra.rundir import _umask

    atomic_write_text(tmp_path / "report.html", "<p>shared</p>")
    assert (tmp_path / "report.html").stat().st_mode & 0o777 == 0o666 & ~_umask()
