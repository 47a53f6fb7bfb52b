"""The synthetic skills: well-formed, seeded, and never leaking held-out prompts."""

from __future__ import annotations

import itertools

import pytest

from plsearch.parent import skills


@pytest.mark.parametrize("skill", skills.SKILLS)
def test_examples_are_well_formed(skill):
    for ex in skills.heldout_examples(skill, 200, seed=3):
        assert 0 <= ex.answer < len(ex.choices)
        assert len(set(ex.choices)) == len(ex.choices), ex  # distractors differ from answer
        assert ex.text == ex.prompt + ex.choices[ex.answer]


def test_recall_answer_is_the_queried_value():
    for ex in skills.heldout_examples("recall", 100, seed=1):
        pairs, query = ex.prompt.removeprefix("recall: ").rsplit(". ", 1)
        table = dict(p.split(" ") for p in pairs.split(", "))
        assert table[query] == ex.choices[ex.answer].strip()


def test_add_and_brackets_are_correct():
    for ex in skills.heldout_examples("add", 100, seed=2):
        a, b = ex.prompt.removeprefix("add: ").removesuffix(" =").split(" + ")
        assert int(ex.choices[ex.answer]) == int(a) + int(b)
    for ex in skills.heldout_examples("brackets", 100, seed=2):
        seq = ex.prompt.removeprefix("brackets: ").removesuffix(" ->").split(" ")
        assert skills.is_balanced(seq) == (ex.choices[ex.answer] == " yes")


def test_stream_is_seeded_and_excludes_heldout():
    first = [e.text for e in itertools.islice(skills.skill_stream(7), 50)]
    again = [e.text for e in itertools.islice(skills.skill_stream(7), 50)]
    other = [e.text for e in itertools.islice(skills.skill_stream(8), 50)]
    assert first == again and first != other
    excluded = {e.prompt for e in itertools.islice(skills.skill_stream(7), 10)}
    kept = [e.prompt for e in itertools.islice(skills.skill_stream(7, exclude=excluded), 200)]
    assert not excluded.intersection(kept)


def test_balanced_sequences_are_balanced_and_unbalanced_are_not():
    for ex in skills.heldout_examples("brackets", 300, seed=5):
        seq = ex.prompt.removeprefix("brackets: ").removesuffix(" ->").split(" ")
        assert len(seq) % 2 == 0
    labels = {ex.answer for ex in skills.heldout_examples("brackets", 100, seed=5)}
    assert labels == {0, 1}


def test_sort_and_reverse_are_correct():
    for ex in skills.heldout_examples("sort", 100, seed=4):
        digits = ex.prompt.removeprefix("sort: ").removesuffix(" =>").split(" ")
        assert ex.choices[ex.answer].split() == sorted(digits)
    for ex in skills.heldout_examples("reverse", 100, seed=4):
        symbols = ex.prompt.removeprefix("reverse: ").removesuffix(" =>").split(" ")
        assert ex.choices[ex.answer].split() == symbols[::-1]


@pytest.mark.parametrize("skill", skills.SKILLS)
def test_heldout_answer_positions_are_balanced_in_every_prefix(skill):
    """No constant answer beats chance: each position (label) is equally frequent, and a
    `limit` prefix is balanced to within one item per position."""
    n = 60
    answers = [ex.answer for ex in skills.heldout_examples(skill, n, seed=11)]
    k = skills.n_choices(skill)
    for prefix in (k, 24, n):
        counts = [answers[:prefix].count(pos) for pos in range(k)]
        assert max(counts) - min(counts) <= 1, (skill, prefix, counts)


@pytest.mark.parametrize("skill", skills.SKILLS)
def test_generators_place_the_answer_where_asked(skill):
    import numpy as np

    rng = np.random.default_rng(0)
    for pos in range(skills.n_choices(skill)):
        ex = skills.GENERATORS[skill](rng, answer=pos)
        assert ex.answer == pos and len(ex.choices) == skills.n_choices(skill)
