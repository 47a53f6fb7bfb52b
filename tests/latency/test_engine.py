"""The engine the device profile names is the one every whole-model measurement uses."""

from __future__ import annotations

import dataclasses
import statistics

import pytest
import torch

from plsearch.config import Alignment, DeviceProfile, Workload, load_device_profile
from plsearch.errors import ConfigError, DeviceError
from plsearch.families import get_family
from plsearch.families.testing import tiny_config, tiny_model
from plsearch.latency.engine import (
    call_timer,
    close_call,
    generation_call,
    load_for_timing,
    measure_arch,
    measure_beside,
    measure_model,
    measure_tokens_per_s,
    time_beside,
)

PROFILE = DeviceProfile(name="tiny", kind="cpu", threads=1, cpu_clock="thread",
                        alignment=Alignment(hidden_multiple=16, ffn_multiple=32),
                        workload=Workload(batch_size=2, prompt_len=8, generated_len=5))


def test_shipped_profiles_name_the_engine():
    for name in ("cpu", "h200", "ascend-910b"):
        profile = load_device_profile(name)
        assert profile.engine == "hf-generate" and profile.attn_implementation == "sdpa"


def test_an_unknown_engine_is_a_config_error(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("name: p\nkind: cpu\nengine: vllm\n")
    with pytest.raises(ConfigError, match="engine must be one of"):
        load_device_profile(path)
    with pytest.raises(ConfigError, match="unknown engine"):
        generation_call(tiny_model("glm4"), torch.zeros(1, 2, dtype=torch.long), 1, "vllm")


@pytest.mark.parametrize("engine", ["hf-generate", "loop"])
def test_each_engine_generates_exactly_the_asked_tokens(engine):
    model = tiny_model("glm4").eval()
    prompt = torch.randint(0, model.config.vocab_size, (2, 6))
    model.config.eos_token_id = int(prompt[0, -1])  # an EOS would stop a plain generate
    with torch.inference_mode():
        out = generation_call(model, prompt, 7, engine)()
    if engine == "hf-generate":
        assert out.shape == (2, 6 + 7)  # min_new_tokens == max_new_tokens
    else:
        assert out.shape == (2, 1)  # the loop returns the last token of each sequence


def test_measure_model_uses_the_profiles_engine_dtype_and_attention():
    model = tiny_model("glm4")
    measured = {e: measure_model(model, dataclasses.replace(PROFILE, engine=e), repeats=2)
                for e in ("hf-generate", "loop")}
    for engine, m in measured.items():
        assert m.engine == engine and m.tokens_per_s > 0 and m.repeats == 2 and m.spread >= 0
        assert m.tokens_per_s == pytest.approx(2 * 5 / (m.median_ms / 1e3))
    assert model.config._attn_implementation == "sdpa"
    assert measure_tokens_per_s(model, PROFILE, repeats=1) > 0


def test_a_saved_model_is_loaded_for_timing_in_the_profiles_dtype(tmp_path):
    """What the screen, verification and the demo time: a float32 checkpoint under a
    bfloat16 profile comes back in bfloat16, its weights those saved, rounded once."""
    model = tiny_model("glm4")
    model.save_pretrained(tmp_path)
    bf16 = dataclasses.replace(PROFILE, dtype="bfloat16")
    loaded = load_for_timing(tmp_path, bf16)
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    weight = model.model.layers[0].mlp.down_proj.weight
    assert torch.equal(loaded.model.layers[0].mlp.down_proj.weight, weight.to(torch.bfloat16))
    assert {p.dtype for p in load_for_timing(tmp_path, PROFILE).parameters()} == {torch.float32}
    assert measure_model(loaded, bf16, repeats=1).tokens_per_s > 0


def test_measure_arch_times_random_weights_of_the_shape():
    config = tiny_config("glm4", tie_word_embeddings=True)
    parent = get_family(config).arch_from_config(config)
    small = parent.replace(num_hidden_layers=1, intermediate_size=parent.intermediate_size // 2)
    m = measure_arch(small, config, PROFILE, repeats=1)
    assert m.engine == "hf-generate" and m.tokens_per_s > 0
    absorbed = measure_arch(small, config, PROFILE, repeats=1, absorbed=True)
    assert absorbed.tokens_per_s > 0


def test_a_device_that_is_not_here_cannot_measure():
    npu = dataclasses.replace(PROFILE, kind="npu")
    with pytest.raises(DeviceError, match="not on this machine"):
        measure_model(tiny_model("glm4"), npu)


def test_time_beside_alternates_abba_and_a_slow_spell_hits_one_pair():
    calls: list[str] = []
    speed = {"model": 300.0, "reference": 200.0}  # a 1.5x model

    def call(name):
        def timed():
            calls.append(name)
            spell = 0.5 if 4 <= len(calls) - 1 <= 5 else 1.0  # the third pair: half speed
            return speed[name] * spell
        return timed

    s = time_beside(call("model"), call("reference"), pairs=4)
    assert calls == ["reference", "model", "model", "reference"] * 2
    assert s.speedup == pytest.approx(1.5) and s.spread == pytest.approx(0.0)
    assert s.tokens_per_s == pytest.approx(300.0) and s.reference_tokens_per_s == 200.0
    # a spell that hits one side of one pair moves that pair, not the median
    calls.clear()
    slow = iter([1.0, 1.0, 1.0, 1.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0])
    s = time_beside(lambda: 300.0 * next(slow), lambda: 200.0 * next(slow), pairs=5)
    assert s.speedup == pytest.approx(1.5) and s.spread > 0
    with pytest.raises(ValueError, match="pairs"):
        time_beside(call("model"), call("reference"), pairs=0)


def test_time_beside_continues_an_earlier_measurement_and_pools_its_pairs():
    calls: list[str] = []
    speeds = iter([200.0, 300.0, 330.0, 200.0, 200.0, 360.0, 390.0, 200.0])

    def call(name):
        def timed():
            calls.append(name)
            return next(speeds)
        return timed

    first = time_beside(call("model"), call("reference"), pairs=2)
    assert first.speedup == pytest.approx(1.575) and first.pairs == 2
    both = time_beside(call("model"), call("reference"), pairs=2, before=first)
    assert calls == ["reference", "model", "model", "reference"] * 2  # ABBA goes on
    assert both.pairs == 4 and both.calls[:2] == first.calls
    assert both.speedup == pytest.approx(statistics.median([1.5, 1.65, 1.8, 1.95]))


def test_the_median_interval_is_distribution_free_order_statistics():
    from math import comb

    from plsearch.latency.engine import median_interval

    assert median_interval(range(1, 11)) == (2, 9)  # 10 values: 2nd and 9th, 97.9%
    assert median_interval(range(20, 0, -1)) == (6, 15)  # 20 values, any order: 6th, 15th
    assert median_interval([3.0, 1.0, 2.0]) == (1.0, 3.0)  # too few: the whole range
    assert median_interval([5.0]) == (5.0, 5.0)
    with pytest.raises(ValueError, match="at least one"):
        median_interval([])
    for n in (6, 10, 20, 40):  # the coverage is at least 95%, and one step more is not
        low, _ = median_interval(range(n))
        k = low + 1  # x_(k), 1-based
        outside = 2 * sum(comb(n, i) for i in range(k)) / 2 ** n
        assert outside <= 0.05 < 2 * sum(comb(n, i) for i in range(k + 1)) / 2 ** n
    # time_beside reports it around the median of the pairs' ratios
    ratios = iter([1.40, 1.50, 1.45, 1.60, 1.55, 1.48, 1.52, 1.70, 1.35, 1.58])
    s = time_beside(lambda: 100.0 * next(ratios), lambda: 100.0, pairs=10)
    assert (s.low, s.high) == (pytest.approx(1.40), pytest.approx(1.60))
    assert s.low <= s.speedup <= s.high and "[95% 1.40, 1.60]" in s.shown()


def test_a_verdict_near_the_budget_is_timed_until_its_interval_clears_it():
    from plsearch.latency.engine import MAX_PAIRS_FACTOR, time_for_verdict

    def model(ratios):
        it = iter(ratios)
        return lambda: 100.0 * next(it)

    far = time_for_verdict(model([2.0] * 99), lambda: 100.0, 4, [1.5], budget=1.5)
    assert far.pairs == 4 and far.low == far.speedup == pytest.approx(2.0)
    close = time_for_verdict(model([1.52] * 99), lambda: 100.0, 4, [1.5], budget=1.5)
    assert close.pairs == 8 and close.low == pytest.approx(1.52)  # close call: twice
    # a median above the budget, a quarter of the ratios at 1.3x: 16 pairs would not clear
    # it either (their 4th lowest, 1.3x): the screen stops after the close call's 8, a
    # final verdict times all 16
    noisy = [1.3, 1.7, 1.45, 1.6] * 25
    screen = time_for_verdict(model(noisy), lambda: 100.0, 4, [1.5], budget=1.5)
    assert screen.pairs == 8 and screen.low < 1.5 <= screen.speedup
    final = time_for_verdict(model(noisy), lambda: 100.0, 4, [1.5], budget=1.5, final=True)
    assert final.pairs == MAX_PAIRS_FACTOR * 4 and final.low < 1.5 <= final.speedup
    # one low ratio in 8: timed on, and at 12 pairs the interval clears 1.5x
    rare = [1.58, 1.62, 1.48, 1.60, 1.61, 1.59, 1.63, 1.57] * 20
    cleared = time_for_verdict(model(rare), lambda: 100.0, 4, [1.5], budget=1.5)
    assert cleared.pairs == 12 and cleared.low >= 1.5
    below = time_for_verdict(model([1.3, 1.45] * 50), lambda: 100.0, 4, [], budget=1.5)
    assert below.pairs == 4 and below.speedup < 1.5  # below it: no longer timing helps
    capped = time_for_verdict(model(noisy), lambda: 100.0, 4, [1.5], budget=1.5,
                              max_pairs=22, final=True)
    assert capped.pairs == 22  # max_pairs, even where it is not a multiple of ``pairs``
    # a median below the budget with the interval reaching it: refused at once (the screen),
    # or timed on while the interval straddles it (final: verification)
    ratios = [1.3, 1.6, 1.4, 1.45, 1.35, 1.52, 1.42, 1.38] * 20
    at_once = time_for_verdict(model(ratios), lambda: 100.0, 4, [], budget=1.5)
    assert at_once.pairs == 4 and at_once.low < at_once.speedup < 1.5 <= at_once.high
    settled = time_for_verdict(model(ratios), lambda: 100.0, 4, [], budget=1.5,
                               final=True)
    assert settled.pairs > 4 and (settled.high < 1.5 or settled.pairs == MAX_PAIRS_FACTOR * 4)


def test_an_interval_is_projected_to_more_pairs_from_the_spread_of_the_ratios_timed():
    from plsearch.latency.engine import projected_low

    ratios = iter([1.3, 1.7, 1.45, 1.6] * 2)
    s = time_beside(lambda: 100.0 * next(ratios), lambda: 100.0, pairs=8)
    assert s.low == pytest.approx(1.3)  # 8 values: the whole range
    assert projected_low(s, 8) == pytest.approx(s.low)  # as many pairs as timed: itself
    # 32 pairs: the 10th lowest, at 9/31 of the way up the 8 sorted ratios (1.45, 1.45)
    assert projected_low(s, 32) == pytest.approx(1.45)


def test_a_close_call_is_a_speed_up_within_5_percent_of_a_threshold():
    assert close_call(1.55, [1.5]) and close_call(1.45, [2.0, 1.5])
    assert not close_call(1.6, [1.5]) and not close_call(1.55, []) and not close_call(1.5, [0.0])


def test_measure_beside_times_real_models_in_turn():
    parent, deep = tiny_model("glm4"), tiny_model("glm4", num_hidden_layers=6)
    s = measure_beside(parent, deep, PROFILE, pairs=3)
    assert s.pairs == 3 and s.tokens_per_s > 0 and s.reference_tokens_per_s > 0
    assert 0 < s.speedup < float("inf") and s.spread >= 0
    # call_timer times one generation: the workload's tokens per second
    assert call_timer(parent, PROFILE)() > 0
