"""Depth pruning and CLAP (METHOD.md section 2): which layers stay, which KV groups each keeps.

Plans are plain data computed from importance scores alone; width.py turns them into
weights. Without CLAP a kept layer chooses among its own KV groups, so the same planner
serves plain head pruning too.

What CLAP cannot carry over: per-layer QK-norm weights (Qwen3, Gemma-3) are shared by all
heads of a layer, so a moved group uses its receiver's q_norm/k_norm; a receiver keeps its
own attention kind (Gemma-3 sliding or full) and o_proj bias; the removed layer's FFN is
dropped (the paper moves attention only).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["KeptGroup", "fold_ratio", "plan_attention", "plan_depth", "top_k"]


@dataclass(frozen=True)
class KeptGroup:
    """One KV group of a candidate layer: where it comes from and which query heads it keeps."""

    layer: int  # parent layer the group's weights are taken from
    group: int  # KV-group index in that layer
    heads: tuple[int, ...]  # kept query heads (parent head indices in that layer), ascending


def top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k largest scores, in ascending index order (ties: lower index wins)."""
    order = torch.sort(scores, descending=True, stable=True).indices
    return order[:k].sort().values


def plan_depth(block_influence: torch.Tensor, num_layers: int) -> tuple[list[int], dict[int, int]]:
    """(kept parent layers ascending, {removed layer: receiver}).

    The ``L - num_layers`` layers with the lowest block influence go (ties: the lower
    index goes first). A removed layer's receiver is the nearest kept layer before it, or
    the nearest after it when none is before.
    """
    total = block_influence.shape[0]
    order = torch.sort(block_influence, stable=True).indices.tolist()
    removed = sorted(order[: total - num_layers])
    kept = sorted(order[total - num_layers :])
    receiver_of = {}
    for r in removed:
        before = [k for k in kept if k < r]
        receiver_of[r] = before[-1] if before else min(k for k in kept if k > r)
    return kept, receiver_of


def plan_attention(
    importance,
    kept_layers: list[int],
    receiver_of: dict[int, int],
    num_kv_groups: int,
    queries_per_group: int,
    *,
    clap: bool,
) -> list[list[KeptGroup]]:
    """The KV groups of every candidate layer, in candidate order.

    Each kept layer pools its own groups and, with CLAP, those of the layers it receives;
    the top ``num_kv_groups`` by S_kv stay (the receiver's own groups first, then donors by
    layer, each in group order). Inside a group the top ``queries_per_group`` query heads
    by S_head stay.
    """
    parent_groups = importance.kv_group.shape[1]
    parent_per_group = importance.head.shape[1] // parent_groups
    plan = []
    for layer in kept_layers:
        donors = sorted(r for r, rec in receiver_of.items() if rec == layer) if clap else []
        pool = [(src, g) for src in [layer, *donors] for g in range(parent_groups)]
        scores = torch.stack([importance.kv_group[src, g] for src, g in pool])
        chosen = top_k(scores, num_kv_groups).tolist()
        groups = []
        for src, g in (pool[i] for i in chosen):
            heads = torch.arange(g * parent_per_group, (g + 1) * parent_per_group)
            best = heads[top_k(importance.head[src, heads], queries_per_group)]
            groups.append(KeptGroup(src, g, tuple(best.tolist())))
        plan.append(groups)
    return plan


def fold_ratio(gamma_src: torch.Tensor, gamma_dst: torch.Tensor, guard: float) -> torch.Tensor:
    """Per-channel gamma_src / gamma_dst (effective scales), float32, with a guarded divisor.

    Multiplying a moved group's q/k/v input columns by this ratio makes it see, through the
    receiver's pre-attention norm, the normalized input scale of its own layer's norm.
    |gamma_dst| is floored at ``guard`` times its RMS (keeping its sign; zero counts as +).
    """
    src, dst = gamma_src.float(), gamma_dst.float()
    floor = guard * dst.pow(2).mean().sqrt().clamp_min(torch.finfo(torch.float32).tiny)
    sign = torch.where(dst < 0, -1.0, 1.0)
    divisor = torch.where(dst.abs() < floor, sign * floor, dst)
    return src / divisor
