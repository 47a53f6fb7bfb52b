"""Synthetic skills that give the tiny parent abilities pruning can measurably damage.

Each skill example is a prompt, a list of answer choices and the index of the correct
one. Training text is `prompt + choices[answer]`; evaluation scores the choices by
log-likelihood (lm-eval's multiple_choice), so chance is 1 / len(choices).

- recall:   key-value pairs, then a query key; the answer is its value. Needs attention
            that looks back to the matching key (induction-style heads). 10 choices.
- copy:     a random string of symbols, then `=>` and the same string. Corrupted copies
            (one symbol changed, two symbols swapped, one dropped) are the distractors.
- add:      two numbers below 100 and their sum; distractors are near misses.
- brackets: a bracket sequence, then whether it is balanced (yes / no).

Every generator takes a numpy Generator, so a seed fixes the whole stream.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import numpy as np

SKILLS = ("recall", "copy", "add", "brackets")
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


def recall_example(rng: np.random.Generator) -> SkillExample:
    n_pairs = int(rng.integers(3, 7))
    keys: list[str] = []
    while len(keys) < n_pairs:
        key = "".join(rng.choice(list(_LETTERS), size=2))
        if key not in keys:
            keys.append(key)
    values = [str(int(v)) for v in rng.integers(0, 10, size=n_pairs)]
    query = int(rng.integers(0, n_pairs))
    pairs = ", ".join(f"{k} {v}" for k, v in zip(keys, values))
    prompt = f"recall: {pairs}. {keys[query]} ->"
    choices = tuple(f" {d}" for d in range(10))
    return SkillExample("recall", prompt, choices, int(values[query]))


def copy_example(rng: np.random.Generator) -> SkillExample:
    length = int(rng.integers(4, 8))
    symbols = list(rng.choice(list(_SYMBOLS), size=length))
    changed = list(symbols)
    pos = int(rng.integers(0, length))
    changed[pos] = _other_symbol(rng, changed[pos])
    swapped = list(symbols)
    i = int(rng.integers(0, length - 1))
    swapped[i], swapped[i + 1] = swapped[i + 1], swapped[i]
    if swapped == symbols:  # equal neighbours: swapping did nothing
        swapped[i] = _other_symbol(rng, swapped[i])
    dropped = symbols[:pos] + symbols[pos + 1 :] + [_other_symbol(rng, symbols[-1])]
    if dropped == symbols:
        dropped[-1] = _other_symbol(rng, dropped[-1])
    variants = _distinct([symbols, changed, swapped, dropped])
    order = rng.permutation(4)
    choices = tuple(" " + " ".join(variants[k]) for k in order)
    prompt = "copy: " + " ".join(symbols) + " =>"
    return SkillExample("copy", prompt, choices, int(np.flatnonzero(order == 0)[0]))


def add_example(rng: np.random.Generator) -> SkillExample:
    a, b = (int(x) for x in rng.integers(0, 100, size=2))
    total = a + b
    wrong: list[int] = []
    for delta in rng.permutation([1, -1, 10, -10, 2, -2, 11, -11]):
        cand = total + int(delta)
        if cand >= 0 and cand not in wrong:
            wrong.append(cand)
        if len(wrong) == 3:
            break
    values = [total] + wrong
    order = rng.permutation(4)
    choices = tuple(f" {values[k]}" for k in order)
    return SkillExample("add", f"add: {a} + {b} =", choices, int(np.flatnonzero(order == 0)[0]))


def brackets_example(rng: np.random.Generator) -> SkillExample:
    n_pairs = int(rng.integers(2, 6))
    seq = _balanced(rng, n_pairs)
    balanced = bool(rng.integers(0, 2))
    if not balanced:
        seq = _unbalance(rng, seq)
    prompt = "brackets: " + " ".join(seq) + " ->"
    return SkillExample("brackets", prompt, (" yes", " no"), 0 if balanced else 1)


GENERATORS = {
    "recall": recall_example,
    "copy": copy_example,
    "add": add_example,
    "brackets": brackets_example,
}


def skill_stream(seed: int, exclude: set[str] | None = None):
    """Endless stream of examples, skills in random order; prompts in `exclude` are skipped.

    `exclude` holds the held-out prompts, so the parent never trains on them.
    """
    rng = np.random.default_rng(seed)
    exclude = exclude or set()
    while True:
        skill = SKILLS[int(rng.integers(0, len(SKILLS)))]
        example = GENERATORS[skill](rng)
        if example.prompt not in exclude:
            yield example


def heldout_examples(skill: str, n: int, seed: int) -> list[SkillExample]:
    """n distinct examples of one skill (distinct prompts), reproducible for a seed."""
    rng = np.random.default_rng(seed)
    seen: set[str] = set()
    out: list[SkillExample] = []
    while len(out) < n:
        example = GENERATORS[skill](rng)
        if example.prompt not in seen:
            seen.add(example.prompt)
            out.append(example)
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
