"""Model families: adapters keyed by Hugging Face model_type.

    family = get_family(model)            # or a config, or "qwen3"
    for layer in family.layers(model):
        parts = family.layer_parts(layer) # q, k, v, o, gate/up/down, norms

Adding a family: subclass Family in a new module, register it below, and run the contract
suite (tests/families/test_contract.py), which covers every registered family.
"""

from plsearch.families.base import Family, LayerParts
from plsearch.families.block import DecoderBlock
from plsearch.families.gemma3 import Gemma3TextFamily
from plsearch.families.glm import GlmFamily
from plsearch.families.glm4 import Glm4Family
from plsearch.families.llama import LlamaFamily
from plsearch.families.mistral import MistralFamily
from plsearch.families.qwen2 import Qwen2Family
from plsearch.families.qwen3 import Qwen3Family
from plsearch.families.registry import (
    family_for_model,
    get_family,
    register_family,
    supported_model_types,
)

__all__ = [
    "DecoderBlock",
    "Family",
    "LayerParts",
    "family_for_model",
    "get_family",
    "register_family",
    "supported_model_types",
]

for _family in (
    LlamaFamily,
    MistralFamily,
    Qwen2Family,
    Qwen3Family,
    GlmFamily,
    Glm4Family,
    Gemma3TextFamily,
):
    register_family(_family)
del _family
