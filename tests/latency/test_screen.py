"""No arch measured below the budget is built: the screen times archs near it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from latency_synthetic import synthetic_rows

from plsearch.config import Alignment, DeviceProfile, Workload
from plsearch.errors import ModelLoadError
from plsearch.families import get_family
from plsearch.families.testing import tiny_config
from plsearch.latency.lookup import Latency
from plsearch.latency.predictor import fit_predictor
from plsearch.latency.refine import fit_correction
from plsearch.latency.screen import screen_arch
from plsearch.latency.table import append_rows

PROFILE = DeviceProfile(name="tiny", kind="cpu", threads=1, cpu_clock="thread",
                        alignment=Alignment(hidden_multiple=16, ffn_multiple=32),
                        workload=Workload(batch_size=2, prompt_len=8, generated_len=4))


@pytest.fixture
def latency(tmp_path):
    predictor = fit_predictor(append_rows(tmp_path / "t.csv", synthetic_rows()))
    return Latency(predictor=predictor, table_path=Path("t.csv"), fingerprint={}, local=True,
                   validation={})


@pytest.fixture
def config():
    return tiny_config("glm4", tie_word_embeddings=True)


def test_an_arch_near_the_budget_is_measured_and_the_measurement_decides(latency, config):
    arch = get_family(config).arch_from_config(config).replace(num_hidden_layers=1)
    near = 1e9  # every arch counts as near the budget
    slow = screen_arch(arch, 1e12, latency, PROFILE, config, margin=near, pairs=2)
    assert slow.measured_tokens_per_s > 0 and not slow.feasible
    assert slow.pair == (slow.predicted_tokens_per_s, slow.measured_tokens_per_s)
    assert "measured" in slow.reason and "< budget" in slow.reason
    fast = screen_arch(arch, slow.measured_tokens_per_s / 100, latency, PROFILE, config,
                       margin=near, pairs=2, absorbed=True)
    assert fast.feasible and fast.measured_tokens_per_s is not None
    assert fast.low <= fast.measured_tokens_per_s


def test_far_from_the_budget_or_without_the_device_the_prediction_decides(latency, config):
    arch = get_family(config).arch_from_config(config)
    predicted = latency.tokens_per_s(arch, PROFILE)
    far = screen_arch(arch, predicted / 10, latency, PROFILE, config)
    assert far.feasible and far.measured_tokens_per_s is None and far.pair is None
    remote = dataclasses.replace(latency, local=False)
    near = screen_arch(arch, predicted * 1.01, remote, PROFILE, config)
    assert not near.feasible and near.measured_tokens_per_s is None
    assert "device not here" in near.reason


def test_the_correction_moves_the_screen(latency, config):
    arch = get_family(config).arch_from_config(config)
    predicted = latency.tokens_per_s(arch, PROFILE)
    corrected = latency.with_correction(fit_correction([(100.0, 50.0)]))  # half as fast
    screen = screen_arch(arch, predicted * 0.8, corrected, PROFILE, config, margin=0.01)
    assert screen.refined_tokens_per_s == pytest.approx(predicted / 2)
    assert not screen.feasible and screen.measured_tokens_per_s is None


def test_a_relative_budget_times_the_parent_beside_the_arch(latency, config):
    family = get_family(config)
    parent = family.arch_from_config(config)
    arch = parent.replace(num_hidden_layers=1)
    near = 1e9
    # The parent ran at 1e9 tokens/s when a 0.5x budget was set from it; the machine is far
    # slower now. Timed beside the parent, the arch is measured as its speed-up on the
    # scale of those 1e9 tokens/s, so the budget holds whatever the machine's speed.
    beside = screen_arch(arch, 0.5e9, latency, PROFILE, config, margin=near, pairs=3,
                         reference=(parent, 1e9))
    assert beside.feasible and beside.need == 0.5e9
    assert beside.measured_tokens_per_s > 0.5e9
    assert "3 pairs; " in beside.reason and "the parent timed beside it" in beside.reason
    # Timed alone, the arch reads this machine's raw tokens/s: the same budget refuses it.
    fixed = screen_arch(arch, 0.5e9, latency, PROFILE, config, margin=near, pairs=2)
    assert not fixed.feasible and fixed.measured_tokens_per_s < 0.5e9


def test_an_arch_is_built_only_when_its_whole_interval_clears_the_budget_with_headroom(
        latency, config):
    """Verification times the trained candidate again and must show the budget itself; an
    arch that only just clears it at the screen is not built."""
    family = get_family(config)
    parent = family.arch_from_config(config)
    arch = parent.replace(num_hidden_layers=1)
    near, then = 1e9, 1000.0  # the parent's tokens/s when the budget was set
    first = screen_arch(arch, then, latency, PROFILE, config, margin=near, pairs=6,
                        reference=(parent, then))
    assert first.low is not None and first.low <= first.measured_tokens_per_s
    assert first.feasible == (first.low >= first.need) and first.bar == first.need
    # A budget a tenth of what the arch measured: cleared with no headroom, refused with a
    # bar 100 times the budget (10 times what it measured).
    need = first.measured_tokens_per_s / 10
    for reference in ((parent, then), None):  # a relative budget, then an absolute one
        plain = screen_arch(arch, need, latency, PROFILE, config, margin=near, pairs=6,
                            reference=reference)
        assert plain.feasible and plain.low >= need and plain.headroom == 0
        spare = screen_arch(arch, need, latency, PROFILE, config, margin=near, pairs=6,
                            reference=reference, headroom=99)
        assert spare.bar == pytest.approx(need * 100)
        assert not spare.feasible and spare.low < spare.bar
        assert "+ 9900% headroom" in spare.reason and "< budget" in spare.reason
        assert spare.pair == (spare.predicted_tokens_per_s, spare.measured_tokens_per_s)
    assert "calls" in spare.reason and "beside" not in spare.reason  # timed alone


def test_the_parent_is_timed_as_verification_loads_it(latency, config, tmp_path):
    """Verification times a candidate beside the parent loaded from its folder (which ran
    2-4% faster than random weights of its shape): the screen loads it too."""
    family = get_family(config)
    parent = family.arch_from_config(config)
    folder = tmp_path / "parent"
    family.build_model(config).save_pretrained(folder)
    arch = parent.replace(num_hidden_layers=1)
    near, then = 1e9, 1000.0
    loaded = screen_arch(arch, then / 100, latency, PROFILE, config, margin=near, pairs=2,
                         reference=(parent, then), parent_dir=folder)
    assert loaded.feasible and loaded.measured_tokens_per_s > 0
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="empty has no config.json"):
        screen_arch(arch, then / 100, latency, PROFILE, config, margin=near, pairs=2,
                    reference=(parent, then), parent_dir=tmp_path / "empty")
