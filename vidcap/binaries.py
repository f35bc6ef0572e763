"""Where the ffmpeg and ffprobe executables come from: the system PATH first, imageio-ffmpeg second."""

from __future__ import annotations

import functools
import shutil

from saliency.errors import UserError


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
