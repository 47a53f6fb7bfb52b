"""The budget band is ordered by the held-out KL right after the build (band.py)."""

from __future__ import annotations

import optuna
import pytest
import yaml
from test_proposals import _setup  # the same small space as the proposal tests

from plsearch.arch import ArchConfig
from plsearch.errors import ConfigError
from plsearch.search import band as band_module
from plsearch.search import space as space_module
from plsearch.search.band import band_order, spread_order
from plsearch.search.run import SearchOptions, run_search
from plsearch.search.space import parse_space
from plsearch.search.study import storage_url
from plsearch.search.testing import FakeLatency, FakePipeline


class DepthPipeline(FakePipeline):
    """Build KL falls with depth, not with size (as on the built-in parent); counts calls."""

    def __init__(self, *args, fail=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.built, self.released, self.fail = [], 0, set(fail)

    def build(self, arch):
        if arch in self.fail:
            raise RuntimeError(f"cannot build {arch}")
        self.built.append(arch)
        return super().build(arch)

    def heldout_kl(self, model):
        arch = model["arch"]
        return 10.0 / arch.num_hidden_layers + arch.intermediate_size / 1e4, 0.01

    def release(self, model):
        self.released += 1


def _band(share: float = 0.4):
    """The budget band of test_proposals' grid (largest first) and a fresh DepthPipeline."""
    _, pipeline, _, feasible = _setup(share, DepthPipeline)
    return feasible.band(), pipeline


def _kl(pipeline, arch):
    return pipeline.heldout_kl({"arch": arch})[0]


def test_the_band_is_ordered_by_build_kl_not_size():
    band, pipeline = _band()
    assert len(band) >= 6
    order = band_order(pipeline, band, probe=len(band), seed=0)
    assert sorted(order.archs, key=str) == sorted(band, key=str)  # the same archs
    kls = [order.build_kl[a] for a in order.archs]
    assert kls == sorted(kls) and kls == [_kl(pipeline, a) for a in order.archs]
    assert order.archs != tuple(band)  # depth wins here, not parameter count
    assert order.archs[0].num_hidden_layers == max(a.num_hidden_layers for a in band)
    assert sorted(pipeline.built, key=str) == sorted(band, key=str)  # each built once
    assert pipeline.released == len(band)  # and released
    attr = order.to_attr()
    assert [ArchConfig.from_dict(a) for a, _ in attr] == list(order.archs)
    assert "lowest held-out KL" in order.describe(2) and str(order.archs[0]) in order.describe(2)


def test_a_large_band_is_probed_on_a_seeded_sample():
    band, _ = _band()
    runs = {}
    for seed in (0, 0, 1):
        _, pipeline = _band()
        order = band_order(pipeline, band, probe=3, seed=seed)
        assert len(pipeline.built) == 3 and set(order.build_kl) == set(pipeline.built)
        measured = order.archs[:3]
        assert [order.build_kl[a] for a in measured] == sorted(order.build_kl.values())
        assert list(order.archs[3:]) == [a for a in band if a not in order.build_kl]
        runs.setdefault(seed, []).append(order.archs)
        described = order.describe(5)  # 3 measured, then 2 that were not
        assert described.count("(KL ") == 3 and described.count("(not measured)") == 2
    assert runs[0][0] == runs[0][1]  # the same seed, the same sample and order
    assert set(runs[0][0][:3]) != set(runs[1][0][:3])  # another seed, another sample


def test_known_build_kls_are_not_measured_again():
    band, pipeline = _band()
    first = band_order(pipeline, band, probe=len(band), seed=0)
    _, again = _band()
    second = band_order(again, band, probe=len(band), seed=0, known=first.to_attr())
    assert again.built == [] and second.archs == first.archs


def test_params_rank_builds_nothing():
    band, pipeline = _band()
    order = band_order(pipeline, band, rank="params")
    assert order.archs == tuple(band) and pipeline.built == [] and not order.to_attr()
    assert "largest archs of the budget band" in order.describe(2)
    with pytest.raises(ValueError, match="band rank"):
        band_order(pipeline, band, rank="size")


def test_an_arch_that_cannot_be_built_ranks_last(caplog):
    band, _ = _band()
    best = band_order(_band()[1], band, probe=len(band)).archs[0]
    _, pipeline = _band()
    pipeline.fail = {best}
    order = band_order(pipeline, band, probe=len(band))
    assert order.archs[-1] == best and best not in order.build_kl
    assert "could not build" in caplog.text


def _faster(share: float = 0.8):
    """test_proposals' grid: the feasible archs of the faster two of three speed bins, their
    predicted speeds and bins."""
    _, pipeline, _, feasible = _setup(share, DepthPipeline)
    edges = feasible.bin_edges(3)
    rows = [(a, t) for a, t in zip(feasible.archs, feasible.tokens_per_s) if t >= edges[0]]
    return ([a for a, _ in rows], [t for _, t in rows],
            [feasible.speed_bin(t, 3) for _, t in rows], pipeline)


def test_the_spread_stretches_the_fast_end_and_takes_each_faster_bins_best():
    archs, speeds, bins, pipeline = _faster()
    assert len(archs) >= 12 and set(bins) == {1, 2}
    order = spread_order(pipeline, archs, speeds, bins, count=3, probe=len(archs))
    speed, kl = dict(zip(archs, speeds)), order.build_kl
    assert set(kl) == set(archs) and sorted(pipeline.built, key=str) == sorted(archs, key=str)
    assert len(order.archs) == 2  # one per faster bin, the fastest bin first
    fast, middle = order.archs
    top = [a for a, b in zip(archs, bins) if b == 2]
    median = sorted(kl[a] for a in top)[(len(top) - 1) // 2]
    good = [a for a in top if kl[a] <= median]
    assert fast in good and speed[fast] == max(speed[a] for a in good)  # its better half's fastest
    assert speed[fast] < max(speed[a] for a in top)  # not the fastest at any cost
    second = [a for a, b in zip(archs, bins) if b == 1]
    assert middle in second and kl[middle] == min(kl[a] for a in second)  # bin 1's best
    assert str(fast) in order.describe(speed) and "KL" in order.describe(speed)
    assert spread_order(pipeline, archs, speeds, bins, count=1, probe=len(archs),
                        known=order.to_attr()).archs == (fast,)


def test_the_spread_probe_is_evenly_spaced_by_speed_and_resumes_without_remeasuring():
    archs, speeds, bins, pipeline = _faster()
    order = spread_order(pipeline, archs, speeds, bins, count=2, probe=4)
    ranked = sorted(zip(speeds, map(str, archs)))
    measured = sorted((s, str(a)) for a, s in zip(archs, speeds) if a in order.build_kl)
    assert len(pipeline.built) == 4 == len(measured)
    assert measured[0] == ranked[0] and measured[-1] == ranked[-1]  # both ends included
    assert set(order.archs) <= set(order.build_kl)
    _, _, _, again = _faster()
    second = spread_order(again, archs, speeds, bins, count=2, probe=4, known=order.to_attr())
    assert again.built == [] and second.archs == order.archs
    assert spread_order(again, archs, speeds, bins, count=0).archs == ()


def test_space_files_choose_the_band_rank():
    assert space_module._BAND_RANKS == band_module.BAND_RANKS
    raw = {"axes": {"hidden_size": [64]}, "objective": {"tasks": {"plsearch_add": 1.0}},
           "ladder": {"rungs": [{"kd_steps": 1}], "band_rank": "params", "band_probe": 5}}
    ladder = parse_space(raw).ladder
    assert (ladder.band_rank, ladder.band_probe) == ("params", 5)
    raw["ladder"].update(band_rank="size", band_probe=0)
    with pytest.raises(ConfigError) as info:
        parse_space(raw)
    assert "ladder.band_rank" in str(info.value) and "ladder.band_probe" in str(info.value)
    raw["ladder"] = {"rungs": [{"kd_steps": 1}], "spread_first": 0, "spread_probe": 9}
    ladder = parse_space(raw).ladder
    assert (ladder.spread_first, ladder.spread_probe) == (0, 9)
    raw["ladder"].update(spread_first=-1, spread_probe=0)
    with pytest.raises(ConfigError) as info:
        parse_space(raw)
    assert "ladder.spread_first" in str(info.value) and "ladder.spread_probe" in str(info.value)


def test_the_search_builds_the_lowest_kl_band_archs_first_and_resumes_without_remeasuring(
        tiny_dir, tmp_path):
    out = tmp_path / "run"
    space = yaml.safe_load(tiny_dir["space"].read_text())
    space["ladder"]["band_first"] = 2
    pipelines = []

    def factory(model_dir, space, profile, latency, *, seed=0):
        pipelines.append(DepthPipeline(space, latency, profile))
        return pipelines[-1]

    def search(trials):
        return run_search(SearchOptions(
            budget="1.3x", model=str(tiny_dir["model"]), space=space,
            device_profile=str(tiny_dir["profile"]), trials=trials, out=str(out),
            study="band", verify=False, command="test"),
            latency=FakeLatency(), pipeline_factory=factory)

    search(3)
    study = optuna.load_study(study_name="band", storage=storage_url(None, out))
    ranked = [ArchConfig.from_dict(a) for a, _ in study.user_attrs["band_order"]]
    trials = study.get_trials()
    assert [ArchConfig.from_dict(t.user_attrs["arch"]) for t in trials[:2]] == ranked[:2]
    probed = len(ranked)
    assert set(pipelines[0].built[:probed]) == set(ranked)  # measured before any trial
    spread = {ArchConfig.from_dict(a): kl for a, kl in study.user_attrs["spread_kl"]}
    assert spread and set(pipelines[0].built[probed:probed + len(spread)]) == set(spread)
    third = ArchConfig.from_dict(trials[2].user_attrs["arch"])  # after the band: the spread
    assert third in spread and trials[2].user_attrs["speed_bin"] > 0
    assert trials[2].user_attrs["predicted_tokens_per_s"] == max(
        t.user_attrs["predicted_tokens_per_s"] for t in trials)
    search(4)  # resumed: one more candidate, no band arch built again for the ranking
    assert len(pipelines[1].built) == 1


def test_band_progress_is_passed_on_at_most_every_few_seconds():
    from plsearch.search.run import _every

    said = []
    say = _every(said.append, 60.0)
    for k in range(5):
        say(f"arch {k}")
    assert said == ["arch 0"] and _every(None, 1.0) is None


def test_the_default_ladder_measures_the_whole_band_of_the_built_in_space():
    # a sample of the band can miss its best arch (session 7, 2x seed 1); the shipped
    # band_probe covers the whole band of the built-in parent's space at the usual budgets
    from plsearch.latency.lookup import Latency, measured_tables
    from plsearch.latency.predictor import fit_predictor
    from plsearch.latency.table import default_db_dir, read_table
    from plsearch.search.run import plan_search

    (shipped,) = measured_tables("cpu", default_db_dir())  # not this host's: no fingerprint
    predictor = fit_predictor(read_table(shipped))
    latency = Latency(predictor=predictor, table_path=shipped, fingerprint={}, local=False,
                      validation={}, engine=predictor.engine)
    for budget in ("1.25x", "1.5x", "2x"):
        plan = plan_search(SearchOptions(budget=budget), latency=latency)
        band = plan.feasible.band()
        assert 0 < len(band) <= plan.space.ladder.band_probe, (budget, len(band))


def test_coarse_to_fine_spans_the_range_at_every_prefix():
    from plsearch.search.band import coarse_to_fine

    for n in (0, 1, 2, 7, 8, 33):
        order = coarse_to_fine(n)
        assert sorted(order) == list(range(n))  # each index once
    assert coarse_to_fine(8) == [0, 4, 2, 6, 1, 3, 5, 7]
    head = coarse_to_fine(154)[:8]  # a probe cut after 8 of 154 spans the whole band
    assert min(head) == 0 and max(head) >= 128 and max(b - a for a, b in
                                                       zip(sorted(head), sorted(head)[1:])) <= 32


def test_a_band_ranking_out_of_time_keeps_an_even_sample_and_ranks_the_rest_by_size():
    from plsearch.search.band import coarse_to_fine

    band, pipeline = _band()
    assert len(band) >= 8
    order = band_order(pipeline, band, probe=len(band), stop=lambda: len(pipeline.built) >= 3)
    expected = {band[i] for i in coarse_to_fine(len(band))[:3]}
    assert set(order.build_kl) == expected == set(pipeline.built)
    assert band[0] in expected  # the largest, and the middle of the band's sizes
    kls = [order.build_kl[a] for a in order.archs[:3]]
    assert kls == sorted(kls)
    assert list(order.archs[3:]) == [a for a in band if a not in expected]
    assert pipeline.released == 3
    # a resumed search with time to spare measures only the rest
    _, again = _band()
    full = band_order(again, band, probe=len(band), known=order.to_attr())
    assert sorted(again.built, key=str) == sorted(set(band) - expected, key=str)
    assert set(full.build_kl) == set(band)


def test_a_spread_probe_out_of_time_measures_the_fastest_first():
    archs, speeds, bins, pipeline = _faster()
    order = spread_order(pipeline, archs, speeds, bins, count=2, probe=len(archs),
                         stop=lambda: len(pipeline.built) >= 1)
    fastest = max(zip(speeds, map(str, archs)))[1]
    assert [str(a) for a in pipeline.built] == [fastest] and len(order.build_kl) == 1
    assert [str(a) for a in order.archs] == [fastest]  # the one bin measured


class SlowBuild(DepthPipeline):
    """Each build takes 0.25 s, so a short --timeout cuts the band ranking."""

    def build(self, arch):
        import time

        time.sleep(0.25)
        return super().build(arch)


def test_the_timeout_counts_from_the_start_and_cuts_the_ranking(tiny_dir, tmp_path):
    from plsearch.search.run import RANKING_SHARES

    out = tmp_path / "run"
    space = yaml.safe_load(tiny_dir["space"].read_text())
    space["ladder"]["band_probe"] = 10_000
    stages, pipelines = [], []

    def factory(model_dir, space, profile, latency, *, seed=0):
        pipelines.append(SlowBuild(space, latency, profile))
        return pipelines[-1]

    summary = run_search(SearchOptions(
        budget="1.3x", model=str(tiny_dir["model"]), space=space,
        device_profile=str(tiny_dir["profile"]), trials=100, timeout=6.0, out=str(out),
        study="cut", verify=False, command="test"),
        latency=FakeLatency(), pipeline_factory=factory, on_stage=stages.append)
    study = optuna.load_study(study_name="cut", storage=storage_url(None, out))
    planned = [s for s in stages if s.startswith("ranking the budget band")]
    band_size = int(planned[0].split("(")[1].split()[0])
    assert band_size > 10  # 0.25 s each: more than the 1.8 s the band ranking may take
    ranked = study.user_attrs.get("band_order", [])
    assert len(ranked) < band_size
    assert any(s.startswith(f"the band ranking stopped after {len(ranked)} of {band_size}")
               for s in stages)
    assert RANKING_SHARES[0] < RANKING_SHARES[1] < 1
    # no trial started 6 s after the start: a handful, not the 100 asked for
    assert 0 < summary.built < 100
    last_start = max(t.datetime_start for t in study.get_trials())
    first = min(t.datetime_start for t in study.get_trials())
    assert (last_start - first).total_seconds() < 6.0 * (1 - RANKING_SHARES[0])
