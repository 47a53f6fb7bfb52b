"""RealPipeline on a tiny parent: what a trial builds, retrains and scores."""

from __future__ import annotations

import dataclasses

import pytest


@pytest.fixture(scope="module")
def parts(tiny_dir, tmp_path_factory):
    import os

    os.environ["PLSEARCH_CACHE"] = str(tmp_path_factory.mktemp("pipeline-cache"))
    from plsearch.config import load_device_profile
    from plsearch.search.pipeline import load_latency
    from plsearch.search.space import load_space

    profile = load_device_profile(tiny_dir["profile"])
    space = load_space(tiny_dir["space"])
    yield space, profile, load_latency(profile, tiny_dir["table"])
    del os.environ["PLSEARCH_CACHE"]


def _pipeline(tiny_dir, space, profile, latency):
    from plsearch.search.pipeline import load_pipeline

    return load_pipeline(tiny_dir["model"], space, profile, latency, seed=0)


def _small(pipeline):
    from plsearch.families import get_family

    config = pipeline.parent.config
    return get_family(config).arch_from_config(config).replace(num_hidden_layers=3,
                                                               hidden_size=48)


def test_heldout_kl_is_zero_for_the_parent_and_shrinks_with_kd(tiny_dir, parts):
    space, profile, latency = parts
    pipeline = _pipeline(tiny_dir, space, profile, latency)
    kl, kl_se, ppl = pipeline.heldout_fit(pipeline.parent)
    assert kl == pytest.approx(0.0, abs=1e-6) and kl_se == pytest.approx(0.0, abs=1e-6)
    assert ppl > 1.0
    model = pipeline.build(_small(pipeline))
    built_kl, built_se = pipeline.heldout_kl(model)
    assert built_kl > 0 and built_se > 0
    result = pipeline.retrain(model, 0, 6)
    assert [row[0] for row in result.curve] == list(range(1, 7))
    assert result.tokens == 6 * space.kd.batch_size * space.kd.seq_len
    assert all(row[2] > 0 for row in result.curve)
    assert pipeline.heldout_kl(model)[0] != built_kl  # KD changed the candidate


def test_the_same_seed_builds_and_retrains_the_same_candidate(tiny_dir, parts):
    space, profile, latency = parts
    curves = []
    for _ in range(2):
        pipeline = _pipeline(tiny_dir, space, profile, latency)
        model = pipeline.build(_small(pipeline))
        curves.append([row[2] for row in pipeline.retrain(model, 0, 3).curve])
    assert curves[0] == curves[1]


def test_space_kd_activation_checkpointing_reaches_the_built_candidate(tiny_dir, parts):
    space, profile, latency = parts
    plain = _pipeline(tiny_dir, space, profile, latency)
    checkpointed_space = dataclasses.replace(
        space, kd=dataclasses.replace(space.kd, activation_checkpointing=True))
    checkpointed = _pipeline(tiny_dir, checkpointed_space, profile, latency)
    arch = _small(plain)
    model_plain = plain.build(arch)
    model_ckpt = checkpointed.build(arch)
    assert not model_plain.is_activation_checkpointing
    assert model_ckpt.is_activation_checkpointing
    # Recomputing activations changes memory, not the maths: the same KD curve.
    curve_plain = [row[2] for row in plain.retrain(model_plain, 0, 3).curve]
    curve_ckpt = [row[2] for row in checkpointed.retrain(model_ckpt, 0, 3).curve]
    assert curve_ckpt == pytest.approx(curve_plain, rel=1e-5)


def test_a_space_file_turns_activation_checkpointing_on(tmp_path, tiny_dir):
    import yaml

    from plsearch.search.space import load_space

    raw = yaml.safe_load(tiny_dir["space"].read_text(encoding="utf-8"))
    raw.setdefault("kd", {})["activation_checkpointing"] = True
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert load_space(path).kd.activation_checkpointing is True
    assert load_space(tiny_dir["space"]).kd.activation_checkpointing is False


def test_the_parents_heldout_logits_are_computed_once_and_change_nothing(tiny_dir, parts,
                                                                         monkeypatch):
    from plsearch.search import pipeline as pipeline_module

    space, profile, latency = parts
    cached = _pipeline(tiny_dir, space, profile, latency)
    calls = []
    forward = cached.parent.forward
    monkeypatch.setattr(cached.parent, "forward",
                        lambda *a, **k: calls.append(1) or forward(*a, **k))
    batches = len(cached.ppl_windows.split(8))
    model = cached.build(_small(cached))
    first = cached.heldout_fit(model)
    assert len(calls) == batches and len(cached._teacher) == batches
    assert cached.heldout_fit(model) == first and len(calls) == batches  # no parent pass
    # over the size cap the parent runs every time, to the same numbers
    monkeypatch.setattr(pipeline_module, "TEACHER_CACHE_BYTES", 0)
    uncached = _pipeline(tiny_dir, space, profile, latency)
    assert uncached.heldout_fit(model) == first and uncached._teacher is None
