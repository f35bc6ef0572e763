"""`vidcap caption --segments`: segment timing, frames read segment by segment, scene cuts, and the text, JSON, SRT
and WebVTT outputs (the subtitles read back by ffmpeg's own demuxers, as players read them)."""
from __future__ import annotations

import json
import re
import subprocess

import numpy as np
import pytest
import torch

from saliency.infra.errors import UserError
from saliency.infra.media import ffmpeg_path
from vidcap.app import formats
from vidcap.data.video import FrameSamplerConfig, probe, read_frames
from vidcap.run import load_run
from vidcap.app.segments import (Segment, SegmentedVideo, caption_video, fixed_segments, parse_segments, scene_cuts,
                             scene_segments)

pytestmark = pytest.mark.usefixtures("one_thread")

FPS = 8


def encode_frames(path, frames: np.ndarray, fps: int = FPS) -> None:
    """(T, H, W, 3) uint8 → an H.264 mp4 at `fps`."""
    _, height, width, _ = frames.shape
    subprocess.run([ffmpeg_path(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s",
                    f"{width}x{height}", "-r", str(fps), "-i", "pipe:", "-c:v", "libx264", "-preset", "ultrafast",
                    "-qp", "0", "-pix_fmt", "yuv420p", str(path)], input=frames.tobytes(), check=True, timeout=120)


@pytest.fixture(scope="module")
def numbered(tmp_path_factory):
    """30 grey frames at 8 fps (3.75 s) whose brightness is 8 × the frame's number."""
    path = tmp_path_factory.mktemp("segments") / "numbered.mp4"
    encode_frames(path, np.repeat(np.arange(30, dtype=np.uint8)[:, None, None, None] * 8, 16 * 16 * 3).reshape(30, 16, 16, 3))
    return path


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Three shots at 8 fps: red for 3 s, blue for 2 s, a moving test pattern for 4 s (9 s in all)."""
    path = tmp_path_factory.mktemp("segments") / "scenes.mp4"
    subprocess.run([ffmpeg_path(), "-y", "-loglevel", "error", "-f", "lavfi", "-i", f"color=red:s=64x48:r={FPS}:d=3",
                    "-f", "lavfi", "-i", f"color=blue:s=64x48:r={FPS}:d=2", "-f", "lavfi",
                    "-i", f"testsrc2=s=64x48:r={FPS}:d=4", "-filter_complex", "[0][1][2]concat=n=3:v=1[v]", "-map", "[v]",
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)], check=True, timeout=120)
    return path


@pytest.fixture(scope="module")
def model(tiny_captioner):
    return load_run(tiny_captioner / "captioner")[0]


def spans(segments) -> list[tuple[float, float]]:
    return [(round(s.start, 3), round(s.end, 3)) for s in segments]


# --------------------------------------------------------------------------------------------------
# segment timing


def test_fixed_segments_cover_the_video_back_to_back_the_last_one_shorter():
    assert spans(fixed_segments(25.0, 10)) == [(0, 10), (10, 20), (20, 25)]
    assert spans(fixed_segments(30.0, 10)) == [(0, 10), (10, 20), (20, 30)]
    assert spans(fixed_segments(4.0, 10)) == [(0, 4)]


def test_scene_cuts_too_close_to_a_boundary_are_dropped():
    assert spans(scene_segments(10.0, [0.2, 3.0, 3.5, 9.6])) == [(0, 3), (3, 10)]
    assert spans(scene_segments(10.0, [])) == [(0, 10)]


@pytest.mark.parametrize("text", ["0", "-5", "nan", "inf", "often", ""])
def test_segments_must_be_positive_seconds_or_scenes(text):
    with pytest.raises(UserError, match=re.escape(f"--segments {text}: ")):
        parse_segments(text)


def test_segments_parse_as_seconds_or_scenes():
    assert [parse_segments(text) for text in ("10", "2.5", "scenes", None)] == [10.0, 2.5, "scenes", None]


def test_scene_changes_are_found_where_the_picture_changes(scenes):
    assert scene_cuts(scenes) == pytest.approx([3.0, 5.0])
    video = SegmentedVideo(scenes, FrameSamplerConfig(n_frames=2, size=(16, 16)))
    assert spans(video.segments("scenes")) == [(0, 3), (3, 5), (5, 9)]


# --------------------------------------------------------------------------------------------------
# frames by segment


def test_each_segment_samples_only_the_frames_that_start_inside_it(numbered):
    video = SegmentedVideo(numbered, FrameSamplerConfig(n_frames=4, size=(16, 16), resize="stretch"))
    segments = video.segments(1.0)
    assert video.duration == pytest.approx(3.75) and spans(segments) == [(0, 1), (1, 2), (2, 3), (3, 3.75)]
    for segment in segments:
        first, last = round(segment.start * FPS), round(segment.end * FPS)  # frames [first, last) start inside it
        indices = video.indices(segment)
        assert len(indices) == 4 and first <= indices.min() and indices.max() < last
        clip = video.clip(segment)
        frames, origin = clip.frames, clip.origin
        shown = np.rint(frames.reshape(4, -1).mean(axis=1) / 8)  # the frames' numbers, decoded
        assert shown.tolist() == indices.tolist() == origin.indices.tolist() and origin.path == numbered


def test_one_segment_over_a_large_video_decodes_as_the_whole_clip_does(tmp_path):
    """A frame more than twice the sampler's size is scaled down while decoding, to the same size either way."""
    path = tmp_path / "wide.mp4"
    rng = np.random.default_rng(0)
    encode_frames(path, rng.integers(0, 256, (8, 96, 160, 3), dtype=np.uint8))
    sampler = FrameSamplerConfig(n_frames=4, size=(16, 24), resize="stretch")
    video = SegmentedVideo(path, sampler)
    frames = video.clip(Segment(0.0, video.duration)).frames
    assert np.array_equal(frames, read_frames(path, sampler))


def test_a_segment_decodes_its_sampled_frames_and_no_others(numbered, monkeypatch):
    """Memory does not grow with the video's length: each segment asks the decoder for its n_frames frames only."""
    video = SegmentedVideo(numbered, FrameSamplerConfig(n_frames=3, size=(16, 16)))
    asked = []
    get_batch = video.reader.get_batch
    monkeypatch.setattr(video.reader, "get_batch", lambda indices: asked.append(list(indices)) or get_batch(indices))
    for segment in video.segments(0.5):
        video.clip(segment)
    assert len(asked) == 8 and all(len(indices) == 3 for indices in asked)
    frames = [set(indices) for indices in asked]
    assert sum(map(len, frames)) == len(set().union(*frames))  # no frame decoded for two segments


def test_a_segment_decodes_the_frame_before_each_sampled_frame_with_it(numbered, monkeypatch):
    """For a motion saliency model: the frames before the sampled ones come from the same `get_batch`."""
    video = SegmentedVideo(numbered, FrameSamplerConfig(n_frames=4, size=(16, 16), resize="stretch"))
    asked = []
    get_batch = video.reader.get_batch
    monkeypatch.setattr(video.reader, "get_batch", lambda indices: asked.append(list(indices)) or get_batch(indices))
    for segment in video.segments(1.0):
        clip = video.clip(segment)
        frames, origin = clip.frames, clip.origin
        clip = video.clip(segment, previous=True)
        before = np.maximum(clip.indices - 1, 0)
        assert asked[-1] == sorted(set(clip.indices) | set(before))  # one pass for both
        assert np.array_equal(clip.frames, frames) and clip.indices.tolist() == origin.indices.tolist()
        assert np.rint(clip.previous.reshape(4, -1).mean(axis=1) / 8).tolist() == before.tolist()
    assert video.clip(segment).previous is None


def test_a_segment_shorter_than_a_frame_gets_the_frame_on_screen(numbered):
    video = SegmentedVideo(numbered, FrameSamplerConfig(n_frames=2, size=(16, 16)))
    assert video.indices(Segment(1.01, 1.02)).tolist() == [8, 8]


def test_each_segment_is_captioned_from_its_own_frames(model, scenes):
    from vidcap.app.segments import caption_frames

    video = SegmentedVideo(scenes, model.config.sampler)
    result = caption_video(model, scenes, 3.0)
    assert result.caption is None and spans(result.segments) == [(0, 3), (3, 6), (6, 9)]
    clips = [video.clip(segment) for segment in result.segments]
    assert [s.caption for s in result.segments] == [caption_frames(model, clip.frames, {}, origin=clip.origin)
                                                    for clip in clips]


def test_segments_are_captioned_with_the_frames_before_theirs_for_a_motion_saliency_model(model, scenes):
    from saliency.models import build_untrained
    from vidcap.model.captioner import Captioner, with_saliency
    from vidcap.app.segments import caption_frames

    torch.manual_seed(0)
    saliency = build_untrained("student", motion=True, width=8, depth=1, decoder_width=8).eval()
    motion = Captioner(with_saliency(model.config, "student", weighting="prior"), model.tokenizer, saliency, seed=0)
    result = caption_video(motion.eval(), scenes, 3.0)
    video = SegmentedVideo(scenes, motion.config.sampler)
    clips = [video.clip(segment, previous=True) for segment in result.segments]
    assert [s.caption for s in result.segments] == [caption_frames(motion, clip.frames, {}, origin=clip.origin,
                                                                   previous=clip.previous) for clip in clips]


# --------------------------------------------------------------------------------------------------
# the command and its formats


@pytest.fixture
def run(cli):
    return cli("vidcap")


def test_without_segments_the_caption_is_the_whole_clips_as_before(run, tiny_captioner, model, scenes):
    code, out, _ = run("caption", scenes, "--model", tiny_captioner / "captioner")
    assert code == 0 and out == f"{formats.shown(model.caption_files([scenes])[0])}\n"


def test_json_and_jsonl_give_each_segments_start_end_and_caption(run, tiny_captioner, scenes):
    code, out, _ = run("caption", scenes, "--model", tiny_captioner / "captioner", "--segments", "scenes", "--format", "json")
    assert code == 0
    (record,) = json.loads(out)
    assert record["video"] == str(scenes) and [(s["start"], s["end"]) for s in record["segments"]] == [(0, 3), (3, 5), (5, 9)]
    code, out, _ = run("caption", scenes, "--model", tiny_captioner / "captioner", "--segments", "scenes", "--format", "jsonl")
    assert code == 0 and [json.loads(line) for line in out.splitlines()] == [record]


def test_text_prints_one_line_per_segment(run, tiny_captioner, scenes):
    code, out, _ = run("caption", scenes, "--model", tiny_captioner / "captioner", "--segments", "4")
    lines = out.splitlines()
    assert code == 0 and [line.split("\t")[0] for line in lines] == [
        "00:00:00.000 --> 00:00:04.000", "00:00:04.000 --> 00:00:08.000", "00:00:08.000 --> 00:00:09.000"]


SRT_CUE = re.compile(r"(\d+)\n(\d\d:\d\d:\d\d,\d\d\d) --> (\d\d:\d\d:\d\d,\d\d\d)\n(\S[^\n]*)\n")


def read_subtitles(path, form: str) -> list[tuple[str, str, str]]:
    """(start, end, text) of each cue as ffmpeg's own demuxer for `form` reads the file, re-written as SRT."""
    done = subprocess.run([ffmpeg_path(), "-loglevel", "error", "-f", form, "-i", str(path), "-f", "srt", "-"],
                          capture_output=True, text=True, check=True, timeout=120)
    return [cue[1:] for cue in SRT_CUE.findall(done.stdout)]


@pytest.mark.parametrize("form, demuxer", [("srt", "srt"), ("vtt", "webvtt")])
def test_subtitles_are_cues_a_player_reads(run, tiny_captioner, scenes, tmp_path, form, demuxer):
    code, out, _ = run("caption", scenes, "--model", tiny_captioner / "captioner", "--segments", "2", "--format", form)
    assert code == 0
    subtitles = tmp_path / f"subs.{form}"
    subtitles.write_text(out, encoding="utf-8")
    if form == "srt":
        assert SRT_CUE.sub("", out).strip() == "" and [int(n) for n, *_ in SRT_CUE.findall(out)] == [1, 2, 3, 4, 5]
    else:
        assert out.startswith("WEBVTT\n\n")
    cues = read_subtitles(subtitles, demuxer)
    assert [(start, end) for start, end, _ in cues] == [
        ("00:00:00,000", "00:00:02,000"), ("00:00:02,000", "00:00:04,000"), ("00:00:04,000", "00:00:06,000"),
        ("00:00:06,000", "00:00:08,000"), ("00:00:08,000", "00:00:09,000")]
    assert all(text.strip() for _, _, text in cues)


def test_subtitles_without_segments_are_one_cue_over_the_whole_video(run, tiny_captioner, model, scenes, tmp_path):
    code, out, _ = run("caption", scenes, "--model", tiny_captioner / "captioner", "--format", "srt")
    assert code == 0 and out == f"1\n00:00:00,000 --> {formats.timestamp(probe(scenes).duration, ',')}\n" \
                                f"{formats.shown(model.caption_files([scenes])[0])}\n\n"


def test_an_empty_caption_still_makes_a_cue():
    assert formats.srt([Segment(0, 1.5, "")]) == "1\n00:00:00,000 --> 00:00:01,500\n[no caption]\n\n"
    assert formats.vtt([Segment(3661.5, 3662, "a\nb")]) == "WEBVTT\n\n01:01:01.500 --> 01:01:02.000\na b\n\n"


@pytest.mark.parametrize("args, problem", [
    (["--segments", "0"], "--segments 0: a segment must last a positive, finite number of seconds"),
    (["--segments", "-2"], "--segments -2: a segment must last a positive"),
    (["--segments", "often"], "--segments often: expected seconds per segment (e.g. 10) or 'scenes'"),
    (["--format", "srt", "EXTRA"], "--format srt prints the subtitles of one video, got 2"),
    (["--json", "--format", "vtt"], "--json is --format json"),
    (["--retry-failed"], "--retry-failed retries the failures recorded in a results file: give it with --out"),
])
def test_a_bad_combination_is_a_one_line_error_before_any_work(run, scenes, tmp_path, args, problem):
    """The model named does not exist: the mistake is found before it is loaded."""
    videos = [scenes] + [tmp_path / "other.mp4"] * args.count("EXTRA")
    code, out, err = run("caption", *videos, "--model", tmp_path / "no-such-run", *(a for a in args if a != "EXTRA"))
    assert code == 2 and out == ""
    run.assert_one_line_error(err, problem)
