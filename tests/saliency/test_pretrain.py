"""Synthetic pretraining: the task's targets say what the renderer drew, the run directory loads into a teacher
exactly like a torchvision ImageNet file, and a file of another family is refused naming the keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from saliency import world
from saliency.infra.errors import UserError
from saliency.infra.rundir import load_safetensors
from saliency.models import build
from saliency.pretrain import (ATTRIBUTES, TEACHER_FAMILIES, GRID_STRIDE, PretrainConfig, Recogniser, grid_shape,
                               recognition_loss, render_batch)

TINY = ["--set", "size=[64, 64]", "--set", "images_per_epoch=16", "--set", "held_out=8", "--set", "batch_size=8",
        "--set", "optim.epochs=1", "--set", "optim.warmup_steps=1", "--quiet"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    from saliency.cli import main

    out = tmp_path_factory.mktemp("pretrain") / "run"
    torch.set_num_threads(1)
    assert main(["pretrain", "--family", "mobilenetv2", *TINY, "--out", str(out)]) == 0
    return out


def test_targets_name_every_object_at_the_cell_of_its_centre():
    config = PretrainConfig(size=(64, 96), held_out=4)
    images, targets = render_batch(config, range(3))
    assert images.shape == (3, 3, 64, 96) and targets["shape"].shape == (3, 4, 6)
    for row in range(3):
        scene, _ = world.image_scene(config.data_seed, row, config.size, config.world)
        cells = {(int(o.sprite.centre(0)[1] // GRID_STRIDE), int(o.sprite.centre(0)[0] // GRID_STRIDE)): o
                 for o in scene.objects}
        assert int(targets["objectness"][row].sum()) == len(cells)
        for (cy, cx), obj in cells.items():
            for name, values in ATTRIBUTES.items():
                assert values[int(targets[name][row, cy, cx])] == getattr(obj, name)


def test_the_loss_ignores_attributes_where_no_object_is():
    config = PretrainConfig(size=(64, 64), held_out=2)
    images, targets = render_batch(config, range(2))
    logits = Recogniser("mobilenetv2").eval()(images)
    total, parts = recognition_loss(logits, targets)
    assert set(parts) == {"objectness", *ATTRIBUTES} and torch.isfinite(total)
    assert all(parts[name] > 0 for name in ATTRIBUTES)
    empty = {k: torch.full_like(v, -1) if k in ATTRIBUTES else torch.zeros_like(v) for k, v in targets.items()}
    total, parts = recognition_loss(logits, empty)
    assert torch.isfinite(total) and all(parts[name] == 0 for name in ATTRIBUTES) and parts["objectness"] > 0


def test_world_v1_names_its_actor():
    config = PretrainConfig(size=(64, 64), held_out=2, world="v1")
    _, targets = render_batch(config, range(2))
    scene, _ = world.image_scene(config.data_seed, 1, config.size, "v1")
    assert int(targets["objectness"][1].sum()) == 1
    assert ATTRIBUTES["shape"][int(targets["shape"][1].max())] == scene.shape


@pytest.mark.parametrize("family", TEACHER_FAMILIES)
def test_every_family_recognises_on_the_grid_and_loads_into_its_teacher(family, tmp_path):
    """Each `--family` builds (VGG-16's deepest stage stays at stride 16) and its weights load into the teacher."""
    torch.manual_seed(0)
    recogniser = Recogniser(family).eval()
    with torch.no_grad():
        logits = recogniser(torch.randn(1, 3, 64, 96))
    assert logits.shape == (1, 1 + sum(len(v) for v in ATTRIBUTES.values()), *grid_shape((64, 96)))
    save_file({k: v.contiguous() for k, v in recogniser.torchvision_state().items()}, tmp_path / "model.safetensors")
    teacher = build(f"teacher-{family}", pretrained=str(tmp_path / "model.safetensors"))
    first = next(k for k in teacher.backbone.state_dict() if k.endswith("weight"))
    assert torch.equal(teacher.backbone.state_dict()[first], recogniser.backbone.state_dict()[first])


def test_a_run_directory_holds_config_metrics_and_torchvision_named_weights(pretrained):
    assert {"config.yaml", "metrics.json", "model.safetensors", "log.csv"} <= {p.name for p in pretrained.iterdir()}
    metrics = json.loads((pretrained / "metrics.json").read_text())
    assert {"shape_accuracy", "colour_accuracy", "size_accuracy", "object_accuracy"} <= set(metrics["final"])
    weights = load_safetensors(pretrained / "model.safetensors")
    assert "features.0.0.weight" in weights and any(k.startswith("head.") for k in weights)


@pytest.mark.parametrize("where", ["run", "file"])
def test_pretrained_loads_into_the_teacher_like_an_imagenet_file(pretrained, where):
    source = pretrained if where == "run" else pretrained / "model.safetensors"
    teacher = build("teacher-mobilenetv2", pretrained=str(source))
    weights = load_safetensors(pretrained / "model.safetensors")
    for key, value in teacher.backbone.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(value, weights[f"features.{key}"]), key
    random = build("teacher-mobilenetv2", pretrained=False)
    assert not torch.equal(random.backbone.state_dict()["0.0.weight"], weights["features.0.0.weight"])


def test_a_pretrained_file_of_another_family_is_refused_naming_the_keys(pretrained):
    with pytest.raises(UserError, match=r"does not fit the resnet50 backbone \(missing \d+ keys e.g. conv1.weight"):
        build("teacher-resnet50", pretrained=str(pretrained))


def test_training_a_teacher_from_a_wrong_family_run_is_one_line(pretrained, tmp_path, cli):
    run = cli("saliency")
    code, _, err = run("train", "--set", "model.name=teacher-resnet50",
                       "--set", f"model.options={{pretrained: {pretrained}}}", "--set", "data.root=data/missing",
                       "--out", tmp_path / "run", "--quiet")
    assert code == 2 and not (tmp_path / "run").exists()
    run.assert_one_line_error(err, "does not fit the resnet50 backbone")


def test_resume_continues_where_the_run_stopped(pretrained, tmp_path):
    from saliency.cli import main

    out = tmp_path / "run"
    assert main(["pretrain", *TINY, "--out", str(out)]) == 0
    first = load_safetensors(out / "model.safetensors")
    assert main(["pretrain", *[a if a != "optim.epochs=1" else "optim.epochs=2" for a in TINY], "--out", str(out),
                 "--resume"]) == 2  # a changed config is refused on resume
    assert torch.equal(first["features.0.0.weight"], load_safetensors(out / "model.safetensors")["features.0.0.weight"])
