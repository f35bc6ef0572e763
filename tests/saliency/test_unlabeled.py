"""Distillation with scarce labels and an unlabelled pool: the pool's images and video frames reach the student
only through the teacher, unreadable files are skipped by name, and an empty pool or one without a teacher stops
in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from saliency import world
from saliency.data import SaliencyTorchDataset, open_dataset
from saliency.data.unlabeled import PooledReader, UnlabeledReader
from saliency.infra.errors import UserError
from saliency.infra.media import Mp4Writer
from saliency.infra.rundir import RunDir
from saliency.models import build
from saliency.run import ModelSpec, SaliencyRunConfig

TINY = ["--set", "data.size=[32, 64]", "--set", "data.batch_size=8", "--set", "optim.epochs=1",
        "--set", "model.options={width: 8, depth: 1, decoder_width: 8}", "--set", "val_metrics=[CC]",
        "--set", "threads=1", "--quiet"]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("labelled")
    world.write_salicon(root, n=20, seed=0, size=(48, 64), progress=False)
    return root


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    """An untrained teacher's run directory: what it predicts does not matter here, only that it is used."""
    out = tmp_path_factory.mktemp("teacher") / "run"
    run = RunDir(out)
    run.save_config(SaliencyRunConfig(model=ModelSpec("teacher-mobilenetv2", {"pretrained": False, "decoder_width": 8})))
    run.save_weights(build("teacher-mobilenetv2", pretrained=False, decoder_width=8).state_dict())
    return out


@pytest.fixture
def pool(tmp_path) -> Path:
    """Six images (two of another size, one in a subfolder), one video of 12 frames, one damaged image."""
    root = tmp_path / "pool"
    (root / "more").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, size in enumerate([(48, 64)] * 4 + [(100, 30), (33, 47)]):
        folder = root / "more" if i == 5 else root
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    with Mp4Writer(root / "clip.mp4", 8) as writer:
        writer.write(rng.integers(0, 255, (12, 48, 64, 3), dtype=np.uint8))
    (root / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return root


def test_the_pool_holds_images_and_sampled_frames_and_names_what_it_skipped(pool):
    reader = UnlabeledReader(pool, (32, 64), every=4, frames_per_video=2)
    assert len(reader) == 6 + 2
    assert [path for path, _ in reader.skipped] == [str(pool / "broken.jpg")]
    assert "broken.jpg: not a readable image" in reader.skipped[0][1]
    samples = list(reader)
    assert all(s.density is None and s.fixations is None for s in samples)
    assert samples[-1].image.shape == (32, 64, 3) and samples[-1].name == "clip_f000004"


def test_pooled_samples_have_no_map_for_the_loss_to_use(labelled, pool):
    pooled = PooledReader(open_dataset(labelled, split="train"), 5, UnlabeledReader(pool, (32, 64)))
    assert pooled.n_labelled == 5 and len(pooled) == 5 + len(pooled.pool)
    dataset = SaliencyTorchDataset(pooled)
    flags = [bool(dataset[i]["has_density"]) for i in range(len(pooled))]
    assert flags == [True] * 5 + [False] * len(pooled.pool)


def test_distill_with_an_unlabeled_pool_trains_on_both(labelled, teacher, pool, tmp_path, cli, caplog):
    out = tmp_path / "student"
    code, _, err = cli("saliency")("distill", "--teacher", teacher, "--unlabeled", pool, "--set", f"data.root={labelled}",
                                   "--set", "data.limit=6", *TINY, "--out", out)
    assert code == 0, err
    config = RunDir(out).config_dict()
    assert config["data"]["unlabeled"] == str(pool) and config["teacher"] == str(teacher)
    assert "training on 6 labelled images and" in caplog.text
    assert f"unlabeled pool: skipped {pool / 'broken.jpg'}" in caplog.text
    metrics = json.loads((out / "metrics.json").read_text())
    assert np.isfinite(metrics["final"]["CC"]) and any(k.startswith("kd_") for k in metrics["epochs"][0]["train"])


@pytest.mark.parametrize("case", ["empty", "missing", "no-teacher"])
def test_a_pool_that_cannot_work_stops_in_one_line(case, labelled, teacher, tmp_path, cli):
    run = cli("saliency")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    args = {"empty": ["distill", "--teacher", teacher, "--unlabeled", empty],
            "missing": ["distill", "--teacher", teacher, "--unlabeled", tmp_path / "nowhere"],
            "no-teacher": ["train", "--set", f"data.unlabeled={empty}"]}[case]
    message = {"empty": "the unlabeled pool holds no readable images or videos",
               "missing": "unlabeled pool folder not found",
               "no-teacher": "an unlabeled pool is learnt from a teacher only"}[case]
    out = tmp_path / "run"
    code, _, err = run(*args, "--set", f"data.root={labelled}", *TINY, "--out", out)
    assert code == 2 and not out.exists()
    run.assert_one_line_error(err, message)


def test_an_unlabeled_reader_of_nothing_readable_says_what_it_found(tmp_path):
    (tmp_path / "a.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match=r"no readable images or videos \(all 1 unreadable, first: .*a.png"):
        UnlabeledReader(tmp_path, (32, 32))
