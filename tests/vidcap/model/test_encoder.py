"""Frame encoder and saliency weighting: token shapes per mode, the identities each mode must satisfy,
per-frame scaling, gradients, and local-only ImageNet weight loading."""
from __future__ import annotations


import pytest
import torch

from saliency import available_backbones
import torchvision

from saliency.infra.errors import UserError
from vidcap.model.encoder import (
    TRACK_CHANNELS,
    TRACK_SCALE,
    WEIGHTINGS,
    EncoderConfig,
    FrameEncoder,
    SaliencyWeighting,
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


# ----------------------------------------------------------------------------- frame encoder

def test_small_cnn_encodes_frames_at_stride_32_and_grid_pools_them():
    frames = torch.randn(4, 3, 64, 96)
    encoder = FrameEncoder(EncoderConfig(backbone="small-cnn"))
    assert encoder(frames).shape == (4, encoder.out_channels, 2, 3)
    pooled = FrameEncoder(EncoderConfig(backbone="small-cnn", grid=1))(frames)
    assert pooled.shape == (4, encoder.out_channels, 1, 1)


def test_frozen_backbone_has_no_trainable_parameters_and_keeps_batchnorm_statistics():
    encoder = FrameEncoder(EncoderConfig(backbone="small-cnn", trainable=False)).train()
    assert not any(p.requires_grad for p in encoder.parameters())
    assert not any(m.training for m in encoder.backbone.modules())
    assert not encoder(torch.randn(2, 3, 32, 32)).requires_grad
    trainable = FrameEncoder(EncoderConfig(backbone="small-cnn", trainable=True)).train()
    assert all(p.requires_grad for p in trainable.parameters()) and trainable.backbone.training


def fake_resnet18_file(path):
    state = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(state, path)
    return state


def test_pretrained_file_is_loaded_into_the_backbone(tmp_path):
    state = fake_resnet18_file(tmp_path / "weights.pth")
    encoder = FrameEncoder(EncoderConfig(backbone="resnet18", pretrained=str(tmp_path / "weights.pth")))
    assert encoder.out_channels == 512
    assert torch.equal(encoder.backbone.conv1.weight, state["conv1.weight"])
    assert torch.equal(encoder.backbone.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])


def test_torchvision_cache_file_is_used_when_present_and_never_downloaded(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    FrameEncoder(EncoderConfig(backbone="resnet18", pretrained=True))
    assert "ImageNet weights for resnet18 not found" in caplog.text
    (tmp_path / "checkpoints").mkdir()
    state = fake_resnet18_file(tmp_path / "checkpoints" / "resnet18-f37072fd.pth")
    caplog.clear()
    encoder = FrameEncoder(EncoderConfig(backbone="resnet18", pretrained=True))
    assert "not found" not in caplog.text
    assert torch.equal(encoder.backbone.conv1.weight, state["conv1.weight"])


def test_the_encoder_takes_exactly_the_names_of_the_one_backbone_registry():
    for name in available_backbones():
        assert EncoderConfig(backbone=name).backbone == name
    with pytest.raises(UserError, match="unknown backbone 'mobilenet_v2' .*mobilenetv2"):
        EncoderConfig(backbone="mobilenet_v2")


def test_bad_backbone_settings_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        FrameEncoder(EncoderConfig(backbone="resnet18", pretrained=str(tmp_path / "missing.pth")))
    with pytest.raises(UserError, match="unknown backbone"):
        FrameEncoder(EncoderConfig(backbone="vgg11"))
    with pytest.raises(UserError, match="grid"):
        FrameEncoder(EncoderConfig(backbone="small-cnn", grid=0))


@pytest.mark.parametrize("backbone, channels", [("small-cnn", 128), ("resnet18", 256), ("mobilenetv2", 96),
                                                ("mobilenetv3-small", 48)])
def test_stride_16_cuts_each_backbone_after_its_last_stride_16_stage(backbone, channels):
    encoder = FrameEncoder(EncoderConfig(backbone=backbone, pretrained=False, stride=16))
    assert encoder.out_channels == channels
    assert encoder(torch.randn(2, 3, 64, 96)).shape == (2, channels, 4, 6)


def test_normalise_gives_every_token_zero_mean_and_unit_variance_over_its_channels():
    frames = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(3))
    raw = FrameEncoder(EncoderConfig(backbone="small-cnn", stride=16))
    torch.manual_seed(0)
    tokens = FrameEncoder(EncoderConfig(backbone="small-cnn", stride=16, normalise=True))
    tokens.load_state_dict(raw.state_dict())
    out, plain = tokens(frames), raw(frames)  # [N,C,h,w]
    assert torch.allclose(out.mean(dim=1), torch.zeros(2, 4, 6), atol=1e-5)
    assert torch.allclose(out.var(dim=1, unbiased=False), torch.ones(2, 4, 6), atol=1e-3)
    centred = plain - plain.mean(dim=1, keepdim=True)
    assert torch.allclose(out, centred / centred.square().mean(dim=1, keepdim=True).sqrt(), atol=1e-4)


def test_a_saliency_pretrain_run_loads_into_the_stride_16_encoder_and_is_refused_where_blocks_are_missing(
        tmp_path):
    from saliency.pretrain import Recogniser
    from saliency.infra.rundir import RunDir

    recogniser = Recogniser("mobilenetv2")  # what `saliency pretrain` writes: the backbone to stride 32, a head
    RunDir(tmp_path / "run").save_weights(recogniser.torchvision_state(), {"model": "pretrain-mobilenetv2"})
    encoder = FrameEncoder(EncoderConfig(backbone="mobilenetv2", pretrained=str(tmp_path / "run"), stride=16))
    assert all(torch.equal(tensor, recogniser.backbone.state_dict()[name])
               for name, tensor in encoder.backbone.state_dict().items())
    with pytest.raises(UserError, match=r"does not fit the mobilenetv2 backbone \(missing 5 keys e.g. 18.0.weight"):
        FrameEncoder(EncoderConfig(backbone="mobilenetv2", pretrained=str(tmp_path / "run"), stride=32))
    with pytest.raises(UserError, match="stride"):
        EncoderConfig(stride=8)
