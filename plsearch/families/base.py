"""The family interface: where a decoder's parts live and how to describe a pruned shape.

One ``Family`` subclass per Hugging Face ``model_type``. Everything model-specific that the
rest of plsearch needs goes through it: the modules of each layer (``layer_parts``), the
counting traits of the arch, a consistent HF config for a smaller arch, and a single
decoder block for the latency profiler. Attribute names are read from the transformers 5
modeling sources, not guessed; every family passes tests/families/test_contract.py.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from torch import nn

from plsearch.arch import ArchConfig, ArchTraits
from plsearch.errors import InvalidArchError, UnsupportedModelError

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig, PreTrainedModel

    from plsearch.families.block import DecoderBlock

__all__ = ["Family", "LayerParts"]


@dataclass(frozen=True)
class LayerParts:
    """The modules of one decoder layer, under family-neutral names.

    Projections are ``nn.Linear`` with HF's (out_features, in_features) weights. A fused
    MLP (GLM) has ``gate_up`` with rows [0, f) = gate and [f, 2f) = up, and gate = up = None;
    otherwise gate_up is None. Norm names follow position, not HF names: HF's
    ``post_attention_layernorm`` is the pre-MLP norm in Llama/GLM but the norm *after*
    attention in Gemma-3.
    """

    attn: nn.Module  # the attention module (its o_proj input is the per-head output)
    mlp: nn.Module
    q: nn.Linear
    k: nn.Linear
    v: nn.Linear
    o: nn.Linear
    gate: nn.Linear | None
    up: nn.Linear | None
    gate_up: nn.Linear | None
    down: nn.Linear
    input_norm: nn.Module  # before attention
    pre_mlp_norm: nn.Module  # before the MLP
    post_attn_norm: nn.Module | None = None  # after o_proj (sandwich families only)
    post_mlp_norm: nn.Module | None = None  # after down_proj (sandwich families only)
    q_norm: nn.Module | None = None  # per-head RMSNorm of size head_dim (Qwen3, Gemma-3)
    k_norm: nn.Module | None = None

    @property
    def hidden_norms(self) -> list[nn.Module]:
        """Every hidden-size norm of the layer, in forward order."""
        norms = (self.input_norm, self.post_attn_norm, self.pre_mlp_norm, self.post_mlp_norm)
        return [norm for norm in norms if norm is not None]


def llama_like_parts(layer: nn.Module, *, qk_norm: bool = False, fused: bool = False) -> LayerParts:
    """Parts of a Llama-layout layer: self_attn.{q,k,v,o}_proj, mlp.*, two pre-norms.

    Shared by llama, mistral, qwen2, qwen3, glm (fused gate_up_proj) and, with its two
    post-norms added by the caller, glm4.
    """
    attn, mlp = layer.self_attn, layer.mlp
    return LayerParts(
        attn=attn,
        mlp=mlp,
        q=attn.q_proj,
        k=attn.k_proj,
        v=attn.v_proj,
        o=attn.o_proj,
        gate=None if fused else mlp.gate_proj,
        up=None if fused else mlp.up_proj,
        gate_up=mlp.gate_up_proj if fused else None,
        down=mlp.down_proj,
        input_norm=layer.input_layernorm,
        pre_mlp_norm=layer.post_attention_layernorm,
        q_norm=attn.q_norm if qk_norm else None,
        k_norm=attn.k_norm if qk_norm else None,
    )


class Family(ABC):
    """Adapter for one HF ``model_type`` (an ``XForCausalLM`` with ``model.layers``)."""

    model_type: ClassVar[str]
    # Norms after attention AND after the MLP (Pangu's DSSN, GLM-4, Gemma-3).
    sandwich: ClassVar[bool] = False
    # RMSNorm scale is (norm_offset + weight): 0.0 standard, 1.0 for Gemma-style norms.
    norm_offset: ClassVar[float] = 0.0
    # gate and up live in one gate_up_proj (GLM); see LayerParts.
    fused_gate_up: ClassVar[bool] = False
    # model_type to save as once post-norms are absorbed; None when stock transformers has
    # no layer without them (absorption is then not offered).
    absorbed_model_type: ClassVar[str | None] = None

    # ---- where things live (HF XForCausalLM layout) -----------------------------------

    def decoder(self, model: PreTrainedModel) -> nn.Module:
        """The inner base model (``XModel``) holding embeddings, layers and final norm."""
        return model.model

    def layers(self, model: PreTrainedModel) -> nn.ModuleList:
        return self.decoder(model).layers

    def embed_tokens(self, model: PreTrainedModel) -> nn.Embedding:
        return self.decoder(model).embed_tokens

    def final_norm(self, model: PreTrainedModel) -> nn.Module:
        return self.decoder(model).norm

    def lm_head(self, model: PreTrainedModel) -> nn.Linear:
        return model.lm_head

    @abstractmethod
    def layer_parts(self, layer: nn.Module) -> LayerParts: ...

    def embedding_multiplier(self, config: PretrainedConfig) -> float:
        """Constant the model multiplies embeddings by (Gemma: sqrt(hidden_size)).

        It follows hidden_size, so pruning the hidden size changes it; pruning code that
        wants the parent's function must compensate.
        """
        return 1.0

    # ---- arch <-> config --------------------------------------------------------------

    @abstractmethod
    def traits(self, config: PretrainedConfig) -> ArchTraits: ...

    def arch_from_config(self, config: PretrainedConfig) -> ArchConfig:
        heads = config.num_attention_heads
        return ArchConfig(
            num_hidden_layers=config.num_hidden_layers,
            hidden_size=config.hidden_size,
            num_attention_heads=heads,
            num_key_value_heads=getattr(config, "num_key_value_heads", None) or heads,
            # Qwen2's config has no head_dim field; its modeling code falls back to this.
            head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
            intermediate_size=config.intermediate_size,
            vocab_size=config.vocab_size,
            tie_word_embeddings=bool(config.tie_word_embeddings),
        )

    def check_arch(self, arch: ArchConfig) -> None:
        """Family rules beyond ArchConfig.validate(); raise InvalidArchError naming them."""

    def config_for_arch(
        self,
        parent_config: PretrainedConfig,
        arch: ArchConfig,
        kept_layers: Sequence[int] | None = None,
    ) -> PretrainedConfig:
        """A deep copy of ``parent_config`` describing ``arch``; everything else unchanged.

        ``kept_layers`` (sorted parent indices, one per new layer) picks the per-layer
        entries (``layer_types``) the new layers inherit; default: the first layers.
        """
        arch.validate_against(self.arch_from_config(parent_config))
        self.check_arch(arch)
        kept = _kept_layers(kept_layers, arch, parent_config.num_hidden_layers)
        config = copy.deepcopy(parent_config)
        for name, value in arch.to_dict().items():
            if name == "head_dim" and not _needs_explicit_head_dim(config, arch):
                continue
            setattr(config, name, value)
        if getattr(config, "layer_types", None) is not None:
            config.layer_types = [parent_config.layer_types[i] for i in kept]
        _validate_hf_config(config, arch)
        return config

    def absorbed_config(self, config: PretrainedConfig) -> PretrainedConfig:
        """The config of this model once its post-norms are absorbed (sandwich families)."""
        why = (
            "stock transformers has no matching layer without post-norms"
            if self.sandwich
            else "it has no post-norms"
        )
        raise UnsupportedModelError(
            f"post-norm absorption is not available for model_type '{self.model_type}': "
            f"{why}; disable absorption"
        )

    # ---- building ---------------------------------------------------------------------

    def build_model(self, config: PretrainedConfig) -> PreTrainedModel:
        """A freshly initialized ``XForCausalLM`` for ``config`` (weights random)."""
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_config(config)

    def build_block(
        self,
        config: PretrainedConfig,
        layer_idx: int = 0,
        *,
        attn_implementation: str = "sdpa",
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
    ) -> DecoderBlock:
        """One decoder layer of this family plus its rotary embedding, for timing.

        See ``DecoderBlock`` for the calling convention. Weights are random; the modules
        are created directly on ``device``.
        """
        from plsearch.families.block import DecoderBlock

        return DecoderBlock(
            self,
            config,
            layer_idx,
            attn_implementation=attn_implementation,
            device=device,
            dtype=dtype,
        )

    @abstractmethod
    def block_classes(self) -> tuple[type[nn.Module], type[nn.Module]]:
        """(decoder layer class, rotary embedding class) from the transformers source."""

    def position_embeddings(
        self,
        rotary: nn.Module,
        hidden_states: torch.Tensor,
        position_ids: torch.Tensor,
        config: PretrainedConfig,
        layer_idx: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin) that layer ``layer_idx`` expects as ``position_embeddings``."""
        return rotary(hidden_states, position_ids)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model_type={self.model_type!r})"


def _kept_layers(
    kept_layers: Sequence[int] | None, arch: ArchConfig, parent_depth: int
) -> list[int]:
    if kept_layers is None:
        return list(range(arch.num_hidden_layers))
    kept = list(kept_layers)
    if len(kept) != arch.num_hidden_layers:
        raise InvalidArchError(
            f"kept_layers has {len(kept)} entries but the arch has "
            f"num_hidden_layers={arch.num_hidden_layers}; pass one parent index per new layer"
        )
    if kept != sorted(set(kept)) or (kept and (kept[0] < 0 or kept[-1] >= parent_depth)):
        raise InvalidArchError(
            f"kept_layers must be increasing distinct indices in [0, {parent_depth}), got {kept}"
        )
    return kept


def _needs_explicit_head_dim(config: PretrainedConfig, arch: ArchConfig) -> bool:
    """Write head_dim when the config has the field or the HF fallback would be wrong.

    Qwen2Config has no head_dim field and derives hidden_size // num_attention_heads; we
    only add the key when pruning breaks that identity, so an unpruned config stays equal
    to its parent.
    """
    if getattr(config, "head_dim", None) is not None:
        return True
    return arch.hidden_size // arch.num_attention_heads != arch.head_dim


def _validate_hf_config(config: PretrainedConfig, arch: ArchConfig) -> None:
    """Run transformers' own config validation and report failures as InvalidArchError."""
    validate: Callable[[], None] | None = getattr(config, "validate", None)
    if validate is None:
        return
    try:
        validate()
    except Exception as exc:  # transformers raises several exception types here
        cause = exc.__cause__ or exc
        reason = " ".join(str(cause).split())
        raise InvalidArchError(
            f"transformers rejects the {config.model_type} config for arch {arch}: {reason}"
        ) from exc
