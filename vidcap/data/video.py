"""Frames for the captioner: probe a video, choose which frames to show it, decode and resize them.

Decoding is decord's (one batched `get_batch` per clip), opened through `saliency.infra.media`, which
transcodes a file decord cannot read once and turns every failure a user's file can cause into a one-line
`UserError` that names the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from decord import VideoReader

from saliency.infra.config import require, require_positive
from saliency.infra.errors import ConfigError, UserError
from saliency.infra.media import (DECORD_ERRORS, check_file, decode_with_fallback, ffmpeg_path, ffmpeg_reason,
                                  ffprobe_path, open_decord, run_ffmpeg)

PROBE_TIMEOUT_S = 120.0


@dataclass
class FrameSamplerConfig:
    """Which frames of a clip the captioner sees, and at what size."""

    n_frames: int = 16  # frames per clip
    mode: Literal["segment", "stride"] = "segment"  # TSN segment centres, or a centred strided window
    stride: int = 4  # frames between samples in stride mode
    size: tuple[int, int] = (224, 224)  # output (H, W)
    resize: Literal["center_crop", "stretch"] = "center_crop"  # short side to size then crop, or squash

    def __post_init__(self) -> None:
        require_positive(self, "n_frames", "stride")
        require(len(self.size) == 2 and min(self.size) >= 1, "size", f"expected two positive integers (H, W), got {self.size!r}")
        require(self.mode in ("segment", "stride"), "mode", f"{self.mode!r} is not one of 'segment', 'stride'")
        require(self.resize in ("center_crop", "stretch"), "resize", f"{self.resize!r} is not one of 'center_crop', 'stretch'")
        self.size = (int(self.size[0]), int(self.size[1]))


@dataclass
class VideoInfo:
    """What a video holds: frame count, average frame rate (1/s), duration (s), frame size, codec."""

    path: str
    n_frames: int
    fps: float
    duration: float
    width: int
    height: int
    codec: str


@dataclass
class VideoFrames:
    """Frames sampled from one video, with where they came from."""

    frames: np.ndarray  # (N, H, W, 3) uint8 RGB at the configured size
    indices: np.ndarray  # (N,) int64 frame indices in the video, sorted
    times: np.ndarray  # (N,) float64 presentation times of those frames, seconds


# --------------------------------------------------------------------------------------------------
# Probing


def probe(path: str | Path) -> VideoInfo:
    """Describe the first video stream of `path` (ffprobe if installed, else ffmpeg's own report)."""
    path = check_file(path)
    if ffprobe_path():
        return _probe_with_ffprobe(path)
    return _probe_with_ffmpeg(path)


def _probe_with_ffprobe(path: str) -> VideoInfo:
    import ffmpeg

    def run(**options) -> dict:
        try:
            return ffmpeg.probe(path, cmd=ffprobe_path(), **options)
        except ffmpeg.Error as error:
            reason = ffmpeg_reason(error.stderr.decode(errors="replace") if error.stderr else "")
            raise UserError(f"{path}: not a media file ({reason})") from None

    report = run()
    streams = [s for s in report.get("streams", []) if _is_motion_video(s)]
    if not streams:
        raise UserError(f"{path}: no video stream (audio only or not a video file)")
    stream = streams[0]
    n_frames = int(_number(stream.get("nb_frames")))
    if n_frames <= 0:  # Matroska/WebM store no frame count: count the packets (demuxing, no decoding)
        counted = next(s for s in run(count_packets=None)["streams"] if s.get("index") == stream.get("index"))
        n_frames = int(_number(counted.get("nb_read_packets")))
    fps = _rate(stream.get("avg_frame_rate")) or _rate(stream.get("r_frame_rate"))
    duration = _number(stream.get("duration")) or _number(report.get("format", {}).get("duration"))
    if not fps and duration:
        fps = n_frames / duration
    return VideoInfo(path=path, n_frames=n_frames, fps=fps, duration=duration or (n_frames / fps if fps else 0.0),
                     width=int(stream.get("width") or 0), height=int(stream.get("height") or 0),
                     codec=str(stream.get("codec_name", "unknown")))


def _is_motion_video(stream: dict) -> bool:
    """A video stream that is not an album cover or thumbnail attached to an audio file."""
    return stream.get("codec_type") == "video" and not stream.get("disposition", {}).get("attached_pic")


def _number(text: str | float | None) -> float:
    """ffprobe's numeric strings; 0 for missing or 'N/A'."""
    try:
        return float(text) if text is not None else 0.0
    except ValueError:
        return 0.0


def _rate(text: str | None) -> float:
    """'30000/1001' → 29.97; '0/0' or None → 0."""
    if not text:
        return 0.0
    num, _, den = str(text).partition("/")
    try:
        return float(num) / float(den or 1) if float(den or 1) else 0.0
    except ValueError:
        return 0.0


_STREAM_LINE = re.compile(r"Stream #\d+:\d+.*?: Video: (\w+)(.*)")
_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_FRAME_COUNT = re.compile(r"frame=\s*(\d+)")


def _probe_with_ffmpeg(path: str) -> VideoInfo:
    """Without ffprobe: ffmpeg prints the stream header, then stream-copies to null to count frames."""
    # `V` (capital) skips attached pictures, so an mp3 with cover art has no video stream.
    command = [ffmpeg_path(), "-hide_banner", "-nostdin", "-i", path, "-map", "0:V:0", "-c", "copy",
               "-f", "null", "-"]
    stderr = run_ffmpeg(command, path, PROBE_TIMEOUT_S, what="probing")[1]
    if "Input #0" not in stderr:
        raise UserError(f"{path}: not a media file ({ffmpeg_reason(stderr)})")
    lines = [m for m in map(_STREAM_LINE.search, stderr.splitlines()) if m and "attached pic" not in m.group(0)]
    if not lines:
        raise UserError(f"{path}: no video stream (audio only or not a video file)")
    codec, details = lines[0].group(1), lines[0].group(2)
    size = re.search(r", (\d+)x(\d+)\b", details)
    fps = re.search(r", ([\d.]+)(k?) fps", details) or re.search(r", ([\d.]+)(k?) tbr", details)
    counts = _FRAME_COUNT.findall(stderr)
    n_frames = int(counts[-1]) if counts else 0
    if n_frames == 0:
        raise UserError(f"{path}: the video stream has no readable frames ({ffmpeg_reason(stderr)})")
    fps_value = float(fps.group(1)) * (1000 if fps.group(2) else 1) if fps else 0.0
    duration_match = _DURATION.search(stderr)
    if duration_match:
        hours, minutes, seconds = duration_match.groups()
        duration = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    else:
        duration = n_frames / fps_value if fps_value else 0.0
    return VideoInfo(path=path, n_frames=n_frames, fps=fps_value, duration=duration,
                     width=int(size.group(1)) if size else 0, height=int(size.group(2)) if size else 0,
                     codec=codec)


# --------------------------------------------------------------------------------------------------
# Choosing frames


def sample_indices(n_frames_in_video: int, n: int, mode: str = "segment", stride: int = 4,
                   timestamps: np.ndarray | None = None) -> np.ndarray:
    """Exactly `n` sorted frame indices in `[0, n_frames_in_video)`; (n,) int64.

    segment: the clip cut into `n` equal parts, the frame on screen at each part's centre (TSN);
    with `timestamps` ((N,) start times or decord's (N, 2) [start, end], seconds) the parts are equal
    in time, so a variable-frame-rate clip is sampled evenly in time. stride: `n` frames `stride`
    apart, centred; the stride shrinks when the clip is too short for it. Short clips repeat frames.
    """
    if n_frames_in_video < 1:
        raise UserError("video has no frames to sample")
    if n < 1 or stride < 1:
        raise ConfigError(f"need n >= 1 and stride >= 1, got n={n}, stride={stride}")
    if mode == "stride":
        return _stride_indices(n_frames_in_video, n, stride)
    if mode != "segment":
        raise ConfigError(f"frame sampling mode {mode!r} is not one of 'segment', 'stride'")
    if timestamps is not None:
        by_time = _segment_indices_by_time(n_frames_in_video, n, np.asarray(timestamps, np.float64))
        if by_time is not None:
            return by_time
    centres = (np.arange(n) + 0.5) * n_frames_in_video / n  # in frames
    return np.clip(np.floor(centres).astype(np.int64), 0, n_frames_in_video - 1)


def _stride_indices(total: int, n: int, stride: int) -> np.ndarray:
    if total < n:  # too short for n distinct frames: spread the repeats evenly
        return sample_indices(total, n, "segment")
    stride = min(stride, (total - 1) // (n - 1)) if n > 1 else stride
    start = (total - ((n - 1) * stride + 1)) // 2
    return start + stride * np.arange(n, dtype=np.int64)


def _segment_indices_by_time(total: int, n: int, timestamps: np.ndarray) -> np.ndarray | None:
    """Segment centres in time → the frame shown then; None when the timestamps are unusable."""
    if len(timestamps) != total:
        raise ValueError(f"got {len(timestamps)} timestamps for {total} frames")
    starts = timestamps[:, 0] if timestamps.ndim == 2 else timestamps
    if not np.all(np.isfinite(starts)) or np.any(np.diff(starts) <= 0):
        return None  # broken or out-of-order timestamps: fall back to equal index segments
    if timestamps.ndim == 2 and timestamps[-1, 1] > starts[-1]:
        end = timestamps[-1, 1]
    else:  # assume the last frame lasts as long as a typical one
        end = starts[-1] + (float(np.median(np.diff(starts))) if total > 1 else 1.0)
    centres = starts[0] + (np.arange(n) + 0.5) * (end - starts[0]) / n
    # A frame is on screen from its start to the next frame's start. The 1e-6 s slack absorbs the
    # float32 rounding of decord's timestamps, so constant-rate clips match the index-based choice.
    indices = np.searchsorted(starts, centres + 1e-6, side="right") - 1
    return np.clip(indices, 0, total - 1).astype(np.int64)


# --------------------------------------------------------------------------------------------------
# Reading frames


def read_frames(path: str | Path, config: FrameSamplerConfig | None = None, *, num_threads: int = 0) -> np.ndarray:
    """Sampled frames of `path`: (config.n_frames, H, W, 3) uint8 RGB, (H, W) = config.size."""
    return read_clip(path, config, num_threads=num_threads).frames


def read_clip(path: str | Path, config: FrameSamplerConfig | None = None, *, num_threads: int = 0) -> VideoFrames:
    """`read_frames` plus the indices and times of the frames; `num_threads=0` lets decord choose."""
    config = config or FrameSamplerConfig()
    name = str(path)
    frames, indices, times = decode_with_fallback(path, lambda source: _decode(source, name, config, num_threads))
    return VideoFrames(frames=resize_frames(frames, config.size, config.resize), indices=indices, times=times)


def _decode(source: str, name: str, config: FrameSamplerConfig,
            num_threads: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode the sampled frames of `source` (reported as `name`): (N, h, w, 3), indices, times."""
    reader = open_decord(source, num_threads=num_threads)
    total = len(reader)
    if total < 1:
        raise UserError(f"{name}: the video stream has no frames")
    height, width = reader[0].shape[:2]
    decode_height, decode_width = _decode_size((height, width), config)
    if (decode_height, decode_width) != (height, width):
        # Much larger than needed (4K for a 224 crop): let decord's scaler shrink it while decoding,
        # which saves most of the time and memory; the final antialiased resize does the rest.
        reader = open_decord(source, num_threads=num_threads, width=decode_width,
                             height=decode_height)
    try:
        timestamps = reader.get_frame_timestamp(list(range(total)))  # (N, 2) [start, end] seconds
    except DECORD_ERRORS:
        timestamps = None
    indices = sample_indices(total, config.n_frames, config.mode, config.stride,
                             timestamps if config.mode == "segment" else None)
    unique, inverse = np.unique(indices, return_inverse=True)  # decode repeated frames once
    frames = reader.get_batch(unique.tolist()).asnumpy()[inverse]  # (N, h, w, 3)
    if timestamps is not None:
        times = timestamps[indices, 0].astype(np.float64)
    else:
        times = indices / max(reader.get_avg_fps(), 1e-9)
    return frames, indices, times


def open_video(path: str | Path, max_side: int | None = None, num_threads: int = 0) -> tuple[VideoReader, float]:
    """A decord reader over every frame of `path` (transcoded once if decord can't read it) and its fps;
    frames are decoded with the longer side at most `max_side`."""
    return decode_with_fallback(path, lambda source: _open_scaled(source, max_side, num_threads))


def _open_scaled(source: str, max_side: int | None, num_threads: int) -> tuple[VideoReader, float]:
    reader = open_decord(source, num_threads=num_threads)
    height, width = reader[0].shape[:2]
    if max_side and max(height, width) > max_side:
        scale = max_side / max(height, width)
        reader = open_decord(source, num_threads=num_threads,
                             width=max(2, round(width * scale)), height=max(2, round(height * scale)))
    return reader, float(reader.get_avg_fps())


def _resized_shape(shape: tuple[int, int], size: tuple[int, int], resize: str) -> tuple[int, int]:
    """(H, W) the frame is scaled to before any crop."""
    (height, width), (out_h, out_w) = shape, size
    if resize == "stretch":
        return out_h, out_w
    scale = max(out_h / height, out_w / width)  # short side fits; the long side is cropped
    return max(out_h, round(height * scale)), max(out_w, round(width * scale))


def _decode_size(shape: tuple[int, int], config: FrameSamplerConfig) -> tuple[int, int]:
    """Decode at twice the needed size when the frame is more than twice as large, else full size."""
    needed_h, needed_w = _resized_shape(shape, config.size, config.resize)
    height, width = shape
    if height <= 2 * needed_h and width <= 2 * needed_w:
        return height, width
    return min(height, 2 * needed_h), min(width, 2 * needed_w)


def resize_frames(frames: np.ndarray, size: tuple[int, int], resize: str = "center_crop") -> np.ndarray:
    """(N, h, w, 3) uint8 → (N, H, W, 3) uint8, antialiased; center_crop keeps the aspect ratio."""
    out_h, out_w = size
    target_h, target_w = _resized_shape(frames.shape[1:3], size, resize)
    if (target_h, target_w) != frames.shape[1:3]:
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()  # (N, 3, h, w)
        x = F.interpolate(x, size=(target_h, target_w), mode="bilinear", antialias=True, align_corners=False)
        frames = x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    top, left = (target_h - out_h) // 2, (target_w - out_w) // 2
    return np.ascontiguousarray(frames[:, top:top + out_h, left:left + out_w])
