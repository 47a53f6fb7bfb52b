"""Depth pruning and CLAP (docs/method.md section 2)."""

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
    # Gemma-3's layer 1 is a full-attention layer: the sliding layer 2 goes to layer 0.
    assert receiver == (0 if model_type == "gemma3_text" else 1)
    assert report.kept_layers == [0, 1, 3]
    new_index = report.kept_layers.index(receiver)
    pool = [(layer, g) for layer in (receiver, 2) for g in range(2)]
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
    assert plain_report.attention_groups[new_index] == [(receiver, 0), (receiver, 1)]
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
    new_index = report.kept_layers.index(report.receiver_of[2])
    assert report.attention_groups[new_index] == [(2, 1)]  # the only group: the moved one
    assert report.fold_fallbacks == 0
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


def test_fold_ratio_caps_and_counts_tiny_receiver_gamma():
    """A near-zero receiver gamma would scale columns ~1000x: those channels are not
    folded (ratio 1) and counted; the others fold exactly (issue 15)."""
    gamma_r = torch.tensor([1.0, 2.0, 0.5, 1.0, -3.0, 1.0])
    gamma_l = torch.tensor([2.0, 0.0, -1e-3, 1.0, -0.5, 0.05])
    ratio, unfolded = fold_ratio(gamma_r, gamma_l, cap=10.0)
    torch.testing.assert_close(ratio, torch.tensor([0.5, 1.0, 1.0, 1.0, 6.0, 1.0]))
    assert unfolded == 3  # 2/0, 0.5/-1e-3 and 1/0.05 = 20 > 10
    assert ratio.abs().max() <= 10.0


def test_build_does_not_blow_up_a_moved_group_on_a_tiny_receiver_gamma():
    model = tiny_model("qwen2", seed=4)
    family = get_family(model)
    receiver_norm = family.layer_parts(family.layers(model)[1]).input_norm
    with torch.no_grad():
        receiver_norm.weight[:5] = 1e-4  # |gamma_r / gamma_l| ~ 1e4 on five channels
    imp = _forced_importance(model, removed_layer=2, group=1)
    arch = family.arch_from_config(model.config).replace(num_hidden_layers=3)
    recipe = Recipe.preset("pangu", absorb_post_norm=False, slnp="none")
    candidate, report = build_candidate(model, imp, arch, recipe)
    assert report.receiver_of[2] == 1 and report.moved_groups >= 1
    assert report.fold_fallbacks == 5
    src = family.layer_parts(family.layers(model)[2])
    dst = family.layer_parts(family.layers(candidate)[report.kept_layers.index(1)])
    cap = recipe.fold_cap * effective_scale(src.input_norm, 0).abs().max()
    assert dst.k.weight.abs().max() <= cap * src.k.weight.abs().max()


def test_qk_norm_source_is_the_majority_donor():
    from plsearch.prune.depth import KeptGroup, qk_norm_source

    def groups(*layers):
        return [KeptGroup(layer, i, (0,)) for i, layer in enumerate(layers)]

    assert qk_norm_source(groups(2, 2), receiver=1) == 2  # all from one donor: exact
    assert qk_norm_source(groups(1, 2, 2), receiver=1) == 2
    assert qk_norm_source(groups(1, 2), receiver=1) == 1  # a tie: the receiver's own
    assert qk_norm_source(groups(3, 2), receiver=1) == 2  # a tie between donors: lowest


def test_clap_uses_the_q_k_norms_of_the_donor_of_all_kept_groups():
    model = tiny_model("qwen3", seed=3)
    family = get_family(model)
    imp = _forced_importance(model, removed_layer=2, group=1)
    kv = imp.kv_group.clone()
    kv[2, 0] = 1e6 - 1  # both groups of the removed layer 2 beat the receiver's own
    imp = dataclasses.replace(imp, kv_group=kv)
    arch = family.arch_from_config(model.config).replace(num_hidden_layers=3)
    recipe = Recipe.preset("pangu", absorb_post_norm=False, slnp="none")
    candidate, report = build_candidate(model, imp, arch, recipe)
    new_index = report.kept_layers.index(1)
    assert sorted(report.attention_groups[new_index]) == [(2, 0), (2, 1)]
    assert report.qk_norm_from[new_index] == 2
    donor = family.layer_parts(family.layers(model)[2])
    rebuilt = family.layer_parts(family.layers(candidate)[new_index])
    assert torch.equal(rebuilt.q_norm.weight, donor.q_norm.weight)
    assert torch.equal(rebuilt.k_norm.weight, donor.k_norm.weight)
    # Exact: the group computes in the candidate what it computed in layer 2.
    x = torch.randn(1, 5, 64)
    pos = torch.arange(5)[None]
    with torch.no_grad():
        want = _attention_scores(model, family, 2, x, pos)
        got = _attention_scores(candidate, family, new_index, x, pos, source=model, layer=2)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def _attention_scores(model, family, index, x, pos, source=None, layer=None):
    """q.k^T of every head of layer ``index`` on the same normalized input: the input norm
    of ``source``'s ``layer`` (the donor's), so that only q/k weights and QK-norms count."""
    parts = family.layer_parts(family.layers(model)[index])
    norm = family.layer_parts(family.layers(source or model)[layer if layer is not None
                                                           else index]).input_norm
    gamma_in = effective_scale(norm, family.norm_offset)
    gamma_own = effective_scale(parts.input_norm, family.norm_offset)
    xhat = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    h = xhat * (gamma_own if source is not None else gamma_in)
    q = parts.q(h).view(1, 5, -1, 16)
    k = parts.k(h).view(1, 5, -1, 16)
    q, k = parts.q_norm(q), parts.k_norm(k)
    reps = q.shape[2] // k.shape[2]
    k = k.repeat_interleave(reps, dim=2)
    return torch.einsum("bthd,bshd->bhts", q, k)


def test_plan_depth_keeps_attention_kinds_apart():
    kinds = ["sliding", "full", "sliding", "full", "sliding", "full"]
    bi = torch.tensor([0.9, 0.8, 0.01, 0.02, 0.7, 0.03])
    kept, receiver_of = plan_depth(bi, 3, kinds=kinds)
    assert kept == [0, 1, 4]
    assert receiver_of == {2: 0, 3: 1, 5: 1}  # never the nearest layer of the other kind
    # No kept layer of its kind: the removed layer hands nothing on.
    kept, receiver_of = plan_depth(torch.tensor([0.9, 0.01, 0.8, 0.02]), 2,
                                   kinds=["sliding", "full", "sliding", "full"])
    assert kept == [0, 2] and receiver_of == {}


def test_gemma3_groups_never_move_between_sliding_and_full_layers():
    model = tiny_model("gemma3_text", seed=3)
    kinds = model.config.layer_types
    imp = compute_importance(model, _tokens(0))
    for removed in range(4):
        bi = imp.block_influence.clone()
        bi[removed] = -1.0
        kv = imp.kv_group.clone()
        kv[removed] = 1e6  # the removed layer's groups are the most important anywhere
        forced = dataclasses.replace(imp, block_influence=bi, kv_group=kv)
        family = get_family(model)
        arch = family.arch_from_config(model.config).replace(num_hidden_layers=3)
        candidate, report = build_candidate(model, forced, arch, Recipe.preset(
            "pangu", absorb_post_norm=False, slnp="none"))
        assert report.moved_groups >= 1
        for new_index, (layer, groups) in enumerate(zip(report.kept_layers,
                                                        report.attention_groups)):
            assert {kinds[src] for src, _ in groups} == {kinds[layer]}
            assert candidate.config.layer_types[new_index] == kinds[layer]


def test_plan_attention_keeps_best_query_heads_in_each_group():
    model = tiny_model("llama", seed=5)
    imp = compute_importance(model, _tokens(0))
    head = imp.head.clone()
    head[0] = torch.tensor([1.0, 5.0, 4.0, 0.5])  # group 0: heads 0-1, group 1: heads 2-3
    imp = dataclasses.replace(imp, head=head, kv_group=head.reshape(4, 2, 2).sum(-1))
    plan = plan_attention(imp, [0], {}, num_kv_groups=2, queries_per_group=1, clap=True)
    assert [(g.group, g.heads) for g in plan[0]] == [(0, (1,)), (1, (2,))]
