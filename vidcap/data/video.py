"""Frames for the captioner: choose which frames of a video to show it, decode and resize them.

Probing and decoding are `saliency.infra.media`'s (`probe`, `open_frames`), shared with `saliency predict`:
decord's batched `get_batch` where it decodes the file right, ffmpeg's where it does not, a transcoded copy where
decord cannot open the file, and every failure a user's file can cause turned into a one-line `UserError` that
names the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from saliency import frames_before
from saliency.infra.config import require, require_positive
from saliency.infra.errors import ConfigError, UserError
from saliency.infra.media import FrameReader, open_frames
from saliency.infra.media import probe  # noqa: F401  (vidcap probes videos through this module)


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


@dataclass(frozen=True)
class ClipOrigin:
    """Which video and frames a sampled clip shows, and the sampler that resized them."""

    path: Path
    indices: np.ndarray  # (N,) int64 frame indices in the video
    sampler: FrameSamplerConfig


@dataclass
class VideoFrames:
    """Frames sampled from one video, with where they came from."""

    frames: np.ndarray  # (N, H, W, 3) uint8 RGB at the configured size
    times: np.ndarray  # (N,) float64 presentation times of those frames, seconds
    origin: ClipOrigin  # the video, the frame indices and the sampler: what a saliency source of the world's maps needs
    previous: np.ndarray | None = None  # (N, H, W, 3) uint8: an earlier frame for each one (a motion model's input)

    @property
    def indices(self) -> np.ndarray:
        """(N,) int64 frame indices in the video, sorted."""
        return self.origin.indices


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


def read_clip(path: str | Path, config: FrameSamplerConfig | None = None, *, num_threads: int = 0,
              previous: int = 0) -> VideoFrames:
    """`read_frames` plus the indices, times and origin of the frames, and with `previous` > 0 the frame that many
    frames before each (`decode_frames`, for a motion saliency model); `num_threads=0` lets decord choose."""
    config = config or FrameSamplerConfig()
    reader = open_frames(path, lambda shape: decode_size(shape, config), num_threads=num_threads)
    timestamps = reader.timestamps()  # (N, 2) [start, end] seconds; None where ffmpeg decodes
    indices = sample_indices(len(reader), config.n_frames, config.mode, config.stride,
                             timestamps if config.mode == "segment" else None)
    frames, before = decode_frames(reader, indices, config, previous)  # (N, H, W, 3) each
    if timestamps is not None:
        times = timestamps[indices, 0].astype(np.float64)
    else:
        times = indices / max(reader.fps, 1e-9)
    return VideoFrames(frames=frames, times=times, origin=ClipOrigin(Path(path), indices, config), previous=before)


def decode_frames(reader: FrameReader, indices: np.ndarray, config: FrameSamplerConfig,
                  previous: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """Frames `indices` of `reader` resized by `config`, (N, H, W, 3) uint8, and with `previous` > 0 those
    `previous` frames before each (`frames_before`; else None): one `get_batch` over both, so a clip still costs
    one seek pass."""
    if not previous:
        return resize_frames(reader.get_batch(indices), config.size, config.resize), None
    before = frames_before(indices, previous)
    wanted = np.union1d(indices, before)  # (M,) sorted, distinct
    frames = resize_frames(reader.get_batch(wanted), config.size, config.resize)  # (M, H, W, 3)
    return frames[np.searchsorted(wanted, indices)], frames[np.searchsorted(wanted, before)]


def _resized_shape(shape: tuple[int, int], size: tuple[int, int], resize: str) -> tuple[int, int]:
    """(H, W) the frame is scaled to before any crop."""
    (height, width), (out_h, out_w) = shape, size
    if resize == "stretch":
        return out_h, out_w
    scale = max(out_h / height, out_w / width)  # short side fits; the long side is cropped
    return max(out_h, round(height * scale)), max(out_w, round(width * scale))


def decode_size(shape: tuple[int, int], config: FrameSamplerConfig) -> tuple[int, int]:
    """(H, W) to decode frames of `shape` at: twice the size the sampler needs when the frame is more than twice as
    large (a 4K video is scaled down while decoding), else full size. Whole clips and segments both use it."""
    needed_h, needed_w = _resized_shape(shape, config.size, config.resize)
    height, width = shape
    if height <= 2 * needed_h and width <= 2 * needed_w:
        return height, width
    return min(height, 2 * needed_h), min(width, 2 * needed_w)


def resize_frames(frames: np.ndarray, size: tuple[int, int], resize: str = "center_crop") -> np.ndarray:
    """(N, h, w, 3) uint8 → (N, H, W, 3) uint8, antialiased; center_crop keeps the aspect ratio."""
    target = _resized_shape(frames.shape[1:3], size, resize)
    if target != frames.shape[1:3]:
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()  # (N, 3, h, w)
        x = F.interpolate(x, size=target, mode="bilinear", antialias=True, align_corners=False)
        frames = x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return np.ascontiguousarray(_centre_crop(frames, target, size, axes=(1, 2)))


def resize_maps(maps: torch.Tensor, size: tuple[int, int], resize: str = "center_crop") -> torch.Tensor:
    """Maps `[N,1,h,w]` (float, of whole video frames) → `[N,1,H,W]` through the geometry `resize_frames` gives
    the frames, so each map covers what its sampled frame shows."""
    target = _resized_shape(maps.shape[-2:], size, resize)
    if target != tuple(maps.shape[-2:]):
        maps = F.interpolate(maps, size=target, mode="bilinear", antialias=True, align_corners=False)
    return _centre_crop(maps, target, size, axes=(2, 3))


def _centre_crop(array, shape: tuple[int, int], size: tuple[int, int], axes: tuple[int, int]):
    """The central `size` (H, W) of an array whose `axes` have lengths `shape`."""
    top, left = (shape[0] - size[0]) // 2, (shape[1] - size[1]) // 2
    index = [slice(None)] * array.ndim
    index[axes[0]], index[axes[1]] = slice(top, top + size[0]), slice(left, left + size[1])
    return array[tuple(index)]
