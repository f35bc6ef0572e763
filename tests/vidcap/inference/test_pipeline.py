"""The overlapped pipeline: decoding in a background thread and several videos per batch give exactly the captions
and tokens of one video at a time, on every backend and with a motion saliency model (which sees the frame before
each frame); unreadable videos keep their place; the commands take `--backend`."""
from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
import torch

from saliency.backends import EXPORT_FOLDER, exported_session, on_backend
from saliency.infra.errors import UserError
from saliency.models import build_untrained
from vidcap.inference import pipeline
from vidcap.inference.front_end_backend import use_backend
from vidcap.model.captioner import Captioner, CaptionerConfig, VisualFrontEnd, frames_to_tensor, with_saliency
from vidcap.data.video import FrameSamplerConfig, read_clip, read_frames
from vidcap.model.encoder import EncoderConfig
from vidcap.inference.pipeline import CaptionsAhead, caption_videos, decode_ahead, visual_tokens
from vidcap.run import load_run

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def captioner(tiny_captioner, tmp_path):
    """A copy of the tiny captioner's run (exports are written into it), and its videos plus a broken file."""
    shutil.copytree(tiny_captioner / "captioner", tmp_path / "captioner")
    videos = sorted(str(path) for path in (tiny_captioner / "vidcap-data").rglob("*.mp4"))
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    return tmp_path / "captioner", videos[:3] + [str(tmp_path / "broken.mp4")] + videos[3:]


def one_at_a_time(model, videos: list[str]) -> list[str | None]:
    """Each video's caption by `Captioner.caption_files`, None where it cannot be read: the sequential path."""
    captions = []
    for video in videos:
        try:
            captions.append(model.caption_files([video])[0])
        except UserError:
            captions.append(None)
    return captions


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_overlapped_batched_captions_are_those_of_one_video_at_a_time(captioner, backend):
    run, videos = captioner
    model, config = load_run(run)
    assert use_backend(model.front, config, backend, run / EXPORT_FOLDER) == (backend, backend)
    results = list(caption_videos(model, list(enumerate(videos)), batch_videos=3))
    assert [key for key, _, _ in results] == list(range(len(videos)))
    assert [caption for _, caption, _ in results] == one_at_a_time(model, videos)
    assert [str(error).split(":")[0] for _, _, error in results if error] == [videos[3]]


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_overlapped_batched_tokens_with_saliency_equal_those_of_one_video_at_a_time(captioner, backend):
    _, videos = captioner
    torch.manual_seed(0)
    config = with_saliency(CaptionerConfig(sampler=FrameSamplerConfig(n_frames=3, size=(32, 64), resize="stretch"),
                                           encoder=EncoderConfig(backbone="small-cnn", pretrained=False, grid=2)),
                           "student", weighting="prior")
    front = VisualFrontEnd(config, build_untrained("student", width=8, depth=1, decoder_width=8).eval()).eval()
    if backend != "torch":
        front.encoder.session = exported_session(front.encoder, backend, (32, 64), output="features")
        front.saliency_model = on_backend(front.saliency_model, backend, (32, 64))
    good = [video for video in videos if "broken" not in video]
    for key, tokens, bias, error in visual_tokens(front, list(enumerate(good)), batch_videos=4):
        with torch.no_grad():
            alone, alone_bias = front(frames_to_tensor(read_frames(good[key], config.sampler))[None])
        assert error is None and torch.equal(tokens, alone[0]) and torch.equal(bias, alone_bias[0])


def motion_student() -> torch.nn.Module:
    """A tiny untrained motion student whose motion weights are random (`see_motion` starts them at zero), so the
    frame before each frame changes its maps."""
    model = build_untrained("student", motion=True, width=8, depth=1, decoder_width=8)
    first = next(module for module in model.modules() if isinstance(module, torch.nn.Conv2d))
    with torch.no_grad():
        first.weight[:, 3:].normal_(std=0.5)  # [out, 6, k, k]: the difference's half
    return model.eval()


def test_overlapped_batched_captions_with_a_motion_saliency_model_are_those_of_one_video_at_a_time(captioner):
    run, videos = captioner
    model, _ = load_run(run)
    torch.manual_seed(0)
    config = with_saliency(model.config, "student", weighting="prior")
    motion = Captioner(config, model.tokenizer, motion_student(), seed=0).eval()
    results = list(caption_videos(motion, list(enumerate(videos)), batch_videos=3))
    assert [caption for _, caption, _ in results] == one_at_a_time(motion, videos)
    assert [str(error).split(":")[0] for _, _, error in results if error] == [videos[3]]


def test_overlapped_batched_tokens_with_a_motion_saliency_model_see_the_frames_before(captioner):
    _, videos = captioner
    torch.manual_seed(0)
    config = with_saliency(CaptionerConfig(sampler=FrameSamplerConfig(n_frames=3, size=(32, 64), resize="stretch"),
                                           encoder=EncoderConfig(backbone="small-cnn", pretrained=False, grid=2)),
                           "student", weighting="prior")
    front = VisualFrontEnd(config, motion_student()).eval()
    good = [video for video in videos if "broken" not in video]
    moved = []
    for key, tokens, bias, error in visual_tokens(front, list(enumerate(good)), batch_videos=4):
        clip = read_clip(good[key], config.sampler, previous=True)
        frames, previous = frames_to_tensor(clip.frames)[None], frames_to_tensor(clip.previous)[None]  # (1, T, 3, H, W)
        with torch.no_grad():
            alone, alone_bias = front(frames, previous=previous)
            moving, still = (front.clip_saliency(frames, previous=before) for before in (previous, frames))
        assert error is None and torch.equal(tokens, alone[0]) and torch.equal(bias, alone_bias[0])
        assert torch.equal(moving, still) == torch.equal(previous, frames)  # the maps see motion, where there is any
        moved.append(not torch.equal(previous, frames))
    assert any(moved)


def test_captions_ahead_follows_requests_that_skip_or_stride(captioner):
    run, videos = captioner
    model, _ = load_run(run)
    ahead = CaptionsAhead(model, videos, batch_videos=2)
    asked = [videos[1], videos[2], videos[4], videos[6], videos[0]]  # a gap, a stride of 2, one already passed
    expected = one_at_a_time(model, asked)
    assert [ahead.caption(video) for video in asked] == expected
    with pytest.raises(UserError, match="broken.mp4"):
        CaptionsAhead(model, videos).caption(videos[3])


def decoder_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "video-decoder"]


def test_closing_the_stream_stops_its_decoding_thread(captioner):
    _, videos = captioner
    stream = decode_ahead(list(enumerate(videos * 3)), FrameSamplerConfig(n_frames=2, size=(32, 64)), prefetch=2)
    first = next(stream)
    assert first.key == 0 and first.frames.shape == (2, 3, 32, 64) and decoder_threads()
    stream.close()
    assert not decoder_threads()


def test_an_unexpected_error_while_decoding_reaches_the_caller(captioner, monkeypatch):
    _, videos = captioner

    def fail(path, sampler, **options):
        raise RuntimeError(f"decoder crashed on {Path(path).name}")

    monkeypatch.setattr(pipeline, "read_clip", fail)
    with pytest.raises(RuntimeError, match="decoder crashed on"):
        list(decode_ahead(list(enumerate(videos)), FrameSamplerConfig()))
    assert not decoder_threads()


def test_caption_and_extract_take_a_backend(captioner, tiny_captioner, cli, tmp_path):
    run, videos = captioner
    vidcap = cli("vidcap", preceded_by=("vidcap caption: skipped",))
    code, out, err = vidcap("caption", *videos[:3], "--model", run, "--backend", "onnxruntime-int8")
    assert code == 0, err
    assert len(out.strip().splitlines()) == 3
    assert sorted(path.name.rsplit("-", 1)[0] for path in (run / EXPORT_FOLDER).glob("*.onnx")) == \
        ["encoder-onnxruntime-32x64", "encoder-onnxruntime-int8-32x64"]
    code, _, err = vidcap("caption", videos[0], "--model", run, "--backend", "tpu")
    assert code == 2
    vidcap.assert_one_line_error(err, "unknown backend 'tpu' (known: auto, torch, onnxruntime, onnxruntime-int8)")
    cache = tmp_path / "cache"
    settings = ["--config", run / "config.yaml", "--set", f"data.cache_dir={cache}", "--splits", "test", "--quiet"]
    for backend in ("torch", "onnxruntime"):
        code, _, err = vidcap("extract", *settings, "--backend", backend)
        assert code == 0, err
    assert len([path for path in cache.iterdir() if path.is_dir()]) == 2  # the backend is part of the fingerprint
