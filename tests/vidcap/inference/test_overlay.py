"""Saliency overlays with a motion saliency model: every frame of `vidcap caption --overlay` is seen with the one
before it, across the chunks the video is read in, and so is every frame of an evaluation report's thumbnail strip;
every map is shown as `saliency predict` shows it (the probability min-max scaled to [0, 1])."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest
import torch

from saliency import colour_overlay
from saliency.infra.media import ffmpeg_path
from vidcap.model.captioner import CaptionerConfig, VisualFrontEnd, with_saliency
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
    config = with_saliency(CaptionerConfig(encoder=EncoderConfig(backbone="small-cnn", pretrained=False, grid=1)),
                           "student", "runs/unused", "residual")
    front = VisualFrontEnd(config, Ramp()).eval()
    frames = np.full((2, 8, 16, 3), 128, np.uint8)
    shown = overlay.saliency_overlays(front, frames)
    probability = np.exp(np.linspace(0.0, 3.0, 16))
    unit = np.broadcast_to((probability - probability.min()) / (probability.max() - probability.min()), (8, 16))
    expected = colour_overlay(frames[0], unit)
    assert shown.shape == frames.shape and np.abs(shown[0].astype(int) - expected.astype(int)).max() <= 1
    assert unit[0, 0] == 0.0 and (shown[:, :, 0] != shown[:, :, -1]).any()  # the ramp shows
