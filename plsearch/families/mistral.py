"""Mistral: the Llama layout with no biases at all and an optional sliding window."""

from __future__ import annotations

from plsearch.arch import ArchTraits
from plsearch.families.base import Family, LayerParts, llama_like_parts


class MistralFamily(Family):
    model_type = "mistral"

    def layer_parts(self, layer) -> LayerParts:
        return llama_like_parts(layer)

    def traits(self, config) -> ArchTraits:
        return ArchTraits()  # MistralAttention/MistralMLP hard-code bias=False

    def block_classes(self):
        from transformers.models.mistral.modeling_mistral import (
            MistralDecoderLayer,
            MistralRotaryEmbedding,
        )

        return MistralDecoderLayer, MistralRotaryEmbedding
