"""lm-eval scoring of in-memory models on plsearch's offline tasks, perplexity, `plsearch eval`."""

from __future__ import annotations

import json
import math

import pytest
import torch

from plsearch.errors import ConfigError
from plsearch.evaluate import evaluate, local_task_names, perplexity
from plsearch.families.testing import tiny_model
from plsearch.parent import skills
from plsearch.parent.tokenizer import train_tokenizer

SKILL_TASKS = {f"plsearch_{s}" for s in skills.SKILLS}
TEXTS = ["The quick brown fox jumps over the lazy dog. " * 3,
         "def add(a, b):\n    return a + b\n", "Brackets ( [ ] ) are balanced."]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    """A tiny byte-level BPE trained on skill lines and a little text."""
    stream = skills.skill_stream(seed=0)
    corpus = [next(stream).text for _ in range(300)] + TEXTS
    return train_tokenizer(corpus, vocab_size=320, out_dir=tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def model(tokenizer):
    eos = tokenizer.eos_token_id
    return tiny_model("glm4", seed=0, vocab_size=len(tokenizer), pad_token_id=eos,
                      bos_token_id=eos, eos_token_id=eos)


@pytest.fixture(scope="module")
def heldout_dir(tmp_path_factory):
    """Five held-out files of a few rows each, in the installed files' format."""
    folder = tmp_path_factory.mktemp("heldout")
    for i, skill in enumerate(skills.SKILLS):
        rows = [e.to_dict() for e in skills.heldout_examples(skill, 6, seed=i)]
        (folder / f"heldout_{skill}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in rows))
    (folder / "heldout_text.jsonl").write_text(
        "".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    return folder


def test_local_suite_is_indexed():
    names = set(local_task_names())
    assert SKILL_TASKS | {"plsearch_text", "plsearch_skills"} <= names


def test_evaluate_returns_each_task_and_the_group(model, tokenizer, heldout_dir):
    scores = evaluate(model, tokenizer, ["plsearch_skills", "plsearch_text"], limit=4,
                      seed=0, batch_size=8, heldout_dir=heldout_dir)
    assert set(scores) == SKILL_TASKS | {"plsearch_skills", "plsearch_text"}
    for task in SKILL_TASKS:
        assert set(scores[task]) == {"acc", "acc_stderr", "samples"}
        acc = scores[task]["acc"]
        assert 0.0 <= acc <= 1.0 and scores[task]["samples"] == 4
        # lm-eval's closed form: sample sd (n - 1) / sqrt(n) = sqrt(p (1 - p) / (n - 1))
        assert scores[task]["acc_stderr"] == pytest.approx(math.sqrt(acc * (1 - acc) / 3))
    assert scores["plsearch_skills"]["samples"] == 4 * len(SKILL_TASKS)
    group_acc = sum(scores[t]["acc"] for t in SKILL_TASKS) / len(SKILL_TASKS)
    assert scores["plsearch_skills"]["acc"] == pytest.approx(group_acc)
    text = scores["plsearch_text"]
    assert set(text) == {"word_perplexity", "byte_perplexity", "bits_per_byte", "samples"}
    assert text["samples"] == 3 and text["byte_perplexity"] > 1
    assert not model.training
    again = evaluate(model, tokenizer, ["plsearch_add"], limit=4, seed=0,
                     heldout_dir=heldout_dir)
    assert again["plsearch_add"] == scores["plsearch_add"]


def test_unknown_task_names_the_close_ones(model, tokenizer):
    with pytest.raises(ConfigError, match="did you mean plsearch_recall"):
        evaluate(model, tokenizer, ["plsearch_recal"])


def test_perplexity_matches_mean_cross_entropy(model, tokenizer):
    ids = [tokenizer.eos_token_id] + tokenizer(TEXTS[1], add_special_tokens=False)["input_ids"]
    window = torch.tensor([ids])
    with torch.no_grad():
        logits = model(input_ids=window[:, :-1]).logits
    expected = math.exp(float(torch.nn.functional.cross_entropy(logits[0], window[0, 1:])))
    assert perplexity(model, tokenizer, [TEXTS[1]], seq_len=256) == pytest.approx(expected,
                                                                                  rel=1e-4)
    batched = perplexity(model, tokenizer, TEXTS, seq_len=16, batch_size=4)
    single = perplexity(model, tokenizer, TEXTS, seq_len=16, batch_size=1)
    assert batched == pytest.approx(single, rel=1e-4)


def test_cli_eval_json_parses(model, tokenizer, tmp_path, capsys):
    from plsearch.cli import main

    model.save_pretrained(str(tmp_path / "m"))
    tokenizer.save_pretrained(str(tmp_path / "m"))
    code = main(["eval", "--model", str(tmp_path / "m"), "--tasks", "plsearch_add",
                 "--limit", "3", "--device", "cpu", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    parsed = json.loads(out)  # stdout holds the JSON and nothing else
    assert set(parsed) == {"plsearch_add"} and parsed["plsearch_add"]["samples"] == 3
    assert 0.0 <= parsed["plsearch_add"]["acc"] <= 1.0


def test_a_group_and_its_own_task_together_is_a_config_error(model, tokenizer, heldout_dir):
    with pytest.raises(ConfigError, match="the group or its tasks"):
        evaluate(model, tokenizer, ["plsearch_recall", "plsearch_skills"], limit=2,
                 heldout_dir=heldout_dir)
