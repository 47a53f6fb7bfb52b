"""Depth pruning and CLAP (METHOD.md section 2)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from plsearch.families import get_family
from plsearch.families.testing import tiny_model
from plsearch.importance import compute_importance
from plsearch.prune import Recipe, build_candidate
from plsearch.prune.depth import fold_ratio, plan_attention, plan_depth
from plsearch.prune.slnp import effective_scale


def _tokens(seed: int, n: int = 8, seq: int = 16) -> torch.Tensor:
    return torch.randint(3, 256, (n, seq), generator=torch.Generator().manual_seed(seed))


def test_plan_depth_removes_lowest_bi_and_picks_receivers():
    bi = torch.tensor([0.05, 0.9, 0.01, 0.8, 0.02, 0.7])
    kept, receiver_of = plan_depth(bi, 3)
    assert kept == [1, 3, 5]
    assert receiver_of == {0: 1, 2: 1, 4: 3}  # 0 has no kept layer before it: the next one
    assert plan_depth(bi, 6) == ([0, 1, 2, 3, 4, 5], {})
    tie = plan_depth(torch.zeros(4), 2)
    assert tie == ([2, 3], {0: 2, 1: 2})


def _forced_importance(model, removed_layer: int, group: int):
    """Importance where ``removed_layer`` has the lowest BI (it goes) and its ``group``
    is the most important KV group anywhere (it must be moved)."""
    imp = compute_importance(model, _tokens(0))
    bi = imp.block_influence.clone()
    bi[removed_layer] = -1.0
    kv = imp.kv_group.clone()
    kv[removed_layer, group] = 1e6
    head = imp.head.clone()
    return dataclasses.replace(imp, block_influence=bi, kv_group=kv, head=head)


@pytest.mark.parametrize("model_type", ["qwen2", "qwen3", "glm4", "gemma3_text"])
def test_clap_keeps_n_kv_groups_chosen_by_importance(model_type):
    model = tiny_model(model_type, seed=3)
    family = get_family(model)
    imp = _forced_importance(model, removed_layer=2, group=1)
    arch = family.arch_from_config(model.config).replace(num_hidden_layers=3)
    recipe = Recipe.preset("pangu", absorb_post_norm=False, slnp="none")
    candidate, report = build_candidate(model, imp, arch, recipe)
    receiver = report.receiver_of[2]
    assert receiver == 1 and report.kept_layers == [0, 1, 3]
    new_index = report.kept_layers.index(receiver)
    pool = [(layer, g) for layer in (1, 2) for g in range(2)]
    expected = sorted(pool, key=lambda p: -imp.kv_group[p].item())[:2]
    assert sorted(report.attention_groups[new_index]) == sorted(expected)
    assert (2, 1) in report.attention_groups[new_index]
    assert report.moved_groups >= 1
    for layer in family.layers(candidate):  # exactly n_kv' groups everywhere
        parts = family.layer_parts(layer)
        assert parts.k.out_features == parts.v.out_features == 2 * 16
        assert parts.q.out_features == 4 * 16

    # Without CLAP the removed layer's group is gone and the receiver keeps its own.
    _, plain_report = build_candidate(model, imp, arch, Recipe.preset("minitron"))
    assert plain_report.attention_groups[new_index] == [(1, 0), (1, 1)]
    assert plain_report.moved_groups == 0


@pytest.mark.parametrize("model_type", ["qwen2", "glm4", "gemma3_text"])
def test_gamma_fold_reproduces_the_moved_groups_qkv(model_type):
    """For the same normalized input xhat, the moved group's q/k/v in the receiver equal
    what it produced in its own layer: W' (gamma_l xhat) + b == W (gamma_r xhat) + b."""
    model = tiny_model(model_type, seed=4)
    family = get_family(model)
    imp = _forced_importance(model, removed_layer=2, group=1)
    arch = family.arch_from_config(model.config).replace(num_hidden_layers=3,
                                                         num_key_value_heads=1,
                                                         num_attention_heads=2)
    recipe = Recipe.preset("pangu", absorb_post_norm=False, slnp="none")
    candidate, report = build_candidate(model, imp, arch, recipe)
    new_index = report.kept_layers.index(1)
    assert report.attention_groups[new_index] == [(2, 1)]  # the only group: the moved one
    heads = sorted(torch.topk(imp.head[2, 2:4], 2).indices.add(2).tolist())
    src = family.layer_parts(family.layers(model)[2])
    dst = family.layer_parts(family.layers(candidate)[new_index])
    offset = family.norm_offset
    xhat = torch.randn(5, 64)
    gamma_r = effective_scale(src.input_norm, offset)
    gamma_l = effective_scale(dst.input_norm, offset)
    q_rows = torch.cat([torch.arange(h * 16, (h + 1) * 16) for h in heads])
    kv_rows = torch.arange(16, 32)
    with torch.no_grad():
        for slot, rows in (("q", q_rows), ("k", kv_rows), ("v", kv_rows)):
            original = getattr(src, slot)(gamma_r * xhat)[:, rows]
            moved = getattr(dst, slot)(gamma_l * xhat)
            torch.testing.assert_close(moved, original, atol=1e-5, rtol=1e-5)
        o_cols = dst.o.weight
        torch.testing.assert_close(o_cols, src.o.weight[:, q_rows])


def test_fold_ratio_guards_tiny_receiver_gamma():
    gamma_r = torch.tensor([1.0, 2.0, 0.5, 1.0])
    gamma_l = torch.tensor([2.0, 0.0, -1e-9, 1.0])
    ratio = fold_ratio(gamma_r, gamma_l, guard=1e-3)
    assert torch.isfinite(ratio).all()
    floor = 1e-3 * gamma_l.pow(2).mean().sqrt()
    torch.testing.assert_close(ratio, torch.tensor([0.5, 2.0 / floor, -0.5 / floor, 1.0]))


def test_plan_attention_keeps_best_query_heads_in_each_group():
    model = tiny_model("llama", seed=5)
    imp = compute_importance(model, _tokens(0))
    head = imp.head.clone()
    head[0] = torch.tensor([1.0, 5.0, 4.0, 0.5])  # group 0: heads 0-1, group 1: heads 2-3
    imp = dataclasses.replace(imp, head=head, kv_group=head.reshape(4, 2, 2).sum(-1))
    plan = plan_attention(imp, [0], {}, num_kv_groups=2, queries_per_group=1, clap=True)
    assert [(g.group, g.heads) for g in plan[0]] == [(0, (1,)), (1, (2,))]
