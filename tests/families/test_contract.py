"""Contract suite: every registered family must pass every test here, on tiny models."""

from __future__ import annotations

import pytest
import torch

from plsearch.arch import ArchConfig
from plsearch.errors import InvalidArchError, UnsupportedModelError
from plsearch.families import (
    DecoderBlock,
    Family,
    family_for_model,
    get_family,
    register_family,
    supported_model_types,
)
from plsearch.families.testing import TINY_DEFAULTS, tiny_config, tiny_model

FAMILIES = supported_model_types()


@pytest.fixture(scope="module", params=FAMILIES)
def parent(request):
    """(family, tiny model) per registered family, built once per module."""
    model = tiny_model(request.param, seed=0)
    return get_family(request.param), model


def _numel(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _smaller_arch(parent_arch: ArchConfig) -> ArchConfig:
    # hidden 48 with 2 heads of 16: hidden // heads != head_dim, so head_dim must be explicit.
    return parent_arch.replace(
        num_hidden_layers=3,
        hidden_size=48,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=96,
    )


def test_registry_lists_the_expected_families():
    assert set(FAMILIES) >= {"llama", "mistral", "qwen2", "qwen3", "glm", "glm4"}


def test_lookup_by_model_config_and_string(parent):
    family, model = parent
    assert isinstance(family, Family)
    assert get_family(model) is family
    assert get_family(model.config) is family
    assert get_family(family.model_type) is family
    assert family_for_model(model) is family


def test_arch_read_from_model_equals_config(parent):
    family, model = parent
    arch = family.arch_from_config(model.config)
    for name, value in TINY_DEFAULTS.items():
        if name in arch.to_dict():
            assert getattr(arch, name) == value, name


@pytest.mark.parametrize("tied", [False, True])
def test_num_params_is_exact(parent, tied):
    family, _ = parent
    model = tiny_model(family.model_type, seed=0, tie_word_embeddings=tied)
    arch = family.arch_from_config(model.config)
    assert arch.tie_word_embeddings is tied
    assert (family.lm_head(model).weight is family.embed_tokens(model).weight) is tied
    assert arch.num_params(family.traits(model.config)) == _numel(model)


def test_navigation(parent):
    family, model = parent
    arch = family.arch_from_config(model.config)
    assert len(family.layers(model)) == arch.num_hidden_layers
    assert family.embed_tokens(model).weight.shape == (arch.vocab_size, arch.hidden_size)
    assert family.lm_head(model).weight.shape == (arch.vocab_size, arch.hidden_size)
    assert family.final_norm(model).weight.shape == (arch.hidden_size,)
    assert family.decoder(model).layers is family.layers(model)


def test_layer_parts_shapes_and_coverage(parent):
    family, model = parent
    arch = family.arch_from_config(model.config)
    traits = family.traits(model.config)
    d, h, f = arch.hidden_size, arch.head_dim, arch.intermediate_size
    q_out, kv_out = arch.num_attention_heads * h, arch.num_key_value_heads * h
    for layer in family.layers(model):
        parts = family.layer_parts(layer)
        assert parts.q.weight.shape == (q_out, d)
        assert parts.k.weight.shape == (kv_out, d)
        assert parts.v.weight.shape == (kv_out, d)
        assert parts.o.weight.shape == (d, q_out)
        assert parts.down.weight.shape == (d, f)
        if family.fused_gate_up:
            assert parts.gate is None and parts.up is None
            assert parts.gate_up.weight.shape == (2 * f, d)
        else:
            assert parts.gate_up is None
            assert parts.gate.weight.shape == parts.up.weight.shape == (f, d)
        assert len(parts.hidden_norms) == traits.norms_per_layer
        assert (parts.post_attn_norm is not None) == family.sandwich
        assert (parts.post_mlp_norm is not None) == family.sandwich
        for norm in parts.hidden_norms:
            assert norm.weight.shape == (d,)
        assert (parts.q_norm is not None) == traits.qk_norm == (parts.k_norm is not None)
        if traits.qk_norm:
            assert parts.q_norm.weight.shape == parts.k_norm.weight.shape == (h,)
        # Every parameter of the layer belongs to exactly one named part.
        named = [
            parts.q,
            parts.k,
            parts.v,
            parts.o,
            parts.gate,
            parts.up,
            parts.gate_up,
            parts.down,
            parts.q_norm,
            parts.k_norm,
            *parts.hidden_norms,
        ]
        covered = [p for module in named if module is not None for p in module.parameters()]
        assert len({id(p) for p in covered}) == len(covered)
        assert {id(p) for p in covered} == {id(p) for p in layer.parameters()}


def test_embedding_multiplier_matches_the_embedding_module(parent):
    family, model = parent
    embed = family.embed_tokens(model)
    ids = torch.tensor([[3, 5, 7]])
    with torch.no_grad():
        expected = embed.weight[ids] * family.embedding_multiplier(model.config)
        torch.testing.assert_close(embed(ids), expected)


def test_norm_offset_matches_the_norm_module(parent):
    family, model = parent
    norm = family.layer_parts(family.layers(model)[0]).input_norm
    x = torch.randn(2, 3, norm.weight.shape[0])
    with torch.no_grad():
        saved = norm.weight.clone()
        norm.weight.zero_()
        out = norm(x)
        norm.weight.copy_(saved)
    normalized = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)
    torch.testing.assert_close(out, family.norm_offset * normalized, atol=1e-3, rtol=1e-3)


def test_config_for_parent_arch_equals_parent_config(parent):
    family, model = parent
    arch = family.arch_from_config(model.config)
    config = family.config_for_arch(model.config, arch)
    assert config is not model.config
    assert config.to_dict() == model.config.to_dict()


def test_config_for_smaller_arch_builds_a_model_of_the_counted_size(parent):
    family, model = parent
    parent_arch = family.arch_from_config(model.config)
    arch = _smaller_arch(parent_arch)
    kept = [0, 2, 3]
    config = family.config_for_arch(model.config, arch, kept_layers=kept)
    assert family.arch_from_config(config) == arch
    assert model.config.num_hidden_layers == parent_arch.num_hidden_layers  # parent untouched
    if getattr(model.config, "layer_types", None) is not None:
        assert config.layer_types == [model.config.layer_types[i] for i in kept]
    child = family.build_model(config)
    assert _numel(child) == arch.num_params(family.traits(config))
    parts = family.layer_parts(family.layers(child)[0])
    assert parts.q.weight.shape == (arch.num_attention_heads * arch.head_dim, arch.hidden_size)
    logits = child(torch.randint(0, arch.vocab_size, (1, 5))).logits
    assert logits.shape == (1, 5, arch.vocab_size)


def test_config_for_arch_survives_save_and_reload(parent, tmp_path):
    from transformers import AutoConfig

    family, model = parent
    arch = _smaller_arch(family.arch_from_config(model.config))
    family.config_for_arch(model.config, arch).save_pretrained(tmp_path)
    reloaded = AutoConfig.from_pretrained(tmp_path)
    assert get_family(reloaded) is family
    assert family.arch_from_config(reloaded) == arch


def test_config_for_arch_rejects_arches_that_do_not_fit(parent):
    family, model = parent
    parent_arch = family.arch_from_config(model.config)
    with pytest.raises(InvalidArchError, match="must not exceed the parent"):
        family.config_for_arch(model.config, parent_arch.replace(hidden_size=128))
    with pytest.raises(InvalidArchError, match="kept_layers"):
        family.config_for_arch(model.config, _smaller_arch(parent_arch), kept_layers=[0, 1])


def test_family_rules_are_checked_before_building(parent):
    family, model = parent
    # 50 is not a multiple of 4 heads: Llama and Gemma-3 configs refuse it in transformers 5.
    arch = family.arch_from_config(model.config).replace(hidden_size=50)
    try:
        family.check_arch(arch)
    except InvalidArchError as exc:
        assert "multiple of num_attention_heads" in str(exc)
        with pytest.raises(InvalidArchError):
            family.config_for_arch(model.config, arch)
        return
    config = family.config_for_arch(model.config, arch)
    assert _numel(family.build_model(config)) == arch.num_params(family.traits(config))


def test_absorbed_config(parent):
    family, model = parent
    if family.absorbed_model_type is None:
        with pytest.raises(UnsupportedModelError, match="absorption"):
            family.absorbed_config(model.config)
        return
    assert family.sandwich
    absorbed_config = family.absorbed_config(model.config)
    absorbed = get_family(absorbed_config)
    assert absorbed.model_type == family.absorbed_model_type
    assert not absorbed.sandwich
    assert absorbed.arch_from_config(absorbed_config) == family.arch_from_config(model.config)
    # Same config fields apart from the class, so the rotary/partial-RoPE setup is unchanged.
    skip = {"model_type", "architectures", "transformers_version"}
    mine = {k: v for k, v in model.config.to_dict().items() if k not in skip}
    theirs = {k: v for k, v in absorbed_config.to_dict().items() if k not in skip}
    assert mine == theirs
    child = absorbed.build_model(absorbed_config)
    # The absorbed model's parameters are the sandwich model's minus the two post-norms.
    post_norm_names = set()
    for i, layer in enumerate(family.layers(model)):
        parts = family.layer_parts(layer)
        for norm in (parts.post_attn_norm, parts.post_mlp_norm):
            for name, module in layer.named_modules():
                if module is norm:
                    post_norm_names.add(f"model.layers.{i}.{name}.weight")
    expected = {k: v.shape for k, v in model.state_dict().items() if k not in post_norm_names}
    assert {k: v.shape for k, v in child.state_dict().items()} == expected


def test_glm4_absorbed_config_keeps_partial_rotary():
    rope = {"rope_type": "default", "rope_theta": 5000.0, "partial_rotary_factor": 0.25}
    config = tiny_config("glm4", rope_parameters=rope)
    config.architectures = ["Glm4ForCausalLM"]
    absorbed = get_family("glm4").absorbed_config(config)
    assert absorbed.model_type == "glm"
    assert absorbed.rope_parameters == rope
    assert absorbed.architectures == ["GlmForCausalLM"]


def test_head_dim_is_written_only_when_the_hf_fallback_would_be_wrong():
    family, config = get_family("qwen2"), tiny_config("qwen2")
    assert "head_dim" not in config.to_dict()  # like real Qwen2 checkpoints
    arch = family.arch_from_config(config)
    assert arch.head_dim == 16
    shallower = family.config_for_arch(config, arch.replace(num_hidden_layers=2))
    assert "head_dim" not in shallower.to_dict()
    narrower = family.config_for_arch(config, arch.replace(hidden_size=48))  # 48 // 4 != 16
    assert narrower.to_dict()["head_dim"] == 16
    assert family.arch_from_config(narrower).head_dim == 16


def test_block_matches_the_full_model_and_decodes_with_a_cache(parent):
    family, model = parent
    config = model.config
    ids = torch.randint(0, config.vocab_size, (2, 6))
    with torch.no_grad():
        hidden = model(ids, output_hidden_states=True).hidden_states
        for layer_idx in (0, 1):
            block = family.build_block(config, layer_idx)
            assert isinstance(block, DecoderBlock)
            block.layer.load_state_dict(family.layers(model)[layer_idx].state_dict())
            out = block(hidden[layer_idx])
            torch.testing.assert_close(out, hidden[layer_idx + 1], atol=1e-5, rtol=1e-4)
            cache = block.new_cache()
            block(hidden[layer_idx][:, :5], cache=cache)
            step = block(hidden[layer_idx][:, 5:], cache=cache)
            torch.testing.assert_close(step, out[:, 5:], atol=1e-5, rtol=1e-4)


def test_block_in_bfloat16(parent):
    family, model = parent
    block = family.build_block(model.config, dtype=torch.bfloat16)
    x = torch.randn(1, 4, model.config.hidden_size, dtype=torch.bfloat16)
    with torch.inference_mode():
        assert block(x).dtype == torch.bfloat16


def test_unknown_model_type_suggests_the_closest():
    with pytest.raises(UnsupportedModelError, match="did you mean 'llama'") as info:
        get_family("lama")
    assert "Supported: " + ", ".join(FAMILIES) in str(info.value)
    with pytest.raises(UnsupportedModelError, match="did you mean 'gemma3_text'"):
        get_family("gemma3")
    with pytest.raises(UnsupportedModelError) as info:
        get_family("bert")
    assert "did you mean" not in str(info.value)
    with pytest.raises(UnsupportedModelError, match="cannot tell the model_type"):
        get_family(object())
    with pytest.raises(UnsupportedModelError, match="did you mean 'mistral'"):
        tiny_config("mistrel")


def test_register_family_refuses_duplicates():
    with pytest.raises(ValueError, match="already registered"):
        register_family(type(get_family("llama")))
