"""GLM-4: GLM with sandwich norms.

Per layer (transformers 5 Glm4DecoderLayer): input_layernorm -> self_attn ->
post_self_attn_layernorm -> residual add; post_attention_layernorm (the pre-MLP norm,
despite its name) -> mlp (fused gate_up_proj) -> post_mlp_layernorm -> residual add.
Absorbing the two post-norms leaves exactly a GlmDecoderLayer, so absorbed models are saved
as model_type "glm" and load with stock transformers.
"""

from __future__ import annotations

import dataclasses

from plsearch.arch import ArchTraits
from plsearch.families.base import Family, LayerParts, llama_like_parts

# Keys of a config dict that describe the class rather than the model.
_CLASS_KEYS = ("model_type", "transformers_version", "architectures")


class Glm4Family(Family):
    model_type = "glm4"
    sandwich = True
    fused_gate_up = True
    absorbed_model_type = "glm"

    def layer_parts(self, layer) -> LayerParts:
        parts = llama_like_parts(layer, fused=True)
        return dataclasses.replace(
            parts,
            post_attn_norm=layer.post_self_attn_layernorm,
            post_mlp_norm=layer.post_mlp_layernorm,
        )

    def traits(self, config) -> ArchTraits:
        return ArchTraits(qkv_bias=config.attention_bias, norms_per_layer=4)

    def absorbed_config(self, config):
        from transformers import GlmConfig

        fields = {k: v for k, v in config.to_dict().items() if k not in _CLASS_KEYS}
        absorbed = GlmConfig(**fields)
        if config.architectures:
            absorbed.architectures = ["GlmForCausalLM"]
        return absorbed

    def block_classes(self):
        from transformers.models.glm4.modeling_glm4 import Glm4DecoderLayer, Glm4RotaryEmbedding

        return Glm4DecoderLayer, Glm4RotaryEmbedding
