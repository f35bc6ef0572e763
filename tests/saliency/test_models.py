"""Saliency model zoo: the output contract of every model, the registry, run-directory loading and
local-only ImageNet weights."""
import warnings

import pytest
import torch
import torchvision

import saliency
from saliency.infra.errors import UserError
from saliency.models import available_models, build, count_parameters, log_density_to_map, model_size_mb
from saliency.run import load
from saliency.models.components import CentreBias, motion_input, to_probability
from saliency.models.backbones import modern_densenet_key
from saliency.infra.rundir import RunDir

FULL_TEACHERS = ["teacher-vgg16", "teacher-resnet50", "teacher-densenet121"]


@pytest.fixture(scope="module")
def models():
    """Every registered model, built once, teachers without ImageNet weights."""
    torch.manual_seed(0)
    return {name: build(name, **({} if name == "student" else {"pretrained": False})).eval()
            for name in available_models()}


def save_run(path, model):
    run = RunDir(path)
    run.save_config({"model": model.spec})
    run.save_weights(model.state_dict())
    return run


def image(batch, height, width, seed=0):
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def test_registry_has_the_design_names():
    assert {"student", *FULL_TEACHERS, "teacher-mobilenetv2"} == set(available_models())
    assert saliency.build is build and saliency.load is load and saliency.available_models is available_models


@pytest.mark.parametrize("name", available_models())
def test_output_is_a_log_density_of_the_input_size(models, name):
    with torch.no_grad():
        log_density = models[name](image(2, 64, 96))
    assert log_density.shape == (2, 1, 64, 96)
    assert torch.isfinite(log_density).all()
    assert torch.allclose(log_density.exp().sum(dim=(1, 2, 3)), torch.ones(2), atol=1e-4)


@pytest.mark.parametrize("name", available_models())
def test_features_are_four_maps_shallow_to_deep_with_declared_channels(models, name):
    model = models[name]
    with torch.no_grad():
        log_density, features = model(image(1, 64, 96), return_features=True)
    assert len(features) == 4 and len(model.feature_channels) == 4
    assert [f.shape[1] for f in features] == model.feature_channels
    assert [64 // f.shape[2] for f in features] == model.feature_strides
    sizes = [f.shape[2] * f.shape[3] for f in features]
    assert sizes == sorted(sizes, reverse=True)


@pytest.mark.parametrize("name", available_models())
def test_odd_input_sizes_come_back_at_their_own_size(models, name):
    with torch.no_grad():
        log_density = models[name](image(1, 70, 100))
    assert log_density.shape == (1, 1, 70, 100)
    assert torch.allclose(log_density.exp().sum(), torch.tensor(1.0), atol=1e-4)


def test_unknown_model_name_lists_the_known_ones():
    with pytest.raises(UserError, match="unknown model 'teacher-vgg19'.*student"):
        build("teacher-vgg19")


def test_unknown_option_is_named():
    with pytest.raises(UserError, match="no option 'widht'"):
        build("student", widht=8)


def test_student_has_no_pretrained_option():
    with pytest.raises(UserError, match="no option 'pretrained'"):
        build("student", pretrained=True)


def test_bad_student_option_value_is_a_user_error():
    with pytest.raises(UserError, match="width must be a positive integer"):
        build("student", width=0)


@pytest.mark.parametrize("options, message", [
    ({"decoder_width": 0}, "decoder_width must be a positive integer"),
    ({"pretrained": 3}, "pretrained must be true, false or a file path"),
])
def test_bad_teacher_option_value_is_a_user_error(options, message):
    with pytest.raises(UserError, match=message):
        build("teacher-mobilenetv2", **options)


def test_spec_records_name_and_every_option():
    model = build("student", width=8)
    assert model.spec == {"name": "student", "options": {"width": 8, "depth": 2, "expansion": 4, "decoder_width": 24,
                                                         "motion": False}}


@pytest.mark.parametrize("name", ["student", "teacher-mobilenetv2", *FULL_TEACHERS])
def test_a_motion_model_starts_as_its_single_frame_self_and_sees_the_difference(name):
    """Widening the input conv draws no random numbers and its new weights are zero: on a still image (zero
    difference) the motion model computes what the same model without motion does; a difference changes it."""
    options = {} if name == "student" else {"pretrained": False}
    torch.manual_seed(0)
    still = build(name, **options).eval()
    torch.manual_seed(0)
    moving = build(name, motion=True, **options).eval()
    assert (still.in_channels, moving.in_channels, moving.motion) == (3, 6, True)
    conv = next(m for m in moving.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.shape[1] == 6 and not conv.weight[:, 3:].any()
    x = image(1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(moving(motion_input(x, None)), still(x), atol=1e-6)
        conv.weight[:, 3:].normal_()
        assert not torch.allclose(moving(motion_input(x, x.roll(4, dims=-1))), still(x), atol=1e-3)
    with pytest.raises(AssertionError, match="expected 6 input channels"):
        moving(x)


@pytest.mark.parametrize("motion", [0, -2, 1.5, "yes"])
def test_motion_is_true_false_or_a_number_of_frames(motion):
    assert build("student", width=8, depth=1, motion=3).motion_gap == 3
    assert build("student", width=8, depth=1, motion=True).motion_gap == 1
    assert build("student", width=8, depth=1).motion_gap == 0
    with pytest.raises(UserError, match="motion must be true, false or a number of frames"):
        build("student", width=8, depth=1, motion=motion)


def test_a_model_looking_several_frames_back_remembers_how_many(tmp_path):
    save_run(tmp_path / "run", build("student", width=8, depth=1, motion=4))
    loaded = load(tmp_path / "run")
    assert (loaded.motion, loaded.motion_gap, loaded.spec["options"]["motion"]) == (True, 4, 4)


def test_a_motion_model_round_trips_through_its_run_directory(tmp_path):
    model = build("student", width=8, depth=1, motion=True).eval()
    save_run(tmp_path / "run", model)
    loaded = load(tmp_path / "run")
    assert loaded.motion and loaded.spec["options"]["motion"] is True
    x = motion_input(image(1, 64, 64), image(1, 64, 64, seed=1))
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_save_and_load_round_trip_gives_identical_outputs(tmp_path):
    model = build("student", width=8, depth=1)
    model.train()(image(2, 64, 64))  # move BatchNorm statistics away from their initial values
    model.eval()
    save_run(tmp_path / "run", model)
    loaded = load(tmp_path / "run")
    assert loaded.spec == model.spec and not loaded.training
    x = image(1, 64, 96, seed=1)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_teacher_loads_from_its_run_without_looking_for_imagenet_weights(tmp_path, models, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-cache"))
    save_run(tmp_path / "run", models["teacher-mobilenetv2"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = load(tmp_path / "run")
    assert loaded.spec["options"]["pretrained"] is False


def test_weights_of_another_model_are_refused(tmp_path, models):
    run = RunDir(tmp_path / "run")  # weights saved beside a config of another model
    run.save_config({"model": {"name": "teacher-mobilenetv2", "options": {}}})
    run.save_weights(models["student"].state_dict())
    expected = r"model.safetensors: weights do not fit teacher-mobilenetv2 \(missing \d+ keys"
    with pytest.raises(UserError, match=expected):
        load(run.path)


def test_weights_of_another_width_report_the_shape_mismatch(tmp_path, models):
    run = RunDir(tmp_path / "run")
    run.save_config({"model": {"name": "student", "options": {"width": 8}}})
    run.save_weights(models["student"].state_dict())
    with pytest.raises(UserError, match="weights do not fit student.*shape mismatch at"):
        load(run.path)


def test_config_without_model_section_is_named(tmp_path, models):
    run = save_run(tmp_path / "run", models["student"])
    run.save_config({"train": {"epochs": 1}})
    with pytest.raises(UserError, match="config.yaml: no valid 'model' section"):
        load(run.path)


def test_student_is_twenty_times_smaller_than_every_full_teacher(models):
    student = count_parameters(models["student"])
    for name in FULL_TEACHERS:
        assert student <= 0.05 * count_parameters(models[name]), name


def test_size_in_megabytes_counts_float32_parameters(models):
    assert model_size_mb(models["student"]) == count_parameters(models["student"]) * 4 / 2**20


def test_gradients_reach_every_student_parameter():
    model = build("student").train()
    target = torch.rand(2, 1, 64, 96)
    loss = -(model(image(2, 64, 96)) * target).sum()
    loss.backward()
    silent = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not silent


def test_pretrained_weights_load_from_a_local_torchvision_file(tmp_path):
    reference = torchvision.models.mobilenet_v2(weights=None).state_dict()
    path = tmp_path / "mobilenet_v2.pth"
    torch.save(reference, path)
    model = build("teacher-mobilenetv2", pretrained=str(path))
    backbone = model.backbone.state_dict()
    assert len(backbone) > 100
    for key, value in backbone.items():
        assert torch.equal(value, reference["features." + key]), key


def test_missing_pretrained_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="nope.pth: pretrained weights file for mobilenetv2 not found"):
        build("teacher-mobilenetv2", pretrained=str(tmp_path / "nope.pth"))


def test_pretrained_file_of_another_architecture_is_a_user_error(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"features.0.0.weight": torch.zeros(8, 3, 3, 3)}, path)
    with pytest.raises(UserError, match="does not fit the mobilenetv2 backbone.*missing"):
        build("teacher-mobilenetv2", pretrained=str(path))


def test_pretrained_with_an_empty_cache_warns_once_and_builds(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    model = build("teacher-mobilenetv2")
    build("teacher-mobilenetv2")
    notices = [r.getMessage() for r in caplog.records if "ImageNet weights" in r.getMessage()]
    assert len(notices) == 1 and str(tmp_path) in notices[0] and "random initialisation" in notices[0]
    assert all(r.levelname == "WARNING" and r.name == "saliency.infra.weights" for r in caplog.records
               if "ImageNet weights" in r.getMessage())
    assert model.spec["options"]["pretrained"] is True


def test_legacy_densenet_keys_are_renamed():
    assert modern_densenet_key("features.denseblock1.denselayer1.norm.1.weight") == \
        "features.denseblock1.denselayer1.norm1.weight"
    assert modern_densenet_key("features.norm5.bias") == "features.norm5.bias"


def test_display_map_spans_zero_to_one():
    log_density = torch.randn(2, 1, 8, 12).flatten(1).log_softmax(1).view(2, 1, 8, 12)
    shown = log_density_to_map(log_density)
    assert torch.allclose(to_probability(log_density).sum(dim=(1, 2, 3)), torch.ones(2))
    assert torch.allclose(shown.amin(dim=(1, 2, 3)), torch.zeros(2))
    assert torch.allclose(shown.amax(dim=(1, 2, 3)), torch.ones(2))


def test_centre_bias_starts_highest_at_the_image_centre():
    prior = CentreBias()((9, 13), (9, 13), (9, 13))[0, 0]
    assert prior.argmax() == 4 * 13 + 6
    assert prior[4, 6] - prior[0, 0] > 1.0


def test_centre_bias_is_placed_in_image_coordinates_not_padded_ones():
    bias = CentreBias()
    padded = bias((8, 8), (32, 32), (17, 17))[0, 0]  # cells of 4 pixels over a 17-pixel image padded to 32
    assert padded.argmax() == 2 * 8 + 2  # cell 2 covers pixels 8..11, holding the image centre (pixel 8)
    assert torch.allclose(bias.cell_coordinates(8, 32, 17)[[0, 2]], torch.tensor([-0.8125, 0.1875]))


def test_pretrained_true_uses_the_file_in_torchvision_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reference = torchvision.models.mobilenet_v2(weights=None).state_dict()
    cached = tmp_path / "hub" / "checkpoints" / "mobilenet_v2-b0353104.pth"
    cached.parent.mkdir(parents=True)
    torch.save(reference, cached)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = build("teacher-mobilenetv2", pretrained=True)
    assert torch.equal(model.backbone[0][0].weight, reference["features.0.0.weight"])


def test_old_checkpoints_without_batch_counts_still_load(tmp_path):
    reference = torchvision.models.mobilenet_v2(weights=None).state_dict()
    path = tmp_path / "old.pth"
    torch.save({k: v for k, v in reference.items() if not k.endswith("num_batches_tracked")}, path)
    model = build("teacher-mobilenetv2", pretrained=str(path))
    assert torch.equal(model.backbone[17].conv[2].weight, reference["features.17.conv.2.weight"])
