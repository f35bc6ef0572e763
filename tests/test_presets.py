"""Every preset in configs/ loads into its run config, so a typo or a renamed key fails here, not in a user's run."""
from __future__ import annotations

from pathlib import Path

import pytest

from saliency.distill import DistillConfig
from saliency.infra.config import load_config
from saliency.run import SaliencyRunConfig
from vidcap.demo import DemoConfig
from vidcap.run import VidcapRunConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
KINDS = {"saliency": SaliencyRunConfig, "vidcap": VidcapRunConfig}


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*/*.yaml")), ids=lambda path: f"{path.parent.name}/{path.name}")
def test_every_preset_loads_into_its_run_config(path):
    load_config(KINDS[path.parent.name], path)


def test_the_demo_preset_loads():
    config = load_config(DemoConfig, CONFIGS / "demo.yaml")
    assert config.captioning.data.batch_size == config.teacher.data.batch_size == 16


def test_the_distill_preset_spells_out_the_default_distillation():
    assert load_config(SaliencyRunConfig, CONFIGS / "saliency" / "distill.yaml").distill == DistillConfig()
