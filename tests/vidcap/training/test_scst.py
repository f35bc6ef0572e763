"""Self-critical sequence training: the CIDEr-D reward is pycocoevalcap's, the loss raises the samples that beat the
greedy caption, and `vidcap train --scst` continues a finished cross-entropy run into RUN/scst."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from pycocoevalcap.cider.cider_scorer import CiderScorer

from saliency.infra.rundir import RunDir
from vidcap.cli import main
from vidcap.run import VidcapRunConfig
from vidcap.model.decoder import sequence_log_probs
from vidcap.training.scst import CiderD, self_critical_loss

REFERENCES = [["a big red ball moves left", "a large red circle slides left", "a red ball is moving to the left"],
              ["a small blue star grows", "a tiny blue star gets bigger"],
              ["a green square moves up", "a green box goes up", "a big green square is moving up"]]
CANDIDATES = ["a red ball moves left", "a blue star grows in size", "a green square"]


def test_the_reward_is_pycocoevalcaps_cider_d_per_caption():
    """With the document frequencies of the same references, the per-caption scores match CiderScorer's."""
    official = CiderScorer(n=4, sigma=6.0)
    for candidate, references in zip(CANDIDATES, REFERENCES):
        official += (candidate, references)
    _, expected = official.compute_score()
    reward = CiderD(REFERENCES)
    got = [reward.score(c, refs) for c, refs in zip(CANDIDATES, REFERENCES)]
    assert got == pytest.approx(list(expected), rel=1e-9)
    assert reward.score(REFERENCES[0][0], REFERENCES[0]) > reward.score("a blue star grows", REFERENCES[0])


def test_an_empty_or_one_word_sample_scores_zero_rather_than_failing():
    """A sampled caption can end at once (EOS first): no n-gram of any order, so the reward is 0."""
    reward = CiderD(REFERENCES)
    assert reward.score("", REFERENCES[0]) == 0.0
    assert reward.score("zebra", REFERENCES[0]) == 0.0


def test_the_loss_raises_the_sample_that_beats_the_greedy_caption_and_lowers_the_one_below_it():
    logits = torch.zeros(1 * 2, 4, 6, requires_grad=True)  # 1 video, 2 samples, BOS + 3 tokens, vocabulary 6
    ids = torch.tensor([[3, 4, 2], [5, 2, 0]])  # the second sample ends (EOS = 2) after one word; PAD = 0 after it
    log_probs, mask = sequence_log_probs(logits, ids, pad_id=0)
    assert mask.tolist() == [[True, True, True], [True, True, False]]
    loss = self_critical_loss(log_probs, mask, sample_rewards=torch.tensor([1.5, 0.2]), greedy_rewards=torch.tensor([1.0]))
    loss.backward()
    assert logits.grad[0, 0, 3] < 0 and logits.grad[1, 0, 5] > 0  # descent raises sample 0's words, lowers sample 1's
    assert logits.grad[1, 2].abs().sum() == 0  # nothing for the PAD after EOS
    same = self_critical_loss(log_probs, mask, torch.tensor([1.0, 1.0]), torch.tensor([1.0]))
    assert same.item() == 0  # no advantage, no signal


@pytest.mark.slow
def test_vidcap_train_scst_continues_a_finished_run_into_its_own_folder_and_refuses_what_it_cannot(
        tiny_captioner, tmp_path, capsys):
    run = tmp_path / "xe"
    shutil.copytree(tiny_captioner / "captioner", run)
    assert main(["train", "--scst", "--out", str(run), "--set", "optim.epochs=1", "--set", "scst.samples=2",
                 "--set", "optim.lr=1e-12", "--set", "threads=1", "--quiet"]) == 0  # a step too small to move
    assert json.loads(capsys.readouterr().out)["run"] == str(run / "scst")
    stage = RunDir(run / "scst")
    config = stage.load_config(VidcapRunConfig)
    assert config.scst.start == str(run) and config.optim.epochs == 1 and config.optim.warmup_steps == 0
    assert (run / "scst" / "tokenizer.json").read_text() == (run / "tokenizer.json").read_text()
    start, after = RunDir(run).load_weights(), stage.load_weights()  # it started from the cross-entropy weights
    assert start.keys() == after.keys() and all(torch.allclose(start[k], after[k], atol=1e-6) for k in start)
    assert 0 <= stage.load_metrics()["epochs"][0]["train"]["reward"] < 10
    assert (run / "scst" / "log.csv").read_text().splitlines()[0] == "epoch,train_loss,train_reward,val_CIDEr,lr"
    # --resume continues the stage as its own config.yaml says, without the first call's --set repeated
    assert main(["train", "--scst", "--out", str(run), "--resume", "--quiet"]) == 0
    assert stage.load_config(VidcapRunConfig) == config
    assert main(["eval", "--model", str(run / "scst"), "--split", "test", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["train", "--scst", "--out", str(run / "scst"), "--quiet"]) == 2
    assert "already a self-critical stage" in capsys.readouterr().err
    unfinished = tmp_path / "unfinished"
    shutil.copytree(tiny_captioner / "captioner", unfinished)
    (unfinished / "config.yaml").write_text((unfinished / "config.yaml").read_text().replace("epochs: 1", "epochs: 3"))
    assert main(["train", "--scst", "--out", str(unfinished), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--scst needs a finished cross-entropy run, this one has 1 of its 3 epochs" in err, err
