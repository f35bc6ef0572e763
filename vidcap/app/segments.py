"""Long videos captioned by segment: fixed-length or scene-change segments, each read on its own, so memory does
not grow with the video's length, and each captioned with its start and end time.

The frames of a segment are chosen by `vidcap.data.video.sample_indices` over the frames that start inside it,
exactly as a whole clip's are, from one reader (`saliency.infra.media.open_frames`) opened once per video, which
decodes only the frames asked for. Scene changes come from ffmpeg's `select='gt(scene,T)'` filter.
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from saliency.infra.errors import UserError
from saliency.infra.media import ffmpeg_path, ffmpeg_reason, open_frames, run_ffmpeg
from vidcap.model.captioner import Captioner, frames_to_tensor, previous_tensor
from vidcap.model.trust import trust_fields
from vidcap.data.video import (ClipOrigin, FrameSamplerConfig, VideoFrames, decode_frames, decode_size, probe,
                               sample_indices)

SCENES = "scenes"
SCENE_THRESHOLD = 0.3  # ffmpeg's scene score (0..1) above which a frame starts a new scene
MIN_SCENE_S = 1.0  # a cut closer than this to the previous boundary or to the end is ignored
SCENE_WIDTH = 160  # frames are scored for scene changes at this width: the score needs no detail
_PTS_TIME = re.compile(r"\bpts_time:\s*(-?[\d.]+)")


@dataclass
class Segment:
    """A stretch of a video, in seconds from its start; `caption` once captioned."""

    start: float
    end: float
    caption: str | None = None

    def as_dict(self) -> dict:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "caption": self.caption,
                **trust_fields(self.caption)}


@dataclass
class VideoCaption:
    """What captioning one video gives: one caption, or (captioned by segment) the segments and no caption."""

    caption: str | None
    segments: list[Segment]
    seconds: float | None = None  # its own time, when it was captioned among others (decoding overlapped, batched)

    def as_fields(self) -> dict:
        """`{"caption", "confidence", "in_domain"}`, or `{"segments": [{"start", "end", "caption", ...}]}` when captioned
        by segment."""
        if self.caption is not None:
            return {"caption": self.caption, **trust_fields(self.caption)}
        return {"segments": [segment.as_dict() for segment in self.segments]}

    def as_record(self) -> dict:
        """`as_fields`, and `seconds` when its own time is known (a results file's line)."""
        return self.as_fields() | ({} if self.seconds is None else {"seconds": self.seconds})


def parse_segments(text: str | None, name: str = "--segments") -> float | str | None:
    """`--segments` (or the API's field `name`) as given: None (whole videos), seconds per segment (> 0) or
    'scenes'; a UserError otherwise."""
    if text is None or text == SCENES:
        return text
    try:
        seconds = float(text)
    except ValueError:
        raise UserError(f"{name} {text}: expected seconds per segment (e.g. 10) or 'scenes'") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise UserError(f"{name} {text}: a segment must last a positive, finite number of seconds")
    return seconds


def fixed_segments(duration: float, seconds: float) -> list[Segment]:
    """`[0, s)`, `[s, 2s)`, … up to `duration` (the last one shorter); one segment for a video shorter than `s`."""
    count = max(1, math.ceil(duration / seconds - 1e-9))
    return [Segment(i * seconds, min((i + 1) * seconds, duration)) for i in range(count)]


def scene_cuts(path: str | Path, threshold: float = SCENE_THRESHOLD, timeout_s: float = 3600.0) -> list[float]:
    """Times (s) of the frames ffmpeg scores as the start of a new scene, sorted; a UserError if ffmpeg fails or
    runs past `timeout_s`."""
    command = [ffmpeg_path(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:V:0", "-an", "-sn", "-dn",
               "-vf", f"scale={SCENE_WIDTH}:-2,select='gt(scene,{threshold})',showinfo", "-f", "null", "-"]
    returncode, stderr = run_ffmpeg(command, str(path), timeout_s, what="scene detection")
    if returncode:
        raise UserError(f"{path}: scene detection failed ({ffmpeg_reason(stderr)})")
    return sorted(float(match.group(1)) for line in stderr.splitlines() if "showinfo" in line
                  for match in [_PTS_TIME.search(line)] if match)


def scene_segments(duration: float, cuts: list[float], min_length: float = MIN_SCENE_S) -> list[Segment]:
    """Segments between scene cuts; cuts nearer than `min_length` to the last boundary or to the end are dropped."""
    bounds = [0.0]
    for cut in cuts:
        if cut - bounds[-1] >= min_length and duration - cut >= min_length:
            bounds.append(cut)
    bounds.append(duration)
    return [Segment(start, end) for start, end in zip(bounds, bounds[1:])]


class SegmentedVideo:
    """One video opened once: its frame times and duration, and the sampled frames of any stretch of it."""

    def __init__(self, path: str | Path, sampler: FrameSamplerConfig):
        self.path, self.sampler = str(path), sampler
        self.reader = open_frames(path, lambda shape: decode_size(shape, sampler))
        total, fps = len(self.reader), self.reader.fps
        self.frame_s = 1.0 / fps if fps > 0 else 1.0
        times = self.reader.timestamps()  # (N, 2) [start, end] seconds; None where ffmpeg decodes
        if times is None or not np.all(np.isfinite(times)) or np.any(np.diff(times[:, 0]) <= 0):
            times = np.stack([np.arange(total), np.arange(1, total + 1)], axis=1) * self.frame_s
        self.times = np.asarray(times, np.float64) - float(times[0, 0])  # from the first frame's start

    @property
    def duration(self) -> float:
        """Seconds from the first frame's start to the last frame's end."""
        last_start, last_end = self.times[-1]
        return float(last_end if last_end > last_start else last_start + self.frame_s)

    def segments(self, spec: float | str) -> list[Segment]:
        """The segments `--segments` asks for: every `spec` seconds, or between scene changes."""
        if spec == SCENES:
            return scene_segments(self.duration, scene_cuts(self.path, timeout_s=600 + self.duration))
        return fixed_segments(self.duration, float(spec))

    def indices(self, segment: Segment) -> np.ndarray:
        """The sampler's frame indices among the frames that start inside `segment` (at least the one on screen
        at its start): (n_frames,) int64, sorted."""
        starts = self.times[:, 0]
        first = int(np.searchsorted(starts, segment.start - 1e-6))
        last = int(np.searchsorted(starts, segment.end - 1e-6))
        if last <= first:  # shorter than a frame: the frame on screen at its start
            first = min(max(int(np.searchsorted(starts, segment.start + 1e-6, side="right")) - 1, 0), len(starts) - 1)
            last = first + 1
        local = sample_indices(last - first, self.sampler.n_frames, self.sampler.mode, self.sampler.stride,
                               self.times[first:last] if self.sampler.mode == "segment" else None)
        return first + local

    def clip(self, segment: Segment, previous: int = 0) -> VideoFrames:
        """The sampled frames of `segment` with their times (from the first frame's start) and origin, and with
        `previous` > 0 the frame that many frames before each (decoded with them: `vidcap.data.video.decode_frames`)."""
        indices = self.indices(segment)
        frames, before = decode_frames(self.reader, indices, self.sampler, previous)  # (n_frames, H, W, 3) each
        return VideoFrames(frames, self.times[indices, 0], ClipOrigin(Path(self.path), indices, self.sampler), before)


@torch.no_grad()
def caption_frames(model: Captioner, frames: np.ndarray, timings: dict[str, float], num_beams: int | None = None,
                   origin: ClipOrigin | None = None, previous: np.ndarray | None = None) -> str:
    """The caption of sampled frames `[T,H,W,3]` (uint8) from `origin`, with an earlier frame of each (`previous`, the
    same shape) for a motion saliency model; `timings` accumulates seconds per stage."""
    tokens, token_saliency = model.front(frames_to_tensor(frames)[None], timings, [origin],
                               previous_tensor(previous))  # (1, T·k, C)
    start = time.perf_counter()
    caption = model.generate(tokens, token_saliency, num_beams)[0]
    timings["decoder"] = timings.get("decoder", 0.0) + time.perf_counter() - start
    return caption


def caption_segments(model: Captioner, path: str | Path, spec: float | str, num_beams: int | None = None,
                     timings: dict[str, float] | None = None) -> list[Segment]:
    """Each segment of `path` (`spec`: seconds per segment or 'scenes') with its caption, read one at a time."""
    timings = {} if timings is None else timings
    start = time.perf_counter()
    video = SegmentedVideo(path, model.config.sampler)
    segments = video.segments(spec)
    timings["open"] = timings.get("open", 0.0) + time.perf_counter() - start
    for segment in segments:
        start = time.perf_counter()
        clip = video.clip(segment, previous=model.front.needs_previous)
        timings["decode"] = timings.get("decode", 0.0) + time.perf_counter() - start
        segment.caption = caption_frames(model, clip.frames, timings, num_beams, clip.origin, clip.previous)
    return segments


def caption_video(model: Captioner, path: str | Path, segments: float | str | None = None,
                  num_beams: int | None = None, timings: dict[str, float] | None = None) -> VideoCaption:
    """One video's caption as `vidcap caption` gives it: whole (`segments` None, today's sampling) or by segment."""
    if segments is None:
        return VideoCaption(model.caption_files([path], timings, num_beams)[0], [])
    return VideoCaption(None, caption_segments(model, path, segments, num_beams, timings))


def whole_video_cue(path: str | Path, caption: str) -> Segment:
    """The whole video as one captioned segment (subtitles of a video captioned whole)."""
    return Segment(0.0, probe(path).duration, caption)
