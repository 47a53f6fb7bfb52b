"""A streamed parent (layer matrices read from safetensors on demand) gives exactly what
the parent in memory gives: forward, importance, every recipe's candidate."""

from __future__ import annotations

import pytest
import torch

from plsearch.families import get_family
from plsearch.families.testing import tiny_model
from plsearch.importance import compute_importance
from plsearch.prune import Recipe, build_candidate
from plsearch.prune.stream import is_streamed, open_streamed, resident

FAMILIES = ["qwen3", "glm4", "gemma3_text"]  # GQA + q/k norms, sandwich + fused MLP, offset norms


def _saved(model_type: str, tmp_path):
    parent = tiny_model(model_type, seed=0)
    parent.save_pretrained(tmp_path / "parent")
    return parent, open_streamed(tmp_path / "parent")


def _layer_matrices(model) -> list[torch.Tensor]:
    family = get_family(model)
    return [p for layer in family.layers(model) for p in layer.parameters() if p.ndim >= 2]


@pytest.mark.parametrize("model_type", FAMILIES)
def test_streamed_parent_builds_the_same_candidate(model_type, tmp_path):
    parent, streamed = _saved(model_type, tmp_path)
    assert is_streamed(streamed) and not is_streamed(parent)
    assert all(p.is_meta for p in _layer_matrices(streamed))  # nothing of the layers read
    calib = torch.randint(0, parent.config.vocab_size, (4, 16),
                          generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(streamed(calib).logits, parent(calib).logits)
    assert all(p.is_meta for p in _layer_matrices(streamed))  # each layer dropped again
    imp = compute_importance(parent, calib)
    imp_streamed = compute_importance(streamed, calib)
    for name in ("channel", "head", "neuron", "block_influence"):
        assert torch.equal(getattr(imp_streamed, name), getattr(imp, name))
    arch = get_family(parent).arch_from_config(parent.config)
    small = arch.replace(num_hidden_layers=arch.num_hidden_layers - 1,
                         intermediate_size=arch.intermediate_size // 2)
    for recipe in (Recipe.preset("pangu", slnp="act"), Recipe.preset("minitron")):
        expected, _ = build_candidate(parent, imp, small, recipe, calib_batches=calib)
        got, _ = build_candidate(streamed, imp, small, recipe, calib_batches=calib)
        for (name, a), b in zip(expected.state_dict().items(), got.state_dict().values()):
            assert torch.equal(a, b), name
    assert all(p.is_meta for p in _layer_matrices(streamed))


def test_resident_nests_and_is_a_no_op_for_an_ordinary_model(tmp_path):
    parent, streamed = _saved("llama", tmp_path)
    layers = get_family(streamed).layers(streamed)
    with resident(streamed, [0, 1]):
        with resident(streamed, [1]):
            assert not layers[1].self_attn.q_proj.weight.is_meta
        assert not layers[1].self_attn.q_proj.weight.is_meta  # the outer block still holds it
        assert torch.equal(layers[0].mlp.down_proj.weight,
                           get_family(parent).layers(parent)[0].mlp.down_proj.weight)
    assert layers[0].self_attn.q_proj.weight.is_meta and layers[1].mlp.up_proj.weight.is_meta
    with resident(parent, [0]):
        assert not get_family(parent).layers(parent)[0].self_attn.q_proj.weight.is_meta
