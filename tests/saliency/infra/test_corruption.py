"""Corrupted run-directory files: every file a saliency run holds, damaged in a sample of ways (bytes flipped in
its header and data, cut short, replaced by another format), loads with a one-line error naming it or exactly as
before; never a traceback, never a silently different model (`benchmarks/corruption_battery.py` runs the long
version). Also the checksums this rests on, and a sample through the real commands."""
import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

import saliency
from saliency.cli import main
from tests.support import corruption
from saliency.infra.errors import UserError
from saliency.infra.rundir import RunDir, atomic_write_checked_json, load_checked_json, load_safetensors, save_safetensors

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory, one_thread):
    """A tiny student trained for one epoch by `saliency train`."""
    root = tmp_path_factory.mktemp("saliency-corruption")
    corruption.make_saliency_run(root)
    return root


def replace_in(path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


@pytest.mark.parametrize("name", ["config.yaml", "model.safetensors", "train_state.safetensors", "train_state.json",
                                  "metrics.json"])
def test_a_damaged_run_file_gives_one_line_naming_it_or_loads_as_before(world, tmp_path, name):
    run = tmp_path / "student"
    shutil.copytree(world / "student", run)
    target = next(t for t in corruption.saliency_targets(run) if t.path.name == name)
    results = corruption.run_battery([target], seed=1, flips=6, cuts=2)
    assert len(results) == 6 + 2 + 7
    assert [r for r in results if r["outcome"] not in corruption.GOOD] == []


def test_a_flipped_byte_in_tensor_data_is_refused_and_files_without_a_checksum_still_load(tmp_path):
    weights = {"w": torch.arange(64.0)}
    save_safetensors(weights, tmp_path / "new.safetensors")
    data = bytearray((tmp_path / "new.safetensors").read_bytes())
    data[-9] ^= 0x01  # one bit of one float: still a valid file, silently another number without the checksum
    (tmp_path / "new.safetensors").write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"new\.safetensors: damaged \(its bytes do not match the checksum"):
        load_safetensors(tmp_path / "new.safetensors")
    save_file(weights, tmp_path / "old.safetensors")  # as written before checksums
    assert torch.equal(load_safetensors(tmp_path / "old.safetensors")["w"], weights["w"])


def test_a_config_changed_after_the_weights_is_refused_naming_it(world, tmp_path):
    run = tmp_path / "student"
    shutil.copytree(world / "student", run)
    config = run / "config.yaml"
    replace_in(config, "hflip: 0.5", "hflip: 0.4")  # still a valid config
    with pytest.raises(UserError) as error:
        saliency.load(run)
    assert str(error.value).startswith(f"{config}: not the file model.safetensors was saved with")
    RunDir(run).save_weights(RunDir(run).load_weights())  # weights saved beside this config: it is theirs
    assert saliency.load(run).spec["options"]["width"] == 8


def test_the_checksum_of_a_json_file_is_known_by_its_key_or_by_its_value(tmp_path):
    path = tmp_path / "metrics.json"
    atomic_write_checked_json(path, {"epoch": 3})
    text = path.read_text()
    assert load_checked_json(path) == {"epoch": 3}
    replace_in(path, '"sha256"', '"sha257"')  # the key damaged: the value still gives it away
    assert load_checked_json(path) == {"epoch": 3}
    path.write_text(text)
    replace_in(path, '"epoch": 3', '"epoch": 8')
    with pytest.raises(UserError, match="metrics.json: damaged"):
        load_checked_json(path)
    path.write_text(json.dumps({"epoch": 3}))  # written before checksums
    assert load_checked_json(path) == {"epoch": 3}


def test_predict_with_damaged_weights_stops_with_one_line(world, tmp_path, cli):
    run = tmp_path / "student"
    shutil.copytree(world / "student", run)
    weights = run / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x10
    weights.write_bytes(bytes(data))
    image = sorted((world / "saliency-data").rglob("*.jpg"))[0]
    command = cli("saliency")
    code, _, err = command("predict", "--model", run, image, "--out", tmp_path / "maps", "--quiet")
    assert code == 2
    command.assert_one_line_error(err, str(weights), "damaged")


def test_resume_checks_the_config_and_goes_on_when_it_is_whole(world, tmp_path, cli):
    command = cli("saliency")
    damaged, whole = tmp_path / "damaged", tmp_path / "whole"
    shutil.copytree(world / "student", damaged)
    shutil.copytree(world / "student", whole)
    config = damaged / "config.yaml"
    replace_in(config, "lr: 0.002", "lr: 0.003")
    code, _, err = command("train", "--out", damaged, "--resume", "--quiet")
    assert code == 2
    command.assert_one_line_error(err, str(config), "not the file train_state.safetensors was saved with")
    assert main(["train", "--out", str(whole), "--resume", "--quiet"]) == 0  # finished already: nothing to add
    assert RunDir(whole).completed_epochs() == 1 and len(RunDir(whole).load_metrics()["epochs"]) == 1
