"""Held-out measurements of a causal LM: the unigram baseline and multiple-choice skill
accuracy (text perplexity itself is plsearch.evaluate.perplexity).

Used by the parent recipe's model card and by its test. Skill accuracy scores every
choice by the summed log-probability of its tokens after the prompt (lm-eval's
multiple_choice `acc`), so chance is 1 / number of choices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


def unigram_perplexity(train_ids: np.ndarray, tokenizer, texts: list[str]) -> float:
    """Perplexity of the add-one unigram model of the training tokens on `texts`."""
    counts = np.bincount(train_ids, minlength=len(tokenizer)).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    nll, count = 0.0, 0
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        nll -= float(logp[ids].sum())
        count += len(ids)
    return math.exp(nll / max(count, 1))


@torch.inference_mode()
def choice_logprobs(model, tokenizer, prompt: str, choices: list[str]) -> list[float]:
    """Summed log-probability of each choice's tokens, continuing `prompt`."""
    ctx = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    seqs = [tokenizer(prompt + c, add_special_tokens=False)["input_ids"] for c in choices]
    width = max(map(len, seqs))
    pad = tokenizer.pad_token_id or 0
    batch = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])
    logp = torch.log_softmax(model(input_ids=batch).logits.float(), dim=-1)
    out = []
    for row, seq in enumerate(seqs):
        total = 0.0
        for pos in range(len(ctx), len(seq)):
            total += float(logp[row, pos - 1, seq[pos]])
        out.append(total)
    return out


@dataclass(frozen=True)
class SkillScore:
    acc: float       # share of items whose correct choice has the highest log-probability
    stderr: float    # of acc: sample sd / sqrt(n), as lm-eval reports it
    constant: float  # accuracy of the best constant answer (the most frequent position)
    n: int

    @property
    def margin_in_stderr(self) -> float:
        """How many of its standard errors acc lies above the best constant answer."""
        return (self.acc - self.constant) / max(self.stderr, 1e-12)


def skill_scores(model, tokenizer, examples: list[dict]) -> SkillScore:
    """Accuracy with its standard error, and the best constant answer's accuracy."""
    hits = []
    for ex in examples:
        scores = choice_logprobs(model, tokenizer, ex["prompt"], ex["choices"])
        hits.append(int(int(np.argmax(scores)) == ex["answer"]))
    hits_arr = np.asarray(hits, dtype=np.float64)
    n = len(hits)
    stderr = float(hits_arr.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    return SkillScore(float(hits_arr.mean()), stderr, constant_baseline(examples), n)


def constant_baseline(examples: list[dict]) -> float:
    """Accuracy of always giving the most frequent correct answer position (or label)."""
    counts = np.bincount([ex["answer"] for ex in examples])
    return float(counts.max() / len(examples))


def skill_accuracy(model, tokenizer, examples: list[dict]) -> float:
    """Share of examples whose correct choice has the highest log-probability."""
    return skill_scores(model, tokenizer, examples).acc
