"""Frame encoder: backbones of the one registry at stride 32 or 16, grid pooling, per-token normalisation, a frozen
backbone, and local-only ImageNet and `saliency pretrain` weight loading."""
from __future__ import annotations

import pytest
import torch
import torchvision

from saliency import available_backbones
from saliency.infra.errors import UserError
from vidcap.model.encoder import EncoderConfig, FrameEncoder

pytestmark = pytest.mark.usefixtures("one_thread")


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
