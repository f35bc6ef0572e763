"""vidcap.data.video: which frames are sampled, how they are resized, and how bad files fail.

Test videos are made here by piping numpy frames into ffmpeg; frame k is a flat grey of level 6·k, so
the grey level of a returned frame says which frame it was.
"""

from __future__ import annotations

import functools
import os
import subprocess

import decord
import numpy as np
import pytest

from saliency.infra.config import from_dict
from saliency.infra.errors import ConfigError, UserError
from saliency.infra import media
from saliency.infra.media import ffmpeg_path
from vidcap.data.video import FrameSamplerConfig, probe, read_clip, read_frames, resize_frames, sample_indices

H264 = ("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")
LEVEL = 6  # grey level step per frame


def grey_frames(n: int, height: int = 48, width: int = 64) -> np.ndarray:
    """(n, H, W, 3) uint8, frame k a flat grey of level LEVEL·k."""
    return np.repeat((np.arange(n, dtype=np.uint8) * LEVEL)[:, None, None, None], 3, axis=3) \
        * np.ones((1, height, width, 1), np.uint8)


def write_video(path, frames: np.ndarray, fps: float = 10, codec=H264, before=()) -> str:
    """Encode (T, H, W, 3) uint8 RGB frames with the project's ffmpeg; returns the path."""
    _, height, width, _ = frames.shape
    command = [ffmpeg_path(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{width}x{height}", "-r", str(fps), "-i", "pipe:", *before, *codec, str(path)]
    subprocess.run(command, input=np.ascontiguousarray(frames).tobytes(), check=True, capture_output=True,
                   timeout=60)
    return str(path)


def levels(frames: np.ndarray) -> np.ndarray:
    """Frame index each (N, H, W, 3) grey frame encodes."""
    return np.rint(frames.reshape(len(frames), -1).mean(axis=1) / LEVEL).astype(int)


@functools.cache
def av1_encoder() -> str | None:
    """An AV1 encoder this ffmpeg has (decord 0.6's own FFmpeg cannot decode AV1), or None."""
    names = subprocess.run([ffmpeg_path(), "-hide_banner", "-encoders"], check=True, capture_output=True,
                           text=True).stdout
    return next((name for name in ("libaom-av1", "libsvtav1", "librav1e") if name in names), None)


# Variable frame rate: frames 0-9 are 0.1 s apart (10 fps), frames 10-39 are 1/30 s apart (30 fps).
VFR_STARTS = np.concatenate([np.arange(10) * 0.1, 1 + np.arange(30) / 30])


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Small videos shared by the tests that read files."""
    root = tmp_path_factory.mktemp("clips")
    cfr = write_video(root / "cfr.mp4", grey_frames(40))
    vfr_pts = "setpts='if(lt(N,10),N*3,30+(N-10))/(30*TB)'"  # input at 30 fps → the VFR_STARTS clock
    vfr = write_video(root / "vfr.mp4", grey_frames(40), fps=30, before=("-vf", vfr_pts, "-fps_mode", "vfr"))
    one = write_video(root / "one.mp4", grey_frames(1) + 100)
    data = (root / "cfr.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 2])  # moov atom (the index) is at the end
    write_video(root / "faststart.mp4", grey_frames(40), codec=(*H264, "-movflags", "+faststart"))
    data = (root / "faststart.mp4").read_bytes()
    (root / "truncated-faststart.mp4").write_bytes(data[: len(data) // 2])  # index intact, frames cut
    (root / "empty.mp4").write_bytes(b"")
    (root / "random.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes())
    subprocess.run([ffmpeg_path(), "-y", "-loglevel", "error", "-f", "lavfi", "-i", "sine=d=1",
                    str(root / "audio.m4a")], check=True, timeout=60)
    (root / "folder.mp4").mkdir()
    return {"root": root, "cfr": cfr, "vfr": vfr, "one": one}


@pytest.fixture
def transcode_cache(tmp_path, monkeypatch):
    cache = tmp_path / "transcode-cache"
    monkeypatch.setenv("VIDCAP_TRANSCODE_CACHE", str(cache))
    return cache


# ------------------------------------------------------------------------------------------------
# sample_indices


def test_segment_mode_takes_the_centre_frame_of_each_segment():
    assert sample_indices(100, 4).tolist() == [12, 37, 62, 87]
    assert sample_indices(10, 5).tolist() == [1, 3, 5, 7, 9]
    assert sample_indices(100, 1).tolist() == [50]
    assert sample_indices(40, 4, "segment").tolist() == [5, 15, 25, 35]


def test_stride_mode_takes_a_centred_window_of_strided_frames():
    assert sample_indices(100, 4, "stride", stride=4).tolist() == [43, 47, 51, 55]
    assert sample_indices(100, 1, "stride", stride=4).tolist() == [49]
    # Too short for stride 4 (a 13-frame window): the largest stride that fits, still centred.
    assert sample_indices(10, 4, "stride", stride=4).tolist() == [0, 3, 6, 9]


@pytest.mark.parametrize("mode", ["segment", "stride"])
def test_clips_shorter_than_n_repeat_frames_evenly_and_never_leave_the_clip(mode):
    assert sample_indices(3, 8, mode).tolist() == [0, 0, 0, 1, 1, 2, 2, 2]
    assert sample_indices(1, 5, mode).tolist() == [0] * 5
    for total in range(1, 41):
        for n in range(1, 21):
            indices = sample_indices(total, n, mode, stride=3)
            assert len(indices) == n and indices.dtype == np.int64
            assert np.all(np.diff(indices) >= 0) and indices.min() >= 0 and indices.max() < total
            if total >= n:
                assert len(np.unique(indices)) == n


def test_a_clip_without_frames_is_a_user_error():
    with pytest.raises(UserError, match="no frames"):
        sample_indices(0, 4)


def test_time_based_segments_follow_the_clock_on_a_variable_frame_rate_clip():
    # Segment centres at 0.25, 0.75, 1.25, 1.75 s fall in frames 2, 7, 17 and 32; by index they
    # would be 5, 15, 25, 35, three of them in the faster second half.
    assert sample_indices(40, 4, timestamps=VFR_STARTS).tolist() == [2, 7, 17, 32]
    start_end = np.stack([VFR_STARTS, np.append(VFR_STARTS[1:], 2.0)], axis=1).astype(np.float32)
    assert sample_indices(40, 4, timestamps=start_end).tolist() == [2, 7, 17, 32]
    assert sample_indices(40, 4).tolist() == [5, 15, 25, 35]


def test_time_based_segments_match_index_segments_at_a_constant_frame_rate():
    for fps in (10, 25, 29.97):
        for total in (1, 3, 7, 40, 101):
            starts = np.arange(total) / fps
            decord_style = np.stack([starts, starts + 1 / fps], axis=1).astype(np.float32)
            for n in (1, 4, 8, 16):
                expected = sample_indices(total, n).tolist()
                assert sample_indices(total, n, timestamps=decord_style).tolist() == expected
                assert sample_indices(total, n, timestamps=starts).tolist() == expected


def test_out_of_order_timestamps_fall_back_to_index_segments():
    shuffled = np.random.default_rng(0).permutation(40) / 10
    assert sample_indices(40, 4, timestamps=shuffled).tolist() == [5, 15, 25, 35]


# ------------------------------------------------------------------------------------------------
# read_frames / read_clip


def test_read_frames_returns_the_frames_sample_indices_chose(clips):
    clip = read_clip(clips["cfr"], FrameSamplerConfig(n_frames=4, size=(32, 32)))
    assert clip.frames.shape == (4, 32, 32, 3) and clip.frames.dtype == np.uint8
    assert clip.indices.tolist() == [5, 15, 25, 35]
    assert levels(clip.frames).tolist() == [5, 15, 25, 35]
    np.testing.assert_allclose(clip.times, [0.5, 1.5, 2.5, 3.5], atol=1e-3)


def test_previous_frames_are_the_frames_before_the_sampled_ones_decoded_in_one_pass(clips, monkeypatch):
    config = FrameSamplerConfig(n_frames=4, mode="stride", stride=13, size=(32, 32))
    alone = read_clip(clips["cfr"], config)
    assert alone.previous is None and alone.indices.tolist() == [0, 13, 26, 39]
    asked = []
    get_batch = media.FrameReader.get_batch
    monkeypatch.setattr(media.FrameReader, "get_batch",
                        lambda reader, indices: asked.append(list(indices)) or get_batch(reader, indices))
    clip = read_clip(clips["cfr"], config, previous=True)
    assert asked == [[0, 12, 13, 25, 26, 38, 39]]  # one seek pass over the sorted union
    np.testing.assert_array_equal(clip.frames, alone.frames)
    assert levels(clip.previous).tolist() == [0, 12, 25, 38]  # frame 0's previous is itself: no motion
    monkeypatch.undo()
    on_their_own = resize_frames(media.open_frames(clips["cfr"]).get_batch([0, 12, 25, 38]), (32, 32))
    np.testing.assert_array_equal(clip.previous, on_their_own)
    assert clip.previous.shape == clip.frames.shape and clip.previous.dtype == np.uint8
    further = read_clip(clips["cfr"], config, previous=5)  # a model that compares each frame with 5 frames back
    np.testing.assert_array_equal(further.frames, alone.frames)
    assert levels(further.previous).tolist() == [0, 8, 21, 34]


def test_stride_mode_reads_a_centred_window(clips):
    frames = read_frames(clips["cfr"], FrameSamplerConfig(n_frames=4, mode="stride", stride=3, size=(16, 16)))
    assert levels(frames).tolist() == [15, 18, 21, 24]


def test_variable_frame_rate_video_is_sampled_evenly_in_time(clips):
    clip = read_clip(clips["vfr"], FrameSamplerConfig(n_frames=4, size=(16, 16)))
    assert clip.indices.tolist() == [2, 7, 17, 32]
    assert levels(clip.frames).tolist() == [2, 7, 17, 32]
    np.testing.assert_allclose(clip.times, VFR_STARTS[[2, 7, 17, 32]], atol=2e-3)


def test_a_clip_shorter_than_n_repeats_frames(clips):
    frames = read_frames(clips["one"], FrameSamplerConfig(n_frames=5, size=(20, 24)))
    assert frames.shape == (5, 20, 24, 3)
    assert np.all(frames == frames[:1]) and abs(int(frames.mean()) - 100) <= 3


@pytest.mark.parametrize("height, width", [(97, 131), (131, 97)])
@pytest.mark.parametrize("resize", ["center_crop", "stretch"])
def test_odd_and_portrait_frame_sizes_come_out_at_exactly_the_configured_size(tmp_path, height, width, resize):
    # yuv444p: 4:2:0 H.264 cannot have odd sides
    path = write_video(tmp_path / "odd.mp4", grey_frames(12, height, width),
                       codec=("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv444p"))
    for size in [(224, 224), (50, 70)]:
        frames = read_frames(path, FrameSamplerConfig(n_frames=3, size=size, resize=resize))
        assert frames.shape == (3, *size, 3)
        assert levels(frames).tolist() == [2, 6, 10]


def banded(height: int, width: int, portrait: bool) -> np.ndarray:
    """(1, H, W, 3) black frame with white bands along the ends of its long side (a 3/16 share each)."""
    frame = np.zeros((1, height, width, 3), np.uint8)
    if portrait:
        frame[:, : height * 3 // 16] = frame[:, -height * 3 // 16:] = 255
    else:
        frame[:, :, : width * 3 // 16] = frame[:, :, -width * 3 // 16:] = 255
    return frame


@pytest.mark.parametrize("portrait", [False, True])
def test_center_crop_keeps_the_middle_and_stretch_keeps_the_whole_frame(portrait):
    frame = banded(128, 64, portrait) if portrait else banded(64, 128, portrait)
    cropped = resize_frames(frame, (32, 32), "center_crop")
    stretched = resize_frames(frame, (32, 32), "stretch")
    assert cropped.shape == stretched.shape == (1, 32, 32, 3)
    assert cropped.max() == 0  # the bands lie outside the centred square
    ends = (stretched[0, :4], stretched[0, -4:]) if portrait else (stretched[0, :, :4], stretched[0, :, -4:])
    assert all(end.min() == 255 for end in ends)  # the bands squeezed in, at 3/16 of the side
    assert stretched[0, 12:20, 12:20].max() == 0


def test_frames_much_larger_than_needed_are_decoded_at_reduced_size(tmp_path, monkeypatch):
    path = write_video(tmp_path / "large.mp4", grey_frames(4, 720, 1280))
    opened = []
    real_reader = decord.VideoReader

    def spy(*args, **kwargs):
        opened.append(kwargs)
        return real_reader(*args, **kwargs)

    monkeypatch.setattr(decord, "VideoReader", spy)
    frames = read_frames(path, FrameSamplerConfig(n_frames=2, size=(112, 112)))
    assert frames.shape == (2, 112, 112, 3) and levels(frames).tolist() == [1, 3]
    # Short side 720 → 112 makes the frame 112×199; decoding happens at twice that.
    assert (opened[-1].get("height"), opened[-1].get("width")) == (224, 398)


# ------------------------------------------------------------------------------------------------
# Transcoding fallback


def undecodable_clip(tmp_path, kind: str) -> str:
    """A 20-frame clip in a format decord 0.6 cannot read."""
    if kind == "gif":
        return write_video(tmp_path / "clip.gif", grey_frames(20), codec=())
    encoder = av1_encoder()
    if encoder is None:
        pytest.skip("this ffmpeg has no AV1 encoder")
    speed = ("-cpu-used", "8") if encoder == "libaom-av1" else ()
    return write_video(tmp_path / "clip.avi", grey_frames(20), codec=("-c:v", encoder, *speed))


@pytest.mark.parametrize("kind", ["av1-avi", "gif"])
def test_a_format_decord_cannot_read_is_transcoded_once_and_cached(tmp_path, transcode_cache, monkeypatch, kind):
    path = undecodable_clip(tmp_path, kind)
    with pytest.raises(media.DECORD_ERRORS):
        decord.VideoReader(path)  # the premise: decord alone fails
    config = FrameSamplerConfig(n_frames=4, size=(32, 32))
    assert levels(read_frames(path, config)).tolist() == [2, 7, 12, 17]
    assert len(list(transcode_cache.glob("*.mp4"))) == 1

    real_run = media.subprocess.run

    def probe_only(command, **kwargs):
        assert "libx264" not in command, "transcoded again"  # probing the cached copy is fine
        return real_run(command, **kwargs)

    monkeypatch.setattr(media.subprocess, "run", probe_only)
    assert levels(read_frames(path, config)).tolist() == [2, 7, 12, 17]


def test_fallback_reads_the_transcoded_copy_when_decord_fails_on_the_original(clips, transcode_cache, monkeypatch):
    real_reader = decord.VideoReader

    def reader_failing_on_original(path, *args, **kwargs):
        if os.path.samefile(path, clips["cfr"]):
            raise decord.DECORDError("cannot find video stream")
        return real_reader(path, *args, **kwargs)

    monkeypatch.setattr(decord, "VideoReader", reader_failing_on_original)
    clip = read_clip(clips["cfr"], FrameSamplerConfig(n_frames=4, size=(32, 32)))
    assert levels(clip.frames).tolist() == [5, 15, 25, 35]
    copies = list(transcode_cache.glob("*.mp4"))
    assert len(copies) == 1 and media.transcode_to_h264(clips["cfr"]) == copies[0]


def test_a_changed_source_is_transcoded_anew(tmp_path, transcode_cache):
    path = write_video(tmp_path / "clip.mp4", grey_frames(4))
    first = media.transcode_to_h264(path)
    os.utime(path, ns=(0, os.stat(path).st_mtime_ns + 10**9))
    assert media.transcode_to_h264(path) != first


def test_a_transcode_that_hangs_is_stopped_with_a_user_error(clips, transcode_cache, monkeypatch):
    def hang(command, **kwargs):
        raise subprocess.TimeoutExpired(command, kwargs.get("timeout"))

    monkeypatch.setattr(media.subprocess, "run", hang)
    with pytest.raises(UserError, match=r"cfr\.mp4: .*took over 5 s"):
        media.transcode_to_h264(clips["cfr"], timeout_s=5)


# ------------------------------------------------------------------------------------------------
# Bad input


BAD_FILES = {
    "missing.mp4": "file not found",
    "empty.mp4": "empty file",
    "random.mp4": "not a (readable video|media file)",
    "truncated.mp4": "not a (readable video|media file)",
    "audio.m4a": "no video stream",
    "folder.mp4": "not a file",
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
@pytest.mark.parametrize("function", [read_frames, probe], ids=["read_frames", "probe"])
def test_bad_files_are_a_one_line_user_error_naming_the_file(clips, transcode_cache, name, function):
    with pytest.raises(UserError, match=BAD_FILES[name]) as caught:
        function(str(clips["root"] / name))
    message = str(caught.value)
    assert message.startswith(str(clips["root"] / name) + ": ") and "\n" not in message


def test_a_file_cut_short_after_its_index_gives_the_frames_that_survive_or_a_user_error(clips, transcode_cache):
    # With the index (moov) first, the first half of the file still holds the first frames: ffmpeg
    # salvages those when decord gives up. Whether any survive depends on where the cut falls.
    path = str(clips["root"] / "truncated-faststart.mp4")
    try:
        clip = read_clip(path, FrameSamplerConfig(n_frames=4, size=(16, 16)))
    except UserError as error:
        assert str(error).startswith(path + ": ") and "\n" not in str(error)
        return
    assert clip.frames.shape == (4, 16, 16, 3)
    assert np.all(np.diff(levels(clip.frames)) > 0) and levels(clip.frames).max() < 40
    assert probe(path).n_frames < 40


# ------------------------------------------------------------------------------------------------
# probe and config


def test_probe_reports_frames_rate_duration_size_and_codec(clips):
    info = probe(clips["cfr"])
    assert (info.n_frames, info.fps, info.duration, info.width, info.height, info.codec) == (40, 10, 4, 64, 48, "h264")
    info = probe(clips["vfr"])
    assert info.n_frames == 40 and info.duration == pytest.approx(2.0, abs=0.05)
    assert info.fps == pytest.approx(20, rel=0.1)  # average rate: 40 frames in 2 s


def test_probe_prefers_ffprobe_and_skips_cover_art(monkeypatch):
    import ffmpeg

    calls = []

    def fake_probe(path, cmd, **options):
        calls.append(options)
        counted = {"nb_read_packets": "75"} if "count_packets" in options else {}
        return {"format": {"duration": "3.000000"}, "streams": [
            {"index": 0, "codec_type": "audio", "codec_name": "mp3"},
            {"index": 1, "codec_type": "video", "codec_name": "mjpeg", "disposition": {"attached_pic": 1}},
            {"index": 2, "codec_type": "video", "codec_name": "vp9", "width": 320, "height": 240,
             "avg_frame_rate": "25/1", "r_frame_rate": "25/1", "disposition": {"attached_pic": 0}, **counted}]}

    monkeypatch.setattr(media, "ffprobe_path", lambda: "/usr/bin/ffprobe")
    monkeypatch.setattr(ffmpeg, "probe", fake_probe)
    info = probe(__file__)  # any existing file; the fake answers for it
    assert (info.n_frames, info.fps, info.duration, info.width, info.height, info.codec) == (75, 25, 3, 320, 240, "vp9")
    assert len(calls) == 2  # no nb_frames in the stream (WebM): a second call counts packets

    def failing_probe(path, cmd, **options):
        stderr = b"[mov @ 0x1] moov atom not found\nError opening input: Invalid data found when processing input\n"
        raise ffmpeg.Error("ffprobe", b"", stderr)

    monkeypatch.setattr(ffmpeg, "probe", failing_probe)
    media._probe_version.cache_clear()  # the same file again: forget what the first fake answered
    with pytest.raises(UserError, match=r"not a media file \(Error opening input: Invalid data found"):
        probe(__file__)


def test_sampler_config_nests_in_a_yaml_run_config():
    config = from_dict(FrameSamplerConfig, {"n_frames": 8, "mode": "stride", "size": [112, 160]})
    assert config == FrameSamplerConfig(n_frames=8, mode="stride", stride=4, size=(112, 160))
    with pytest.raises(ConfigError, match="mode"):
        from_dict(FrameSamplerConfig, {"mode": "random"})
    with pytest.raises(ConfigError, match="n_frames"):
        FrameSamplerConfig(n_frames=0)
