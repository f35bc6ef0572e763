"""Paired arms: captioners of one seed start from the same weights and the same training stream whichever saliency
source they use (none, a teacher, a student or a control), because each random part is built from a seed of its own."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from saliency.infra.rundir import RunDir
from saliency.models import build
from saliency.run import ModelSpec, SaliencyRunConfig
from vidcap.model.captioner import CaptionerConfig, TokenizerConfig, build_part, with_saliency
from saliency.world import write_msrvtt
from vidcap.data.video import FrameSamplerConfig
from vidcap.model.decoder import DecoderConfig
from vidcap.model.encoder import EncoderConfig
from vidcap.run import CaptionDataConfig, CaptionerWeights, CaptionOptimConfig, VidcapRunConfig
from vidcap.training.train import CaptionTrainer

pytestmark = pytest.mark.usefixtures("one_thread")

SALIENCY_MODELS = {"teacher": ("teacher-mobilenetv2", {"pretrained": False, "decoder_width": 8}),
                   "student": ("student", {"width": 8, "depth": 1, "decoder_width": 8})}


def saliency_run(root: Path, name: str, options: dict) -> str:
    """An untrained saliency model saved as a run: building it draws random numbers, as loading it does."""
    run = RunDir(root)
    run.save_config(SaliencyRunConfig(model=ModelSpec(name, dict(options))))
    run.save_weights(build(name, **options).state_dict())
    return str(root)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """Six synthetic videos and a tiny teacher and student run."""
    root = tmp_path_factory.mktemp("paired")
    write_msrvtt(root / "data", n=6, size=(32, 64), n_frames=4, progress=False)
    return root, {arm: saliency_run(root / arm, *spec) for arm, spec in SALIENCY_MODELS.items()}


def tiny_config(root: Path, seed: int, track: bool = False) -> VidcapRunConfig:
    """A tiny captioner run on the videos under `root` (saliency none)."""
    captioner = CaptionerConfig(sampler=FrameSamplerConfig(n_frames=2, size=(32, 64), resize="stretch"),
                                encoder=EncoderConfig(backbone="small-cnn", pretrained=False, grid=2, weighting="none",
                                                      track=track),
                                decoder=DecoderConfig(hidden_size=32, layers=1, heads=2, intermediate_size=64),
                                tokenizer=TokenizerConfig(min_count=1), max_length=16, num_beams=1)
    return VidcapRunConfig(data=CaptionDataConfig(root=str(root / "data"), cache_dir=str(root / "cache")),
                           captioner=captioner, optim=CaptionOptimConfig(epochs=1), seed=seed, threads=1)


def start(config: VidcapRunConfig, source: str, run: str | None, out: Path) -> tuple[dict, torch.Tensor]:
    """The captioner's own weights and torch's generator state as `vidcap train` is about to train arm `source`."""
    config = replace(config, captioner=with_saliency(config.captioner, source, run, "residual"))
    trainer = CaptionTrainer(config, str(out), progress=False)
    return CaptionerWeights(trainer.model).state_dict(), torch.get_rng_state()


@pytest.mark.parametrize("track", [False, True])
def test_every_arm_starts_from_the_same_weights_and_training_stream(runs, tmp_path, track):
    root, saliency_runs = runs
    config = tiny_config(root, seed=3, track=track)
    arms = {source: start(config, source, saliency_runs.get(source), tmp_path / source)
            for source in ("none", "teacher", "student", "uniform", "ground-truth")}
    weights, stream = arms.pop("none")
    assert any(key.startswith("front.encoder.") for key in weights) and any(key.startswith("decoder.") for key in weights)
    for source, (other, other_stream) in arms.items():
        assert other.keys() == weights.keys(), source
        assert all(torch.equal(other[key], value) for key, value in weights.items()), source
        assert torch.equal(other_stream, stream), source
    reseeded, _ = start(tiny_config(root, seed=4), "none", None, tmp_path / "seed4")
    assert not torch.equal(reseeded["decoder.visual_position"], weights["decoder.visual_position"])
    assert not torch.equal(reseeded["front.encoder.backbone.0.0.weight"], weights["front.encoder.backbone.0.0.weight"])


def test_a_part_is_built_on_a_stream_of_its_own_and_leaves_the_global_one_as_it_was():
    torch.manual_seed(0)
    first = build_part(7, "decoder", lambda: torch.rand(3))
    after = torch.rand(3)
    torch.manual_seed(0)
    torch.rand(100)  # whatever came before
    assert torch.equal(build_part(7, "decoder", lambda: torch.rand(3)), first)
    assert not torch.equal(build_part(7, "encoder", lambda: torch.rand(3)), first)
    torch.manual_seed(0)
    build_part(7, "decoder", lambda: torch.rand(1000))
    assert torch.equal(torch.rand(3), after)
