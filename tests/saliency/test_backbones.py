"""One backbone registry, one set of names: teachers, `saliency pretrain` and the caption encoder build the same trunks."""
import pytest
import torch

import saliency
from saliency.infra.errors import UserError
from saliency.models.backbones import BACKBONES, backbone_trunk, build_backbone, cut_at_stride


def test_every_teacher_and_pretraining_family_is_a_registered_backbone():
    teachers = [name.removeprefix("teacher-") for name in saliency.available_models() if name.startswith("teacher-")]
    assert sorted(teachers) == sorted(saliency.TEACHER_FAMILIES)
    assert set(saliency.TEACHER_FAMILIES) <= set(saliency.available_backbones())
    for family in saliency.TEACHER_FAMILIES:
        assert saliency.build(f"teacher-{family}", pretrained=False).family == family


@pytest.mark.parametrize("family", ["mobilenetv2", "resnet50"])
def test_a_teacher_trunk_and_the_encoder_trunk_of_one_family_share_their_weight_names(family):
    """What makes a `saliency pretrain` run load into both."""
    teacher = saliency.build(f"teacher-{family}", pretrained=False).backbone.state_dict()
    encoder, _ = build_backbone(family, pretrained=False, stride=16)
    assert set(encoder.state_dict()) <= set(teacher)


def test_trunks_are_randomly_initialised_and_reach_stride_32_or_16():
    for name in BACKBONES:
        trunk = backbone_trunk(name)
        with torch.no_grad():
            out = trunk.eval()(torch.zeros(1, 3, 64, 64))
        assert out.shape[-1] in (2, 4), name  # stride 32 (VGG-16: dilated, stride 16)


def test_cut_at_stride_keeps_the_blocks_up_to_the_stride():
    trunk, channels = cut_at_stride(backbone_trunk("small-cnn"), 8)
    assert len(trunk) == 3 and channels == 64


def test_small_cnn_has_no_pretrained_weights_and_refuses_a_file(tmp_path):
    build_backbone("small-cnn", pretrained=True)
    with pytest.raises(UserError, match="small-cnn has no pretrained weights"):
        build_backbone("small-cnn", pretrained=str(tmp_path / "w.pth"))
