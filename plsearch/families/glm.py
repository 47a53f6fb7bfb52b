"""GLM (model_type "glm"): pre-norm, fused gate_up_proj, q/k/v bias, partial rotary.

In transformers 5 GlmDecoderLayer is Glm4DecoderLayer without post_self_attn_layernorm and
post_mlp_layernorm: same GlmAttention/GlmMLP parameter names, same interleaved partial
RoPE, and a GlmConfig with the same fields as Glm4Config. That is what a GLM-4 model becomes
after post-norm absorption.
"""

from __future__ import annotations

from plsearch.arch import ArchTraits
from plsearch.families.base import Family, LayerParts, llama_like_parts


class GlmFamily(Family):
    model_type = "glm"
    fused_gate_up = True

    def layer_parts(self, layer) -> LayerParts:
        return llama_like_parts(layer, fused=True)

    def traits(self, config) -> ArchTraits:
        return ArchTraits(qkv_bias=config.attention_bias)  # o_proj and MLP: bias=False

    def block_classes(self):
        from transformers.models.glm.modeling_glm import GlmDecoderLayer, GlmRotaryEmbedding

        return GlmDecoderLayer, GlmRotaryEmbedding
