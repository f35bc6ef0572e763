"""`vidcap caption --overlay`: the video re-encoded with its saliency map blended over every frame."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from saliency import colour_overlay, frames_before, log_density_to_map
from saliency.infra.errors import UserError
from vidcap.model.captioner import VisualFrontEnd, frames_to_tensor
from saliency.infra.media import Mp4Writer, open_frames

CHUNK = 32  # frames per saliency batch


def require_saliency_model(front: VisualFrontEnd, source: str, name: str | Path) -> None:
    """A one-line UserError unless the captioner `name` (saliency `source`) has a saliency model to overlay."""
    if front.saliency_model is None:
        raise UserError(f"{name}: --overlay needs a captioner with a saliency model (teacher or student); this one "
                        f"uses saliency {source}")


@torch.no_grad()
def write_overlay(front: VisualFrontEnd, video: str | Path, out: str | Path, max_side: int = 640) -> Path:
    """Blend the front end's saliency over each frame (downscaled to `max_side`) and write an H.264 mp4, marked as
    the tools' own; written under a hidden partial name and renamed when whole, so an interrupted run never leaves a
    shorter video that looks complete. Returns `out`."""
    require_saliency_model(front, front.config.saliency.source, video)
    reader = open_frames(video, lambda shape: fit_within(shape, max_side))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.stem}.partial{out.suffix or '.mp4'}")
    gap = front.needs_previous  # a motion saliency model's distance to the frame it compares each frame with
    last = None  # (≤ gap, H, W, 3): the frames before the chunk
    try:
        with Mp4Writer(partial, reader.fps, mark=True) as writer:
            for start in range(0, len(reader), CHUNK):
                frames = reader.get_batch(list(range(start, min(start + CHUNK, len(reader)))))  # (n, H, W, 3)
                frames = frames[:, : frames.shape[1] // 2 * 2, : frames.shape[2] // 2 * 2]  # H.264 wants even sizes
                previous = earlier_frames(frames, last, gap) if gap else None
                writer.write(saliency_overlays(front, frames, previous))
                if gap:
                    last = (frames if last is None else np.concatenate([last, frames]))[-gap:]
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)  # a failure or Ctrl-C: no torn video left behind
    return out


def earlier_frames(frames: np.ndarray, last: np.ndarray | None, gap: int) -> np.ndarray:
    """The frame `gap` frames before each of consecutive frames `[n,H,W,3]`, given the up to `gap` frames just
    before them (`last`; fewer, or None, only at the video's start, whose first frames look back to frame 0)."""
    history = frames if last is None else np.concatenate([last, frames])  # (m + n, H, W, 3)
    offset = len(history) - len(frames)  # where frames[0] is in history
    return history[frames_before(np.arange(len(frames)) + offset, gap)]


def fit_within(shape: tuple[int, int], max_side: int) -> tuple[int, int]:
    """(H, W) scaled down so the longer side is at most `max_side` (unchanged if it already is)."""
    height, width = shape
    if max(height, width) <= max_side:
        return height, width
    scale = max_side / max(height, width)
    return max(2, round(height * scale)), max(2, round(width * scale))


@torch.no_grad()
def saliency_overlays(front: VisualFrontEnd, frames: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
    """uint8 frames `[N,H,W,3]` with the front end's saliency blended over them, each map min-max scaled to [0,1] as
    `saliency predict` shows its maps. The maps are those the captioner computes: of the whole frame stretched to the
    sampler's size (then, for the model, to its own `saliency.size`), upsampled to the frame; a motion model also
    sees `previous`, the earlier frame of each (uint8, the same shape)."""
    size = front.config.sampler.size
    before = None if previous is None else resized(frames_to_tensor(previous), size)  # (N, 3, h, w)
    log_density = front.saliency(resized(frames_to_tensor(frames), size), previous=before)  # (N, 1, h, w)
    shown = log_density_to_map(log_density)  # (N, 1, h, w) in [0, 1]
    maps = F.interpolate(shown, size=frames.shape[1:3], mode="bilinear", align_corners=False)[:, 0].clamp(0, 1)
    return np.stack([colour_overlay(frame, m.numpy()) for frame, m in zip(frames, maps)])


def resized(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Normalised frames `[N,3,H,W]` stretched to `size` (antialiased when shrinking)."""
    return F.interpolate(frames, size=size, mode="bilinear", align_corners=False, antialias=True)
