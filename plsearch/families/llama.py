"""Llama: pre-norm, separate gate/up/down, optional biases (attention_bias, mlp_bias)."""

from __future__ import annotations

from plsearch.arch import ArchConfig, ArchTraits
from plsearch.errors import InvalidArchError
from plsearch.families.base import Family, LayerParts, llama_like_parts


def check_hidden_divisible_by_heads(model_type: str, arch: ArchConfig) -> None:
    """LlamaConfig and Gemma3TextConfig.validate_architecture() demand this in transformers
    5, even though head_dim is explicit; a config breaking it cannot even be constructed."""
    if arch.hidden_size % arch.num_attention_heads:
        raise InvalidArchError(
            f"{model_type} requires hidden_size ({arch.hidden_size}) to be a multiple of "
            f"num_attention_heads ({arch.num_attention_heads}) (transformers config rule); "
            "choose another hidden size or head count"
        )


class LlamaFamily(Family):
    model_type = "llama"

    def layer_parts(self, layer) -> LayerParts:
        return llama_like_parts(layer)

    def traits(self, config) -> ArchTraits:
        return ArchTraits(
            qkv_bias=config.attention_bias, o_bias=config.attention_bias, mlp_bias=config.mlp_bias
        )

    def check_arch(self, arch: ArchConfig) -> None:
        check_hidden_divisible_by_heads(self.model_type, arch)

    def block_classes(self):
        from transformers.models.llama.modeling_llama import (
            LlamaDecoderLayer,
            LlamaRotaryEmbedding,
        )

        return LlamaDecoderLayer, LlamaRotaryEmbedding
