"""Video files on disk: where ffmpeg comes from, how it is run, how a file is probed and how its frames are read.

The ffmpeg binary comes from the system PATH first, imageio-ffmpeg second. A user's file is checked
first, FFmpeg's own log kept quiet, and every failure turned into one `UserError` line that names the
file. Frames are decord's (it seeks, so it decodes only the frames asked for), checked against the container:
where decord's frame count, frame size, channels or type do not match (decord 0.6 hands back a buffer of the
wrong size at some small frame sizes, e.g. 48x32 or 16x16 in 4:2:0), or decord fails part-way, ffmpeg decodes
the frames to raw RGB through a pipe instead. A file decord cannot open at all (an AV1 stream, a GIF, a damaged
index) is transcoded once by ffmpeg to H.264 and the copy cached, so a dataset with a few odd files costs one
transcode per file, not one per epoch. `vidcap` and `saliency predict` read videos through `open_frames`.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

import decord
import ffmpeg
import numpy as np

from saliency.infra.errors import UserError

T = TypeVar("T")

# decord raises its own DECORDError (not a RuntimeError) for most failures, RuntimeError for others.
# The files the commands take as images and as videos, in one list each; earlier wins where a dataset holds one
# name with several suffixes.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".3gp")
DECORD_ERRORS = (decord.DECORDError, RuntimeError, ValueError, IndexError)
TRANSCODE_TIMEOUT_S = 600.0  # an ffmpeg transcode that runs longer is treated as a failure
PROBE_TIMEOUT_S = 120.0
DECODE_STALL_S = 600.0  # an ffmpeg decode that gives no batch of frames for this long is treated as a failure

# decord's wording → what it means for the user's file
_DECORD_REASONS = (
    ("cannot find video stream", "no video stream"),
    ("Error reading", "not a video file, or a damaged one"),
    ("Failed to measure duration/frame-count", "no frame count (a still image or a damaged index)"),
    ("av_read_frame failed", "damaged or cut-short video data"),
    ("Cannot create buffer source", "damaged stream parameters"),
)
# ffmpeg's wording that says why it failed
_FFMPEG_REASONS = ("Invalid data found", "partial file", "moov atom not found", "Permission denied", "No such file",
                   "Decoding error", "Unknown encoder", "Unknown decoder", "does not contain any stream")


# ----------------------------------------------------------------------------- the ffmpeg binary

@functools.lru_cache(maxsize=None)
def ffmpeg_path() -> str:
    """The `ffmpeg` on PATH, else the one bundled with imageio-ffmpeg."""
    system = shutil.which("ffmpeg")
    if system:
        return system
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as error:
        raise UserError("no ffmpeg found: install it on PATH (e.g. `apt-get install ffmpeg`) "
                        f"or `pip install imageio-ffmpeg` ({error})") from error


@functools.lru_cache(maxsize=None)
def ffprobe_path() -> str | None:
    """The `ffprobe` on PATH, or None (imageio-ffmpeg ships no ffprobe)."""
    return shutil.which("ffprobe")


def run_ffmpeg(command: list[str], path: str, timeout_s: float, what: str) -> tuple[int, str]:
    """(return code, stderr) of an ffmpeg command, a UserError if it runs past `timeout_s`."""
    try:
        done = subprocess.run(command, check=False, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise UserError(f"{path}: not a readable video (ffmpeg {what} took over {timeout_s:g} s)") from None
    return done.returncode, done.stderr.decode(errors="replace")


def ffmpeg_reason(stderr: str) -> str:
    """The line of ffmpeg's stderr that says why it failed, without its '[demuxer @ 0x..]' prefix."""
    lines = [re.sub(r"^(\[[^\]]*\]\s*)+", "", line).strip() for line in stderr.splitlines()]
    lines = [line for line in lines if line and not line.startswith("frame=")]  # progress lines
    if any("matches no streams" in line for line in lines):
        return "no video stream"
    for reason in _FFMPEG_REASONS:
        for line in lines:
            if reason in line:
                return line[:200]
    return lines[-1][:200] if lines else "ffmpeg failed"


OUTPUT_MARK = "written by saliency/vidcap"  # in the metadata of every map, overlay and video the tools write


class Mp4Writer:
    """Streams uint8 RGB frames `[n,H,W,3]` (even H and W) into an H.264/yuv420p mp4 through ffmpeg; with `mark`,
    the file's metadata says the tools wrote it (`OUTPUT_MARK`), so that a later folder run does not take it as
    an input."""

    def __init__(self, path: str | Path, fps: float, mark: bool = False):
        self.path, self.fps, self.process = Path(path), fps, None
        self.metadata = {"metadata": f"comment={OUTPUT_MARK}"} if mark else {}

    def write(self, frames: np.ndarray) -> None:
        if self.process is None:
            height, width = frames.shape[1:3]
            self.process = (
                ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{width}x{height}", r=self.fps)
                .output(str(self.path), vcodec="libx264", pix_fmt="yuv420p", preset="veryfast", crf=18,
                        threads=1, flags="+bitexact", fflags="+bitexact", map_metadata=-1, **self.metadata)
                .global_args("-loglevel", "error")
                .overwrite_output()
                .run_async(cmd=ffmpeg_path(), pipe_stdin=True, pipe_stderr=True)
            )
        self.process.stdin.write(np.ascontiguousarray(frames, np.uint8).tobytes())

    def __enter__(self) -> "Mp4Writer":
        return self

    def __exit__(self, *exc) -> None:
        if self.process is None:
            return
        self.process.stdin.close()
        stderr = self.process.stderr.read()
        if self.process.wait() and exc[0] is None:
            raise UserError(f"{self.path}: ffmpeg failed writing the video ({stderr.decode(errors='replace').strip()[:200]})")


# ----------------------------------------------------------------------------- probing

@dataclass(frozen=True)
class VideoInfo:
    """What a video holds: frame count, average frame rate (1/s), duration (s), frame size as shown (rotation
    applied, as both decoders apply it), codec."""

    path: str
    n_frames: int
    fps: float
    duration: float
    width: int
    height: int
    codec: str
    comment: str = ""  # the container's comment tag (`OUTPUT_MARK` in what the tools wrote)


def probe(path: str | Path) -> VideoInfo:
    """Describe the first video stream of `path` (ffprobe if installed, else ffmpeg's own report), and the file's
    `comment` tag. Kept per file
    version (path, size, modification time): a dataset that reopens its videos (DHF1K, one sample per annotated
    frame) probes each once, not once a sample."""
    path = check_file(path)
    stat = os.stat(path)
    return _probe_version(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _probe_version(path: str, size: int, mtime_ns: int) -> VideoInfo:
    """`probe` of one version of a file (`size` and `mtime_ns` only key the cache)."""
    if ffprobe_path():
        return _probe_with_ffprobe(path)
    return _probe_with_ffmpeg(path)


def _probe_with_ffprobe(path: str) -> VideoInfo:
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
    if "avi" in report.get("format", {}).get("format_name", "").split(","):
        n_frames = _frames_holding_data(path)
    elif n_frames <= 0:  # Matroska/WebM store no frame count: count the packets (demuxing, no decoding)
        counted = next(s for s in run(count_packets=None)["streams"] if s.get("index") == stream.get("index"))
        n_frames = int(_number(counted.get("nb_read_packets")))
    fps = _rate(stream.get("avg_frame_rate")) or _rate(stream.get("r_frame_rate"))
    duration = _number(stream.get("duration")) or _number(report.get("format", {}).get("duration"))
    if not fps and duration:
        fps = n_frames / duration
    rotation = next((side["rotation"] for side in stream.get("side_data_list", []) if "rotation" in side),
                    stream.get("tags", {}).get("rotate"))  # the display matrix, or the older `rotate` tag
    width, height = _shown(int(stream.get("width") or 0), int(stream.get("height") or 0), _number(rotation))
    return VideoInfo(path=path, n_frames=n_frames, fps=fps, duration=duration or (n_frames / fps if fps else 0.0),
                     width=width, height=height, codec=str(stream.get("codec_name", "unknown")),
                     comment=str(report.get("format", {}).get("tags", {}).get("comment", "")))


def _frames_holding_data(path: str) -> int:
    """The packets of the first video stream that hold a frame. AVI marks a dropped frame with an empty chunk (old
    capture software at a nominal frame rate): its index counts them, the decoders skip them, so the frames a file
    really holds are its non-empty packets (counted by demuxing, without decoding)."""
    command = [ffmpeg_path(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", path, "-map", "0:V:0", "-c",
               "copy", "-f", "framecrc", "-"]
    try:
        listing = subprocess.run(command, check=False, stdin=subprocess.DEVNULL, capture_output=True,
                                 timeout=PROBE_TIMEOUT_S).stdout.decode(errors="replace")
    except subprocess.TimeoutExpired:
        raise UserError(f"{path}: not a readable video (ffmpeg probing took over {PROBE_TIMEOUT_S:g} s)") from None
    # framecrc: `stream, dts, pts, duration, size, crc` a line per packet, `#` lines are its header
    sizes = [line.split(",")[4] for line in listing.splitlines() if line and not line.startswith("#")]
    return sum(1 for size in sizes if int(size) > 0)


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


def _shown(width: int, height: int, rotation: float) -> tuple[int, int]:
    """(width, height) as a player shows a frame stored at `width`×`height` and turned by `rotation` degrees."""
    return (height, width) if round(abs(rotation)) % 180 == 90 else (width, height)


_STREAM_LINE = re.compile(r"Stream #\d+:\d+.*?: Video: (\w+)(.*)")
_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_FRAME_COUNT = re.compile(r"frame=\s*(\d+)")
_ROTATION = re.compile(r"rotation of (-?[\d.]+) degrees", re.IGNORECASE)
_COMMENT = re.compile(r"^\s+comment\s*: (.*)$", re.MULTILINE)


def _probe_with_ffmpeg(path: str) -> VideoInfo:
    """Without ffprobe: ffmpeg prints the stream header, then stream-copies to null to count frames."""
    # `V` (capital) skips attached pictures, so an mp3 with cover art has no video stream.
    command = [ffmpeg_path(), "-hide_banner", "-nostdin", "-i", path, "-map", "0:V:0", "-c", "copy",
               "-f", "null", "-"]
    stderr = run_ffmpeg(command, path, PROBE_TIMEOUT_S, what="probing")[1]
    if "Input #0" not in stderr:
        raise UserError(f"{path}: not a media file ({ffmpeg_reason(stderr)})")
    lines = stderr.splitlines()
    found = [(i, m) for i, m in enumerate(map(_STREAM_LINE.search, lines)) if m and "attached pic" not in m.group(0)]
    if not found:
        raise UserError(f"{path}: no video stream (audio only or not a video file)")
    line, match = found[0]
    codec, details = match.group(1), match.group(2)
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
    if re.search(r"Input #0, avi\b", stderr):
        n_frames = _frames_holding_data(path)
    stream_block = itertools.takewhile(lambda text: "Stream " not in text, lines[line + 1:])  # its metadata lines
    rotation = next((float(m.group(1)) for m in map(_ROTATION.search, stream_block) if m), 0.0)
    width, height = _shown(int(size.group(1)) if size else 0, int(size.group(2)) if size else 0, rotation)
    comment = _COMMENT.search("\n".join(lines[:line]))  # the input's metadata, before its streams
    return VideoInfo(path=path, n_frames=n_frames, fps=fps_value, duration=duration, width=width, height=height,
                     codec=codec, comment=comment.group(1).strip() if comment else "")


# ----------------------------------------------------------------------------- users' files

def check_file(path: str | Path) -> str:
    """`path` as a string if it is a non-empty regular file, else a UserError saying what is wrong."""
    path = str(path)
    if not os.path.exists(path):
        raise UserError(f"{path}: file not found")
    if not os.path.isfile(path):
        raise UserError(f"{path}: {'a directory' if os.path.isdir(path) else 'a special file'}, not a file")
    if os.path.getsize(path) == 0:
        raise UserError(f"{path}: empty file (0 bytes)")
    return path


STDIN = "-"  # an input that reads the video from standard input
URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


def refuse_urls(inputs: Sequence[str]) -> None:
    """A one-line UserError for the first input that is a URL: nothing is fetched from the network."""
    for text in inputs:
        if URL.match(str(text)):
            raise UserError(f"{text}: a URL; inputs are not fetched, download the video first (e.g. `curl -LO URL`) "
                            "and give the file")


def spool_stdin(folder: str | Path, stream: IO[bytes] | None = None) -> Path:
    """Standard input (a video piped in, for the input `-`) copied into a file in `folder`, which decoders can seek
    in; a one-line UserError when nothing is piped in."""
    stream = stream if stream is not None else sys.stdin.buffer
    if stream.isatty():
        raise UserError("-: reads a video from standard input; pipe one in (`cat video.mp4 | vidcap caption - ...`)")
    path = Path(folder) / "stdin"
    with open(path, "wb") as spooled:
        shutil.copyfileobj(stream, spooled, 1 << 20)
    if path.stat().st_size == 0:
        raise UserError("-: nothing was piped in on standard input")
    return path


@contextlib.contextmanager
def quiet_stderr():
    """Send file descriptor 2 to /dev/null for a moment (C++ logging that Python cannot silence)."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to silence
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def decord_reason(error: Exception) -> str:
    """decord's error as a short phrase: its first line without the '[time] file.cc:line:' prefix."""
    lines = str(error).strip().splitlines()
    if not lines:
        return type(error).__name__
    for phrase, reason in _DECORD_REASONS:
        if phrase in lines[0]:
            return reason
    return re.sub(r"^\[[\d:]+\]\s*\S+:\s*", "", lines[0])[:200]


def decode_with_fallback(path: str | Path, decode: Callable[[str], T]) -> T:
    """`decode(file)` on `path`; where decord fails on it, on a transcoded H.264 copy; a UserError if both fail."""
    path = check_file(path)
    try:
        return decode(path)
    except DECORD_ERRORS:  # decord cannot read it: an unsupported codec, a damaged or odd container
        pass
    copy = transcode_to_h264(path)
    try:
        return decode(str(copy))
    except DECORD_ERRORS as error:
        raise UserError(f"{path}: not a readable video ({decord_reason(error)})") from None


def open_decord(source: str, **options) -> decord.VideoReader:
    """A decord reader over `source` (`options` as decord takes them); decord's own log is silenced."""
    with quiet_stderr():  # decord logs "ERROR opening: ..." itself before raising; we say it once
        return decord.VideoReader(source, ctx=decord.cpu(0), **options)


def open_frames(path: str | Path, decode_size: Callable[[tuple[int, int]], tuple[int, int]] | None = None,
                num_threads: int = 0) -> FrameReader:
    """A `FrameReader` over `path` with frames at `decode_size((H, W))` (default: as shown), or a one-line UserError
    naming the file; decord reads a transcoded copy where it cannot open the file."""
    name = check_file(path)
    return decode_with_fallback(name, lambda source: _checked_reader(source, name, decode_size, num_threads))


def _checked_reader(source: str, name: str, decode_size: Callable[[tuple[int, int]], tuple[int, int]] | None,
                    num_threads: int) -> FrameReader:
    """decord over `source` where its frame count and first frame match the container's, else ffmpeg alone."""
    reader = open_decord(source, num_threads=num_threads)
    info = probe(source)
    shown = (info.height, info.width)
    if info.n_frames < 1 or min(shown) < 1:
        raise UserError(f"{name}: the video stream has no frames")
    size = decode_size(shown) if decode_size else shown
    first = reader[0]  # where decord 0.6 mis-sizes frames, this one comes back wrong (32×48×4) with no error
    if len(reader) != info.n_frames or first.shape != (*shown, 3) or first.dtype != "uint8":
        return FrameReader(source, name, info, size, None)
    if size != shown:
        # Much larger than needed (4K for a 224 crop): let decord's scaler shrink it while decoding,
        # which saves most of the time and memory; the final antialiased resize does the rest.
        reader = open_decord(source, num_threads=num_threads, height=size[0], width=size[1])
    return FrameReader(source, name, info, size, reader)


class WrongFrames(Exception):
    """decord decoded frames that do not match the container: another size, channel count or type."""


class FrameReader:
    """Frames of one video by index, `[n,H,W,3]` uint8 RGB at `size` (H, W): decord's while they match the
    container, ffmpeg's from the first batch decord fails on or decodes wrongly."""

    def __init__(self, source: str, name: str, info: VideoInfo, size: tuple[int, int],
                 reader: decord.VideoReader | None):
        self.source, self.name, self.info, self.size, self.decord = source, name, info, size, reader

    def __len__(self) -> int:
        return self.info.n_frames

    @property
    def fps(self) -> float:
        """Average frame rate, frames per second."""
        return self.info.fps

    def timestamps(self) -> np.ndarray | None:
        """(N, 2) [start, end] of every frame, seconds, from decord's index; None where ffmpeg decodes."""
        if self.decord is None:
            return None
        try:
            return self.decord.get_frame_timestamp(list(range(len(self))))
        except DECORD_ERRORS:
            return None

    def get_batch(self, indices: Sequence[int]) -> np.ndarray:
        """Frames `indices` (any order, repeats allowed): (n, H, W, 3) uint8, each frame decoded once."""
        unique, inverse = np.unique(np.asarray(indices, np.int64), return_inverse=True)
        return np.concatenate([frames for _, frames in self.batches(unique.tolist(), len(unique))])[inverse]

    def batches(self, indices: list[int], chunk: int) -> Iterator[tuple[list[int], np.ndarray]]:
        """(indices, frames) `chunk` frames at a time for sorted, distinct `indices`; a UserError naming the file at
        the first frame neither decoder gives, after the frames before it."""
        done = 0
        while self.decord is not None and done < len(indices):
            part = indices[done:done + chunk]
            try:
                frames = self._decord_batch(part)
            except (*DECORD_ERRORS, WrongFrames):
                self.decord = None  # decord fails from here on: ffmpeg decodes this batch and the rest
                break
            yield part, frames
            done += len(part)
        if done < len(indices):
            yield from ffmpeg_batches(self.source, self.name, indices[done:], chunk, self.size)

    def _decord_batch(self, indices: list[int]) -> np.ndarray:
        """decord's frames `indices`, a WrongFrames unless they are (n, H, W, 3) uint8."""
        frames = self.decord.get_batch(indices).asnumpy()
        if frames.shape != (len(indices), *self.size, 3) or frames.dtype != np.uint8:
            raise WrongFrames(f"decord gave {frames.dtype} frames of shape {frames.shape}")
        return frames


def ffmpeg_batches(source: str, name: str, indices: list[int], chunk: int,
                   size: tuple[int, int]) -> Iterator[tuple[list[int], np.ndarray]]:
    """(indices, (n, H, W, 3) uint8 frames) `chunk` at a time for sorted, distinct frame `indices` of `source`, from
    one ffmpeg process decoding to raw RGB at `size` (H, W); a UserError naming `name` at the first frame it lacks."""
    height, width = size
    frame_bytes = height * width * 3
    command = [ffmpeg_path(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", source, "-map", "0:V:0",
               "-vf", f"select='{select_expression(indices)}',scale={width}:{height}", *passthrough_option(),
               "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    with tempfile.TemporaryFile() as log:  # a file, not a pipe: a damaged stream's error flood cannot block ffmpeg
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log)
        try:
            for start in range(0, len(indices), chunk):
                part = indices[start:start + chunk]
                data = _read_stalling(process, len(part) * frame_bytes)
                got = len(data) // frame_bytes
                if got:
                    yield part[:got], np.frombuffer(data[:got * frame_bytes], np.uint8).reshape(got, height, width, 3)
                if got < len(part):
                    raise UserError(f"{name}: cannot decode frame {part[got]} or later ({_decode_failure(process, log)})")
        finally:  # every frame read, or the reader gave up: the rest of the file need not be decoded
            process.kill()
            process.wait()


def _read_stalling(process: subprocess.Popen, size: int) -> bytes:
    """Up to `size` bytes of ffmpeg's output (fewer at its end); ffmpeg is killed if it stalls for DECODE_STALL_S."""
    watchdog = threading.Timer(DECODE_STALL_S, process.kill)
    watchdog.start()
    try:
        return process.stdout.read(size)
    finally:
        watchdog.cancel()


def _decode_failure(process: subprocess.Popen, log: IO[bytes]) -> str:
    """Why ffmpeg's output ended early: its error line, its stall, or a stream shorter than its container said."""
    if process.wait() == -signal.SIGKILL:
        return f"ffmpeg gave no frame for {DECODE_STALL_S:g} s"
    log.seek(0)
    stderr = log.read().decode(errors="replace")
    return ffmpeg_reason(stderr) if stderr.strip() else "ffmpeg decodes fewer frames than the container holds"


def select_expression(indices: list[int]) -> str:
    """An ffmpeg `select` expression true for frame numbers `indices` (sorted, distinct): one term per evenly
    spaced run, so every k-th frame of a long video is one term, not thousands."""
    terms, start = [], 0
    while start < len(indices):
        step = indices[start + 1] - indices[start] if start + 1 < len(indices) else 1
        end = start + 1
        while end < len(indices) and indices[end] - indices[end - 1] == step:
            end += 1
        first, last = indices[start], indices[end - 1]
        terms.append(f"between(n,{first},{last})*not(mod(n-{first},{step}))")
        start = end
    return "+".join(terms)


@functools.lru_cache(maxsize=None)
def passthrough_option() -> list[str]:
    """ffmpeg's option that passes each decoded frame on once, without frame-rate conversion (which would drop or
    repeat frames of a variable-rate video): `-fps_mode` from ffmpeg 5.1, `-vsync` before (newer ones lack it)."""
    options = subprocess.run([ffmpeg_path(), "-hide_banner", "-h", "long"], check=False, capture_output=True,
                             text=True, timeout=PROBE_TIMEOUT_S).stdout
    return ["-fps_mode" if "-fps_mode" in options else "-vsync", "passthrough"]


def transcode_cache_dir() -> Path:
    """Where transcoded copies live: $VIDCAP_TRANSCODE_CACHE, else <tmp>/vidcap-transcode."""
    return Path(os.environ.get("VIDCAP_TRANSCODE_CACHE") or Path(tempfile.gettempdir()) / "vidcap-transcode")


def transcode_to_h264(path: str | Path, timeout_s: float = TRANSCODE_TIMEOUT_S) -> Path:
    """An H.264/yuv420p mp4 copy of `path`'s first video stream, cached per path, mtime and size."""
    path = check_file(path)
    stat = os.stat(path)
    key = hashlib.sha1(f"{os.path.abspath(path)}|{stat.st_mtime_ns}|{stat.st_size}".encode()).hexdigest()
    cache = transcode_cache_dir()
    target = cache / f"{key}.mp4"
    if target.is_file() and target.stat().st_size > 0:
        return target
    cache.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f"{key}.", suffix=".partial.mp4", dir=cache)
    os.close(handle)
    partial = Path(name)
    command = [ffmpeg_path(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", path,
               "-map", "0:V:0",  # first real video stream (not cover art); no audio or subtitles
               "-vf", "crop=trunc(iw/2)*2:trunc(ih/2)*2",  # yuv420p needs even sides: drop an odd row/column
               "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p",
               "-an", "-sn", "-dn", "-f", "mp4", str(partial)]
    try:
        returncode, stderr = run_ffmpeg(command, path, timeout_s, what="transcoding")
        if returncode or not partial.is_file() or partial.stat().st_size == 0:
            raise UserError(f"{path}: not a readable video ({ffmpeg_reason(stderr)})")
        os.replace(partial, target)  # atomic: a reader never sees half a file
    finally:
        partial.unlink(missing_ok=True)
    return target


def write_test_pattern(out: str | Path, size: tuple[int, int] = (720, 1280), seconds: float = 10.0,
                       fps: float = 30.0, source: str = "testsrc2") -> Path:
    """An H.264 clip of one of ffmpeg's generated sources (`testsrc2`, a moving test pattern, by default; also
    `mandelbrot`, `life`, `cellauto`...), 2 s keyframe interval as cameras and streaming sites write them: the
    benchmarks' and tests' stand-in for a real-world video, nothing like the synthetic world."""
    height, width = size
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        (ffmpeg.input(f"{source}=size={width}x{height}:rate={fps}", f="lavfi", t=seconds)
         .output(str(out), vcodec="libx264", pix_fmt="yuv420p", preset="veryfast", g=int(2 * fps))
         .global_args("-loglevel", "error").overwrite_output().run(cmd=ffmpeg_path(), capture_stderr=True))
    except ffmpeg.Error as error:
        raise UserError(f"{out}: ffmpeg could not write the test pattern ({error.stderr.decode(errors='replace')[:200]})") from None
    return out
