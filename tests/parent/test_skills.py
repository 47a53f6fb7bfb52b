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
        assert table[query.removesuffix(" ->")] == ex.choices[ex.answer].strip()


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
