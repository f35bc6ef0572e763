"""Video files on disk: where ffmpeg comes from, how it is run, and how a file is opened with decord.

The ffmpeg binary comes from the system PATH first, imageio-ffmpeg second. A user's file is checked
first, FFmpeg's own log kept quiet, and every failure turned into one `UserError` line that names the
file. A file decord cannot read (an AV1 stream, a GIF, a damaged index) is transcoded once by ffmpeg to
H.264 and the copy cached, so a dataset with a few odd files costs one transcode per file, not one per epoch.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import decord
import ffmpeg
import numpy as np

from saliency.infra.errors import UserError

T = TypeVar("T")

# decord raises its own DECORDError (not a RuntimeError) for most failures, RuntimeError for others.
DECORD_ERRORS = (decord.DECORDError, RuntimeError, ValueError, IndexError)
TRANSCODE_TIMEOUT_S = 600.0  # an ffmpeg transcode that runs longer is treated as a failure

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


class Mp4Writer:
    """Streams uint8 RGB frames `[n,H,W,3]` (even H and W) into an H.264/yuv420p mp4 through ffmpeg."""

    def __init__(self, path: str | Path, fps: float):
        self.path, self.fps, self.process = Path(path), fps, None

    def write(self, frames: np.ndarray) -> None:
        if self.process is None:
            height, width = frames.shape[1:3]
            self.process = (
                ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{width}x{height}", r=self.fps)
                .output(str(self.path), vcodec="libx264", pix_fmt="yuv420p", preset="veryfast", crf=18,
                        threads=1, flags="+bitexact", fflags="+bitexact", map_metadata=-1)
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


def open_reader(path: str | Path, **options) -> decord.VideoReader:
    """A decord reader over `path`, transcoded once if decord cannot read it, or a one-line UserError."""
    return decode_with_fallback(path, lambda source: open_decord(source, **options))


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
