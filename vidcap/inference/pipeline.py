"""Many videos through the captioner with decoding overlapped: a background thread decodes the next videos while
the main thread runs saliency, encoder and decoder on the frames of several videos at once.

The results are those of `Captioner.caption_files` one video at a time (`tests/vidcap/inference/test_pipeline.py`): every
stage works frame by frame or video by video, so a batch only changes how many go through together.
"""
from __future__ import annotations

import contextlib
import itertools
import queue
import threading
import time
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from saliency.infra.errors import UserError
from vidcap.model.captioner import Captioner, VisualFrontEnd, frames_to_tensor
from vidcap.data.video import ClipOrigin, FrameSamplerConfig, read_clip

PREFETCH = 8  # decoded videos waiting for inference at most (16 frames at 224×224 are 9.6 MB as float)
BATCH_VIDEOS = 4  # videos whose frames go through saliency, encoder and decoder together

Video = tuple[Hashable, str | Path]  # (key the caller knows it by, path)


@dataclass
class Decoded:
    """One video's sampled frames, or why it could not be read; `seconds` spent decoding it (in the background)."""

    key: Hashable
    frames: Tensor | None  # [T,3,H,W], ImageNet-normalised
    origin: ClipOrigin | None  # which video and frames (None with an error)
    error: UserError | None
    seconds: float
    previous: Tensor | None = None  # [T,3,H,W], an earlier frame of each, normalised alike (motion saliency)
    model_seconds: float = 0.0  # its share of the models' time in its batch (set as the batch goes through them)


def decode_ahead(videos: Iterable[Video], sampler: FrameSamplerConfig, prefetch: int = PREFETCH,
                 previous: int = 0) -> Iterator[Decoded]:
    """Each video's frames (with `previous` > 0, also the frame that many frames before each), in order, decoded
    by a background thread at most `prefetch` videos ahead of the consumer; an unreadable video comes with its UserError, any other error
    is raised here. Closing the iterator stops the thread (after the video it is decoding)."""
    done = object()
    ready: queue.Queue = queue.Queue(maxsize=prefetch)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def decode() -> None:
        try:
            for key, path in videos:
                if stop.is_set():
                    return
                if not put(_decode_one(key, path, sampler, previous)):
                    return
            put(done)
        except BaseException as error:  # noqa: BLE001  (a bug, or the disk: raised in the consumer's thread)
            put(error)

    worker = threading.Thread(target=decode, name="video-decoder", daemon=True)
    worker.start()
    try:
        while (item := ready.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()


def _decode_one(key: Hashable, path: str | Path, sampler: FrameSamplerConfig, previous: int) -> Decoded:
    """One video's frames (with `previous` > 0, also the frame that many frames before each), or the UserError it
    cannot be read with."""
    start = time.perf_counter()
    try:
        clip = read_clip(path, sampler, previous=previous)
    except UserError as problem:
        return Decoded(key, None, None, problem, time.perf_counter() - start)
    before = None if clip.previous is None else frames_to_tensor(clip.previous)  # (T, 3, H, W)
    return Decoded(key, frames_to_tensor(clip.frames), clip.origin, None, time.perf_counter() - start, before)


def _add(timings: dict[str, float], stage: str, seconds: float) -> None:
    timings[stage] = timings.get(stage, 0.0) + seconds


# a video, its tokens [T·k,C] and their per-token saliency [T·k] (or None)
Tokens = tuple[Decoded, Tensor | None, Tensor | None]


@torch.no_grad()
def token_batches(front: VisualFrontEnd, videos: Iterable[Video], batch_videos: int = BATCH_VIDEOS,
                  timings: dict[str, float] | None = None) -> Iterator[list[Tokens]]:
    """Batches of up to `batch_videos` videos, in order: each video with its tokens `[T·k,C]` and per-token saliency
    `[T·k]` (or None), both None when it could not be read. `timings` accumulates seconds per stage."""
    timings = {} if timings is None else timings
    device = next(front.parameters()).device
    decoding = decode_ahead(videos, front.config.sampler, previous=front.needs_previous)
    with contextlib.closing(decoding) as decoded:  # closed: the thread stops
        while group := list(itertools.islice(decoded, batch_videos)):
            _add(timings, "decode", sum(item.seconds for item in group))
            good = [item for item in group if item.error is None]
            tokens = token_saliency = None
            if good:
                start = time.perf_counter()
                tokens, token_saliency = front(torch.stack([item.frames for item in good]).to(device), timings,
                                               [item.origin for item in good], _stacked_previous(good, device))
                for item in good:  # (B, T·k, C) for the batch: each video its share of the time
                    item.model_seconds = (time.perf_counter() - start) / len(good)
            rows = iter(range(len(good)))
            batch = []
            for item in group:
                if item.error is not None:
                    batch.append((item, None, None))
                else:
                    row = next(rows)
                    batch.append((item, tokens[row], None if token_saliency is None else token_saliency[row]))
            yield batch


def _stacked_previous(good: list[Decoded], device: torch.device) -> Tensor | None:
    """The previous frames `[B,T,3,H,W]` of decoded videos, on `device`; None when they were not decoded."""
    if good[0].previous is None:
        return None
    return torch.stack([item.previous for item in good]).to(device)


def visual_tokens(front: VisualFrontEnd, videos: Iterable[Video], batch_videos: int = BATCH_VIDEOS,
                  timings: dict[str, float] | None = None) -> Iterator[tuple[Hashable, Tensor | None, Tensor | None,
                                                                          UserError | None]]:
    """(key, tokens `[T·k,C]`, per-token saliency `[T·k]` or None, error) for each video in order; tokens None with the
    error of a video that could not be read."""
    for batch in token_batches(front, videos, batch_videos, timings):
        for item, tokens, token_saliency in batch:
            yield item.key, tokens, token_saliency, item.error


@torch.no_grad()
def caption_videos(model: Captioner, videos: Iterable[Video], batch_videos: int = BATCH_VIDEOS,
                   timings: dict[str, float] | None = None, num_beams: int | None = None,
                   seconds: dict[Hashable, float] | None = None,
                   **generate_kwargs) -> Iterator[tuple[Hashable, str | None, UserError | None]]:
    """(key, caption, None) for each video in order, or (key, None, error) for one that could not be read;
    `seconds` gets each video's own time by its key: its decoding, and its share of its batch's model time."""
    timings = {} if timings is None else timings
    seconds = {} if seconds is None else seconds
    for batch in token_batches(model.front, videos, batch_videos, timings):
        good = [(tokens, token_saliency) for item, tokens, token_saliency in batch if item.error is None]
        captions = iter([])
        if good:
            start = time.perf_counter()
            token_saliency = None if good[0][1] is None else torch.stack([b for _, b in good])  # (B, T·k)
            tokens = torch.stack([t for t, _ in good])  # (B, T·k, C)
            captions = iter(model.generate(tokens, token_saliency, num_beams, **generate_kwargs))
            _add(timings, "decoder", time.perf_counter() - start)
            for item in (item for item, _, _ in batch if item.error is None):
                item.model_seconds += (time.perf_counter() - start) / len(good)
        for item, _, _ in batch:
            seconds[item.key] = item.seconds + item.model_seconds
            yield item.key, None if item.error is not None else next(captions), item.error


class CaptionsAhead:
    """`caption(path)` for videos asked for one at a time, in the order of a list known up front (`vidcap caption`,
    which may skip those its results file already has, or take every N-th under torchrun): the captions of the
    next videos in that order, at the stride the requests follow, are computed ahead by `caption_videos` while the
    caller handles this one. A video asked for out of that order restarts the stream there; one not in the list is
    captioned on its own."""

    def __init__(self, model: Captioner, paths: Iterable[str | Path], num_beams: int | None = None,
                 batch_videos: int = BATCH_VIDEOS):
        self.model, self.paths, self.num_beams, self.batch_videos = model, list(paths), num_beams, batch_videos
        self.stream: Iterator[tuple[Hashable, str | None, UserError | None]] | None = None
        self.expected: int | None = None  # the index in `paths` the stream yields next
        self.last: int | None = None  # the index asked for last
        self.stride = 1  # between the indices the stream yields: that of the last two requests
        self.times: dict[Hashable, float] = {}  # each index's own seconds, as the stream yields them
        self.last_seconds = 0.0  # the own time of the video captioned last (`caption_videos`' `seconds`)

    def caption(self, path: str | Path) -> str:
        """The caption of `path`; a UserError when it cannot be read."""
        start = -1 if self.last is None else self.last
        index = next((i for i in range(start + 1, len(self.paths)) if self.paths[i] == path), None)
        if index is None:
            start = time.perf_counter()
            caption = self.model.caption_files([path], num_beams=self.num_beams)[0]
            self.last_seconds = time.perf_counter() - start
            return caption
        if index != self.expected:
            self.stride = index - self.last if self.last is not None else 1
            if self.stream is not None:
                self.stream.close()
            planned = ((i, self.paths[i]) for i in range(index, len(self.paths), self.stride))
            self.stream = caption_videos(self.model, planned, self.batch_videos, num_beams=self.num_beams,
                                         seconds=self.times)
        self.last, self.expected = index, index + self.stride
        _, caption, error = next(self.stream)
        self.last_seconds = self.times.pop(index, 0.0)
        if error is not None:
            raise error
        return caption
