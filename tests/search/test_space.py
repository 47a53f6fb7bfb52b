"""Search spaces: parsing, every error of a file at once, snapping, FixedTrial suggestions."""

from __future__ import annotations

import pytest
import yaml
from optuna.trial import FixedTrial

from plsearch.arch import ArchConfig
from plsearch.config import Alignment, configs_dir, load_device_profile
from plsearch.errors import ConfigError
from plsearch.search.space import load_space, parse_space

PARENT = ArchConfig(num_hidden_layers=8, hidden_size=256, num_attention_heads=8,
                    num_key_value_heads=2, head_dim=32, intermediate_size=768,
                    vocab_size=8192, tie_word_embeddings=True)


def _space(**changes):
    data = yaml.safe_load((configs_dir() / "search" / "default.yaml").read_text())
    data.update(changes)
    return parse_space(data, source="test.yaml")


def test_shipped_spaces_parse():
    for path in sorted((configs_dir() / "search").glob("*.yaml")):
        space = load_space(path)
        assert space.ladder.rungs and space.objective.tasks


def test_default_space_fits_the_builtin_parent_on_cpu():
    grid = load_space("default").resolve(PARENT, load_device_profile("cpu").alignment)
    assert grid.values["hidden_size"] == (128, 160, 192, 224, 256)
    assert grid.size() > 100
    for arch in grid.archs():
        arch.validate_against(PARENT)


def test_every_error_of_a_file_is_reported_together():
    data = {
        "axes": {"hidden_size": {"min": 300, "max": 100}, "depth": [1]},
        "recipe": "magic",
        "kd": {"lr": -1, "batch_size": 0},
        "ladder": {"rungs": [{"kd_steps": 10}, {"kd_steps": 5}], "promotion_rate": 2},
        "objective": {"tasks": {"plsearch_add": -1}},
        "extra": 1,
    }
    with pytest.raises(ConfigError) as info:
        parse_space(data, source="bad.yaml")
    message = str(info.value)
    for needle in ("bad.yaml", "unknown key(s) ['extra']", "axes.hidden_size",
                   "axes.depth", "recipe must be one of", "kd.batch_size", "kd.lr",
                   "ladder.rungs[1].kd_steps", "promotion_rate", "plsearch_add weight"):
        assert needle in message, needle
    assert "\n" not in message


def test_values_snap_to_alignment_and_the_parent():
    space = _space(axes={"hidden_size": [100, 130, 250, 300], "num_key_value_heads": [1, 2],
                         "num_attention_heads": [2, 8]})
    with pytest.raises(ConfigError, match=r"values \[300\] exceed the parent's 256"):
        space.resolve(PARENT, Alignment(hidden_multiple=64))
    space = _space(axes={"hidden_size": [100, 130, 250], "intermediate_size": [700]})
    grid = space.resolve(PARENT, Alignment(hidden_multiple=64, ffn_multiple=256))
    assert grid.values["hidden_size"] == (128, 256)  # nearest multiple, capped by 256
    assert grid.values["intermediate_size"] == (768,)  # 700 -> 768 = the parent's


def test_fixed_trial_off_grid_values_are_snapped():
    grid = load_space("default").resolve(PARENT, load_device_profile("cpu").alignment)
    trial = FixedTrial({"num_hidden_layers": 6, "hidden_size": 200, "num_key_value_heads": 1,
                        "num_attention_heads": 8, "intermediate_size": 700})
    with pytest.warns(UserWarning):  # FixedTrial warns about off-grid values
        arch = grid.suggest(trial)
    assert arch.hidden_size == 192  # nearest aligned value
    assert arch.intermediate_size == 640
    # 8 query heads do not fit 1 KV group of a parent with 4 heads per group: snapped to 4
    assert (arch.num_key_value_heads, arch.num_attention_heads) == (1, 4)
    arch.validate_against(PARENT)


def test_fixed_trial_on_grid_values_are_kept():
    grid = load_space("default").resolve(PARENT, load_device_profile("cpu").alignment)
    params = {"num_hidden_layers": 5, "hidden_size": 160, "num_key_value_heads": 2,
              "num_attention_heads": 8, "intermediate_size": 384}
    arch = grid.suggest(FixedTrial(params))
    assert {k: getattr(arch, k) for k in params} == params


def test_heads_that_fit_no_kv_value_are_an_error():
    space = _space(axes={"num_key_value_heads": [2], "num_attention_heads": [2, 4, 6]})
    space.resolve(PARENT, Alignment())  # 2, 4, 6 with 2 groups: fine
    space = _space(axes={"num_key_value_heads": [2], "num_attention_heads": [1, 3]})
    with pytest.raises(ConfigError, match="no value is a multiple of 2 KV groups"):
        space.resolve(PARENT, Alignment())


def test_shortgpt_space_must_keep_the_width():
    space = _space(recipe="shortgpt")
    with pytest.raises(ConfigError, match="shortgpt prunes depth only"):
        space.resolve(PARENT, Alignment(hidden_multiple=32))
    space = _space(recipe="shortgpt", axes={"num_hidden_layers": {"min": 4, "max": 8}})
    assert space.resolve(PARENT, Alignment()).values["hidden_size"] == (256,)
