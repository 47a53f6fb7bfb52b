"""`plsearch parent build` through the CLI: the whole recipe for two training steps
(issue 15). Slow (the corpus, tokenizer and held-out evaluation are full size: a few
minutes on two cores); .ci/run runs it."""

from __future__ import annotations

import json

import pytest

from plsearch.cli import main


@pytest.mark.slow
def test_parent_build_two_steps(tmp_path, capsys):
    from plsearch.models import load_model, weights_hash
    from plsearch.parent.build import MODEL_DIR

    shipped = weights_hash(MODEL_DIR)
    work = tmp_path / "work"
    assert main(["parent", "build", "--steps", "2", "--work", str(work), "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert f"model written to {work / 'model'}" in out and "installed" not in out
    assert "held-out text perplexity" in out
    card = json.loads((work / "model" / "card.json").read_text())
    assert card["train_steps"] == 2 and card["recipe"]["seed"] == 1
    model, tokenizer, _ = load_model(work / "model")
    assert model.config.model_type == "glm4" and tokenizer is not None
    assert weights_hash(MODEL_DIR) == shipped  # without --install the package is untouched
