"""saliency.infra.media's frame reader: decord's frames where they match the container, ffmpeg's where decord fails or
decodes them wrongly, the same frames either way.

Test videos are piped from numpy into ffmpeg; frame k is a flat grey of level 6·k, so the grey level of a returned
frame says which frame it was.
"""
from __future__ import annotations

import os
import subprocess
from types import SimpleNamespace

import decord
import numpy as np
import pytest

from saliency.infra import media
from saliency.infra.errors import UserError

LEVEL = 6  # grey level step per frame


def grey_clip(path, n: int, height: int, width: int, fps: float = 10, before=()) -> str:
    """n flat grey frames (frame k at level LEVEL·k) as H.264, 4:2:0 where the sides are even, else 4:4:4."""
    frames = (np.arange(n, dtype=np.uint8) * LEVEL)[:, None, None, None] * np.ones((1, height, width, 3), np.uint8)
    pix_fmt = "yuv420p" if width % 2 == height % 2 == 0 else "yuv444p"
    subprocess.run([media.ffmpeg_path(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
                    "-s", f"{width}x{height}", "-r", str(fps), "-i", "pipe:", *before, "-c:v", "libx264",
                    "-preset", "ultrafast", "-pix_fmt", pix_fmt, str(path)],
                   input=frames.tobytes(), check=True, capture_output=True, timeout=60)
    return str(path)


def levels(frames: np.ndarray) -> list[int]:
    """Frame index each (N, H, W, 3) grey frame encodes."""
    return np.rint(frames.reshape(len(frames), -1).mean(axis=1) / LEVEL).astype(int).tolist()


def decoded(batches) -> tuple[list[int], np.ndarray]:
    """The indices and frames of a `batches` iterator, joined."""
    parts = list(batches)
    return [i for indices, _ in parts for i in indices], np.concatenate([frames for _, frames in parts])


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> str:
    """20 grey frames at 48×64, a size decord decodes right."""
    return grey_clip(tmp_path_factory.mktemp("media") / "clip.mp4", 20, 48, 64)


@pytest.mark.parametrize("height, width", [(16, 16), (17, 17), (32, 48), (47, 63), (64, 64), (21, 16), (40, 40)])
def test_thumbnail_sized_videos_give_every_frame_at_the_size_shown(tmp_path, height, width):
    path = grey_clip(tmp_path / "tiny.mp4", 12, height, width)
    reader = media.open_frames(path)
    frames = reader.get_batch(range(12))
    assert frames.shape == (12, height, width, 3) and frames.dtype == np.uint8
    assert levels(frames) == list(range(12))


def test_decord_stays_the_decoder_where_its_frames_match_and_ffmpeg_takes_over_where_they_do_not(clip, tmp_path):
    assert media.open_frames(clip).decord is not None
    tiny = grey_clip(tmp_path / "48x32.mp4", 5, 32, 48)
    wrong = decord.VideoReader(tiny)[0].shape != (32, 48, 3)  # decord 0.6: (32, 48, 4) and a failing copy later
    assert (media.open_frames(tiny).decord is None) == wrong


def test_a_frame_count_unlike_the_container_s_hands_the_file_to_ffmpeg(clip, monkeypatch):
    probe = media.probe
    monkeypatch.setattr(media, "probe", lambda path: SimpleNamespace(**{**vars(probe(path)), "n_frames": 16}))
    reader = media.open_frames(clip)
    assert reader.decord is None and len(reader) == 16
    assert levels(reader.get_batch([15, 0, 7, 7])) == [15, 0, 7, 7]


def test_decord_failing_part_way_hands_the_remaining_frames_to_ffmpeg(clip, monkeypatch):
    decord_batch = media.FrameReader._decord_batch

    def failing_from_frame_8(reader, indices):
        if indices[0] >= 8:
            raise decord.DECORDError("av_read_frame failed")
        return decord_batch(reader, indices)

    monkeypatch.setattr(media.FrameReader, "_decord_batch", failing_from_frame_8)
    reader = media.open_frames(clip)
    indices, frames = decoded(reader.batches(list(range(0, 20, 2)), 3))
    assert indices == list(range(0, 20, 2)) and levels(frames) == indices
    assert reader.decord is None  # decord is not asked again


def test_decord_frames_of_the_wrong_shape_are_replaced_by_ffmpeg_s(clip):
    reader = media.open_frames(clip)
    real = reader.decord

    class FourChannels:
        """decord's frames with a fourth channel, as decord 0.6 gives at some sizes."""

        def get_batch(self, indices):
            frames = real.get_batch(indices).asnumpy()
            return SimpleNamespace(asnumpy=lambda: np.concatenate([frames, frames[..., :1]], axis=3))

    reader.decord = FourChannels()
    frames = reader.get_batch([3, 9])
    assert frames.shape == (2, 48, 64, 3) and levels(frames) == [3, 9]


def test_ffmpeg_gives_each_frame_of_a_variable_frame_rate_video_once(tmp_path):
    # frames 0-9 are 0.1 s apart, frames 10-39 1/30 s apart: a frame-rate conversion would drop or repeat some
    path = grey_clip(tmp_path / "vfr.mp4", 40, 48, 64, fps=30,
                     before=("-vf", "setpts='if(lt(N,10),N*3,30+(N-10))/(30*TB)'", "-fps_mode", "vfr"))
    for wanted in (list(range(40)), [2, 7, 17, 32], [39]):
        indices, frames = decoded(media.ffmpeg_batches(path, path, wanted, 16, (48, 64)))
        assert indices == wanted and levels(frames) == wanted


def test_ffmpeg_scales_to_the_size_asked_for(clip):
    indices, frames = decoded(media.ffmpeg_batches(clip, clip, [4], 1, (24, 32)))
    assert frames.shape == (1, 24, 32, 3) and levels(frames) == [4]


def test_a_frame_past_the_end_of_the_stream_is_a_user_error_after_the_frames_before_it(clip):
    batches = media.ffmpeg_batches(clip, "clip.mp4", [5, 19, 25], 2, (48, 64))
    assert levels(next(batches)[1]) == [5, 19]
    with pytest.raises(UserError, match=r"^clip\.mp4: cannot decode frame 25 or later \(.+\)$"):
        next(batches)


def test_an_ffmpeg_decode_that_stalls_is_stopped_with_a_user_error(clip, tmp_path, monkeypatch):
    stalling = tmp_path / "ffmpeg"
    stalling.write_text("#!/bin/sh\nexec sleep 60\n")
    os.chmod(stalling, 0o755)
    monkeypatch.setattr(media, "ffmpeg_path", lambda: str(stalling))
    monkeypatch.setattr(media, "passthrough_option", lambda: ["-fps_mode", "passthrough"])
    monkeypatch.setattr(media, "DECODE_STALL_S", 0.5)
    with pytest.raises(UserError, match=r"^clip\.mp4: cannot decode frame 0 or later \(ffmpeg gave no frame for 0\.5 s\)$"):
        list(media.ffmpeg_batches(clip, "clip.mp4", [0], 1, (48, 64)))


def test_select_expression_is_one_term_per_evenly_spaced_run():
    assert media.select_expression([0, 4, 8, 12]) == "between(n,0,12)*not(mod(n-0,4))"
    assert media.select_expression([5]) == "between(n,5,5)*not(mod(n-5,1))"
    assert media.select_expression([1, 2, 3, 7, 9]) == ("between(n,1,3)*not(mod(n-1,1))"
                                                        "+between(n,7,9)*not(mod(n-7,2))")


def test_a_rotated_video_is_read_at_the_size_it_is_shown(clip, tmp_path):
    path = tmp_path / "rotated.mov"
    made = subprocess.run([media.ffmpeg_path(), "-y", "-loglevel", "error", "-display_rotation:v:0", "90", "-i", clip,
                           "-c", "copy", str(path)], capture_output=True, text=True, timeout=60)
    if made.returncode:
        pytest.skip(f"this ffmpeg cannot set a display rotation: {made.stderr.strip()[-200:]}")
    info = media.probe(path)
    assert (info.width, info.height) == (48, 64)
    frames = media.open_frames(path).get_batch([0, 19])
    assert frames.shape == (2, 64, 48, 3) and levels(frames) == [0, 19]


def test_probe_turns_the_size_by_ffprobe_s_display_matrix(monkeypatch):
    import ffmpeg

    stream = {"index": 0, "codec_type": "video", "codec_name": "h264", "width": 1920, "height": 1080,
              "nb_frames": "30", "avg_frame_rate": "30/1", "side_data_list": [{"rotation": -90}]}
    monkeypatch.setattr(media, "ffprobe_path", lambda: "/usr/bin/ffprobe")
    monkeypatch.setattr(ffmpeg, "probe", lambda path, cmd, **options: {"format": {}, "streams": [stream]})
    info = media.probe(__file__)  # any existing file; the fake answers for it
    assert (info.width, info.height, info.n_frames) == (1080, 1920, 30)


def test_a_video_is_probed_once_per_version(tmp_path, monkeypatch):
    """A dataset reopening its videos (DHF1K: one sample per annotated frame) probes each once; a rewritten
    file is probed again."""
    video = tmp_path / "clip.mp4"
    grey_clip(video, 6, 16, 16)
    calls = []
    real = media._probe_with_ffprobe if media.ffprobe_path() else media._probe_with_ffmpeg
    monkeypatch.setattr(media, "_probe_with_ffprobe", lambda path: calls.append(path) or real(path))
    monkeypatch.setattr(media, "_probe_with_ffmpeg", lambda path: calls.append(path) or real(path))
    assert media.probe(video).n_frames == media.probe(video).n_frames == 6 and len(calls) == 1
    grey_clip(video, 9, 16, 16)
    assert media.probe(video).n_frames == 9 and len(calls) == 2

