"""Config system: strict loading, overrides, round trip."""
from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from saliency.infra.config import apply_overrides, dump_yaml, from_dict, load_config, to_dict
from saliency.infra.errors import ConfigError


@dataclass
class OptimConfig:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class RunConfig:
    name: str = "run"
    epochs: int = 3
    mode: Literal["fast", "slow"] = "fast"
    size: Optional[tuple[int, int]] = None
    layers: list[int] = field(default_factory=lambda: [1, 2])
    optim: OptimConfig = field(default_factory=OptimConfig)


def test_defaults_fill_missing_keys():
    config = from_dict(RunConfig, {"epochs": 7})
    assert config.epochs == 7 and config.optim.lr == 1e-3 and config.layers == [1, 2]


def test_unknown_key_is_named_in_the_error():
    with pytest.raises(ConfigError, match=r"optim.*unknown key 'lrr'"):
        from_dict(RunConfig, {"optim": {"lrr": 1}})


def test_wrong_type_is_named_in_the_error():
    with pytest.raises(ConfigError, match=r"config.epochs: expected int, got 'three'"):
        from_dict(RunConfig, {"epochs": "three"})
    with pytest.raises(ConfigError, match="expected int"):
        from_dict(RunConfig, {"epochs": True})


def test_literal_and_tuple_are_checked():
    with pytest.raises(ConfigError, match="not one of"):
        from_dict(RunConfig, {"mode": "medium"})
    with pytest.raises(ConfigError, match="expected 2 items"):
        from_dict(RunConfig, {"size": [1, 2, 3]})
    assert from_dict(RunConfig, {"size": [4, 5]}).size == (4, 5)


def test_int_is_accepted_where_float_is_expected():
    assert from_dict(RunConfig, {"optim": {"lr": 1}}).optim.lr == 1.0


def test_overrides_parse_values_as_yaml():
    data = apply_overrides({"optim": {"lr": 0.1}}, ["optim.lr=2e-4", "epochs=5", "size=[8, 16]", "name=abc"])
    config = from_dict(RunConfig, data)
    assert config.optim.lr == 2e-4 and config.epochs == 5 and config.size == (8, 16) and config.name == "abc"


def test_malformed_override_is_a_config_error():
    with pytest.raises(ConfigError, match="expected key=value"):
        apply_overrides({}, ["epochs"])
    with pytest.raises(ConfigError, match="is a value, not a section"):
        apply_overrides({"epochs": 3}, ["epochs.x=1"])


def test_yaml_round_trip_keeps_every_value(tmp_path):
    config = from_dict(RunConfig, {"epochs": 9, "size": [2, 3], "optim": {"betas": [0.5, 0.6]}})
    path = tmp_path / "c.yaml"
    path.write_text(dump_yaml(config))
    again = load_config(RunConfig, path)
    assert again == config and to_dict(again)["optim"]["betas"] == [0.5, 0.6]


def test_load_config_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(RunConfig, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1,\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(RunConfig, bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(RunConfig, listy)
