"""Fixtures shared by the saliency and vidcap tests: one torch thread for tiny models, a folder of good,
odd and broken media files, a training run that SIGKILLs itself after a checkpoint, and a command-line
runner with its one-line-error check."""
from __future__ import annotations

import json
import signal
import subprocess
from importlib import import_module
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.support.faults import run_child
from saliency.infra.media import ffmpeg_path
from saliency.infra.rundir import TRAIN_STATE_META, RunDir

H264 = ("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")
# Several minutes each (the README's commands, the kill battery, the demo): `make test`'s workers start them first,
# so that they run beside the short files instead of after them
LONGEST_FIRST = ("test_readme.py", "test_kill_anywhere.py", "vidcap/test_demo.py")


def pytest_collection_modifyitems(items):
    """The files of LONGEST_FIRST first, in that order; every other test keeps its place."""
    tests = Path(__file__).parent
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.relative_to(tests).as_posix(), len(rank)))


@pytest.fixture(autouse=True)
def fresh_probes():
    """`probe` keeps what it found per file version; tests that fake ffprobe's answer for a file must not get the
    one an earlier test kept."""
    from saliency.infra import media

    media._probe_version.cache_clear()


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """A command run in-process sets torch's thread count (`threads` in its config): put it back after each test."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: with several threads on a busy machine, synchronisation costs 100× the work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _train_and_kill(module: str, args: list[str], out, epochs: int, checkpoints: int = 1) -> None:
    """Run `<module> train ARGS --out OUT` (module: `saliency.cli` or `vidcap.cli`) in a child process that
    SIGKILLs itself right after writing its `checkpoints`-th checkpoint (epoch `checkpoints` of `epochs`): the
    kill lands at the same point on any machine, however fast (`tests.support.faults`)."""
    assert 1 <= checkpoints < epochs, "the kill must come before the run ends"
    process = run_child(module, ["train", *args, "--out", out], kill_at=checkpoints, kind="checkpoint")
    assert process.returncode == -signal.SIGKILL, (process.returncode, process.stderr[-2000:])
    assert json.loads((out / TRAIN_STATE_META).read_text())["epoch"] == checkpoints
    assert RunDir(out).load_train_state()["progress"]["epoch"] == checkpoints  # killed mid-run, checkpoint whole


@pytest.fixture
def kill_after_first_checkpoint():
    """`(module, args, out, epochs, checkpoints=1)`: the real training command, SIGKILLed by itself right
    after its first (or `checkpoints`-th) checkpoint, before `epochs` are done."""
    return _train_and_kill


class Cli:
    """`PROGRAM ARGS` run in this process through `PROGRAM.cli.main`, its output captured by capsys."""

    def __init__(self, program: str, capsys, preceded_by: tuple[str, ...] = ()):
        self.program, self.capsys, self.preceded_by = program, capsys, tuple(preceded_by)
        self.main = import_module(f"{program}.cli").main

    def __call__(self, *args) -> tuple[int, str, str]:
        """Exit status, stdout and stderr of `PROGRAM ARGS`; a traceback on stderr fails the test."""
        self.capsys.readouterr()
        code = self.main([str(arg) for arg in args])
        out, err = self.capsys.readouterr()
        assert "Traceback" not in err
        return code, out, err

    def assert_one_line_error(self, err: str, *parts: str) -> None:
        """stderr ends in a single `PROGRAM: error: ...` line holding every part; any line before it must start
        with one of the `preceded_by` prefixes (none allowed by default: the error is all of stderr)."""
        lines = err.strip().splitlines()
        assert lines, "nothing on stderr"
        *before, error = lines
        assert error.startswith(f"{self.program}: error: ") and all(part in error for part in parts), (parts, err)
        assert all(any(line.startswith(prefix) for prefix in self.preceded_by) for line in before), err


@pytest.fixture
def cli(capsys):
    """`cli(program, preceded_by=())` → a `Cli`: `run(*args)` gives (exit status, stdout, stderr) of
    `program ARGS` in this process, `run.assert_one_line_error(err, *parts)` checks a one-line error."""
    return lambda program, preceded_by=(): Cli(program, capsys, preceded_by)


def encode(path, frames: np.ndarray, codec=H264, fps: int = 8) -> None:
    """(T, H, W, 3) uint8 RGB frames → a video file, with the project's ffmpeg."""
    _, height, width, _ = frames.shape
    subprocess.run([ffmpeg_path(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
                    "-s", f"{width}x{height}", "-r", str(fps), "-i", "pipe:", *codec, str(path)],
                   input=np.ascontiguousarray(frames).tobytes(), check=True, capture_output=True, timeout=120)


def gradient(height: int, width: int, frames: int = 1) -> np.ndarray:
    """(T, H, W, 3) uint8 frames with a horizontal ramp that brightens frame by frame."""
    ramp = np.linspace(0, 200, width, dtype=np.float32)[None, None, :, None]
    steps = np.arange(frames, dtype=np.float32)[:, None, None, None] * 2
    return np.broadcast_to(ramp + steps, (frames, height, width, 3)).astype(np.uint8)


@pytest.fixture(scope="session")
def media(tmp_path_factory):
    """Name → path of small media files: valid ones (`clip.mp4`, a one-frame video, 4K frames, grayscale,
    RGBA and palette images, grayscale and RGBA videos) and broken ones (random bytes, a truncated mp4, empty files, audio only,
    a folder without videos, a missing file)."""
    root = tmp_path_factory.mktemp("media")
    rng = np.random.default_rng(0)
    encode(root / "clip.mp4", gradient(32, 64, frames=20))
    encode(root / "one.mp4", gradient(32, 64))
    encode(root / "4k.mp4", gradient(2160, 3840))
    encode(root / "gray.mp4", gradient(32, 64, frames=4), codec=("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "gray"))
    encode(root / "rgba.mov", gradient(32, 64, frames=4), codec=("-c:v", "png", "-pix_fmt", "rgba"))
    Image.fromarray(gradient(2160, 3840)[0]).save(root / "4k.jpg")
    Image.fromarray(gradient(40, 60)[0, :, :, 0]).save(root / "gray.png")
    Image.fromarray(np.dstack([gradient(40, 60)[0], np.full((40, 60), 128, np.uint8)])).save(root / "rgba.png")
    Image.fromarray(gradient(40, 60)[0]).quantize(colors=16).save(root / "palette.png")  # mode "P": indices + palette
    data = (root / "clip.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 2])  # the index (moov atom) is at the end: lost
    (root / "random.mp4").write_bytes(rng.integers(0, 256, 3000, np.uint8).tobytes())
    (root / "random.jpg").write_bytes(rng.integers(0, 256, 300, np.uint8).tobytes())
    (root / "zero.mp4").write_bytes(b"")
    (root / "zero.jpg").write_bytes(b"")
    subprocess.run([ffmpeg_path(), "-y", "-loglevel", "error", "-f", "lavfi", "-i", "sine=d=0.5", "-c:a", "aac",
                    str(root / "audio.mp4")], check=True, capture_output=True, timeout=120)
    (root / "no-videos").mkdir()
    (root / "no-videos" / "notes.txt").write_text("no videos here\n")
    return {path.name: path for path in root.iterdir()} | {"missing.mp4": root / "missing.mp4"}
