"""The control saliency sources: uniform, centre, ground-truth and shuffled maps are what they claim, the same
through every path that reads frames, keyed apart in the feature cache, and refused where they cannot work."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from saliency.world import centre_prior
from saliency.infra.errors import UserError
from saliency.metrics import METRICS
from saliency.world import META_NAME, GazeModel
from vidcap.model.captioner import CaptionerConfig, SaliencySourceConfig, VisualFrontEnd, frames_to_tensor, with_saliency
from vidcap.cli import build_parser, main
from vidcap.training.feature_cache import extractor_fingerprint
from vidcap.data.datasets import open_caption_dataset
from saliency.world import write_msrvtt
from vidcap.data.video import FrameSamplerConfig, read_clip, read_frames, resize_frames, resize_maps
from vidcap.model.encoder import EncoderConfig
from vidcap.inference.pipeline import visual_tokens
from vidcap.model.saliency_sources import SOURCES, partner

pytestmark = pytest.mark.usefixtures("one_thread")

SAMPLER = FrameSamplerConfig(n_frames=3, size=(32, 64), resize="stretch")
ENCODER = EncoderConfig(backbone="small-cnn", pretrained=False, grid=2)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Eight synthetic videos (48×64, 6 frames) with the world's gaze recorded on every frame."""
    root = tmp_path_factory.mktemp("world") / "data"
    write_msrvtt(root, n=8, size=(48, 64), n_frames=6, saliency_every=1, progress=False)
    return root


def front_for(source: str, weighting: str = "residual", sampler: FrameSamplerConfig = SAMPLER) -> VisualFrontEnd:
    """The front end of a captioner whose maps come from control `source`."""
    config = with_saliency(CaptionerConfig(sampler=sampler, encoder=ENCODER), source, weighting=weighting)
    return VisualFrontEnd(config, seed=0).eval()


def oracle(world, video_id: str, frame: int) -> np.ndarray:
    """The world's expected density of one frame, from the records written at generation time."""
    meta = json.loads((world / "saliency" / META_NAME).read_text())
    return GazeModel.of_record(meta["images"][f"{video_id}_f{frame:04d}"], meta["size"], meta["world"]).expected_density()


def test_every_source_is_a_cli_choice_and_keys_a_cache_of_its_own():
    for command in (["train", "--out", "x"], ["extract"]):
        assert [build_parser().parse_args([*command, "--saliency", s]).saliency for s in SOURCES] == list(SOURCES)
    base = CaptionerConfig(encoder=ENCODER)
    configs = [with_saliency(base, source, "runs/student" if source in ("teacher", "student") else None)
               for source in SOURCES]
    state = VisualFrontEnd(replace(base, encoder=replace(ENCODER, weighting="none"))).encoder.state_dict()
    fingerprints = {extractor_fingerprint(replace(c, saliency=replace(c.saliency, run=None)), state) for c in configs}
    assert len(fingerprints) == len(SOURCES)


def test_controls_need_no_saliency_run_and_an_unknown_source_lists_the_valid_ones():
    config = CaptionerConfig(saliency=SaliencySourceConfig(source="student", run="runs/student"))
    assert with_saliency(config, "centre").saliency.run is None  # the preset's run is dropped
    with pytest.raises(UserError, match="saliency source uniform needs no saliency model; drop --saliency-model runs/x"):
        with_saliency(config, "uniform", "runs/x")
    with pytest.raises(UserError, match="'everywhere' is not one of none, teacher, student, uniform, shuffled, centre, "
                                        "ground-truth"):
        SaliencySourceConfig(source="everywhere")


def test_uniform_is_a_gain_without_a_place(world):
    video = str(next((world / "TrainValVideo").glob("*.mp4")))
    frames = frames_to_tensor(read_frames(video, SAMPLER))[None]
    plain = VisualFrontEnd(CaptionerConfig(sampler=SAMPLER, encoder=replace(ENCODER, weighting="none")), seed=0).eval()
    with torch.no_grad():
        tokens, _ = plain(frames)
        residual, _ = front_for("uniform")(frames)  # (1 + 1·1)·F
        prior, bias = front_for("uniform", "prior")(frames)
    torch.testing.assert_close(residual, 2 * tokens)
    assert torch.equal(prior, tokens) and torch.equal(bias, torch.zeros_like(bias))


def test_centre_is_the_centre_prior_on_every_frame(world):
    video = str(next((world / "TestVideo").glob("*.mp4")))
    frames = frames_to_tensor(read_frames(video, SAMPLER))
    maps = front_for("centre").saliency(frames).exp()[:, 0]  # (T, H, W), each summing to 1
    expected = torch.from_numpy(centre_prior((32, 64)))
    expected = expected / expected.max()
    for frame in maps:
        torch.testing.assert_close(frame / frame.max(), expected)
    assert torch.allclose(maps.sum(dim=(1, 2)), torch.ones(len(maps)))
    assert divmod(int(maps[0].argmax()), 64) in {(15, 31), (15, 32), (16, 31), (16, 32)}


@pytest.mark.parametrize("resize", ["stretch", "center_crop"])
def test_ground_truth_is_the_world_s_density_of_each_sampled_frame(world, resize):
    sampler = FrameSamplerConfig(n_frames=3, size=(32, 32), resize=resize)
    front = front_for("ground-truth", sampler=sampler)
    for video in sorted((world / "TrainValVideo").glob("*.mp4"))[:3]:
        clip = read_clip(video, sampler)
        maps = front.saliency(frames_to_tensor(clip.frames), clip.origin).exp()  # (T, 1, 32, 32)
        for frame, index in zip(maps, clip.indices):
            expected = resize_maps(torch.from_numpy(oracle(world, video.stem, int(index)))[None, None], (32, 32), resize)
            assert METRICS["CC"](frame[0].numpy(), expected[0, 0].numpy()) > 0.999, (video.stem, index)
    assert list(clip.indices) == [1, 3, 5]


def test_maps_follow_the_frames_through_the_crop():
    frame = np.random.default_rng(0).integers(0, 256, size=(1, 30, 80, 3), dtype=np.uint8)
    cropped = resize_frames(frame, (20, 20), "center_crop")[0, :, :, 0].astype(np.float32)
    maps = resize_maps(torch.from_numpy(frame[..., 0]).float()[:, None], (20, 20), "center_crop")[0, 0].numpy()
    assert maps.shape == (20, 20) and np.abs(maps - cropped).max() <= 0.51  # the frames are rounded to uint8


def test_shuffled_gives_each_video_the_maps_of_another_video_of_its_split(world):
    meta = json.loads((world / META_NAME).read_text())
    splits = {split: [v for v, record in meta["videos"].items() if record["split"] == split]
              for split in ("train", "validate", "test")}
    assert splits == {"train": [f"video{i}" for i in range(5)], "validate": ["video5"], "test": ["video6", "video7"]}
    assert [partner(meta, v) for v in splits["train"]] == ["video1", "video2", "video3", "video4", "video0"]
    assert [partner(meta, v) for v in splits["test"]] == ["video7", "video6"]
    assert partner(meta, "video5") == "video6"  # alone in its split: the next video of the whole world
    video = sorted((world / "TrainValVideo").glob("*.mp4"))[0]
    clip = read_clip(video, SAMPLER)
    shuffled = front_for("shuffled").saliency(frames_to_tensor(clip.frames), clip.origin).exp()
    truth = front_for("ground-truth").saliency(frames_to_tensor(clip.frames), clip.origin).exp()
    other = partner(meta, video.stem)
    for frame, index, own in zip(shuffled, clip.indices, truth):
        expected = resize_maps(torch.from_numpy(oracle(world, other, int(index)))[None, None], (32, 64), "stretch")
        assert METRICS["CC"](frame[0].numpy(), expected[0, 0].numpy()) > 0.999
        assert METRICS["CC"](frame[0].numpy(), own[0].numpy()) < 0.9


def test_batched_overlapped_extraction_gives_each_video_its_own_maps(world):
    front = front_for("ground-truth", "prior")
    videos = [str(v) for v in sorted(world.rglob("*.mp4"))]
    for key, tokens, bias, error in visual_tokens(front, list(enumerate(videos)), batch_videos=4):
        with torch.no_grad():
            clip = read_clip(videos[key], SAMPLER)
            alone, alone_bias = front(frames_to_tensor(clip.frames)[None], origins=[clip.origin])
        assert error is None and torch.equal(tokens, alone[0]) and torch.equal(bias, alone_bias[0])


def test_world_maps_need_the_world_s_meta_and_frames_read_from_its_videos(world, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(world / "TestVideo", bare / "TestVideo")
    video = next((bare / "TestVideo").glob("*.mp4"))
    front = front_for("ground-truth")
    with pytest.raises(UserError, match=f"{video}: saliency source ground-truth needs the world's own maps, from the "
                                        f"{META_NAME} that `vidcap synth` writes; none in"):
        clip = read_clip(video, SAMPLER)
        front.saliency(frames_to_tensor(clip.frames), clip.origin)
    with pytest.raises(UserError, match="needs to know which video and frames it looks at"):
        front.saliency(frames_to_tensor(clip.frames))


def test_training_on_ground_truth_maps_then_captioning_a_test_video(world, tmp_path, capsys):
    settings = ["--quiet", "--set", "threads=1", "--set", f"data.root={world}", "--set", f"data.cache_dir={tmp_path / 'cache'}",
                "--set", "captioner.sampler={n_frames: 2, mode: segment, size: [32, 64], resize: stretch}",
                "--set", "captioner.encoder={backbone: small-cnn, pretrained: false, grid: 2}",
                "--set", "captioner.decoder={hidden_size: 32, layers: 1, heads: 2, intermediate_size: 64}",
                "--set", "captioner.tokenizer.min_count=1", "--set", "optim.epochs=1", "--set", "captioner.num_beams=1"]
    assert main(["train", *settings, "--saliency", "ground-truth", "--out", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    test = open_caption_dataset(world, split="test").items[0]
    assert main(["caption", str(test.path), "--model", str(tmp_path / "run")]) == 0
    assert capsys.readouterr().out.strip()
    bare = tmp_path / "bare"
    shutil.copytree(world, bare, ignore=shutil.ignore_patterns(META_NAME))
    assert main(["extract", *settings, "--set", f"data.root={bare}", "--saliency", "shuffled"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"vidcap: error: {bare}: saliency source shuffled needs the world's own maps, from the {META_NAME} that "
        "`vidcap synth` writes; this folder has none"]

