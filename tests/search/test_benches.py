"""The search benches run end to end on a tiny parent (their numbers mean nothing here)."""

from __future__ import annotations

import pytest
from bench_module import load_bench as _load


def test_cached_pipeline_scores_what_the_eager_one_scores(tiny_dir, cache_dir):
    """Replaying KD lazily computes exactly the eager pipeline's scores."""
    from plsearch.config import load_device_profile
    from plsearch.search.pipeline import load_latency, load_pipeline
    from plsearch.search.space import load_space

    quality = _load("search_quality")
    space = load_space(tiny_dir["space"])
    profile = load_device_profile(tiny_dir["profile"])
    latency = load_latency(profile, tiny_dir["table"])
    eager = load_pipeline(tiny_dir["model"], space, profile, latency, seed=0)
    cached = quality.CachedPipeline(load_pipeline(tiny_dir["model"], space, profile, latency,
                                                  seed=0))
    from plsearch.families import get_family

    arch = get_family(eager.parent.config).arch_from_config(eager.parent.config).replace(
        num_hidden_layers=3, hidden_size=48)
    top = space.ladder.rungs[-1]
    model = eager.build(arch)
    steps = 0
    for rung in space.ladder.rungs:
        eager.retrain(model, steps, rung.kd_steps)
        steps = rung.kd_steps
    want = eager.score(model, top)
    value, _se, accuracy = cached.full_evaluation(arch, space)
    assert accuracy == want.accuracy
    assert cached.full_evaluation(arch, space)[0] == value  # the second time from the cache
    assert len(cached.scores) == 1


@pytest.mark.slow
def test_search_quality_runs_on_a_tiny_parent(tiny_dir, cache_dir, tmp_path, capsys):
    quality = _load("search_quality")
    assert quality.main(["--budgets", tiny_dir["budget"], "--seeds", "0", "1", "2",
                         "--trials", "2",
                         "--model", str(tiny_dir["model"]), "--space", str(tiny_dir["space"]),
                         "--device-profile", str(tiny_dir["profile"]),
                         "--latency-db", str(tiny_dir["table"]),
                         "--workdir", str(tmp_path),
                         # beside other work the screen's timings of tiny models can refuse
                         # every arch; the screen has its own tests
                         "--no-screen"]) == 0
    out = capsys.readouterr().out
    assert "winner objective" in out and "/random" in out and "measured speed-up" in out
