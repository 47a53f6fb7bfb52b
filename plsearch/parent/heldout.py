"""Held-out measurements of a causal LM: text perplexity and multiple-choice skill accuracy.

Used by the parent recipe's model card and by its test. Skill accuracy scores every
choice by the summed log-probability of its tokens after the prompt (lm-eval's
multiple_choice `acc`), so chance is 1 / number of choices.
"""

from __future__ import annotations

import math

import numpy as np
import torch


@torch.inference_mode()
def text_perplexity(model, tokenizer, texts: list[str], seq_len: int = 256) -> float:
    """Token-level perplexity over texts, each scored in non-overlapping windows."""
    nll, count = 0.0, 0
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids = [tokenizer.eos_token_id] + ids
        for start in range(0, len(ids) - 1, seq_len):
            window = torch.tensor([ids[start : start + seq_len + 1]])
            if window.shape[1] < 2:
                continue
            logits = model(input_ids=window[:, :-1]).logits.float()
            loss = torch.nn.functional.cross_entropy(
                logits[0], window[0, 1:], reduction="sum")
            nll += float(loss)
            count += window.shape[1] - 1
    return math.exp(nll / max(count, 1))


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
