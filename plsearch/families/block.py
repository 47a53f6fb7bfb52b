"""A single decoder block that can be timed alone (used by the latency profiler)."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from transformers import PretrainedConfig
    from transformers.cache_utils import DynamicCache

    from plsearch.families.base import Family

__all__ = ["DecoderBlock"]


class DecoderBlock(nn.Module):
    """One decoder layer of a family plus the rotary embedding it needs.

    Calling convention::

        block = family.build_block(config, device="cuda", dtype=torch.bfloat16)
        cache = block.new_cache()                       # or None for a cache-free pass
        y = block(x)                                    # prefill: x (batch, seq, hidden)
        y = block(x_next, cache=cache)                  # decode: x_next (batch, 1, hidden)

    ``position_ids`` default to the positions after what the cache holds. No attention
    mask is passed: SDPA applies causal masking itself when seq > 1 on an empty cache, and a
    single decode token attends to the whole cache. Sliding windows are not applied by the
    mask (a sliding layer's cache still trims itself), so long-context timing of sliding
    layers is an upper bound.
    """

    def __init__(
        self,
        family: Family,
        config: PretrainedConfig,
        layer_idx: int = 0,
        *,
        attn_implementation: str = "sdpa",
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not 0 <= layer_idx < config.num_hidden_layers:
            raise ValueError(f"layer_idx {layer_idx} outside [0, {config.num_hidden_layers})")
        config = copy.deepcopy(config)
        config._attn_implementation = attn_implementation
        layer_cls, rotary_cls = family.block_classes()
        with torch.device(device):
            self.layer = layer_cls(config, layer_idx)
            self.rotary = rotary_cls(config=config)
        if dtype is not None:
            self.layer.to(dtype)  # rotary keeps float32 inv_freq, as in the full model
        self.family = family
        self.config = config
        self.layer_idx = layer_idx

    def new_cache(self) -> DynamicCache:
        """An empty KV cache laid out for this config (the block uses slot layer_idx)."""
        from transformers.cache_utils import DynamicCache

        return DynamicCache(config=self.config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        cache: DynamicCache | None = None,
    ) -> torch.Tensor:
        if position_ids is None:
            start = cache.get_seq_length(self.layer_idx) if cache is not None else 0
            seq = hidden_states.shape[1]
            position_ids = torch.arange(start, start + seq, device=hidden_states.device)[None]
        cos_sin = self.family.position_embeddings(
            self.rotary, hidden_states, position_ids, self.config, self.layer_idx
        )
        return self.layer(
            hidden_states,
            attention_mask=None,
            position_ids=position_ids,
            cache=cache,
            use_cache=cache is not None,
            position_embeddings=cos_sin,
        )
