"""SLNP, stabilized LayerNorm pruning (docs/method.md section 3): one scale per sliced norm.

Every hidden-size RMSNorm keeps ``gamma[kept] * c``; this module only computes c.
"l2": c = ||gamma||_2 / ||gamma[kept]||_2. "act": c makes the mean per-token L2 norm of
the sliced norm's output (over the kept channels) equal that of the unpruned norm's output
(over all channels), both on the parent's own norm inputs from calibration data (one pass
of the parent, hooks on the norms of the kept layers and the final norm). Matching the RMS
instead would give c ~ 1: normalization already fixes the RMS.
"none": c = 1. Norms stored as (offset + w), Gemma's 1 + w, are scaled on the effective
scale offset + w. Keeping every channel means c = 1 exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["NORM_SLOTS", "act_scales", "effective_scale", "l2_scale", "norm_eps", "norm_modules"]

# Hidden-size norm slots of a layer (LayerParts attribute names), in forward order.
NORM_SLOTS = ("input_norm", "post_attn_norm", "pre_mlp_norm", "post_mlp_norm")
FINAL = "final_norm"


def effective_scale(norm: nn.Module, offset: float) -> torch.Tensor:
    """The per-channel scale the norm multiplies by, in float32 (offset + weight)."""
    return norm.weight.detach().float() + offset


def norm_eps(norm: nn.Module) -> float:
    for name in ("variance_epsilon", "eps"):
        value = getattr(norm, name, None)
        if isinstance(value, float | int):
            return float(value)
    raise TypeError(f"cannot find the epsilon of {type(norm).__name__}")


def norm_modules(model: nn.Module, family, layers: list[int]) -> dict[str, nn.Module]:
    """Hidden-size norms by key: "L{layer}.{slot}" for ``layers`` (parent indices), plus
    "final_norm"."""
    all_layers = family.layers(model)
    norms = {}
    for index in layers:
        parts = family.layer_parts(all_layers[index])
        for slot in NORM_SLOTS:
            norm = getattr(parts, slot)
            if norm is not None:
                norms[f"L{index}.{slot}"] = norm
    norms[FINAL] = family.final_norm(model)
    return norms


def l2_scale(gamma: torch.Tensor, kept: torch.Tensor) -> float:
    """||gamma||_2 / ||gamma[kept]||_2 for an effective scale ``gamma``."""
    if kept.numel() == gamma.numel():
        return 1.0
    kept_norm = gamma[kept].norm().item()
    return gamma.norm().item() / kept_norm if kept_norm > 0 else 1.0


class _OutputNorm:
    """Forward hook on a parent norm: sums over tokens of the output vector's L2 norm, full
    and re-normalized on the kept channels only (what the sliced norm would output for the
    same input)."""

    def __init__(self, kept: torch.Tensor, offset: float) -> None:
        self.kept = kept
        self.offset = offset
        self.full = 0.0
        self.sliced = 0.0
        self.tokens = 0

    def __call__(self, module, args, output) -> None:
        x = args[0].float()[..., self.kept.to(args[0].device)]
        gamma = effective_scale(module, self.offset)[self.kept.to(module.weight.device)]
        y_sliced = gamma * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + norm_eps(module))
        self.full += output.float().norm(dim=-1).sum().item()
        self.sliced += y_sliced.norm(dim=-1).sum().item()
        self.tokens += x[..., 0].numel()


def act_scales(
    parent: nn.Module,
    family,
    kept_layers: list[int],
    kept_channels: torch.Tensor,
    batches: list[torch.Tensor],
) -> dict[str, float]:
    """SLNP "act" scale of every kept hidden-size norm, keyed as in ``norm_modules``."""
    width = family.arch_from_config(parent.config).hidden_size
    if kept_channels.numel() == width:
        return {key: 1.0 for key in norm_modules(parent, family, kept_layers)}
    hooks = {key: _OutputNorm(kept_channels, family.norm_offset)
             for key in norm_modules(parent, family, kept_layers)}
    device = next(parent.parameters()).device
    with torch.inference_mode(), _hooked(parent, family, kept_layers, hooks):
        for batch in batches:
            family.decoder(parent)(input_ids=batch.to(device), use_cache=False)
    # c = mean_t ||y_full,t||_2 / mean_t ||y_sliced,t||_2 (the token counts cancel)
    return {key: hook.full / hook.sliced if hook.sliced > 0 else 1.0
            for key, hook in hooks.items()}


@contextmanager
def _hooked(model, family, layers, hooks) -> Iterator[None]:
    handles = []
    try:
        for key, norm in norm_modules(model, family, layers).items():
            handles.append(norm.register_forward_hook(hooks[key]))
        yield
    finally:
        for handle in handles:
            handle.remove()
