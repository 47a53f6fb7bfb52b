"""Qwen2: the Llama layout with q/k/v biases (hard-coded) and no bias on o_proj.

Qwen2Config has no head_dim field: the modeling code uses hidden_size // heads unless the
config carries a head_dim attribute, which config_for_arch adds when pruning needs it.
"""

from __future__ import annotations

from plsearch.arch import ArchTraits
from plsearch.families.base import Family, LayerParts, llama_like_parts


class Qwen2Family(Family):
    model_type = "qwen2"

    def layer_parts(self, layer) -> LayerParts:
        return llama_like_parts(layer)

    def traits(self, config) -> ArchTraits:
        return ArchTraits(qkv_bias=True)

    def block_classes(self):
        from transformers.models.qwen2.modeling_qwen2 import (
            Qwen2DecoderLayer,
            Qwen2RotaryEmbedding,
        )

        return Qwen2DecoderLayer, Qwen2RotaryEmbedding
