"""The shipped held-out sets: balanced labels and answer positions, distinct prompts."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from plsearch.data import heldout_dir
from plsearch.parent import skills
from plsearch.parent.heldout import constant_baseline


def _rows(skill: str) -> list[dict]:
    path = heldout_dir() / f"heldout_{skill}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("skill", skills.SKILLS)
def test_shipped_heldout_set_is_balanced(skill):
    rows = _rows(skill)
    k = skills.n_choices(skill)
    counts = Counter(r["answer"] for r in rows)
    assert sorted(counts) == list(range(k))
    assert max(counts.values()) - min(counts.values()) <= 1, counts
    assert constant_baseline(rows) == pytest.approx(1 / k, abs=1 / len(rows))
    assert len({r["prompt"] for r in rows}) == len(rows)
    assert all(len(r["choices"]) == k for r in rows)
