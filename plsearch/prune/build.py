"""build_candidate: parent + importance + arch + recipe -> a physically smaller HF model.

Order of operations (each step reads the parent, never writes it):
1. plan (scores only): depth keeps the highest-BI layers and names each removed layer's
   receiver; the attention plan picks each kept layer's KV groups (pooled with its donors
   under CLAP) and query heads; the top hidden channels and FFN neurons are chosen.
2. SLNP scales of every kept hidden-size norm ("act" runs the parent on calibration data).
3. a new model of the candidate config is filled with sliced parent tensors: CLAP's gamma
   fold on moved groups, then width slicing, with the SLNP scale applied to each norm.
4. absorption (sandwich families): post-norms folded into o_proj/down_proj on the built
   candidate, which is rebuilt as the absorbed family.
So the method's order, depth (CLAP) -> width slicing -> SLNP -> absorption, holds; steps 1-3
are fused into one pass over the weights so that only one candidate is ever allocated.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from plsearch.arch import ArchConfig
from plsearch.errors import ConfigError, InvalidArchError
from plsearch.families import get_family
from plsearch.prune import absorb as absorb_mod
from plsearch.prune.depth import fold_ratio, plan_attention, plan_depth, qk_norm_source, top_k
from plsearch.prune.recipe import Recipe
from plsearch.prune.skeleton import empty_model, set_param
from plsearch.prune.slnp import FINAL, NORM_SLOTS, act_scales, effective_scale, l2_scale
from plsearch.prune.stream import resident
from plsearch.prune.width import attention_tensors, mlp_tensors, norm_tensor

logger = logging.getLogger(__name__)

__all__ = ["PruneReport", "build_candidate", "check_candidate"]

_WIDTH_AXES = ("hidden_size", "num_attention_heads", "num_key_value_heads", "intermediate_size")


@dataclass(frozen=True)
class PruneReport:
    """What build_candidate did; ``to_dict()`` is what plsearch.json records."""

    parent_arch: dict[str, Any]
    arch: dict[str, Any]
    recipe: dict[str, Any]  # resolved: absorb_post_norm is true or false
    model_type: str  # the candidate's (glm after absorbing a glm4 candidate)
    kept_layers: list[int]  # parent index of each candidate layer
    receiver_of: dict[int, int]  # removed parent layer -> kept layer that received it
    attention_groups: list[list[tuple[int, int]]]  # per layer: (parent layer, KV group)
    moved_groups: int  # KV groups taken from removed layers (CLAP)
    slnp_scales: dict[str, float]  # "L{parent layer}.{slot}" / "final_norm" -> scale
    absorbed: list[dict[str, Any]] = field(default_factory=list)  # per post-norm, see absorb
    absorbed_output_rel_error: float | None = None  # decoder output, held-out calibration
    num_params: int = 0
    build_seconds: float = 0.0
    # CLAP gamma fold: input channels of moved groups left unfolded (ratio above the cap)
    fold_fallbacks: int = 0
    # per candidate layer: the parent layer whose q_norm/k_norm it uses (QK-norm families)
    qk_norm_from: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["receiver_of"] = {str(k): v for k, v in self.receiver_of.items()}
        return out


def check_candidate(parent_config, arch: ArchConfig, recipe: Recipe) -> Recipe:
    """Every rule a candidate must satisfy that can be checked from configs alone.

    Returns the recipe resolved for the parent's family; raises InvalidArchError or
    UnsupportedModelError naming the violated rule. Cheap: no weights are touched.
    """
    family = get_family(parent_config)
    resolved = recipe.resolved(family)
    parent_arch = family.arch_from_config(parent_config)
    arch.validate_against(parent_arch)
    if not resolved.width:
        changed = [f"{name} ({getattr(arch, name)} != {getattr(parent_arch, name)})"
                   for name in _WIDTH_AXES if getattr(arch, name) != getattr(parent_arch, name)]
        if changed:
            raise InvalidArchError(
                f"recipe '{resolved.name}' prunes depth only, so the width must equal the "
                f"parent's: {', '.join(changed)}; keep those axes or choose another recipe")
    family.config_for_arch(parent_config, arch, list(range(arch.num_hidden_layers)))
    return resolved


def build_candidate(
    parent: nn.Module,
    importance,
    arch: ArchConfig,
    recipe: Recipe | None = None,
    calib_batches: torch.Tensor | None = None,
    *,
    batch_size: int = 8,
) -> tuple[nn.Module, PruneReport]:
    """A new HF model of exactly ``arch`` built from ``parent`` (left untouched).

    ``importance`` must come from this parent (compute_importance). ``calib_batches``,
    (N, T) token ids, are needed by SLNP "act" and by absorption.
    """
    start = time.perf_counter()
    family = get_family(parent)
    recipe = check_candidate(parent.config, arch, recipe or Recipe())
    parent_arch = family.arch_from_config(parent.config)
    mismatch = importance.shape_mismatch(parent_arch)
    if mismatch:
        raise ConfigError(f"{mismatch}: the importance scores belong to another model; "
                          "recompute them for this parent")
    needs_data = recipe.slnp == "act" or recipe.absorb_post_norm
    if needs_data and calib_batches is None:
        raise ConfigError("SLNP 'act' and post-norm absorption need calibration batches; "
                          "pass calib_batches")

    # 1. plan
    kept, receiver_of = plan_depth(importance.block_influence, arch.num_hidden_layers,
                                   kinds=getattr(parent.config, "layer_types", None))
    groups = plan_attention(importance, kept, receiver_of, arch.num_key_value_heads,
                            arch.queries_per_group, clap=recipe.clap)
    channels = top_k(importance.channel, arch.hidden_size)
    logger.info("kept layers %s; receivers %s", kept, receiver_of)

    # 2. SLNP scales
    scales = _slnp_scales(parent, family, kept, channels, recipe, calib_batches, batch_size)

    # 3. fill a new model
    config = family.config_for_arch(parent.config, arch, kept)
    dtype = next(parent.parameters()).dtype
    model = empty_model(family, config, dtype)
    with torch.no_grad():
        fold_fallbacks, qk_from = _fill(model, parent, family, importance, kept, groups,
                                        channels, scales, recipe)
    model.to(next(parent.parameters()).device)

    # 4. absorption
    absorbed, output_error = [], None
    if recipe.absorb_post_norm:
        model, norms, output_error = absorb_mod.absorb_post_norms(
            model, family, calib_batches, rms=recipe.absorb_rms, batch_size=batch_size)
        absorbed = [dataclasses.asdict(n) for n in norms]

    report = PruneReport(
        parent_arch=parent_arch.to_dict(),
        arch=arch.to_dict(),
        recipe=recipe.to_dict(),
        model_type=model.config.model_type,
        kept_layers=kept,
        receiver_of=receiver_of,
        attention_groups=[[(g.layer, g.group) for g in layer] for layer in groups],
        moved_groups=sum(g.layer != k for k, layer in zip(kept, groups) for g in layer),
        slnp_scales=scales,
        absorbed=absorbed,
        absorbed_output_rel_error=output_error,
        num_params=sum(p.numel() for p in model.parameters()),
        build_seconds=time.perf_counter() - start,
        fold_fallbacks=fold_fallbacks,
        qk_norm_from=qk_from,
    )
    if fold_fallbacks:
        logger.warning("CLAP gamma fold: %d input channel(s) of moved groups had |gamma_r / "
                       "gamma_l| above %g and were not folded", fold_fallbacks, recipe.fold_cap)
    return model.eval(), report


def _slnp_scales(parent, family, kept, channels, recipe, calib_batches, batch_size):
    from plsearch.prune.slnp import norm_modules

    norms = norm_modules(parent, family, kept)
    if recipe.slnp == "act":
        return act_scales(parent, family, kept, channels, list(calib_batches.split(batch_size)))
    if recipe.slnp == "l2":
        return {key: l2_scale(effective_scale(norm, family.norm_offset), channels.cpu())
                for key, norm in norms.items()}
    return {key: 1.0 for key in norms}


def _fill(model, parent, family, importance, kept, groups, channels, scales,
          recipe) -> tuple[int, list[int]]:
    """Every parameter of ``model`` from the parent (steps 1-3 of the module docstring);
    returns (channels the gamma fold left unfolded, q/k-norm source layer per layer)."""
    fallbacks, qk_from = 0, []
    for new_index, (layer, layer_groups) in enumerate(zip(kept, groups)):
        sources = {g.layer for g in layer_groups}
        with resident(parent, sources | {layer}):  # a streamed parent: these layers only
            unfolded, qk = _fill_layer(model, parent, family, importance, new_index, layer,
                                       layer_groups, sources, channels, scales, recipe)
        fallbacks += unfolded
        qk_from.append(qk)
    _fill_ends(model, parent, family, channels, scales[FINAL])
    return fallbacks, qk_from


def _fill_layer(model, parent, family, importance, new_index, layer, layer_groups, sources,
                channels, scales, recipe) -> tuple[int, int]:
    """Candidate layer ``new_index`` from parent layer ``layer`` and its KV-group donors;
    returns (channels the gamma fold left unfolded, the q/k-norm source layer)."""
    offset = family.norm_offset
    parent_layers = family.layers(parent)
    head_dim = family.arch_from_config(parent.config).head_dim
    dst = family.layer_parts(family.layers(model)[new_index])
    src = family.layer_parts(parent_layers[layer])
    parts_of = {i: family.layer_parts(parent_layers[i]) for i in sources | {layer}}
    receiver_gamma = effective_scale(src.input_norm, offset)
    fold, fallbacks = {}, 0
    for i in sorted(sources - {layer}):
        fold[i], unfolded = fold_ratio(effective_scale(parts_of[i].input_norm, offset),
                                       receiver_gamma, recipe.fold_cap)
        fallbacks += unfolded
    tensors = attention_tensors(parts_of, layer, layer_groups, channels, head_dim, fold)
    neurons = top_k(importance.neuron[layer], dst.down.in_features)
    tensors.update(mlp_tensors(src, neurons, channels))
    for name, tensor in tensors.items():
        slot, param = name.split(".")
        set_param(getattr(dst, slot), param, tensor)
    qk = qk_norm_source(layer_groups, layer)  # per-layer head_dim norms: majority donor
    for slot in ("q_norm", "k_norm"):
        norm = getattr(parts_of[qk], slot)
        if norm is not None:
            set_param(getattr(dst, slot), "weight", norm.weight.detach().clone())
    for slot in NORM_SLOTS:
        if getattr(src, slot) is not None:
            weight = norm_tensor(getattr(src, slot), channels, scales[f"L{layer}.{slot}"],
                                 offset)
            set_param(getattr(dst, slot), "weight", weight)
    return fallbacks, qk


def _fill_ends(model, parent, family, channels, final_scale: float) -> None:
    """Embeddings, final norm and lm_head (tied embeddings stay tied).

    Families that multiply embeddings by a hidden-size dependent constant (Gemma:
    sqrt(hidden_size)) get it compensated in the embedding weights, so the residual
    stream keeps the parent's scale; with tied weights the final norm takes the inverse.
    """
    offset = family.norm_offset
    tied = bool(model.config.tie_word_embeddings)
    compensate = (family.embedding_multiplier(parent.config)
                  / family.embedding_multiplier(model.config))
    embed = family.embed_tokens(parent).weight.detach()
    embed = embed.index_select(1, channels.to(embed.device))
    if compensate != 1.0:
        embed = (embed.float() * compensate).to(embed.dtype)
    set_param(family.embed_tokens(model), "weight", embed)
    final_scale = final_scale / compensate if tied else final_scale
    set_param(family.final_norm(model), "weight",
              norm_tensor(family.final_norm(parent), channels, final_scale, offset))
    if tied:
        model.tie_weights()
        assert family.lm_head(model).weight is family.embed_tokens(model).weight
    else:
        head = family.lm_head(parent)
        set_param(family.lm_head(model), "weight",
                  head.weight.detach().index_select(1, channels.to(head.weight.device)))
        if head.bias is not None:
            set_param(family.lm_head(model), "bias", head.bias.detach().clone())
