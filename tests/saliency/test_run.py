"""A saliency run directory: `saliency.save` writes any built model as one, `saliency.load` opens it."""
import pytest
import torch

import saliency
from saliency.infra.errors import UserError
from saliency.infra.rundir import RunDir
from saliency.run import SaliencyRunConfig


def test_save_writes_a_run_that_load_opens_with_identical_outputs(tmp_path):
    model = saliency.build("student", width=8, depth=1, motion=2)
    model.train()(torch.randn(2, 6, 64, 64))  # BatchNorm statistics away from their initial values
    path = saliency.save(model.eval(), tmp_path / "run")
    loaded = saliency.load(path)
    assert loaded.spec == model.spec and loaded.motion_gap == 2
    config = RunDir(path).load_config(SaliencyRunConfig)
    assert (config.model.name, config.motion) == ("student", 2)
    x = torch.randn(1, 6, 64, 96)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_save_keeps_the_config_it_is_given(tmp_path):
    config = SaliencyRunConfig()
    config.model.options = {"width": 8, "depth": 1}
    config.seed = 7
    path = saliency.save(saliency.build("student", width=8, depth=1), tmp_path / "run", config)
    assert RunDir(path).load_config(SaliencyRunConfig).seed == 7


def test_save_refuses_an_existing_run_a_model_without_its_build_record_and_a_config_of_another_model(tmp_path):
    model = saliency.build("student", width=8, depth=1)
    saliency.save(model, tmp_path / "run")
    with pytest.raises(UserError, match="already exists"):
        saliency.save(model, tmp_path / "run")
    with pytest.raises(UserError, match="saliency.build"):
        saliency.save(torch.nn.Conv2d(3, 1, 1), tmp_path / "plain")
    with pytest.raises(UserError, match="not the model's 'student'"):
        config = SaliencyRunConfig()
        config.model.name = "teacher-mobilenetv2"
        saliency.save(model, tmp_path / "other", config)
