"""The shipped parent: a stock-transformers glm4 model that is clearly above chance."""

from __future__ import annotations

import json
import math

import pytest
import torch

from plsearch.models import builtin_parent_dir, load_model
from plsearch.parent import skills
from plsearch.parent.heldout import skill_accuracy


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


@pytest.mark.parametrize("skill", skills.SKILLS)
def test_heldout_skill_accuracy_above_chance(parent, skill):
    """Measured here on every held-out row: above chance by more than 3 standard errors
    of a guesser, and equal to what the model card reports."""
    model, tokenizer, model_dir = parent
    from plsearch.data import heldout_dir

    rows = [json.loads(line) for line in
            (heldout_dir() / f"heldout_{skill}.jsonl").read_text().splitlines()]
    chance = 1 / len(rows[0]["choices"])
    with torch.inference_mode():
        acc = skill_accuracy(model, tokenizer, rows)
    guesser_se = math.sqrt(chance * (1 - chance) / len(rows))
    assert acc > chance + 3 * guesser_se, (skill, acc, chance)
    card = json.loads((model_dir / "card.json").read_text())
    assert acc == pytest.approx(card["skill_accuracy"][skill], abs=0.01)


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
