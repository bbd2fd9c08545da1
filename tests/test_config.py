from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from foleyflow.config import config_from_json, config_to_json, load_config
from foleyflow.errors import ConfigError


@dataclass
class Optim:
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.95)


@dataclass
class Cfg:
    name: str = "x"
    steps: int = 10
    mode: Literal["a", "b"] = "a"
    seed: Optional[int] = None
    optim: Optim = field(default_factory=Optim)


def test_yaml_overrides_and_base(tmp_path):
    (tmp_path / "base.yaml").write_text("steps: 5\noptim:\n  lr: 0.1\n")
    (tmp_path / "debug.yaml").write_text("_base: base.yaml\nname: dbg\n")
    cfg = load_config(Cfg, tmp_path / "debug.yaml", ["optim.betas=[0.8, 0.9]", "seed=3", "mode=b"])
    assert (cfg.name, cfg.steps, cfg.mode, cfg.seed) == ("dbg", 5, "b", 3)
    assert cfg.optim.lr == 0.1 and cfg.optim.betas == (0.8, 0.9)
    assert config_from_json(Cfg, config_to_json(cfg)) == cfg


@pytest.mark.parametrize("override, words", [
    (["optim.lrr=1"], "unknown config key 'optim.lrr'"),
    (["steps=ten"], "must be an integer"),
    (["mode=c"], "must be one of"),
    (["optim.betas=[1]"], "must have 2 items"),
    (["steps"], "must look like"),
])
def test_bad_config_is_one_line_error(override, words):
    with pytest.raises(ConfigError) as e:
        load_config(Cfg, None, override)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(Cfg, tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Cfg, tmp_path / "bad.yaml")


def test_float_keys_take_exponents_without_a_dot(tmp_path):
    """PyYAML reads "1e-4" as a string; a float key still takes it, in overrides and in files. Text stays an error."""
    (tmp_path / "c.yaml").write_text("optim:\n  lr: 2e-3\n")
    assert load_config(Cfg, tmp_path / "c.yaml", []).optim.lr == 2e-3
    assert load_config(Cfg, tmp_path / "c.yaml", ["optim.lr=1e-4"]).optim.lr == 1e-4
    for bad in ("optim.lr=fast", "optim.lr=nan"):
        with pytest.raises(ConfigError, match="must be a number"):
            load_config(Cfg, tmp_path / "c.yaml", [bad])


def test_mapping_values_are_checked():
    """dict[str, float] values (loss weights) get the same checks and conversions as float keys."""

    @dataclass
    class Weights:
        loss_weights: dict[str, float] = field(default_factory=lambda: {"a": 1.0})

    assert load_config(Weights, None, ["loss_weights.a=1e-4"]).loss_weights == {"a": 1e-4}
    with pytest.raises(ConfigError, match="loss_weights.a"):
        load_config(Weights, None, ["loss_weights.a=heavy"])
