"""Depth pruning and CLAP (docs/method.md section 2): which layers stay, which KV groups
each keeps.

Plans are plain data computed from importance scores alone; width.py turns them into
weights. Without CLAP a kept layer chooses among its own KV groups, so the same planner
serves plain head pruning too.

What CLAP cannot carry over exactly: per-layer QK-norm weights (Qwen3, Gemma-3) are shared
by all heads of a layer, so the rebuilt layer uses the q/k norms of the layer that supplies
most of its kept groups (``qk_norm_source``; exact when they all come from one layer). A
group only moves between layers of the same attention kind (Gemma-3 sliding or full): a
removed layer's receiver is the nearest kept layer of its kind, and a removed layer with no
kept layer of its kind hands nothing on. The receiver keeps its o_proj bias; the removed
layer's FFN is dropped (the paper moves attention only).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["KeptGroup", "fold_ratio", "plan_attention", "plan_depth", "qk_norm_source",
           "top_k"]


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


def plan_depth(block_influence: torch.Tensor, num_layers: int,
               kinds: list[str] | None = None) -> tuple[list[int], dict[int, int]]:
    """(kept parent layers ascending, {removed layer: receiver}).

    The ``L - num_layers`` layers with the lowest block influence go (ties: the lower
    index goes first). A removed layer's receiver is the nearest kept layer before it, or
    the nearest after it when none is before; with ``kinds`` (the config's layer_types,
    e.g. Gemma-3's sliding/full) only a kept layer of the same kind, and a removed layer
    with none has no receiver.
    """
    total = block_influence.shape[0]
    order = torch.sort(block_influence, stable=True).indices.tolist()
    removed = sorted(order[: total - num_layers])
    kept = sorted(order[total - num_layers :])
    receiver_of = {}
    for r in removed:
        same = [k for k in kept if kinds is None or kinds[k] == kinds[r]]
        if not same:
            continue
        before = [k for k in same if k < r]
        receiver_of[r] = before[-1] if before else min(k for k in same if k > r)
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


def qk_norm_source(groups: list[KeptGroup], receiver: int) -> int:
    """The parent layer whose q_norm/k_norm a rebuilt layer uses: the one that supplies
    most of its kept groups (the receiver on a tie, else the lowest index)."""
    counts: dict[int, int] = {}
    for g in groups:
        counts[g.layer] = counts.get(g.layer, 0) + 1
    best = max(counts.values(), default=0)
    tied = sorted(layer for layer, n in counts.items() if n == best)
    return receiver if receiver in tied or not tied else tied[0]


def fold_ratio(gamma_src: torch.Tensor, gamma_dst: torch.Tensor,
               cap: float) -> tuple[torch.Tensor, int]:
    """(per-channel gamma_src / gamma_dst in float32, channels not folded).

    Multiplying a moved group's q/k/v input columns by this ratio makes it see, through the
    receiver's pre-attention norm, the normalized input scale of its own layer's norm.
    Where |ratio| > ``cap`` (a near-zero receiver gamma would scale columns ~1000x) or the
    ratio is not finite, that channel is not folded (ratio 1); their number is returned.
    """
    src, dst = gamma_src.float(), gamma_dst.float()
    ratio = src / dst
    bad = ~torch.isfinite(ratio) | (ratio.abs() > cap)
    return torch.where(bad, torch.ones_like(ratio), ratio), int(bad.sum())
