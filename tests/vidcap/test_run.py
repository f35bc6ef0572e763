"""A captioner run rebuilds from its own folder: the frozen encoder's weights are in it (its pretraining run may be
gone), and the saliency model it names is checked against the weights it was trained with."""
from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import save_file

from tests.support.corruption import make_saliency_run
from saliency.infra.errors import UserError
from saliency.pretrain import Recogniser
from vidcap.cli import main
from tests.support.captioner_runs import VIDCAP_TINY
from vidcap.run import load_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tiny_captioner, tmp_path_factory):
    """A tiny captioner weighted by a tiny saliency student, its encoder a MobileNetV2 from a pretraining file: (the
    captioner run, the student run, the pretraining file); each test works on copies of what it changes."""
    threads = torch.get_num_threads()
    root = tmp_path_factory.mktemp("captioner-run")
    student = make_saliency_run(root)
    pretrained = root / "pretrain.safetensors"
    save_file({k: v.contiguous() for k, v in Recogniser("mobilenetv2").torchvision_state().items()}, pretrained)
    assert main(["train", *VIDCAP_TINY, "--set", f"data.root={tiny_captioner / 'vidcap-data'}",
                 "--set", f"data.cache_dir={root / 'cache'}", "--saliency", "student", "--saliency-model", str(student),
                 "--set", "captioner.encoder.weighting=prior",
                 "--set", f"captioner.encoder={{backbone: mobilenetv2, pretrained: {pretrained}, stride: 16, weighting: prior}}",
                 "--out", str(root / "captioner")]) == 0
    torch.set_num_threads(threads)
    return root / "captioner", student, pretrained


def test_the_encoder_comes_from_the_run_not_from_its_pretraining_file(trained, tiny_captioner, tmp_path):
    run, _, pretrained = trained
    video = sorted((tiny_captioner / "vidcap-data" / "TestVideo").glob("*.mp4"))[0]
    before = load_run(run)[0].caption_files([video])
    moved = tmp_path / "moved.safetensors"
    shutil.move(pretrained, moved)
    try:
        model, config = load_run(run)
        assert config.captioner.encoder.pretrained == str(pretrained)  # the config still says where it came from
        assert model.caption_files([video]) == before
    finally:
        shutil.move(moved, pretrained)


def test_saliency_weights_replaced_since_training_are_refused_in_one_line(trained, tmp_path):
    run, student, _ = trained
    weights = student / "model.safetensors"
    kept = tmp_path / "kept.safetensors"
    shutil.copy(weights, kept)
    try:
        other = make_saliency_run(tmp_path) / "model.safetensors"  # a student trained again: another file
        shutil.copy(other, weights)
        with pytest.raises(UserError, match="not the saliency weights .* was trained with") as refused:
            load_run(run)
        assert str(weights) in str(refused.value) and "\n" not in str(refused.value)
    finally:
        shutil.copy(kept, weights)
    load_run(run)  # restored: loads again


def test_save_writes_a_run_that_load_opens_with_the_same_weights_and_captions(trained, tiny_captioner, tmp_path):
    import vidcap

    run, student, _ = trained
    model, config = load_run(run)
    copy = vidcap.save(model, tmp_path / "copy", config)
    loaded, copied = load_run(copy)
    assert copied == config and loaded.tokenizer.backend.to_str() == model.tokenizer.backend.to_str()
    own = {k: v for k, v in model.state_dict().items()}
    assert own.keys() == loaded.state_dict().keys()
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in own.items())
    video = sorted((tiny_captioner / "vidcap-data" / "TestVideo").glob("*.mp4"))[0]
    assert loaded.caption_files([video]) == model.caption_files([video])
    with pytest.raises(UserError, match="already exists"):
        vidcap.save(model, copy)
