"""Saliency overlays with a motion saliency model: every frame of `vidcap caption --overlay` is seen with the one
before it, across the chunks the video is read in, and so is every frame of an evaluation report's thumbnail strip;
every map is shown as `saliency predict` shows it (the probability min-max scaled to [0, 1])."""
from __future__ import annotations

import itertools
import subprocess

import numpy as np
import pytest
import torch

from saliency import colour_overlay
from saliency.infra.media import ffmpeg_path
from vidcap.model.captioner import CaptionerConfig, VisualFrontEnd, with_saliency
from vidcap.data.video import FrameSamplerConfig
from vidcap.model.encoder import EncoderConfig
from vidcap.inference import overlay

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def numbered(tmp_path):
    """10 grey 16×16 frames at 8 fps whose brightness is 20 × the frame's number."""
    video = tmp_path / "numbered.mp4"
    frames = np.repeat(np.arange(10, dtype=np.uint8)[:, None, None, None] * 20, 16 * 16 * 3).reshape(10, 16, 16, 3)
    subprocess.run([ffmpeg_path(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "16x16",
                    "-r", "8", "-i", "pipe:", "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-pix_fmt",
                    "yuv420p", str(video)], input=frames.tobytes(), check=True, timeout=120)
    return video


CONFIG = with_saliency(CaptionerConfig(encoder=EncoderConfig(backbone="small-cnn", pretrained=False, grid=2)),
                       "student", weighting="prior")


def test_each_frame_of_the_overlay_is_seen_with_the_frame_before_it(numbered, tmp_path, monkeypatch, motion_spy):
    spy = motion_spy()
    monkeypatch.setattr(overlay, "CHUNK", 4)  # three chunks: 4 + 4 + 2 frames
    overlay.write_overlay(VisualFrontEnd(CONFIG, spy).eval(), numbered, tmp_path / "overlay.mp4")
    seen = torch.cat(spy.seen)  # (10, 6, 16, 16)
    assert [len(x) for x in spy.seen] == [4, 4, 2]
    assert not seen[0, 3:].any()  # the first frame has none before it: no motion
    assert torch.allclose(seen[1:, 3:], seen[1:, :3] - seen[:-1, :3])


def test_a_model_that_looks_three_frames_back_sees_them_across_chunks(numbered, tmp_path, monkeypatch, motion_spy):
    spy = motion_spy(gap=3)
    monkeypatch.setattr(overlay, "CHUNK", 4)  # three chunks: 4 + 4 + 2 frames, each looking into the one before
    overlay.write_overlay(VisualFrontEnd(CONFIG, spy).eval(), numbered, tmp_path / "overlay.mp4")
    seen = torch.cat(spy.seen)  # (10, 6, 16, 16)
    earlier = seen[[0, 0, 0, 0, 1, 2, 3, 4, 5, 6], :3]  # frame i looks at frame max(i - 3, 0)
    assert torch.allclose(seen[:, 3:], seen[:, :3] - earlier)
    assert not seen[0, 3:].any() and seen[4:, 3:].mean() > 0  # brightness rises 20 a frame: a positive difference


def test_the_thumbnail_strip_shows_a_motion_models_maps_of_the_sampled_frames(numbered, motion_spy):
    from vidcap.evaluation.reports.split_report import STRIP_FRAMES, thumbnail_strip

    spy = motion_spy()
    assert thumbnail_strip(numbered, CONFIG, VisualFrontEnd(CONFIG, spy).eval()).startswith(b"\xff\xd8")  # a JPEG
    assert spy.seen[0].shape[:2] == (STRIP_FRAMES, 6) and spy.seen[0][:, 3:].any()


class Ramp(torch.nn.Module):
    """A saliency model whose log-density rises from left to right (the same on every frame)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        width = x.shape[-1]
        ramp = torch.linspace(0.0, 3.0, width).expand(len(x), 1, x.shape[-2], width)
        return ramp - torch.logsumexp(ramp.flatten(1), dim=1).view(-1, 1, 1, 1)


def test_an_overlay_blends_the_min_max_scaled_map_over_each_frame():
    """(The maps are the captioner's, computed at its sampler's size: here the frames' own.)"""
    config = with_saliency(CaptionerConfig(sampler=FrameSamplerConfig(size=(8, 16)),
                                           encoder=EncoderConfig(backbone="small-cnn", pretrained=False, grid=1)),
                           "student", "runs/unused", "residual")
    front = VisualFrontEnd(config, Ramp()).eval()
    frames = np.full((2, 8, 16, 3), 128, np.uint8)
    shown = overlay.saliency_overlays(front, frames)
    probability = np.exp(np.linspace(0.0, 3.0, 16))
    unit = np.broadcast_to((probability - probability.min()) / (probability.max() - probability.min()), (8, 16))
    expected = colour_overlay(frames[0], unit)
    assert shown.shape == frames.shape and np.abs(shown[0].astype(int) - expected.astype(int)).max() <= 1
    assert unit[0, 0] == 0.0 and (shown[:, :, 0] != shown[:, :, -1]).any()  # the ramp shows


def test_an_overlay_draws_the_map_only_where_it_is_high():
    frames = np.full((8, 16, 3), 128, np.uint8)
    level = np.broadcast_to(np.linspace(0.0, 1.0, 16), (8, 16))
    shown = colour_overlay(frames, level)
    assert (shown[:, level[0] < 0.25] == 128).all()  # low saliency: the footage as it is
    assert (shown[:, level[0] >= 0.75] != 128).any(axis=-1).all()  # high saliency: coloured


def test_an_interrupted_overlay_leaves_no_video_that_looks_whole(numbered, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    front = VisualFrontEnd(CONFIG, Ramp()).eval()
    monkeypatch.setattr(overlay, "CHUNK", 4)
    calls = itertools.chain([False, True], itertools.repeat(False))  # the 2nd chunk is interrupted, once
    original = overlay.saliency_overlays
    monkeypatch.setattr(overlay, "saliency_overlays",
                        lambda *a, **k: interrupted() if next(calls) else original(*a, **k))
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        overlay.write_overlay(front, numbered, out / "overlay.mp4")
    assert list(out.iterdir()) == []
    done = overlay.write_overlay(front, numbered, out / "overlay.mp4")
    assert [path.name for path in out.iterdir()] == ["overlay.mp4"] and done == out / "overlay.mp4"
    from saliency.infra.outputs import is_own_output

    assert is_own_output(done)


CHILD = """
import sys, time
import torch
from vidcap.inference import overlay
from vidcap.model.captioner import CaptionerConfig, VisualFrontEnd, with_saliency
from vidcap.model.encoder import EncoderConfig

class Slow(torch.nn.Module):
    def forward(self, x):
        time.sleep(0.05)
        return torch.zeros(len(x), 1, *x.shape[-2:]) - torch.log(torch.tensor(float(x.shape[-2] * x.shape[-1])))

config = with_saliency(CaptionerConfig(encoder=EncoderConfig(backbone="small-cnn", pretrained=False, grid=1)),
                       "student", "runs/unused", "residual")
overlay.CHUNK = 2
overlay.write_overlay(VisualFrontEnd(config, Slow()).eval(), sys.argv[1], sys.argv[2])
"""


def test_a_killed_overlay_leaves_no_video_that_looks_whole(tmp_path):
    """SIGKILL mid-write (no Python cleanup runs): only the hidden partial file can remain, never OUT.mp4."""
    import signal
    import sys
    import time

    from tests.conftest import encode

    video = tmp_path / "long.mp4"
    encode(video, np.random.default_rng(0).integers(0, 256, (200, 32, 32, 3), np.uint8))
    out = tmp_path / "out" / "overlay.mp4"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(video), str(out)])
    deadline = time.monotonic() + 120
    while not (out.parent / ".overlay.partial.mp4").exists():
        assert child.poll() is None and time.monotonic() < deadline, "the overlay never started"
        time.sleep(0.05)
    time.sleep(0.5)  # some frames written
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    assert not out.exists() and [path.name for path in out.parent.iterdir()] == [".overlay.partial.mp4"]
