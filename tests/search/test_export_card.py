"""The exported model card opens with the Hub's YAML metadata (issue 15)."""

from __future__ import annotations

import optuna
import pytest
import yaml

from plsearch.search.export import model_card


def _card(parent):
    study = optuna.create_study(study_name="card")
    if parent is not None:
        study.set_user_attr("parent", parent)
    trial = study.ask()
    study.tell(trial, 0.5)
    return model_card(study, study.trials[0])


@pytest.mark.parametrize(("parent", "base"), [
    ("Qwen/Qwen3-8B", "Qwen/Qwen3-8B"),
    ("/home/u/.cache/huggingface/hub/models--Qwen--Qwen3-8B/snapshots/abc", "Qwen/Qwen3-8B"),
    ("builtin", None),
    ("/data/my-model", None),
    (None, None),
])
def test_card_front_matter(parent, base):
    text = _card(parent)
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta.get("base_model") == base
    assert meta["library_name"] == "transformers"
    assert meta["pipeline_tag"] == "text-generation"
    assert "plsearch" in meta["tags"]
    assert "\n# plsearch candidate: trial 0" in text
