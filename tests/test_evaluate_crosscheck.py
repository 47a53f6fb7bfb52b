"""lm-eval's accuracy, cross-checked: the same rows scored directly must give the same
accuracy (issue 15). Each choice's log-likelihood is summed over its tokens given the
prompt, tokenized as lm-eval's HFLM does (context, then the continuation's tokens of the
joint encoding), and the best choice is compared with the answer."""

from __future__ import annotations

import json

import pytest
import torch

from plsearch.data import heldout_dir
from plsearch.evaluate import evaluate
from plsearch.models import load_model

LIMIT = 40


@pytest.fixture(scope="module")
def parent():
    model, tokenizer, _ = load_model(None)
    return model.eval(), tokenizer


def _loglikelihood(model, tokenizer, context: str, continuation: str) -> float:
    spaces = len(context) - len(context.rstrip())
    if spaces:  # HFLM moves trailing whitespace of the context into the continuation
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    prefix = tokenizer(context, add_special_tokens=False)["input_ids"]
    cont = whole[len(prefix):]
    ids = torch.tensor([whole])
    with torch.inference_mode():
        logprobs = model(ids).logits[0, :-1].float().log_softmax(-1)
    targets = ids[0, len(prefix):]
    return logprobs[len(prefix) - 1:].gather(-1, targets[:, None]).sum().item() if cont else 0.0


@pytest.mark.parametrize("skill", ["add", "recall"])
def test_lm_eval_accuracy_equals_direct_scoring(parent, skill):
    model, tokenizer = parent
    scores = evaluate(model, tokenizer, [f"plsearch_{skill}"], limit=LIMIT, progress=False)
    rows = [json.loads(line) for line in
            (heldout_dir() / f"heldout_{skill}.jsonl").read_text().splitlines()][:LIMIT]
    correct = 0
    for row in rows:
        ll = [_loglikelihood(model, tokenizer, row["prompt"], c) for c in row["choices"]]
        correct += int(max(range(len(ll)), key=ll.__getitem__) == row["answer"])
    assert scores[f"plsearch_{skill}"]["samples"] == LIMIT
    assert scores[f"plsearch_{skill}"]["acc"] == pytest.approx(correct / LIMIT)
    assert 0 < correct < LIMIT  # a check that can fail both ways
