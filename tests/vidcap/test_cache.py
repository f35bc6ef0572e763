"""Feature cache: a second extraction hits, any change to the extractor misses, bad videos are skipped."""
import dataclasses

import pytest
import torch

from vidcap.cache import FeatureCache, extract_features, extractor_fingerprint
from vidcap.captioner import CaptionerConfig, VisualFrontEnd
from vidcap.encoder import EncoderConfig
from vidcap.synthetic import write_msrvtt
from vidcap.video import FrameSamplerConfig

CONFIG = CaptionerConfig(sampler=FrameSamplerConfig(n_frames=4, size=(64, 64)),
                         encoder=EncoderConfig(backbone="small-cnn", pretrained=False, grid=2, weighting="none"))


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    write_msrvtt(root, n=3, size=(64, 96), n_frames=8, progress=False)
    return {p.stem: p for p in sorted(root.rglob("video*.mp4"))}


def front_end(config=CONFIG, seed=0):
    torch.manual_seed(seed)
    return VisualFrontEnd(config)


def test_second_extraction_hits_the_cache(videos, tmp_path):
    front = front_end()
    cache = FeatureCache(tmp_path, extractor_fingerprint(CONFIG, front.encoder.state_dict()))
    assert extract_features(front, videos, cache, {}, progress=False) == []
    assert cache.missing(videos) == []
    tokens, bias = cache.get("video0")
    assert tokens.shape == (4 * 2 * 2, front.out_channels) and bias is None  # T·grid² tokens
    reopened = FeatureCache(tmp_path, extractor_fingerprint(CONFIG, front.encoder.state_dict()))
    assert reopened.missing(videos) == []
    assert torch.allclose(reopened.get("video0")[0], tokens)
    with torch.no_grad():  # the cached tokens are the front end's own (stored as float16)
        from vidcap.captioner import frames_to_tensor
        from vidcap.video import read_frames

        direct = front(frames_to_tensor(read_frames(videos["video0"], CONFIG.sampler))[None])[0][0]
    assert torch.allclose(direct, tokens, atol=1e-2 * direct.abs().max().item())


def test_changing_the_extractor_misses_the_cache():
    base = front_end()
    fingerprint = extractor_fingerprint(CONFIG, base.encoder.state_dict())
    other_weighting = dataclasses.replace(CONFIG, encoder=dataclasses.replace(CONFIG.encoder, grid=3))
    other_frames = dataclasses.replace(CONFIG, sampler=dataclasses.replace(CONFIG.sampler, n_frames=8))
    assert extractor_fingerprint(other_weighting, base.encoder.state_dict()) != fingerprint
    assert extractor_fingerprint(other_frames, base.encoder.state_dict()) != fingerprint
    reseeded = front_end(seed=1)  # another random encoder gives other features
    assert extractor_fingerprint(CONFIG, reseeded.encoder.state_dict()) != fingerprint


def test_unreadable_video_is_skipped_and_reported(videos, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all")
    front = front_end()
    cache = FeatureCache(tmp_path / "cache", "x")
    skipped = extract_features(front, {"video0": videos["video0"], "broken": bad}, cache, {}, progress=False)
    assert [video for video, _ in skipped] == ["broken"] and "broken.mp4" in skipped[0][1]
    assert "video0" in cache and "broken" not in cache
