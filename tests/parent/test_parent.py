"""The shipped parent: a stock-transformers glm4 model that is clearly above chance."""

from __future__ import annotations

import json

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
    model, tokenizer, model_dir = parent
    from plsearch.data import heldout_dir

    rows = [json.loads(line) for line in
            (heldout_dir() / f"heldout_{skill}.jsonl").read_text().splitlines()][:120]
    chance = 1 / len(rows[0]["choices"])
    with torch.inference_mode():
        acc = skill_accuracy(model, tokenizer, rows)
    card = json.loads((model_dir / "card.json").read_text())
    # The card's number (all held-out rows) and ours (the first 120) agree roughly,
    # and the model is well above chance.
    assert acc > chance + 0.1, (skill, acc, chance)
    assert abs(acc - card["skill_accuracy"][skill]) < 0.15


def test_heldout_text_perplexity_beats_unigram(parent):
    model_dir = parent[2]
    card = json.loads((model_dir / "card.json").read_text())
    assert card["heldout_text_perplexity"] < card["unigram_perplexity"] / 2
