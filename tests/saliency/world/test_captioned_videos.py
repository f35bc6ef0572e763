"""Synthetic captioned videos: official MSR-VTT layout, decodable H.264, captions that name the actor."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import decord
import numpy as np
import pytest
from PIL import Image

from saliency import world
from saliency.infra.errors import UserError
from saliency.infra.media import ffmpeg_path, ffprobe_path

H, W, FRAMES, N = 48, 64, 8, 10
VIDEO_KEYS = {"category", "url", "video_id", "start time", "end time", "split", "id"}


@pytest.fixture(scope="module")
def msrvtt(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("msrvtt")
    world.write_msrvtt(out, n=N, seed=2, size=(H, W), n_frames=FRAMES, fps=8, saliency_every=4, progress=False)
    return out


def load(out: Path) -> tuple[dict, dict, dict]:
    train_val, test, meta = (json.loads((out / name).read_text()) for name in
                             ("train_val_videodatainfo.json", "test_videodatainfo.json", world.META_NAME))
    return train_val, test, meta


def normalise(caption: str) -> str:
    return re.sub(r"[^a-z ]", "", caption.lower())


def mentions(caption: str, phrases) -> bool:
    return any(re.search(rf"\b{re.escape(p)}\b", normalise(caption)) for p in phrases)


def skeleton(caption: str, record: dict) -> str:
    """The caption with the actor's words replaced by slots: which template made it."""
    text = normalise(caption)
    slots = {"{shape}": world.SHAPE_WORDS[record["shape"]], "{size}": world.SIZE_WORDS[record["size"]],
             "{colour}": (record["colour"],), "{motion}": sum(world.MOTION_PHRASES[record["motion"]], ())}
    for slot, words in slots.items():
        for word in sorted(words, key=len, reverse=True):
            text = re.sub(rf"\b{re.escape(word)}\b", slot, text)
    return re.sub(r"\ban\b", "a", text)


def test_videos_sit_in_the_msrvtt_folders_by_split(msrvtt):
    train_val = sorted(p.name for p in (msrvtt / "TrainValVideo").iterdir())
    assert train_val == sorted(f"video{i}.mp4" for i in range(8))
    assert sorted(p.name for p in (msrvtt / "TestVideo").iterdir()) == ["video8.mp4", "video9.mp4"]


def test_videodatainfo_has_the_official_fields_and_splits(msrvtt):
    train_val, test, _ = load(msrvtt)
    for info in (train_val, test):
        assert set(info) == {"info", "videos", "sentences"}
        for video in info["videos"]:
            assert set(video) == VIDEO_KEYS
            assert video["video_id"] == f"video{video['id']}" and video["url"] == ""
            assert video["start time"] == 0.0 and video["end time"] == pytest.approx(FRAMES / 8)
            assert 0 <= video["category"] < len(world.MOTIONS)
        for sentence in info["sentences"]:
            assert set(sentence) == {"caption", "video_id", "sen_id"}
    assert [v["split"] for v in train_val["videos"]] == ["train"] * 7 + ["validate"]
    assert [v["split"] for v in test["videos"]] == ["test"] * 2
    sen_ids = [s["sen_id"] for s in train_val["sentences"] + test["sentences"]]
    assert sen_ids == list(range(20 * N))
    assert {s["video_id"] for s in test["sentences"]} == {"video8", "video9"}


def test_mp4_files_decode_to_the_right_frames(msrvtt):
    _, _, meta = load(msrvtt)
    frames_meta = json.loads((msrvtt / "saliency" / world.META_NAME).read_text())["images"]
    for i, folder in ((0, "TrainValVideo"), (7, "TrainValVideo"), (9, "TestVideo")):
        reader = decord.VideoReader(str(msrvtt / folder / f"video{i}.mp4"))
        assert len(reader) == FRAMES and reader.get_avg_fps() == pytest.approx(8)
        frame = reader[0].asnumpy()
        assert frame.shape == (H, W, 3)
        # the same frame was kept as a JPEG for saliency: the video shows it, in RGB order
        split = world.SALICON_SPLITS[["train", "validate", "test"].index(meta["videos"][f"video{i}"]["split"])]
        kept = np.asarray(Image.open(msrvtt / "saliency" / "images" / split / f"video{i}_f0000.jpg"), np.float64)
        assert np.abs(frame - kept).mean() < 6
        cx, cy = frames_meta[f"video{i}_f0000"]["centre"]
        expected = np.array(world.COLOURS[meta["videos"][f"video{i}"]["colour"]]) * 255
        assert np.abs(frame[round(cy), round(cx)] - expected).max() < 40


def test_each_video_has_twenty_distinct_captions_naming_its_actor(msrvtt):
    train_val, test, meta = load(msrvtt)
    sentences = train_val["sentences"] + test["sentences"]
    for video_id, record in meta["videos"].items():
        captions = [s["caption"] for s in sentences if s["video_id"] == video_id]
        assert len(captions) == 20 and len({normalise(c) for c in captions}) == 20
        assert all(mentions(c, world.SHAPE_WORDS[record["shape"]]) for c in captions)
        assert all(mentions(c, sum(world.MOTION_PHRASES[record["motion"]], ())) for c in captions)
        assert sum(mentions(c, (record["colour"],)) for c in captions) >= 15
        assert sum(mentions(c, world.SIZE_WORDS[record["size"]]) for c in captions) >= 14


def test_captions_use_at_least_ten_templates(msrvtt):
    train_val, test, meta = load(msrvtt)
    sentences = train_val["sentences"] + test["sentences"]
    skeletons = {skeleton(s["caption"], meta["videos"][s["video_id"]]) for s in sentences}
    assert len(world.CAPTION_TEMPLATES) >= 10
    assert len(skeletons) >= 10
    assert all("{shape}" in s and "{motion}" in s for s in skeletons)


def test_captions_use_an_article_that_fits_the_next_word():
    scene = world.sample_scene(np.random.default_rng(0), H, W, colour="orange", shape="diamond")
    for caption in world.caption_variants(scene, np.random.default_rng(1), n=40):
        assert not re.search(r"\ba [aeiou]", caption.lower())


def test_saliency_frames_are_kept_for_every_split_with_maps_and_fixations(msrvtt):
    root = msrvtt / "saliency"
    expected = {"train": [f"video{i}_f{t:04d}" for i in range(7) for t in (0, 4)],
                "val": ["video7_f0000", "video7_f0004"],
                "test": [f"video{i}_f{t:04d}" for i in (8, 9) for t in (0, 4)]}
    for split, stems in expected.items():
        for kind, ext in (("images", "jpg"), ("maps", "png"), ("fixations", "mat")):
            assert sorted(p.stem for p in (root / kind / split).glob(f"*.{ext}")) == sorted(stems)


def test_meta_records_each_videos_actor_and_split(msrvtt):
    train_val, _, meta = load(msrvtt)
    assert meta["n_frames"] == FRAMES and meta["fps"] == 8 and len(meta["videos"]) == N
    for video in train_val["videos"]:
        record = meta["videos"][video["video_id"]]
        assert record["split"] == video["split"]
        assert world.MOTIONS[video["category"]] == record["motion"]


def test_same_seed_gives_identical_annotations_and_another_seed_does_not(msrvtt, tmp_path):
    def annotations(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
                if p.suffix in {".json", ".mat", ".png"}}

    kwargs = dict(n=N, size=(H, W), n_frames=FRAMES, fps=8, saliency_every=4, progress=False)
    world.write_msrvtt(tmp_path / "again", seed=2, **kwargs)
    world.write_msrvtt(tmp_path / "other", seed=3, **kwargs)
    first, again, other = (annotations(p) for p in (msrvtt, tmp_path / "again", tmp_path / "other"))
    assert first == again
    assert first["train_val_videodatainfo.json"] != other["train_val_videodatainfo.json"]


def test_rejects_odd_frame_sizes(tmp_path):
    with pytest.raises(UserError, match="even"):
        world.write_msrvtt(tmp_path, n=2, size=(49, 64), progress=False)


def test_ffmpeg_is_found_and_ffprobe_is_optional():
    assert os.access(ffmpeg_path(), os.X_OK)
    probe = ffprobe_path()
    assert probe is None or os.access(probe, os.X_OK)
