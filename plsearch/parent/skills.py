"""Synthetic skills that give the tiny parent abilities pruning can measurably damage.

Each skill example is a prompt, a list of answer choices and the index of the correct
one. Training text is `prompt + choices[answer]`; evaluation scores the choices by
log-likelihood (lm-eval's multiple_choice), so chance is 1 / len(choices).

- recall:   key-value pairs (single-letter keys, digit values), then a query key; the
            answer is the value that followed it. Needs attention that looks back to the
            matching key and copies what came next (an induction head). 10 choices.
- copy:     a random string of symbols, then `=>` and the same string. Corrupted copies
            (one symbol changed, two symbols swapped, one dropped) are the distractors.
- add:      two numbers below 100 and their sum; distractors are near misses.
- brackets: a bracket sequence, then whether it is balanced (yes / no).
- sort:     distinct digits, then `=>` and the digits in increasing order; distractors are
            the input order, a near-sorted order and the sorted list with one digit changed.
- reverse:  a random string of symbols, then `=>` and the string reversed; distractors are
            the plain copy and reversals with one symbol changed or two swapped.

Every generator takes a numpy Generator, so a seed fixes the whole stream, and an optional
`answer`: the index the correct choice must take. Held-out sets use it to give every
answer position (and label) the same number of items, so no constant answer beats chance.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import numpy as np

SKILLS = ("recall", "copy", "add", "brackets", "sort", "reverse")
GENERATORS_VERSION = 2  # bump when a generator changes what it writes (keys cached streams)
_LETTERS = string.ascii_lowercase
_SYMBOLS = string.ascii_lowercase + string.digits


@dataclass(frozen=True)
class SkillExample:
    skill: str
    prompt: str
    choices: tuple[str, ...]
    answer: int

    @property
    def text(self) -> str:
        """What the model trains on: the prompt followed by the right answer."""
        return self.prompt + self.choices[self.answer]

    def to_dict(self) -> dict:
        return {
            "skill": self.skill,
            "prompt": self.prompt,
            "choices": list(self.choices),
            "answer": self.answer,
        }


def n_choices(skill: str) -> int:
    """How many choices every example of `skill` has."""
    return {"recall": 10, "brackets": 2}.get(skill, 4)


def recall_example(rng: np.random.Generator, answer: int | None = None) -> SkillExample:
    n_pairs = int(rng.integers(3, 7))
    keys = [str(k) for k in rng.choice(list(_LETTERS), size=n_pairs, replace=False)]
    values = [int(v) for v in rng.integers(0, 10, size=n_pairs)]
    query = int(rng.integers(0, n_pairs))
    if answer is not None:
        values[query] = answer
    pairs = ", ".join(f"{k} {v}" for k, v in zip(keys, values))
    prompt = f"recall: {pairs}. {keys[query]}"
    choices = tuple(f" {d}" for d in range(10))
    return SkillExample("recall", prompt, choices, values[query])


def copy_example(rng: np.random.Generator, answer: int | None = None) -> SkillExample:
    length = int(rng.integers(4, 8))
    symbols = [str(s) for s in rng.choice(list(_SYMBOLS), size=length)]
    changed = list(symbols)
    pos = int(rng.integers(0, length))
    changed[pos] = _other_symbol(rng, changed[pos])
    swapped = _swap_neighbours(rng, symbols)
    dropped = symbols[:pos] + symbols[pos + 1 :] + [_other_symbol(rng, symbols[-1])]
    variants = _distinct([symbols, changed, swapped, dropped])
    prompt = "copy: " + " ".join(symbols) + " =>"
    return _multiple_choice("copy", prompt, [" " + " ".join(v) for v in variants], rng, answer)


def add_example(rng: np.random.Generator, answer: int | None = None) -> SkillExample:
    a, b = (int(x) for x in rng.integers(0, 100, size=2))
    total = a + b
    wrong: list[int] = []
    for delta in rng.permutation([1, -1, 10, -10, 2, -2, 11, -11]):
        cand = total + int(delta)
        if cand >= 0 and cand not in wrong:
            wrong.append(cand)
        if len(wrong) == 3:
            break
    return _multiple_choice("add", f"add: {a} + {b} =",
                            [f" {v}" for v in [total] + wrong], rng, answer)


def brackets_example(rng: np.random.Generator, answer: int | None = None) -> SkillExample:
    n_pairs = int(rng.integers(2, 6))
    seq = _balanced(rng, n_pairs)
    balanced = bool(rng.integers(0, 2)) if answer is None else answer == 0
    if not balanced:
        seq = _unbalance(rng, seq)
    prompt = "brackets: " + " ".join(seq) + " ->"
    return SkillExample("brackets", prompt, (" yes", " no"), 0 if balanced else 1)


def sort_example(rng: np.random.Generator, answer: int | None = None) -> SkillExample:
    length = int(rng.integers(3, 7))
    digits = [str(d) for d in rng.choice(list(string.digits), size=length, replace=False)]
    ordered = sorted(digits)
    unsorted = list(digits) if digits != ordered else _swap_neighbours(rng, ordered)
    near = _swap_neighbours(rng, ordered)
    changed = list(ordered)
    pos = int(rng.integers(0, length))
    changed[pos] = str(rng.choice([d for d in string.digits if d not in digits]))
    variants = _distinct([ordered, unsorted, near, changed])
    prompt = "sort: " + " ".join(digits) + " =>"
    return _multiple_choice("sort", prompt, [" " + " ".join(v) for v in variants], rng, answer)


def reverse_example(rng: np.random.Generator, answer: int | None = None) -> SkillExample:
    length = int(rng.integers(4, 8))
    symbols = [str(s) for s in rng.choice(list(_SYMBOLS), size=length)]
    backwards = symbols[::-1]
    changed = list(backwards)
    pos = int(rng.integers(0, length))
    changed[pos] = _other_symbol(rng, changed[pos])
    swapped = _swap_neighbours(rng, backwards)
    variants = _distinct([backwards, list(symbols), changed, swapped])
    prompt = "reverse: " + " ".join(symbols) + " =>"
    return _multiple_choice("reverse", prompt, [" " + " ".join(v) for v in variants], rng,
                            answer)


GENERATORS = {
    "recall": recall_example,
    "copy": copy_example,
    "add": add_example,
    "brackets": brackets_example,
    "sort": sort_example,
    "reverse": reverse_example,
}


def skill_stream(seed: int, exclude: set[str] | None = None,
                 skills: tuple[str, ...] = SKILLS):
    """Endless stream of examples, skills in random order; prompts in `exclude` are skipped.

    `exclude` holds the held-out prompts, so the parent never trains on them.
    """
    rng = np.random.default_rng(seed)
    exclude = exclude or set()
    while True:
        skill = skills[int(rng.integers(0, len(skills)))]
        example = GENERATORS[skill](rng)
        if example.prompt not in exclude:
            yield example


def heldout_examples(skill: str, n: int, seed: int) -> list[SkillExample]:
    """n distinct examples of one skill (distinct prompts), reproducible for a seed.

    Item i has its correct answer at position i mod (number of choices), so every answer
    position (and, for yes/no, every label) is equally frequent, also in any prefix that a
    `limit` takes, to within one item per position.
    """
    rng = np.random.default_rng(seed)
    seen: set[str] = set()
    out: list[SkillExample] = []
    k = n_choices(skill)
    while len(out) < n:
        example = GENERATORS[skill](rng, answer=len(out) % k)
        if example.prompt not in seen:
            seen.add(example.prompt)
            out.append(example)
    return out


def _multiple_choice(skill: str, prompt: str, variants: list[str], rng: np.random.Generator,
                     answer: int | None) -> SkillExample:
    """Shuffle `variants` (the first is correct) so the correct one lands at `answer`
    (a random position when None)."""
    n = len(variants)
    if answer is None:
        order = [int(i) for i in rng.permutation(n)]
    else:
        rest = [int(i) + 1 for i in rng.permutation(n - 1)]
        order = rest[:answer] + [0] + rest[answer:]
    return SkillExample(skill, prompt, tuple(variants[i] for i in order), order.index(0))


def _swap_neighbours(rng: np.random.Generator, seq: list[str]) -> list[str]:
    """`seq` with two neighbours swapped (and changed where they were equal)."""
    out = list(seq)
    i = int(rng.integers(0, len(out) - 1))
    out[i], out[i + 1] = out[i + 1], out[i]
    if out == list(seq):  # equal neighbours: swapping did nothing
        out[i] = _other_symbol(rng, out[i])
    return out


def _other_symbol(rng: np.random.Generator, symbol: str) -> str:
    while True:
        cand = str(rng.choice(list(_SYMBOLS)))
        if cand != symbol:
            return cand


def _distinct(variants: list[list[str]]) -> list[list[str]]:
    """Make every distractor differ from the answer and from each other.

    A pure function (no random draws), so fixing a clash does not shift the stream.
    """
    out: list[list[str]] = []
    for variant in variants:
        variant = list(variant)
        step = 0
        while variant in out:
            pos = step % len(variant)
            variant[pos] = _SYMBOLS[(_SYMBOLS.index(variant[pos]) + 1) % len(_SYMBOLS)]
            step += 1
        out.append(variant)
    return out


def _balanced(rng: np.random.Generator, n_pairs: int) -> list[str]:
    """A random balanced sequence of () and [] with n_pairs pairs."""
    out: list[str] = []
    stack: list[str] = []
    opened = 0
    while len(out) < 2 * n_pairs:
        can_open = opened < n_pairs
        if stack and (not can_open or rng.random() < 0.5):
            out.append(")" if stack.pop() == "(" else "]")
        else:
            bracket = "(" if rng.random() < 0.5 else "["
            stack.append(bracket)
            out.append(bracket)
            opened += 1
    return out


def _unbalance(rng: np.random.Generator, seq: list[str]) -> list[str]:
    """Change one bracket so the sequence is no longer balanced (same length)."""
    swap = {"(": ")", ")": "(", "[": "]", "]": "["}
    kind = {"(": "[", "[": "(", ")": "]", "]": ")"}
    while True:
        out = list(seq)
        pos = int(rng.integers(0, len(out)))
        out[pos] = swap[out[pos]] if rng.random() < 0.5 else kind[out[pos]]
        if not is_balanced(out):
            return out


def is_balanced(seq: list[str]) -> bool:
    pairs = {")": "(", "]": "["}
    stack: list[str] = []
    for ch in seq:
        if ch in "([":
            stack.append(ch)
        elif not stack or stack.pop() != pairs[ch]:
            return False
    return not stack
