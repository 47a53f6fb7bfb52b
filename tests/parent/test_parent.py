"""The shipped parent: a stock-transformers glm4 model whose skill tasks carry signal."""

from __future__ import annotations

import json

import pytest
import torch

from plsearch.models import builtin_parent_dir, load_model
from plsearch.parent import skills
from plsearch.parent.heldout import skill_scores


@pytest.fixture(scope="module")
def parent():
    return load_model(None)


def test_parent_loads_in_stock_transformers():
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(builtin_parent_dir()))
    assert model.config.model_type == "glm4"
    n = sum(p.numel() for p in model.parameters())
    assert 7_000_000 <= n <= 20_000_000


def test_package_size_under_40mb():
    total = sum(p.stat().st_size for p in builtin_parent_dir().parent.rglob("*") if p.is_file())
    assert total < 40 * 2**20


def _objective_skills() -> list[str]:
    """The skills the default search objective scores (configs/search/default.yaml)."""
    from plsearch.search.space import load_space

    return [t.removeprefix("plsearch_") for t in load_space("default").objective.tasks]


def _rows(skill: str) -> list[dict]:
    from plsearch.data import heldout_dir

    return [json.loads(line) for line in
            (heldout_dir() / f"heldout_{skill}.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def measured(parent):
    """Every skill measured here on its whole held-out set."""
    model, tokenizer, _ = parent
    with torch.inference_mode():
        return {s: skill_scores(model, tokenizer, _rows(s)) for s in skills.SKILLS}


@pytest.mark.parametrize("skill", _objective_skills())
def test_objective_skill_beats_the_best_constant_answer_by_10_stderr(measured, skill):
    """Each task of the default objective carries signal: the parent is at least 10 of its
    standard errors above always giving the most frequent answer position (or label)."""
    score = measured[skill]
    assert score.n >= 400
    assert score.margin_in_stderr >= 10, (skill, score)


@pytest.mark.parametrize("skill", skills.SKILLS)
def test_every_skill_is_above_the_constant_answer_and_matches_the_card(parent, measured,
                                                                      skill):
    score = measured[skill]
    assert score.acc > score.constant + 3 * score.stderr, (skill, score)
    card = json.loads((parent[2] / "card.json").read_text())
    assert score.acc == pytest.approx(card["skill_accuracy"][skill], abs=0.01)
    assert score.constant == pytest.approx(card["skill_constant_baseline"][skill])


def test_half_size_slice_scores_clearly_lower(parent, measured):
    """A half-size minitron slice (no KD) loses accuracy on the objective's tasks: the
    drop of the mean is over 5 standard errors of the difference (first 100 items)."""
    import math

    from plsearch.data import sample_windows, split_stream, token_stream
    from plsearch.families import get_family
    from plsearch.importance import compute_importance
    from plsearch.prune import Recipe, build_candidate

    model, tokenizer, _ = parent
    family = get_family(model)
    arch = family.arch_from_config(model.config).replace(
        num_hidden_layers=6, hidden_size=192, num_attention_heads=6, intermediate_size=512)
    calib = sample_windows(split_stream(token_stream(tokenizer, None, seed=0), 0.05)[0],
                           16, 128, seed=1234)
    half, _ = build_candidate(model, compute_importance(model, calib, family), arch,
                              Recipe.preset("minitron"), calib)
    objective = _objective_skills()
    with torch.inference_mode():
        small = {s: skill_scores(half, tokenizer, _rows(s)[:100]) for s in objective}
        big = {s: skill_scores(model, tokenizer, _rows(s)[:100]) for s in objective}
    drop = sum(big[s].acc - small[s].acc for s in objective) / len(objective)
    se = math.sqrt(sum(big[s].stderr ** 2 + small[s].stderr ** 2 for s in objective))
    se /= len(objective)
    assert drop > 5 * se, (drop, se, small, big)


def test_heldout_text_perplexity_beats_unigram(parent):
    """Measured here on the held-out documents: what the model card reports, and under
    half the perplexity of the training tokens' unigram model."""
    from plsearch.data import heldout_dir
    from plsearch.evaluate import perplexity

    model, tokenizer, model_dir = parent
    texts = [json.loads(line)["text"] for line in
             (heldout_dir() / "heldout_text.jsonl").read_text().splitlines()]
    ppl = perplexity(model, tokenizer, texts)
    card = json.loads((model_dir / "card.json").read_text())
    assert ppl == pytest.approx(card["heldout_text_perplexity"], rel=0.01)
    assert ppl < card["unigram_perplexity"] / 2
