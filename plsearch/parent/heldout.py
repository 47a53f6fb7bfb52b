"""Held-out measurements of a causal LM: the unigram baseline and multiple-choice skill
accuracy (text perplexity itself is plsearch.evaluate.perplexity).

Used by the parent recipe's model card and by its test. Skill accuracy scores every
choice by the summed log-probability of its tokens after the prompt (lm-eval's
multiple_choice `acc`), so chance is 1 / number of choices.
"""

from __future__ import annotations

import math

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


def skill_accuracy(model, tokenizer, examples: list[dict]) -> float:
    """Share of examples whose correct choice has the highest log-probability."""
    correct = 0
    for ex in examples:
        scores = choice_logprobs(model, tokenizer, ex["prompt"], ex["choices"])
        correct += int(int(np.argmax(scores)) == ex["answer"])
    return correct / max(len(examples), 1)
