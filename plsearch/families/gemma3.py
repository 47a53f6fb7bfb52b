"""Gemma-3 text (model_type "gemma3_text", Gemma3ForCausalLM).

Sandwich norms stored as (1 + w): input_layernorm -> self_attn -> post_attention_layernorm
(after attention, unlike Llama) -> residual; pre_feedforward_layernorm -> mlp ->
post_feedforward_layernorm -> residual. Per-head q_norm/k_norm, embeddings multiplied by
sqrt(hidden_size) (a buffer derived from the config, so it changes when hidden is pruned),
and per-layer sliding/full attention in config.layer_types with one rotary table per type.
Absorption is not offered: no stock Gemma layer exists without the post-norms.
The multimodal "gemma3" model_type (Gemma3ForConditionalGeneration) is not supported.
"""

from __future__ import annotations

import math

from plsearch.arch import ArchConfig, ArchTraits
from plsearch.families.base import Family, LayerParts
from plsearch.families.llama import check_hidden_divisible_by_heads


class Gemma3TextFamily(Family):
    model_type = "gemma3_text"
    sandwich = True
    norm_offset = 1.0

    def layer_parts(self, layer) -> LayerParts:
        attn, mlp = layer.self_attn, layer.mlp
        return LayerParts(
            attn=attn,
            mlp=mlp,
            q=attn.q_proj,
            k=attn.k_proj,
            v=attn.v_proj,
            o=attn.o_proj,
            gate=mlp.gate_proj,
            up=mlp.up_proj,
            gate_up=None,
            down=mlp.down_proj,
            input_norm=layer.input_layernorm,
            post_attn_norm=layer.post_attention_layernorm,
            pre_mlp_norm=layer.pre_feedforward_layernorm,
            post_mlp_norm=layer.post_feedforward_layernorm,
            q_norm=attn.q_norm,
            k_norm=attn.k_norm,
        )

    def embedding_multiplier(self, config) -> float:
        return math.sqrt(config.hidden_size)

    def traits(self, config) -> ArchTraits:
        return ArchTraits(
            qkv_bias=config.attention_bias,
            o_bias=config.attention_bias,
            qk_norm=True,
            norms_per_layer=4,
        )

    def check_arch(self, arch: ArchConfig) -> None:
        check_hidden_divisible_by_heads(self.model_type, arch)

    def block_classes(self):
        from transformers.models.gemma3.modeling_gemma3 import (
            Gemma3DecoderLayer,
            Gemma3RotaryEmbedding,
        )

        return Gemma3DecoderLayer, Gemma3RotaryEmbedding

    def position_embeddings(self, rotary, hidden_states, position_ids, config, layer_idx):
        return rotary(hidden_states, position_ids, config.layer_types[layer_idx])
