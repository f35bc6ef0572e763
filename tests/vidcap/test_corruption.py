"""Corrupted captioner run files: every file a captioner run holds, damaged in a sample of ways (bytes flipped in
its header and data, cut short, replaced by another format), loads with a one-line error naming it or exactly as
before; never a traceback, never a silently different captioner (`benchmarks/corruption_battery.py` runs the
long version). Also a tokenizer that still parses but says other words, and a sample through the real commands."""
import json
import shutil

import pytest

from tests.support import corruption
from tests.support import captioner_runs
from saliency.infra.errors import UserError
from saliency.infra.rundir import RunDir
from vidcap.cli import main
from vidcap.run import load

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def run(tiny_captioner, tmp_path):
    """A copy of the trained captioner's run directory, to damage."""
    shutil.copytree(tiny_captioner / "captioner", tmp_path / "captioner")
    return tmp_path / "captioner"


def rename_a_word(run) -> None:
    """tokenizer.json still valid, with one vocabulary word spelt otherwise: captions would say another word."""
    path = run / "tokenizer.json"
    data = json.loads(path.read_text())
    vocab = data["model"]["vocab"]
    word = next(word for word, index in vocab.items() if index >= 4)
    vocab[word + "s"] = vocab.pop(word)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


@pytest.mark.parametrize("name", ["config.yaml", "tokenizer.json", "model.safetensors", "train_state.safetensors",
                                  "train_state.json", "metrics.json"])
def test_a_damaged_run_file_gives_one_line_naming_it_or_loads_as_before(run, name):
    target = next(t for t in captioner_runs.captioner_targets(run) if t.path.name == name)
    results = corruption.run_battery([target], seed=2, flips=6, cuts=2)
    assert len(results) == 6 + 2 + 7
    assert [r for r in results if r["outcome"] not in corruption.GOOD] == []


def test_a_tokenizer_that_parses_but_says_other_words_is_refused(run):
    rename_a_word(run)
    with pytest.raises(UserError) as error:
        load(run)
    assert str(error.value).startswith(f"{run / 'tokenizer.json'}: not the file model.safetensors was saved with")


def test_caption_with_a_damaged_tokenizer_stops_with_one_line(tiny_captioner, run, cli):
    rename_a_word(run)
    video = sorted((tiny_captioner / "vidcap-data").rglob("*.mp4"))[0]
    command = cli("vidcap")
    code, out, err = command("caption", video, "--model", run)
    assert code == 2 and out == ""
    command.assert_one_line_error(err, str(run / "tokenizer.json"), "not the file model.safetensors was saved with")


def test_resume_checks_the_tokenizer_and_goes_on_when_it_is_whole(tiny_captioner, run, tmp_path, cli):
    whole = tmp_path / "whole"
    shutil.copytree(run, whole)
    rename_a_word(run)
    command = cli("vidcap")
    code, _, err = command("train", "--out", run, "--resume", "--quiet")
    assert code == 2
    command.assert_one_line_error(err, str(run / "tokenizer.json"), "not the file train_state.safetensors was saved with")
    assert main(["train", "--out", str(whole), "--resume", "--quiet"]) == 0  # finished already: nothing to add
    assert RunDir(whole).completed_epochs() == 1 and len(RunDir(whole).load_metrics()["epochs"]) == 1
