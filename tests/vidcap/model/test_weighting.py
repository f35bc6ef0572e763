"""Saliency weighting: one strategy object per mode, token shapes, the identities each mode must satisfy, per-frame
scaling, gradients, the track tokens, and what each mode hands the decoder."""
from __future__ import annotations

import pytest
import torch

from saliency.infra.errors import UserError
from vidcap.model.encoder import EncoderConfig
from vidcap.model.weighting import (
    ALPHA_WEIGHTINGS,
    STRATEGIES,
    TRACK_CHANNELS,
    TRACK_SCALE,
    WEIGHTINGS,
    SaliencyWeighting,
    build_weighting,
    saliency_weights,
    track_tokens,
    weight_features,
)

B, T, C, h, w = 2, 3, 8, 4, 5
H, W = 32, 40

pytestmark = pytest.mark.usefixtures("one_thread")


def features() -> torch.Tensor:
    return torch.randn(B, T, C, h, w, generator=torch.Generator().manual_seed(0))


def log_density() -> torch.Tensor:
    logits = torch.randn(B * T, 1, H * W, generator=torch.Generator().manual_seed(1))
    return logits.log_softmax(dim=-1).view(B * T, 1, H, W)  # the saliency models' output


def plain_tokens(f: torch.Tensor) -> torch.Tensor:
    return f.permute(0, 1, 3, 4, 2).reshape(f.shape[0], -1, f.shape[2])  # [B,T·h·w,C]


@pytest.mark.parametrize("mode", WEIGHTINGS)
def test_every_mode_gives_tokens_of_the_documented_shape(mode):
    tokens, bias = weight_features(features(), log_density(), mode, alpha=0.5)
    k = 1 if mode == "pool" else h * w
    assert tokens.shape == (B, T * k, C)
    assert (bias is None) == (mode not in ("prior", "gate"))
    if mode == "prior":
        assert bias.shape == (B, T * k) and torch.isfinite(bias).all() and (bias <= 0).all()
    if mode == "gate":
        assert bias.shape == (B, T * k) and (bias >= 0).all() and (bias <= 1).all()


def test_a_four_dimensional_feature_map_is_one_video():
    tokens, bias = weight_features(features()[0], log_density()[:T], "prior")
    assert tokens.shape == (1, T * h * w, C) and bias.shape == (1, T * h * w)


def test_uniform_saliency_makes_every_mode_reduce_to_plain_features():
    f, ones = features(), torch.ones(B, T, 1, H, W)
    plain, _ = weight_features(f, None, "none")
    assert torch.equal(plain, plain_tokens(f))
    assert torch.allclose(weight_features(f, ones, "multiply")[0], plain)
    assert torch.allclose(weight_features(f, ones, "residual", alpha=0.7)[0], 1.7 * plain)
    assert torch.allclose(weight_features(f, ones, "pool")[0], f.mean(dim=(-2, -1)), atol=1e-6)
    tokens, bias = weight_features(f, ones, "prior")
    assert torch.equal(tokens, plain) and torch.equal(bias, torch.zeros(B, T * h * w))
    tokens, gains = weight_features(f, ones, "gate")
    assert torch.equal(tokens, plain) and torch.equal(gains, torch.ones(B, T * h * w))


def test_saliency_on_one_location_makes_pool_return_that_locations_feature():
    f = features()
    spot = torch.zeros(B, T, 1, H, W)
    spot[..., 20, 9] = 1.0  # pixel (20, 9) lies in cell (20 // 8, 9 // 8) = (2, 1) of the 4×5 grid
    pooled, _ = weight_features(f, spot, "pool")
    assert torch.allclose(pooled, f[..., 2, 1], atol=1e-6)


def test_saliency_is_scaled_to_unit_maximum_per_frame():
    pattern = torch.rand(1, 1, H, W, generator=torch.Generator().manual_seed(2))
    frames = torch.cat([0.2 * pattern, 25.0 * pattern, torch.full_like(pattern, 3.0), torch.zeros_like(pattern)])
    weights = saliency_weights(frames, (h, w))  # [4,1,h,w]
    assert torch.allclose(weights.amax(dim=(-2, -1)), torch.ones(4, 1))
    assert torch.allclose(weights[0], weights[1])
    assert torch.allclose(weights[2:], torch.ones(2, 1, h, w))  # a constant map → all ones
    assert weights.min() >= 0


def test_upsampling_saliency_to_a_finer_feature_map_works():
    weights = saliency_weights(torch.rand(2, 1, 2, 3), (4, 5))
    assert weights.shape == (2, 1, 4, 5) and torch.allclose(weights.amax(dim=(-2, -1)), torch.ones(2, 1))


@pytest.mark.parametrize("mode", WEIGHTINGS)
def test_log_density_input_equals_probability_input(mode):
    log_p = log_density()
    from_log = weight_features(features(), log_p, mode)
    from_prob = weight_features(features(), log_p.exp(), mode)
    assert torch.allclose(from_log[0], from_prob[0], atol=1e-6)
    if mode in ("prior", "gate"):
        assert torch.allclose(from_log[1], from_prob[1], atol=1e-5)


@pytest.mark.parametrize("mode", WEIGHTINGS)
@pytest.mark.parametrize("log_input", [False, True])
def test_gradients_reach_features_and_saliency(mode, log_input):
    f = features().requires_grad_()
    s = (log_density() if log_input else log_density().exp()).requires_grad_()
    tokens, bias = weight_features(f, s, mode)
    (tokens.square().sum() + (bias.sum() if bias is not None else 0)).backward()
    assert f.grad is not None and f.grad.abs().sum() > 0
    if mode == "none":
        assert s.grad is None
    else:
        assert s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0


def blob(x: float, y: float, sigma: float) -> torch.Tensor:
    """A Gaussian map `[1,1,H,W]` centred at pixel (x, y)."""
    rows, cols = torch.meshgrid(torch.arange(H).float(), torch.arange(W).float(), indexing="ij")
    return torch.exp(-((cols - x) ** 2 + (rows - y) ** 2) / (2 * sigma**2))[None, None]


def test_track_follows_the_peak_from_the_first_frame_and_nothing_else():
    # one clip: the blob moves right and grows; a weaker, still blob elsewhere must not pull the track
    maps = torch.cat([blob(8 + 8 * t, 12, 2 + t) + 0.4 * blob(30, 28, 3) for t in range(T)])  # [T,1,H,W]
    tokens = track_tokens(maps, 1, T, C)  # [1,T,C+3]
    assert tokens.shape == (1, T, C + TRACK_CHANNELS) and torch.all(tokens[..., :C] == 0)
    x, y, spread = (tokens[0, :, C:] / torch.tensor(TRACK_SCALE)).unbind(-1)
    assert torch.allclose(x, torch.arange(T) * 8.0 / W, atol=2e-3)  # centres 8, 16, 24 px, minus the first
    assert torch.allclose(y, torch.zeros(T), atol=1e-3) and torch.all(spread.diff() > 0.1) and spread[0] == 0


@pytest.mark.parametrize("mode", WEIGHTINGS)
def test_track_appends_one_token_per_frame_and_widens_every_token(mode):
    f = features()
    plain, plain_bias = weight_features(f, None if mode == "none" else log_density(), mode, alpha=0.5)
    tokens, bias = weight_features(f, None if mode == "none" else log_density(), mode, alpha=0.5, track=True)
    tracked = 0 if mode == "none" else T  # without maps there is nothing to follow, but the width stays
    assert tokens.shape == (B, plain.shape[1] + tracked, C + TRACK_CHANNELS)
    assert torch.equal(tokens[:, : plain.shape[1], :C], plain)
    assert torch.all(tokens[:, : plain.shape[1], C:] == 0)
    if plain_bias is None:
        assert bias is None
    else:
        assert torch.equal(bias[:, : plain.shape[1]], plain_bias)
        assert torch.all(bias[:, plain.shape[1]:] == (1.0 if mode == "gate" else 0.0))


def test_a_uniform_map_gives_a_still_track():
    assert torch.allclose(track_tokens(torch.ones(B * T, 1, H, W), B, T, C), torch.zeros(B, T, C + TRACK_CHANNELS))


def test_module_wraps_the_function_with_the_configs_mode_alpha_and_track():
    weighting = SaliencyWeighting(EncoderConfig(weighting="residual", alpha=0.3))
    f, s = features(), log_density()
    assert torch.equal(weighting(f, s)[0], weight_features(f, s, "residual", 0.3)[0])
    tracked = SaliencyWeighting(EncoderConfig(weighting="gate", track=True))
    assert torch.equal(tracked(f, s)[0], weight_features(f, s, "gate", 1.0, track=True)[0])


def test_weighting_errors_name_the_problem():
    with pytest.raises(UserError, match="unknown saliency weighting"):
        SaliencyWeighting(EncoderConfig(weighting="attention"))
    with pytest.raises(UserError, match="needs saliency"):
        weight_features(features(), None, "residual")
    with pytest.raises(ValueError, match="one map per frame"):
        weight_features(features(), torch.rand(B, 1, H, W), "multiply")


@pytest.mark.parametrize("mode", WEIGHTINGS)
def test_alpha_shapes_the_tokens_exactly_of_the_modes_that_say_so(mode):
    """What a feature cache keys on (`EncoderConfig.token_settings`) is what changes the tokens."""
    maps = None if mode == "none" else log_density()
    weak, _ = weight_features(features(), maps, mode, alpha=0.5)
    strong, _ = weight_features(features(), maps, mode, alpha=2.0)
    assert (not torch.equal(weak, strong)) == STRATEGIES[mode].alpha_in_tokens
    assert ("alpha" in EncoderConfig(weighting=mode).token_settings()) == STRATEGIES[mode].alpha_in_tokens
    assert (mode in ALPHA_WEIGHTINGS) == STRATEGIES[mode].uses_alpha


def test_each_mode_applies_its_own_signal_in_the_decoder():
    memory, maps = torch.randn(2, 5, 16), torch.rand(2, 5)
    gated, mask = build_weighting("gate", alpha=2.0).into_decoder(memory, maps)
    assert mask is None and torch.allclose(gated, memory * (1 + 2.0 * maps[..., None]))
    kept, bias = build_weighting("prior").into_decoder(memory, maps.log())
    assert torch.equal(kept, memory) and torch.equal(bias, maps.log()[:, None, None, :])
    for mode in ("none", "multiply", "residual", "pool"):
        assert build_weighting(mode).into_decoder(memory, None) == (memory, None)


def test_an_unknown_mode_is_refused_when_the_config_is_built():
    with pytest.raises(UserError, match="unknown saliency weighting 'attention'"):
        EncoderConfig(weighting="attention")
