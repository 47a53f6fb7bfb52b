"""Width slicing (docs/method.md section 3): the weights of a candidate layer from parent layers.

Pure tensor functions: each returns new tensors (the parent is only read), named by the
LayerParts slot and parameter they fill, e.g. {"q.weight": ..., "q.bias": ...}. Shapes
use HF's nn.Linear layout (out_features, in_features).
"""

from __future__ import annotations

import torch
from torch import nn

from plsearch.families import LayerParts
from plsearch.prune.depth import KeptGroup

__all__ = ["attention_tensors", "head_rows", "mlp_tensors", "norm_tensor"]


def head_rows(heads: list[int] | tuple[int, ...], head_dim: int) -> torch.Tensor:
    """Row indices of the given heads in a (heads * head_dim, ...) projection."""
    return torch.cat([torch.arange(h * head_dim, (h + 1) * head_dim) for h in heads])


def _rows_cols(weight: torch.Tensor, rows: torch.Tensor | None, cols: torch.Tensor | None):
    out = weight.detach()
    if rows is not None:
        out = out.index_select(0, rows.to(out.device))
    if cols is not None:
        out = out.index_select(1, cols.to(out.device))
    return out if (rows is not None or cols is not None) else out.clone()


def _bias(linear: nn.Linear, rows: torch.Tensor) -> torch.Tensor | None:
    if linear.bias is None:
        return None
    return linear.bias.detach().index_select(0, rows.to(linear.bias.device))


def attention_tensors(
    parts_of: dict[int, LayerParts],
    receiver: int,
    groups: list[KeptGroup],
    channels: torch.Tensor,
    head_dim: int,
    fold: dict[int, torch.Tensor],
) -> dict[str, torch.Tensor | None]:
    """q/k/v/o weights (and biases) of a candidate layer built from ``groups``.

    ``parts_of`` maps parent layer index -> its parts; each group brings its own K and V
    rows, its kept query rows and the matching o_proj input columns. ``fold[layer]`` is the
    per-channel gamma ratio (full hidden size) applied to the q/k/v input columns of groups
    moved from ``layer`` into ``receiver`` (CLAP).
    """
    pieces: dict[str, list[torch.Tensor]] = {}

    def add(name: str, tensor: torch.Tensor | None) -> None:
        if tensor is not None:
            pieces.setdefault(name, []).append(tensor)

    for group in groups:
        src = parts_of[group.layer]
        q_rows = head_rows(group.heads, head_dim)
        kv_rows = head_rows((group.group,), head_dim)
        for slot, rows in (("q", q_rows), ("k", kv_rows), ("v", kv_rows)):
            linear = getattr(src, slot)
            weight = _rows_cols(linear.weight, rows, channels)
            if group.layer != receiver:
                ratio = fold[group.layer].to(weight.device).index_select(0, channels.to(weight.device))
                weight = (weight.float() * ratio).to(weight.dtype)
            add(f"{slot}.weight", weight)
            add(f"{slot}.bias", _bias(linear, rows))
        add("o.weight", _rows_cols(src.o.weight, channels, q_rows))
    out: dict[str, torch.Tensor | None] = {
        "q.bias": None, "k.bias": None, "v.bias": None,
        "o.bias": _bias(parts_of[receiver].o, channels),
    }
    for name, tensors in pieces.items():
        out[name] = torch.cat(tensors, dim=1 if name == "o.weight" else 0)
    return out


def mlp_tensors(
    parts: LayerParts, neurons: torch.Tensor, channels: torch.Tensor
) -> dict[str, torch.Tensor | None]:
    """gate/up (or fused gate_up) rows and down columns of the kept FFN neurons."""
    out: dict[str, torch.Tensor | None] = {}
    if parts.gate_up is not None:
        ffn = parts.gate_up.out_features // 2  # rows [0, f) gate, [f, 2f) up
        rows = torch.cat([neurons, neurons + ffn])
        out["gate_up.weight"] = _rows_cols(parts.gate_up.weight, rows, channels)
        out["gate_up.bias"] = _bias(parts.gate_up, rows)
    else:
        for slot in ("gate", "up"):
            linear = getattr(parts, slot)
            out[f"{slot}.weight"] = _rows_cols(linear.weight, neurons, channels)
            out[f"{slot}.bias"] = _bias(linear, neurons)
    out["down.weight"] = _rows_cols(parts.down.weight, channels, neurons)
    out["down.bias"] = _bias(parts.down, channels)
    return out


def norm_tensor(norm: nn.Module, channels: torch.Tensor, scale: float, offset: float):
    """Sliced norm weight whose effective scale (offset + w) is multiplied by ``scale``."""
    weight = norm.weight.detach()
    kept = weight.index_select(0, channels.to(weight.device))
    if scale == 1.0:
        return kept
    return ((kept.float() + offset) * scale - offset).to(weight.dtype)
