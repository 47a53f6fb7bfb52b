"""run_search with the fake pipeline: study contract, counting, failures, resume, locks."""

from __future__ import annotations

import json

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from plsearch.errors import ConfigError
from plsearch.search.record import trial_rows
from plsearch.search.run import SearchOptions, built_count, run_search
from plsearch.search.study import dead_trials, open_study, run_lock, storage_url
from plsearch.search.testing import FakeLatency, FakePipeline, fake_pipeline

STUDY_ATTRS = {"parent", "parent_arch", "parent_params", "parent_tokens_per_s",
               "parent_accuracy", "budget", "device_profile", "workload",
               "device_fingerprint", "latency_db", "sampler", "seed", "versions", "command",
               "space", "run_dir"}
TRIAL_ATTRS = {"arch", "params", "predicted_tokens_per_s", "recipe", "rung", "rungs_total",
               "feasible", "constraint", "seconds"}
BUILT_ATTRS = TRIAL_ATTRS | {"kd_steps", "kd_tokens", "kd_curve", "scores", "accuracy",
                             "perplexity", "rung_scores"}


def _opts(tiny_dir, out, **changes):
    base = {"budget": "1.3x", "model": str(tiny_dir["model"]), "space": str(tiny_dir["space"]),
            "device_profile": str(tiny_dir["profile"]), "trials": 4, "out": str(out),
            "study": "fake", "verify": False, "command": "test"}
    return SearchOptions(**{**base, **changes})


def _grid(tiny_dir):
    from plsearch.config import load_device_profile
    from plsearch.families import get_family
    from plsearch.models import read_config
    from plsearch.search.space import load_space

    config = read_config(tiny_dir["model"])
    parent = get_family(config).arch_from_config(config)
    alignment = load_device_profile(tiny_dir["profile"]).alignment
    return load_space(tiny_dir["space"]).resolve(parent, alignment)


def _load(out, name="fake"):
    return optuna.load_study(study_name=name, storage=storage_url(None, out))


def test_fake_search_records_the_contract(tiny_dir, tmp_path):
    out = tmp_path / "run"
    seen = []
    summary = run_search(_opts(tiny_dir, out), on_trial=seen.append, latency=FakeLatency(),
                         pipeline_factory=fake_pipeline)
    study = _load(out)
    trials = study.get_trials()
    assert summary.built == built_count(trials) == 4
    assert len(seen) == len(trials)
    assert STUDY_ATTRS <= set(study.user_attrs)
    assert study.user_attrs["budget"]["spec"] == "1.3x"
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE] * 2
    for t in trials:
        assert TRIAL_ATTRS <= set(t.user_attrs), t.number
        json.dumps(t.user_attrs)  # JSON-serializable
        if t.user_attrs["feasible"]:
            assert BUILT_ATTRS <= set(t.user_attrs)
            assert 0 <= t.user_attrs["rung"] < t.user_attrs["rungs_total"]
        else:
            assert t.user_attrs["constraint"] > 0 and t.user_attrs["rung"] == -1
        # the sampler's constraint is the budget gap
        assert t.system_attrs["constraints"] == [t.user_attrs["constraint"]]
    assert any(t.user_attrs.get("candidate_dir") for t in trials)
    assert (out / "trials.csv").read_text().count("\n") == len(trials) + 1
    assert json.loads((out / "run.json").read_text())["study"] == "fake"
    assert set(summary.front) <= {t.number for t in trials}


def test_a_failing_candidate_is_a_fail_trial_and_the_search_goes_on(tiny_dir, tmp_path):
    out = tmp_path / "run"

    doomed = []  # the first two archs built fail

    def fail_when(arch) -> bool:
        if len(doomed) < 2:
            doomed.append(arch)
        return arch in doomed

    def factory(model_dir, space, profile, latency, *, seed=0):
        return FakePipeline(space, latency, profile, fail_when=fail_when)

    # band_rank params and no spread: nothing is built before the trials (the probes' own
    # failures: tests/search/test_band.py), so the first two builds are trials'
    space = yaml.safe_load(tiny_dir["space"].read_text())
    space["ladder"].update(band_rank="params", spread_first=0)
    summary = run_search(_opts(tiny_dir, out, trials=5, space=space), latency=FakeLatency(),
                         pipeline_factory=factory)
    trials = _load(out).get_trials()
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 2
    for t in failed:
        assert t.user_attrs["fail_reason"].startswith("RuntimeError: fake build failure")
    assert built_count(trials) == 5  # failed builds use up the trial budget too
    # ... but are not reported as built ("1 candidates built ... 1 failed", issue 15)
    assert summary.built == 5 - len(failed) and summary.failed == len(failed)


def test_resume_after_a_killed_process(tiny_dir, tmp_path):
    out = tmp_path / "run"
    run_search(_opts(tiny_dir, out, trials=2), latency=FakeLatency(),
               pipeline_factory=fake_pipeline)
    # What a process killed mid-trial leaves: a RUNNING trial with its params and attrs.
    study = open_study(storage_url(None, out), "fake", optuna.samplers.RandomSampler(seed=1))
    params = {"num_hidden_layers": 2, "hidden_size": 32, "num_key_value_heads": 1,
              "num_attention_heads": 2, "intermediate_size": 64}
    study.enqueue_trial(params)
    killed = study.ask()
    _grid(tiny_dir).suggest(killed)
    killed.set_user_attr("feasible", True)
    killed.set_user_attr("rung_scores", [0.99])
    before = {t.number: t.state for t in study.get_trials()}

    summary = run_search(_opts(tiny_dir, out, trials=4), latency=FakeLatency(),
                         pipeline_factory=fake_pipeline)
    trials = _load(out).get_trials()
    assert summary.recovered == [killed.number]
    stale = trials[killed.number]
    assert stale.state == TrialState.FAIL
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert dead_trials(trials) == {killed.number: retried[0].number}
    rows = {row["number"]: row for row in trial_rows(_load(out))}
    assert rows[killed.number]["fail_reason"].startswith("worker died")
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
    assert retried[0].params == stale.params
    assert "fail_reason" not in retried[0].user_attrs
    for number, state in before.items():  # completed trials are kept as they were
        if state == TrialState.COMPLETE:
            assert trials[number].state == TrialState.COMPLETE
    assert built_count(trials) == 4
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def test_resume_with_other_settings_is_refused(tiny_dir, tmp_path):
    out = tmp_path / "run"
    run_search(_opts(tiny_dir, out, trials=1), latency=FakeLatency(),
               pipeline_factory=fake_pipeline)
    with pytest.raises(ConfigError, match="started with another budget spec"):
        run_search(_opts(tiny_dir, out, trials=2, budget="1.2x"), latency=FakeLatency(),
                   pipeline_factory=fake_pipeline)


def test_a_second_search_in_the_same_folder_is_refused(tiny_dir, tmp_path):
    out = tmp_path / "run"
    with run_lock(out), pytest.raises(ConfigError, match="another plsearch search is running"):
        run_search(_opts(tiny_dir, out), latency=FakeLatency(),
                   pipeline_factory=fake_pipeline)


def test_unreachable_budget_fails_before_any_trial(tiny_dir, tmp_path):
    with pytest.raises(ConfigError, match="unreachable.*fastest arch"):
        run_search(_opts(tiny_dir, tmp_path / "run", budget="100x"), latency=FakeLatency(),
                   pipeline_factory=fake_pipeline)
    assert not (tmp_path / "run" / "study.db").exists()


def test_cli_offers_every_sampler():
    from plsearch.cli.search import SAMPLER_CHOICES
    from plsearch.search.study import SAMPLERS

    assert SAMPLER_CHOICES == SAMPLERS


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "random"])
def test_other_samplers(tiny_dir, tmp_path, sampler):
    out = tmp_path / "run"  # 6 > the 4 random startup trials: the models propose too
    summary = run_search(_opts(tiny_dir, out, trials=6, sampler=sampler), latency=FakeLatency(),
                         pipeline_factory=fake_pipeline)
    assert summary.built == 6
    assert _load(out).user_attrs["sampler"] == sampler


def test_the_search_stops_when_no_arch_meets_the_budget_as_measured():
    """FeasibleSampler.narrow left nothing (sampler.exhausted): no further trial runs."""
    from types import SimpleNamespace

    from plsearch.search.run import _optimize

    study = optuna.create_study(directions=["maximize", "maximize"])
    ran = []

    def objective(trial):
        ran.append(trial.number)
        trial.set_user_attr("feasible", True)  # a built candidate, as the search counts
        return 0.5, 100.0

    opts = SearchOptions(budget="1.5x", trials=3)
    _optimize(study, objective, opts, None, SimpleNamespace(exhausted=True))
    assert ran == []
    _optimize(study, objective, opts, None, SimpleNamespace(exhausted=False))
    assert ran == [0, 1, 2]
