"""Fixtures shared by the saliency and vidcap tests: one torch thread for tiny models, and a folder of
good, odd and broken media files."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from vidcap.binaries import ffmpeg_path

H264 = ("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: with several threads on a busy machine, synchronisation costs 100× the work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _train_and_kill(module: str, args: list[str], out, epochs: int) -> None:
    """Run `python -m <module> train ARGS --out OUT` and SIGKILL it once its first epoch's checkpoint is on disk."""
    process = subprocess.Popen([sys.executable, "-m", module, "train", *map(str, args), "--out", str(out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    summary, deadline = out / "train_state.json", time.monotonic() + 300
    while not (summary.is_file() and json.loads(summary.read_text())["epoch"] >= 1):
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert json.loads(summary.read_text())["epoch"] < epochs  # it was killed mid-run


@pytest.fixture
def kill_after_first_checkpoint():
    """`(module, args, out, epochs)`: the real training command, SIGKILLed right after its first checkpoint."""
    return _train_and_kill


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
    """Name → path of small media files: valid ones (`clip.mp4`, a one-frame video, 4K frames, grayscale
    and RGBA images and videos) and broken ones (random bytes, a truncated mp4, empty files, audio only,
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
