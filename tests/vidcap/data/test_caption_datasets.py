"""Specification of the caption dataset readers, on tiny official-layout files written here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from saliency.infra.errors import DatasetError
from saliency import world
from vidcap.data.datasets import (
    FolderCaptionDataset,
    MsrVttDataset,
    MsvdDataset,
    VideoCaptionItem,
    detect_caption_layout,
    normalize_split,
    open_caption_dataset,
)

MSVD_HEADER = "VideoID,Start,End,WorkerID,Source,AnnotationTime,Language,Description\n"


def touch(path: Path) -> Path:
    """A dummy video file: readers only look names up, they never decode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00")
    return path


def msrvtt_info(videos: dict[str, str], captions: dict[str, list[str]]) -> dict:
    return {
        "info": {"year": "2016"},
        "videos": [{"video_id": vid, "split": split, "id": i, "category": 0, "url": "",
                    "start time": 0.0, "end time": 1.0} for i, (vid, split) in enumerate(videos.items())],
        "sentences": [{"caption": caption, "video_id": vid, "sen_id": k}
                      for k, (vid, caption) in enumerate((v, c) for v, cs in captions.items() for c in cs)],
    }


def write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data))


@pytest.fixture
def msrvtt(tmp_path) -> Path:
    """video0-1 train, video2 validate, video3 test; video1's file is missing."""
    write_json(tmp_path / "train_val_videodatainfo.json", msrvtt_info(
        {"video0": "train", "video1": "train", "video2": "validate"},
        {"video0": ["a man sings", "a man is singing"], "video1": ["a dog runs"], "video2": ["a cat sleeps"]}))
    write_json(tmp_path / "test_videodatainfo.json", msrvtt_info(
        {"video3": "test"}, {"video3": ["a car drives", "   ", "a red car drives"]}))
    touch(tmp_path / "TrainValVideo" / "video0.mp4")
    touch(tmp_path / "TrainValVideo" / "video2.mp4")
    touch(tmp_path / "TestVideo" / "video3.mp4")
    return tmp_path


def test_msrvtt_reads_each_split_with_captions_in_file_order(msrvtt):
    train = MsrVttDataset(msrvtt, "train")
    assert len(train) == 1 and isinstance(train[0], VideoCaptionItem)
    assert train[0] == VideoCaptionItem("video0", msrvtt / "TrainValVideo" / "video0.mp4",
                                        ["a man sings", "a man is singing"], "train")
    assert [item.video_id for item in MsrVttDataset(msrvtt, "val")] == ["video2"]
    test = MsrVttDataset(msrvtt, "test")
    assert test.items[0].path == msrvtt / "TestVideo" / "video3.mp4"
    assert test.items[0].split == "test"


def test_validate_and_val_name_the_same_split(msrvtt):
    assert normalize_split("validate") == normalize_split("val") == normalize_split("Validation") == "val"
    assert MsrVttDataset(msrvtt, "validate").items == MsrVttDataset(msrvtt, "val").items
    with pytest.raises(DatasetError, match="unknown split 'dev'"):
        MsrVttDataset(msrvtt, "dev")


def test_missing_videos_are_reported_and_skipped(msrvtt):
    train = MsrVttDataset(msrvtt, "train")
    assert train.missing == [("video1", "no video file")]
    report = train.report()
    assert "\n" not in report and "1 videos, 1 missing" in report and "video1: no video file" in report
    assert "TrainValVideo/" in report


def test_empty_captions_are_dropped_and_counted(msrvtt):
    test = MsrVttDataset(msrvtt, "test")
    assert test.items[0].captions == ["a car drives", "a red car drives"]
    assert test.dropped_captions == 1 and "1 empty captions dropped" in test.report()


def test_a_video_whose_captions_are_all_empty_is_skipped_with_its_reason(tmp_path):
    write_json(tmp_path / "videodatainfo.json", msrvtt_info(
        {"video0": "train", "video1": "train"}, {"video0": ["", " "]}))
    touch(tmp_path / "video0.mp4")
    touch(tmp_path / "video1.mp4")
    data = MsrVttDataset(tmp_path, "train")
    assert len(data) == 0
    assert data.missing == [("video0", "only empty captions"), ("video1", "no captions")]
    assert data.dropped_captions == 2


def test_msrvtt_2016_single_file_and_other_video_folders(tmp_path):
    write_json(tmp_path / "videodatainfo.json", msrvtt_info(
        {"video0": "train", "video1": "validate", "video2": "test", "video3": "test"},
        {f"video{i}": [f"caption {i}"] for i in range(4)}))
    touch(tmp_path / "videos" / "all" / "video0.mp4")
    touch(tmp_path / "videos" / "video1.webm")
    touch(tmp_path / "video2.avi")
    touch(tmp_path / "video3.mkv")
    touch(tmp_path / "videos" / "video3.mp4")  # an earlier folder wins
    assert [item.path for item in MsrVttDataset(tmp_path, "train")] == [tmp_path / "videos/all/video0.mp4"]
    assert MsrVttDataset(tmp_path, "val")[0].path == tmp_path / "videos/video1.webm"
    test = MsrVttDataset(tmp_path, "test")
    assert [(item.video_id, item.path.name, item.captions) for item in test] == [
        ("video2", "video2.avi", ["caption 2"]), ("video3", "video3.mp4", ["caption 3"])]


def test_msrvtt_without_the_file_of_the_split_is_an_error(msrvtt):
    (msrvtt / "test_videodatainfo.json").unlink()
    assert len(MsrVttDataset(msrvtt, "train")) == 1
    with pytest.raises(DatasetError, match="test_videodatainfo.json: no such file"):
        MsrVttDataset(msrvtt, "test")


def test_corrupt_msrvtt_json_names_the_file_and_the_place(msrvtt):
    (msrvtt / "train_val_videodatainfo.json").write_text('{"videos": [\n{"video_id": "video0",, }]}')
    with pytest.raises(DatasetError, match=r"train_val_videodatainfo.json: invalid JSON at line 2 column"):
        MsrVttDataset(msrvtt, "train")
    write_json(msrvtt / "train_val_videodatainfo.json", {"videos": [{"video_id": "video0"}], "sentences": []})
    with pytest.raises(DatasetError, match=r"train_val_videodatainfo.json: videos\[0\] has no 'split'"):
        MsrVttDataset(msrvtt, "train")
    write_json(msrvtt / "train_val_videodatainfo.json", msrvtt_info({"video0": "dev"}, {}))
    with pytest.raises(DatasetError, match="unknown split 'dev'"):
        MsrVttDataset(msrvtt, "train")


def test_synthetic_msrvtt_reads_back_through_the_reader(tmp_path):
    summary = world.write_msrvtt(tmp_path, n=4, size=(64, 96), n_frames=8, progress=False)
    sentences = {}
    for name in ("train_val_videodatainfo.json", "test_videodatainfo.json"):
        for sentence in json.loads((tmp_path / name).read_text())["sentences"]:
            sentences.setdefault(sentence["video_id"], []).append(sentence["caption"])
    seen = []
    for split, official in (("train", "train"), ("val", "validate"), ("test", "test")):
        data = open_caption_dataset(tmp_path, split=split)
        assert isinstance(data, MsrVttDataset) and not data.missing and data.dropped_captions == 0
        assert len(data) == summary["splits"][official]
        folder = "TestVideo" if split == "test" else "TrainValVideo"
        for item in data:
            assert item.split == split and item.path == tmp_path / folder / f"{item.video_id}.mp4"
            assert item.path.is_file() and item.captions == sentences[item.video_id]
        seen += [item.video_id for item in data]
    assert sorted(seen) == sorted(sentences) == [f"video{i}" for i in range(4)]


@pytest.fixture
def msvd(tmp_path) -> Path:
    """Clips vid1 (train), vid1250 (val), vid1400 (test), vid1500 (test, no file)."""
    (tmp_path / "youtube_mapping.txt").write_text(
        "abc_1_5 vid1\nxyz_10_20 vid1250\nqqq_0_3 vid1400\nmiss_2_4 vid1500\n")
    (tmp_path / "video_corpus.csv").write_text(
        MSVD_HEADER
        + "abc,1,5,1,clean,10,English,A man is playing a guitar.\n"
        + "abc,1,5,2,clean,11,Spanish,Un hombre toca la guitarra.\n"
        + 'abc,1,5,3,clean,12,English,"A man plays, loudly, a guitar."\n'
        + "abc,1,5,4,clean,12,English,\n"
        + "xyz,10,20,1,clean,9,English,A cat eats.\n"
        + "qqq,0,3,1,clean,9,english,A woman cooks.\n"
        + "miss,2,4,1,clean,9,English,Someone dances.\n"
        + "nomap,0,1,1,clean,9,English,Never listed in the mapping.\n")
    touch(tmp_path / "YouTubeClips" / "abc_1_5.avi")
    touch(tmp_path / "YouTubeClips" / "xyz_10_20.avi")
    touch(tmp_path / "videos" / "vid1400.mp4")
    return tmp_path


def test_msvd_csv_keeps_english_builds_clip_ids_and_splits_by_vid_number(msvd):
    train = MsvdDataset(msvd, "train")
    assert [(item.video_id, item.captions) for item in train] == [
        ("abc_1_5", ["A man is playing a guitar.", "A man plays, loudly, a guitar."])]
    assert train[0].path == msvd / "YouTubeClips" / "abc_1_5.avi" and train.dropped_captions == 1
    val = MsvdDataset(msvd, "validate")
    assert [(item.video_id, item.split) for item in val] == [("xyz_10_20", "val")]
    test = MsvdDataset(msvd, "test")
    assert [(item.video_id, item.path.name) for item in test] == [("qqq_0_3", "vid1400.mp4")]
    assert test.missing == [("miss_2_4", "no video file")]
    assert "YouTubeClips/" in test.report()


def test_msvd_txt_descriptions_skip_header_lines(tmp_path):
    (tmp_path / "AllVideoDescriptions.txt").write_text(
        "# Microsoft Research Video Description Corpus\n# VideoID Description\n\n"
        "abc_1_5 a man is playing a guitar\nabc_1_5 a man plays\tguitar\nqqq_0_3 a woman cooks\nqqq_0_3\n")
    (tmp_path / "youtube_mapping.txt").write_text("abc_1_5 vid7\nqqq_0_3 vid1970\n")
    touch(tmp_path / "abc_1_5.avi")
    touch(tmp_path / "YouTubeClips" / "qqq_0_3.avi")
    assert detect_caption_layout(tmp_path) == "msvd"
    train = open_caption_dataset(tmp_path, split="train")
    assert [item.captions for item in train] == [["a man is playing a guitar", "a man plays\tguitar"]]
    test = MsvdDataset(tmp_path, "test")
    assert test[0].captions == ["a woman cooks"] and test.dropped_captions == 1


def test_corrupt_msvd_files_name_the_file_and_line(msvd):
    (msvd / "video_corpus.csv").write_text(MSVD_HEADER + "abc,1,5,1,clean,10,English,ok\nabc,1\n")
    with pytest.raises(DatasetError, match=r"video_corpus.csv, line 3: expected 8 fields, got 2"):
        MsvdDataset(msvd, "train")
    (msvd / "video_corpus.csv").write_text("VideoID,Start,End,Description\nabc,1,5,ok\n")
    with pytest.raises(DatasetError, match=r"video_corpus.csv: not an MSVD corpus file.*'Language'"):
        MsvdDataset(msvd, "train")
    (msvd / "video_corpus.csv").write_text(MSVD_HEADER)
    (msvd / "youtube_mapping.txt").write_text("abc_1_5 vid1\nabc_1_5 one\n")
    with pytest.raises(DatasetError, match=r"youtube_mapping.txt, line 2: expected '<clip_id> vidN'"):
        MsvdDataset(msvd, "train")
    (msvd / "youtube_mapping.txt").unlink()
    with pytest.raises(DatasetError, match="youtube_mapping.txt: no such file"):
        MsvdDataset(msvd, "train")


def test_folder_of_videos_with_a_captions_dict(tmp_path):
    write_json(tmp_path / "captions.json", {"clip1.mp4": ["a dog runs", ""], "clip2": "a cat sits",
                                            "gone": ["nothing here"]})
    touch(tmp_path / "clip1.mp4")
    touch(tmp_path / "videos" / "clip2.webm")
    data = FolderCaptionDataset(tmp_path)
    assert [(item.video_id, item.path, item.captions, item.split) for item in data] == [
        ("clip1", tmp_path / "clip1.mp4", ["a dog runs"], "train"),
        ("clip2", tmp_path / "videos" / "clip2.webm", ["a cat sits"], "train")]
    assert data.missing == [("gone", "no video file")] and data.dropped_captions == 1
    assert len(open_caption_dataset(tmp_path, split="train")) == 2
    empty = open_caption_dataset(tmp_path, split="test")  # without split info every video is train
    assert len(empty) == 0 and "no video of this split" in empty.report()


def test_folder_of_videos_with_a_list_and_splits(tmp_path):
    write_json(tmp_path / "captions.json", [
        {"video": "a.mp4", "captions": ["one"], "split": "train"},
        {"video": "b.mp4", "captions": ["two"], "split": "validate"},
        {"video": "c.mp4", "captions": ["three"]},
    ])
    for name in "abc":
        touch(tmp_path / f"{name}.mp4")
    assert [item.video_id for item in FolderCaptionDataset(tmp_path, split="train")] == ["a", "c"]
    assert [item.split for item in open_caption_dataset(tmp_path, split="val")] == ["val"]
    assert len(FolderCaptionDataset(tmp_path)) == 3  # split=None: every split


@pytest.mark.parametrize("content, message", [
    ('{"a.mp4": ["x"],}', r"captions.json: invalid JSON at line 1 column 17"),
    ('"just a string"', "captions.json: expected an object"),
    ('[{"video": "a.mp4"}]', r"captions.json: \[0\] has no 'captions'"),
    ('{"a.mp4": [1, 2]}', "must be a list of strings"),
    ('[{"video": "a", "captions": ["x"], "split": "dev"}]', "unknown split 'dev'"),
])
def test_corrupt_folder_captions_name_the_file(tmp_path, content, message):
    (tmp_path / "captions.json").write_text(content)
    with pytest.raises(DatasetError, match=message):
        FolderCaptionDataset(tmp_path)


def test_auto_detection_picks_the_layout_and_explains_failures(msrvtt, tmp_path_factory):
    assert detect_caption_layout(msrvtt) == "msrvtt"
    assert isinstance(open_caption_dataset(msrvtt, split="test"), MsrVttDataset)
    other = tmp_path_factory.mktemp("plain")
    write_json(other / "captions.json", {"a": ["x"]})
    assert detect_caption_layout(other) == "folder"
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(DatasetError, match="not a captioned video dataset; accepted layouts: MSR-VTT"):
        open_caption_dataset(empty)
    with pytest.raises(DatasetError, match="no such directory"):
        open_caption_dataset(empty / "absent")
    with pytest.raises(DatasetError, match="unknown caption dataset kind 'coco'"):
        open_caption_dataset(msrvtt, kind="coco")
