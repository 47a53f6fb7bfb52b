"""Tiny models of every family, built from config with no network (tests and benches).

config = tiny_config("qwen3", tie_word_embeddings=True)
model = tiny_model("glm4", seed=0)
"""

from __future__ import annotations

from typing import Any

import torch

from plsearch.families.registry import get_family

__all__ = ["TINY_DEFAULTS", "tiny_config", "tiny_model"]

# hidden 64, 4 layers, 4 query heads in 2 KV groups of head_dim 16, FFN 128, vocab 256.
TINY_DEFAULTS: dict[str, Any] = {
    "num_hidden_layers": 4,
    "hidden_size": 64,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "intermediate_size": 128,
    "vocab_size": 256,
    "max_position_embeddings": 256,
    "tie_word_embeddings": False,
    # In-vocabulary special tokens (GLM-4's defaults are ~151k and would warn).
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 2,
}

# Per-family extras that make the tiny model representative.
_FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    # Both attention kinds present, a window shorter than test sequences, and the
    # attention scale of a real checkpoint (query_pre_attn_scalar = head_dim).
    "gemma3_text": {
        "layer_types": ["sliding_attention", "full_attention"] * 2,
        "sliding_window": 8,
        "query_pre_attn_scalar": 16,
    },
}
# Config classes with no head_dim field: like real checkpoints, their tiny configs leave it
# out (the modeling code derives hidden_size // num_attention_heads = 16).
_NO_HEAD_DIM_FIELD = ("qwen2",)


def tiny_config(model_type: str, **overrides: Any):
    """A tiny HF config of ``model_type``; ``overrides`` replace any field."""
    from transformers import AutoConfig

    get_family(model_type)  # unknown model_type -> UnsupportedModelError with a hint
    fields = {**TINY_DEFAULTS, **_FAMILY_DEFAULTS.get(model_type, {}), **overrides}
    if model_type in _NO_HEAD_DIM_FIELD and "head_dim" not in overrides:
        del fields["head_dim"]
    layers = fields["num_hidden_layers"]
    if "layer_types" in fields and len(fields["layer_types"]) != layers:
        pattern = fields["layer_types"]
        fields["layer_types"] = [pattern[i % len(pattern)] for i in range(layers)]
    return AutoConfig.for_model(model_type, **fields)


def tiny_model(model_type: str, seed: int = 0, *, jitter_norms: bool = True, **overrides: Any):
    """A randomly initialized tiny ``XForCausalLM`` in eval mode, deterministic in ``seed``.

    With ``jitter_norms`` every norm weight gets N(0, 0.1) noise on top of HF's init, so code
    whose result depends on norm weights (SLNP, absorption, CLAP's gamma ratios) is tested
    on weights that are not all equal.
    """
    config = tiny_config(model_type, **overrides)
    torch.manual_seed(seed)
    model = get_family(model_type).build_model(config)
    if jitter_norms:
        generator = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "norm" in name.rsplit(".", 2)[-2]:
                    param.add_(0.1 * torch.randn(param.shape, generator=generator))
    return model.eval()
