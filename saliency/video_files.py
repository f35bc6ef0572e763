"""Users' video files opened with decord: the file checked first, FFmpeg's log kept quiet, and every
failure turned into one `UserError` line that names the file and says what is wrong with it."""
from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import decord

from saliency.errors import UserError

# decord raises its own DECORDError (not a RuntimeError) for most failures, RuntimeError for others.
DECORD_ERRORS = (decord.DECORDError, RuntimeError, ValueError, IndexError)
# Silence the FFmpeg messages decord lets through ("moov atom not found", ...): every failure they
# describe ends in a one-line UserError, and the CLIs print one line per file.
decord.logging.set_level(decord.logging.QUIET)

# decord's wording → what it means for the user's file
_REASONS = (
    ("cannot find video stream", "no video stream"),
    ("Error reading", "not a video file, or a damaged one"),
    ("Failed to measure duration/frame-count", "no frame count (a still image or a damaged index)"),
    ("av_read_frame failed", "damaged or cut-short video data"),
    ("Cannot create buffer source", "damaged stream parameters"),
)


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
    for phrase, reason in _REASONS:
        if phrase in lines[0]:
            return reason
    return re.sub(r"^\[[\d:]+\]\s*\S+:\s*", "", lines[0])[:200]


def open_reader(path: str | Path, **options) -> decord.VideoReader:
    """A decord reader over `path` (`options` as decord takes them), or a one-line UserError."""
    path = check_file(path)
    try:
        with quiet_stderr():  # decord logs "ERROR opening: ..." itself before raising; we say it once
            return decord.VideoReader(path, ctx=decord.cpu(0), **options)
    except DECORD_ERRORS as error:
        raise UserError(f"{path}: not a readable video ({decord_reason(error)})") from None
