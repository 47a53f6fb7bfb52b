"""The profiler on a tiny model: plan, measure, and rows the table accepts."""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch

from plsearch.config import Alignment, DeviceProfile, Workload
from plsearch.errors import ConfigError
from plsearch.families import get_family
from plsearch.families.testing import tiny_config
from plsearch.latency.profiler import (
    ProfileSettings,
    axes_from_parent,
    decode_contexts,
    depth_ladder,
    load_space_axes,
    plan_measurements,
    profile_rows,
    sample_archs,
    sample_spread,
    widths,
)
from plsearch.latency.table import append_rows, read_table
from plsearch.latency.timers import CpuTimer

TINY_SETTINGS = ProfileSettings(block_shapes=3, prefill_fractions=(0.5, 1.0), decode_points=2,
                                models=1, depths=2, block_stack=2, warmup=0, repeats=2,
                                model_repeats=1,
                                rounds=1, max_spread=100.0, engine_steps=2)
PROFILE = DeviceProfile(name="tiny", kind="cpu", threads=1,
                        alignment=Alignment(hidden_multiple=16, ffn_multiple=32),
                        workload=Workload(batch_size=2, prompt_len=8, generated_len=3))


@pytest.fixture
def config():
    return tiny_config("glm4", tie_word_embeddings=True)


def test_plan_covers_every_part_in_a_seeded_order(config):
    plan = plan_measurements(config, PROFILE, TINY_SETTINGS, seed=1)
    assert plan == plan_measurements(config, PROFILE, TINY_SETTINGS, seed=1)
    assert plan != plan_measurements(config, PROFILE, TINY_SETTINGS, seed=2)
    kinds = {(m.part, m.phase) for m in plan}
    assert kinds == {("block", "prefill"), ("block", "decode"), ("head", "prefill"),
                     ("head", "decode"), ("model", "prefill"), ("model", "workload")}
    parent = get_family(config).arch_from_config(config)
    blocks = {widths(m.arch) for m in plan if m.part == "block"}
    assert widths(parent) in blocks and len(blocks) == 3
    models = [(m.arch, m.absorbed) for m in plan if m.part == "model"]
    ladder = [(a, ab) for a, ab in models if widths(a) == widths(parent)]
    # the parent's widths at the shallowest and the deepest depth, as the parent's type
    assert sorted(a.num_hidden_layers for a, _ in ladder) == [1, 1, parent.num_hidden_layers,
                                                              parent.num_hidden_layers]
    assert not any(ab for _, ab in ladder)
    assert depth_ladder(axes_from_parent(parent, PROFILE), parent, 2) == [
        parent.replace(num_hidden_layers=1), parent]
    # the other whole models, timed as both types, are validation shapes held out
    others = [(a, ab) for a, ab in models if (a, ab) not in ladder]
    assert len(others) == 4 and all(widths(a) not in blocks for a, _ in others)
    for m in plan:
        m.arch.validate_against(parent)
        assert m.arch.hidden_size % 16 == 0 and m.arch.intermediate_size % 32 == 0


def test_measurements_become_valid_table_rows(config, tmp_path):
    plan = plan_measurements(config, PROFILE, TINY_SETTINGS, seed=0)
    seen = []
    rows = profile_rows(plan, config, CpuTimer("thread"), PROFILE, TINY_SETTINGS,
                        on_progress=lambda done, total, m: seen.append((done, total))).rows
    assert seen[-1] == (len(plan), len(plan))
    table = append_rows(tmp_path / "t.csv", rows)
    assert read_table(tmp_path / "t.csv").shape == table.shape == (len(plan), table.shape[1])
    assert (table["median_ms"] > 0).all() and (table["clock"] == "thread").all()
    assert (table["engine"] == "hf-generate").all() and (table["load_avg"] >= 0).all()
    blocks = table[table["part"] == "block"]
    assert (blocks["num_hidden_layers"] == TINY_SETTINGS.block_stack).all()
    assert (table.loc[table["part"] == "head", "num_hidden_layers"] == 0).all()
    workload = table[table["phase"] == "workload"].iloc[0]
    assert (workload["generated_len"], workload["context"]) == (3, 10)
    # glm4's whole-model rows are timed as glm4 and as glm (its post-norm-absorbed type)
    models = table[table["part"] == "model"]
    # (and the depth ladder's, as glm4 only: 2 depths, 2 phases)
    assert sorted(models["model_type"]) == ["glm"] * 2 + ["glm4"] * 6
    assert (table.loc[table["part"] != "model", "model_type"] == "glm4").all()
    plan_models = [m for m in plan if m.part == "model"]
    assert {m.arch for m in plan_models if m.absorbed} < {m.arch for m in plan_models}


def test_decode_contexts_span_the_workload():
    assert decode_contexts(128, 64, 4, 1024) == [1, 65, 128, 129, 192]
    assert decode_contexts(128, 64, 4, 100) == [1, 34, 67, 100]


def test_space_yaml_axes(tmp_path, config):
    parent = get_family(config).arch_from_config(config)
    path = tmp_path / "space.yaml"
    path.write_text("axes:\n  hidden_size: {min: 32, max: 64, step: 16}\n"
                    "  num_key_value_heads: [1, 2]\n  intermediate_size: [64, 128]\n"
                    "budget: 1.5\n")
    axes = load_space_axes(path, parent)
    assert axes.hidden_size == (32, 48, 64) and axes.num_hidden_layers == (4,)
    archs = sample_archs(axes, parent, 5, random.Random(0))
    assert len({widths(a) for a in archs}) == 5


def test_space_yaml_reports_every_problem(tmp_path, config):
    parent = get_family(config).arch_from_config(config)
    path = tmp_path / "space.yaml"
    path.write_text("hidden_size: [32, 512]\nintermediate_size: {min: 0}\nwidth: [1]\n")
    with pytest.raises(ConfigError) as info:
        load_space_axes(path, parent)
    message = str(info.value)
    assert "unknown axis width" in message
    assert "hidden_size values [512] exceed the parent's 64" in message
    assert "intermediate_size must be" in message


def test_axes_from_parent_are_aligned(config):
    parent = get_family(config).arch_from_config(config)
    axes = axes_from_parent(parent, PROFILE)
    assert axes.hidden_size == (16, 32, 48, 64)
    assert axes.intermediate_size == (32, 64, 96, 128)
    assert axes.num_key_value_heads == (1, 2)


def test_head_rows_time_a_model_without_layers(config):
    plan = [m for m in plan_measurements(config, PROFILE, TINY_SETTINGS) if m.part == "head"]
    rows = profile_rows(plan[:1], config, CpuTimer(), PROFILE, TINY_SETTINGS).rows
    assert rows[0]["num_hidden_layers"] == 0 and torch.get_num_threads() == 1


def test_rows_are_interleaved_over_rounds_and_pooled(config):
    settings = dataclasses.replace(TINY_SETTINGS, rounds=3, repeats=1)
    plan = plan_measurements(config, PROFILE, settings, seed=0)
    visits = []
    run = profile_rows(plan, config, CpuTimer("thread"), PROFILE, settings,
                       on_progress=lambda done, total, m: visits.append(m))
    assert len(visits) == 3 * len(plan) and not run.refused and run.remeasured == 0
    rounds = [visits[i * len(plan):(i + 1) * len(plan)] for i in range(3)]
    assert rounds[0] != rounds[1] and sorted(map(id, rounds[0])) == sorted(map(id, rounds[1]))
    assert {r["repeats"] for r in run.rows} <= {3}  # one timed call per visit, pooled


def test_rows_too_noisy_are_measured_again_then_refused(config):
    # A spread threshold no real timing meets: every row is re-measured once, then refused.
    settings = dataclasses.replace(TINY_SETTINGS, rounds=2, max_spread=1e-12, retries=1)
    plan = [m for m in plan_measurements(config, PROFILE, settings, seed=0)
            if m.part == "block"][:3]
    visits = []
    run = profile_rows(plan, config, CpuTimer("thread"), PROFILE, settings,
                       on_progress=lambda done, total, m: visits.append(total))
    assert run.rows == [] and len(run.refused) == 3 and run.remeasured == 3
    assert len(visits) == 2 * 2 * 3 and visits[-1] == 12
    assert all(spread > 1e-12 for _, spread in run.refused)


def test_loop_engine_rows_name_it(config):
    profile = dataclasses.replace(PROFILE, engine="loop")
    plan = [m for m in plan_measurements(config, profile, TINY_SETTINGS) if m.part != "block"]
    rows = profile_rows(plan[:3], config, CpuTimer(), profile, TINY_SETTINGS).rows
    assert {r["engine"] for r in rows} == {"loop"}


def test_spread_ignores_one_slow_round_of_three_but_not_rounds_that_drift_apart():
    # A slow spell of the machine doubles one round: the other two agree, the row passes.
    assert sample_spread([[10.0, 10.2, 9.9], [20.0, 21.0, 19.5], [10.1, 10.0, 10.3]]) < 0.02
    # Every round at its own level (drift through the row's visits): that is a spread.
    spread = sample_spread([[10.0, 10.1], [12.0, 12.1], [14.0, 14.1]])
    assert spread == pytest.approx(2.0 / 12.05, rel=0.01)
    # One round: the samples' own p10-p90 range.
    assert sample_spread([[10.0, 10.0, 10.0, 10.0]]) == 0.0
