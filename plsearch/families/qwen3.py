"""Qwen3: the Llama layout plus per-head q_norm/k_norm (RMSNorm of size head_dim)."""

from __future__ import annotations

from plsearch.arch import ArchTraits
from plsearch.families.base import Family, LayerParts, llama_like_parts


class Qwen3Family(Family):
    model_type = "qwen3"

    def layer_parts(self, layer) -> LayerParts:
        return llama_like_parts(layer, qk_norm=True)

    def traits(self, config) -> ArchTraits:
        return ArchTraits(
            qkv_bias=config.attention_bias, o_bias=config.attention_bias, qk_norm=True
        )

    def block_classes(self):
        from transformers.models.qwen3.modeling_qwen3 import (
            Qwen3DecoderLayer,
            Qwen3RotaryEmbedding,
        )

        return Qwen3DecoderLayer, Qwen3RotaryEmbedding
