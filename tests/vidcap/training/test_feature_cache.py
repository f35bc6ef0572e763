"""Feature cache: a second extraction hits, any change to the extractor misses, bad videos are skipped, the
cached tokens are exactly the ones inference computes, and shards are read lazily, one tensor at a time."""
import dataclasses

import pytest
import torch
from torch import nn

import vidcap.training.feature_cache as cache_module
from vidcap.training.feature_cache import FeatureCache, extract_features, extractor_fingerprint
from vidcap.model.captioner import CaptionerConfig, VisualFrontEnd, frames_to_tensor
from vidcap.model.encoder import EncoderConfig
from saliency.world import write_msrvtt
from vidcap.data.video import FrameSamplerConfig, read_frames

CONFIG = CaptionerConfig(sampler=FrameSamplerConfig(n_frames=4, size=(64, 64)),
                         encoder=EncoderConfig(backbone="small-cnn", pretrained=False, grid=2, weighting="none"))


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    write_msrvtt(root, n=3, size=(64, 96), n_frames=8, progress=False)
    return {p.stem: p for p in sorted(root.rglob("video*.mp4"))}


PRIOR = dataclasses.replace(CONFIG, encoder=dataclasses.replace(CONFIG.encoder, weighting="prior"))


class TinySaliency(nn.Module):
    """Frames `[N,3,H,W]` → a log-density `[N,1,H,W]`: enough for the `prior` bias to be stored too."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 3, padding=1)

    def forward(self, x):
        return self.conv(x).flatten(1).log_softmax(dim=1).view(x.shape[0], 1, *x.shape[2:])


def front_end(config=CONFIG, seed=0):
    torch.manual_seed(seed)
    return VisualFrontEnd(config, TinySaliency() if config.encoder.weighting != "none" else None)


def inference_tokens(front, path):
    """What `Captioner.caption_files` hands the decoder for one video: tokens `[M,C]`, bias `[M]` or None."""
    with torch.no_grad():
        tokens, bias = front(frames_to_tensor(read_frames(path, front.config.sampler))[None])
    return tokens[0], None if bias is None else bias[0]


def test_second_extraction_hits_the_cache(videos, tmp_path):
    front = front_end()
    cache = FeatureCache(tmp_path, extractor_fingerprint(CONFIG, front.encoder.state_dict()))
    assert extract_features(front, videos, cache, progress=False) == []
    assert cache.missing(videos) == []
    tokens, bias = cache.get("video0")
    assert tokens.shape == (4 * 2 * 2, front.out_channels) and bias is None  # T·grid² tokens
    reopened = FeatureCache(tmp_path, extractor_fingerprint(CONFIG, front.encoder.state_dict()))
    assert reopened.missing(videos) == []
    assert torch.equal(reopened.get("video0")[0], tokens)


@pytest.mark.parametrize("config", [CONFIG, PRIOR], ids=["tokens", "tokens+prior-bias"])
def test_cached_tokens_are_bit_for_bit_the_tokens_inference_computes(videos, tmp_path, config):
    """Training (on cached tokens) and inference (tokens straight from the front end) see the same float32 numbers."""
    front = front_end(config)
    cache = FeatureCache(tmp_path, extractor_fingerprint(config, front.encoder.state_dict()))
    assert extract_features(front, videos, cache, progress=False) == []
    for video_id, path in videos.items():
        tokens, bias = FeatureCache(tmp_path, cache.folder.name).get(video_id)
        direct_tokens, direct_bias = inference_tokens(front, path)
        assert tokens.dtype == direct_tokens.dtype == torch.float32 and torch.equal(tokens, direct_tokens)
        if config is PRIOR:
            assert bias.dtype == torch.float32 and torch.equal(bias, direct_bias)
        else:
            assert bias is None and direct_bias is None


def test_opening_the_cache_reads_no_tensors_and_get_reads_only_its_own(videos, tmp_path, monkeypatch):
    """An MSR-VTT-size cache (GBs) must not be held in memory: shards are opened on first use and `get`
    copies out only the requested video's tensors."""
    front = front_end(PRIOR)
    fingerprint = extractor_fingerprint(PRIOR, front.encoder.state_dict())
    extract_features(front, videos, FeatureCache(tmp_path, fingerprint), progress=False)
    opened, read = [], []
    real_open = cache_module.safe_open

    class RecordingShard:
        def __init__(self, path, framework):
            opened.append(path)
            self.shard = real_open(path, framework=framework)

        def keys(self):
            return self.shard.keys()

        def get_tensor(self, name):
            read.append(name)
            return self.shard.get_tensor(name)

    monkeypatch.setattr(cache_module, "safe_open", RecordingShard)
    cache = FeatureCache(tmp_path, fingerprint)
    assert "video1" in cache and opened == [] and read == []  # the index only
    cache.get("video1")
    assert read == ["video1/tokens", "video1/bias"] and len(opened) == 1
    cache.get("video0")
    assert read[2:] == ["video0/tokens", "video0/bias"] and len(opened) == 1  # the same shard, still open


def test_changing_the_extractor_misses_the_cache():
    base = front_end()
    fingerprint = extractor_fingerprint(CONFIG, base.encoder.state_dict())
    other_weighting = dataclasses.replace(CONFIG, encoder=dataclasses.replace(CONFIG.encoder, grid=3))
    other_frames = dataclasses.replace(CONFIG, sampler=dataclasses.replace(CONFIG.sampler, n_frames=8))
    assert extractor_fingerprint(other_weighting, base.encoder.state_dict()) != fingerprint
    assert extractor_fingerprint(other_frames, base.encoder.state_dict()) != fingerprint
    reseeded = front_end(seed=1)  # another random encoder gives other features
    assert extractor_fingerprint(CONFIG, reseeded.encoder.state_dict()) != fingerprint


def test_alpha_keys_the_cache_only_where_it_shapes_the_tokens():
    """`residual` multiplies the features by (1 + alpha·S) before they are stored; `gate` stores the features and
    maps and leaves alpha to the decoder, so changing it there reuses every cached video."""
    state = front_end().encoder.state_dict()

    def fingerprint(weighting: str, alpha: float) -> str:
        encoder = dataclasses.replace(CONFIG.encoder, weighting=weighting, alpha=alpha)
        return extractor_fingerprint(dataclasses.replace(CONFIG, encoder=encoder), state)

    assert fingerprint("gate", 1.0) == fingerprint("gate", 3.0)
    assert fingerprint("residual", 1.0) != fingerprint("residual", 3.0)
    assert fingerprint("gate", 1.0) != fingerprint("residual", 1.0)


def test_unreadable_video_is_skipped_and_reported(videos, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all")
    front = front_end()
    cache = FeatureCache(tmp_path / "cache", "x")
    skipped = extract_features(front, {"video0": videos["video0"], "broken": bad}, cache, progress=False)
    assert [video for video, _ in skipped] == ["broken"] and "broken.mp4" in skipped[0][1]
    assert "video0" in cache and "broken" not in cache


@pytest.mark.parametrize("rank", [None, 0], ids=["one process each", "rank 0 of torchrun jobs"])
def test_two_jobs_writing_one_cache_at_once_keep_each_others_videos(tmp_path, rank):
    """Both opened the cache before either wrote: neither reuses the other's shard name nor drops its index entries."""
    first, second = FeatureCache(tmp_path, "x"), FeatureCache(tmp_path, "x")
    first.write_shard({"video0": (torch.zeros(2, 3), None)}, rank)
    second.write_shard({"video1": (torch.ones(2, 3), None)}, rank)
    second.merge_partial_indexes()
    merged = FeatureCache(tmp_path, "x")
    assert torch.equal(merged.get("video0")[0], torch.zeros(2, 3)) and torch.equal(merged.get("video1")[0], torch.ones(2, 3))
    assert not list(merged.folder.glob("index-*.json"))
