"""Budgets: parsing both forms, and the unreachable-budget error."""

from __future__ import annotations

import pytest

from plsearch.arch import ArchConfig
from plsearch.errors import ConfigError
from plsearch.search.budget import check_reachable, parse_budget


@pytest.mark.parametrize("spec, kind, value", [
    ("1.5x", "relative", 1.5), ("2X", "relative", 2.0), (" 1.25 x ", "relative", 1.25),
    ("2500tok/s", "absolute", 2500.0), ("2500 tokens/s", "absolute", 2500.0),
    ("12.5 TOK/S", "absolute", 12.5),
])
def test_parse(spec, kind, value):
    budget = parse_budget(spec)
    assert (budget.kind, budget.value) == (kind, value)


@pytest.mark.parametrize("spec", ["", "fast", "0x", "-1x", "1.5", "2500", "x1.5", "10 tok"])
def test_parse_rejects(spec):
    with pytest.raises(ConfigError, match="1.5x.*2500tok/s"):
        parse_budget(spec)


def test_tokens_per_s():
    assert parse_budget("1.5x").tokens_per_s(1000.0) == 1500.0
    assert parse_budget("2500tok/s").tokens_per_s(1000.0) == 2500.0
    assert parse_budget("1.5x").to_dict(1000.0) == {"spec": "1.5x", "tokens_per_s": 1500.0}


def test_unreachable_budget_names_the_best_reachable_value():
    arch = ArchConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                      num_key_value_heads=2, head_dim=16, intermediate_size=64,
                      vocab_size=256, tie_word_embeddings=False)
    budget = parse_budget("3x")
    check_reachable(budget, 3000.0, 3100.0, arch, 1000.0)  # reachable: no error
    with pytest.raises(ConfigError) as info:
        check_reachable(budget, 3000.0, 2400.0, arch, 1000.0)
    message = str(info.value)
    assert "unreachable" in message and "2,400 tokens/s" in message and "2.40x" in message
    assert str(arch) in message


@pytest.mark.parametrize(("spec", "normal"), [
    ("1.5X", "1.5x"), (" 1.5 x ", "1.5x"), ("2500 Tokens/s", "2500tok/s"),
    ("2500TOK / S", "2500tok/s"),
])
def test_one_spelling_per_budget(spec, normal):
    """1.5X and 1.5x are one budget, so they name one study (issue 15)."""
    from plsearch.search.run import default_study_name

    assert parse_budget(spec).spec == normal
    assert default_study_name("tiny", parse_budget(spec).spec) == \
        default_study_name("tiny", normal)
