"""A battery of video files as users bring them (issue 18): every one ffmpeg can play is captioned by `vidcap caption`
and gets a saliency map per frame from `saliency predict`; what holds no video is skipped with one line that says
why. The files are made once per session with the project's ffmpeg: short, small clips in common formats, the
thumbnail sizes decord decodes wrongly, and odd or damaged files."""
from __future__ import annotations

import functools
import json
import re
import struct
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support import corruption
from saliency.infra.media import ffmpeg_path

pytestmark = pytest.mark.usefixtures("one_thread")


def pattern(width: int = 64, height: int = 48, rate: int = 10, seconds: float = 1) -> list[str]:
    """ffmpeg input options for a moving test pattern (`testsrc2` makes even sizes only, so it is scaled)."""
    return ["-f", "lavfi", "-i", f"testsrc2=size=64x64:rate={rate}", "-t", str(seconds), "-vf", f"scale={width}:{height}"]


def x264(pix_fmt: str = "yuv420p", *extra: str) -> list[str]:
    return ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", pix_fmt, *extra]


def tiny(width: int, height: int) -> list[str]:
    """A thumbnail-sized H.264 clip; odd sizes in 4:4:4, since 4:2:0 needs even sides."""
    return [*pattern(width, height), *x264("yuv420p" if width % 2 == height % 2 == 0 else "yuv444p")]


def scaled_durations(data: bytes, factor: int) -> bytes:
    """An mp4 whose movie, track and media headers (mvhd, tkhd, mdhd) claim `factor` times the real duration."""
    data = bytearray(data)
    for box, offset in ((b"mvhd", 16), (b"tkhd", 24), (b"mdhd", 16)):  # version-0 boxes: 32-bit durations
        at = data.index(box)
        assert data[at + 4] == 0, f"{box} is not a version-0 box"
        (duration,) = struct.unpack_from(">I", data, at + offset)
        struct.pack_into(">I", data, at + offset, duration * factor)
    return bytes(data)


def corrupt_start(data: bytes) -> bytes:
    """An mp4 whose first 1500 bytes of frame data (its first frames, with the index at the end) are noise."""
    data = bytearray(data)
    start = data.index(b"mdat") + 4
    data[start:start + 1500] = np.random.default_rng(0).integers(0, 256, 1500, np.uint8).tobytes()
    return bytes(data)


@dataclass
class Case:
    """How a battery file is made (ffmpeg output options, or a function of the folder that writes it) and what
    reading it should give: `frames` maps of `shape` (H, W) as shown (None: any count), or `refused` reasons."""

    make: list[str] | Callable[[Path, Path], None]
    encoder: str | None = "libx264"
    frames: int | None = 10
    shape: tuple[int, int] = (48, 64)
    refused: dict[str, str] | None = None  # command → regular expression after "skipped PATH: "


def rotated(path: Path, root: Path) -> None:
    """The H.264 clip stream-copied into a MOV with a 90° display matrix, as phones record upright video."""
    run_ffmpeg("-display_rotation:v:0", "90", "-i", root / "h264-yuv420p.mp4", "-c", "copy", path)


def from_base(transform: Callable[[bytes], bytes]) -> Callable[[Path, Path], None]:
    """A file made by `transform` from a 2 s, 20-frame H.264 clip with a keyframe every 5 frames."""
    def make(path: Path, root: Path) -> None:
        base = root / "base-20-frames.mp4"
        if not base.exists():
            run_ffmpeg(*pattern(seconds=2), *x264("yuv420p", "-g", "5"), base)
        path.write_bytes(transform(base.read_bytes()))
    return make


def audio_only(path: Path, root: Path) -> None:
    run_ffmpeg("-f", "lavfi", "-i", "sine=d=0.5", "-c:a", "aac", path)


CASES = {
    "h264-yuv420p.mp4": Case([*pattern(), *x264()]),
    "h264-10bit.mp4": Case([*pattern(), *x264("yuv420p10le")]),
    "h264-444-odd-65x47.mp4": Case([*pattern(65, 47), *x264("yuv444p")], shape=(47, 65)),
    "h264-gray.mp4": Case([*pattern(), *x264("gray")]),
    "vp9.webm": Case([*pattern(), "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8"], encoder="libvpx-vp9"),
    "mjpeg.avi": Case([*pattern(), "-c:v", "mjpeg", "-q:v", "5"], encoder="mjpeg"),
    "rotated-90.mov": Case(rotated, shape=(64, 48)),
    "one-frame.mp4": Case([*pattern(), "-frames:v", "1", *x264()], frames=1),
    "1080p.mp4": Case([*pattern(1920, 1080, seconds=0.3), *x264()], frames=3, shape=(1080, 1920)),
    **{f"tiny-{w}x{h}.mp4": Case(tiny(w, h), shape=(h, w)) for w, h in [(16, 16), (17, 17), (32, 32), (63, 47), (64, 64)]},
    # the issue's own command
    "tiny-48x32.mp4": Case(["-f", "lavfi", "-i", "testsrc2=size=48x32:rate=25", "-t", "2", "-c:v", "libx264",
                            "-pix_fmt", "yuv420p"], frames=50, shape=(32, 48)),
    # frames 0-9 0.1 s apart, frames 10-39 1/30 s apart
    "variable-frame-rate.mp4": Case(["-f", "lavfi", "-i", "testsrc2=size=64x48:rate=30", "-frames:v", "40", "-vf",
                                     "setpts='if(lt(N,10),N*3,30+(N-10))/(30*TB)'", "-fps_mode", "vfr", *x264()],
                                    frames=40),
    "wrong-duration.mp4": Case(from_base(lambda data: scaled_durations(data, 10)), frames=20),
    # old capture software's AVI: a nominal 15 fps, two frames in three dropped (empty chunks the index counts)
    "dropped-frames.avi": Case(["-f", "lavfi", "-i", "testsrc2=size=64x48:rate=15", "-t", "2", "-vf",
                                "select='not(mod(n,3))'", "-fps_mode", "passthrough", "-c:v", "cinepak"],
                               encoder="cinepak", frames=10),
    "corrupt-first-frames.mp4": Case(from_base(corrupt_start), frames=None),
    "audio-only.m4a": Case(audio_only, encoder="aac", refused={
        "vidcap": r"not a readable video \(no video stream\)",
        "saliency": r"not an image file Pillow can read"}),  # `saliency predict` reads only video suffixes as videos
    "not-a-video.mp4": Case(lambda path, root: path.write_text("a text file, not a video\n"), encoder=None, refused={
        "vidcap": r"not a readable video \(Error opening input: Invalid data found when processing input\)",
        "saliency": r"not a readable video \(Error opening input: Invalid data found when processing input\)"}),
}


def run_ffmpeg(*args) -> None:
    subprocess.run([ffmpeg_path(), "-y", "-loglevel", "error", *map(str, args)], check=True, capture_output=True,
                   timeout=120)


@functools.cache
def encoders() -> str:
    return subprocess.run([ffmpeg_path(), "-hide_banner", "-encoders"], check=True, capture_output=True,
                          text=True, timeout=60).stdout


@pytest.fixture(scope="session")
def battery(tmp_path_factory) -> dict[str, Path | str]:
    """Name → the file, or → why this ffmpeg could not make it (the test is then skipped with that line)."""
    root = tmp_path_factory.mktemp("video-formats")
    files: dict[str, Path | str] = {}
    for name, case in CASES.items():
        path = root / name
        if case.encoder and not re.search(rf"^\s*\S+\s+{re.escape(case.encoder)}\s", encoders(), re.MULTILINE):
            files[name] = f"this ffmpeg has no {case.encoder} encoder"
            continue
        try:
            case.make(path, root) if callable(case.make) else run_ffmpeg(*case.make, path)
        except subprocess.CalledProcessError as error:
            reason = (error.stderr or b"").decode(errors="replace").strip().splitlines()
            files[name] = f"this ffmpeg cannot make {name}: {reason[-1] if reason else error}"
            continue
        files[name] = path
    return files


def battery_file(battery: dict[str, Path | str], name: str) -> Path:
    if isinstance(battery[name], str):
        pytest.skip(battery[name])
    return battery[name]


@pytest.fixture(scope="module")
def saliency_run(tmp_path_factory, one_thread) -> Path:
    """A tiny student trained for one epoch by `saliency train`."""
    return corruption.make_saliency_run(tmp_path_factory.mktemp("saliency-run"))


def assert_skipped_with_one_line(command: str, code: int, err: str, path: Path, reason: str) -> None:
    """Exit status 1, one `COMMAND: skipped PATH: REASON` line, then the closing list."""
    assert code == 1
    skipped, summary = err.strip().splitlines()
    assert re.fullmatch(f"{command}: skipped {re.escape(str(path))}: {reason}", skipped), skipped
    assert summary.startswith(f"{command}: 1 ") and summary.endswith(str(path))


@pytest.mark.parametrize("name", list(CASES))
def test_vidcap_caption_captions_every_file_ffmpeg_plays(battery, tiny_captioner, cli, name):
    path, case = battery_file(battery, name), CASES[name]
    code, out, err = cli("vidcap")("caption", path, "--model", tiny_captioner / "captioner", "--json")
    if case.refused:
        assert_skipped_with_one_line("vidcap caption", code, err, path, case.refused["vidcap"])
        assert json.loads(out) == []
        return
    # ffmpeg's test patterns are nothing like the synthetic world: stderr may hold the one line that says what the
    # flag before a caption means, and nothing else
    lines = err.splitlines()
    assert code == 0 and lines in ([], [line for line in lines if line.startswith("vidcap caption: ? marks a caption")]), err
    [result] = json.loads(out)
    assert result["video"] == str(path) and isinstance(result["caption"], str)


@pytest.mark.parametrize("name", list(CASES))
def test_saliency_predict_maps_every_frame_of_every_file_ffmpeg_plays(battery, saliency_run, cli, tmp_path, name):
    path, case = battery_file(battery, name), CASES[name]
    code, _, err = cli("saliency")("predict", "--model", saliency_run, path, "--out", tmp_path, "--maps", "--quiet")
    if case.refused:
        assert_skipped_with_one_line("saliency predict", code, err, path, case.refused["saliency"])
        return
    assert (code, err) == (0, "")
    assert (tmp_path / f"{path.stem}_saliency.mp4").is_file()
    maps = sorted((tmp_path / path.stem).glob("frame_*.png"))
    assert len(maps) == case.frames if case.frames else maps  # a damaged file: whatever frames can be restored
    assert {np.asarray(Image.open(map_file)).shape for map_file in maps} == {case.shape}
