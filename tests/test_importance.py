"""Importance: docs/method.md section 1 on tiny models of every family, hooks, determinism, cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from plsearch.data import sample_windows
from plsearch.families import get_family, supported_model_types
from plsearch.families.testing import tiny_model
from plsearch.importance import (
    Importance,
    ImportanceKey,
    compute_importance,
    default_cache_dir,
    importance_cache_path,
)

FAMILIES = supported_model_types()


def _batches(seed: int = 0, n: int = 6, seq: int = 16) -> torch.Tensor:
    return torch.randint(3, 256, (n, seq), generator=torch.Generator().manual_seed(seed))


def _hook_count(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.mark.parametrize("model_type", FAMILIES)
def test_shapes_and_group_sums(model_type):
    model = tiny_model(model_type)
    imp = compute_importance(model, _batches(), batch_size=4)
    arch = get_family(model).arch_from_config(model.config)
    assert imp.shape_mismatch(arch) is None
    assert imp.num_tokens == 6 * 16
    for name in ("channel", "head", "kv_group", "neuron", "block_influence"):
        tensor = getattr(imp, name)
        assert tensor.dtype == torch.float32 and torch.isfinite(tensor).all()
    assert (imp.channel > 0).all() and (imp.head > 0).all() and (imp.neuron >= 0).all()
    groups = imp.head.reshape(arch.num_hidden_layers, arch.num_key_value_heads, -1).sum(-1)
    torch.testing.assert_close(imp.kv_group, groups)
    assert ((imp.block_influence >= 0) & (imp.block_influence <= 2)).all()
    assert _hook_count(model) == 0


def test_scores_match_an_independent_computation():
    """glm4 has all four hidden-size norms per layer; recompute every score by hand."""
    model = tiny_model("glm4")
    family = get_family(model)
    batches = _batches()
    captured: dict[str, list[torch.Tensor]] = {}

    def keep(name):
        def hook(module, args, output):
            captured.setdefault(name, []).append((args[0], output))
        return hook

    handles = [family.final_norm(model).register_forward_hook(keep("final"))]
    for i, layer in enumerate(family.layers(model)):
        parts = family.layer_parts(layer)
        for j, norm in enumerate(parts.hidden_norms):
            handles.append(norm.register_forward_hook(keep(f"norm{i}.{j}")))
        handles.append(parts.o.register_forward_hook(keep(f"o{i}")))
        handles.append(parts.down.register_forward_hook(keep(f"down{i}")))
        handles.append(layer.register_forward_hook(keep(f"layer{i}")))
    with torch.no_grad():
        model.model(input_ids=batches)
    for handle in handles:
        handle.remove()

    imp = compute_importance(model, batches)
    tokens = batches.numel()
    channel = sum(out.abs().sum((0, 1)) for name, [(_, out)] in captured.items()
                  if name.startswith(("norm", "final"))) / tokens
    torch.testing.assert_close(imp.channel, channel)
    for i in range(4):
        o_in = captured[f"o{i}"][0][0].unflatten(-1, (4, 16))
        torch.testing.assert_close(imp.head[i], o_in.norm(dim=-1).mean((0, 1)))
        down_in = captured[f"down{i}"][0][0]
        torch.testing.assert_close(imp.neuron[i], down_in.abs().mean((0, 1)))
        x_in, x_out = captured[f"layer{i}"][0]
        cos = torch.nn.functional.cosine_similarity(x_in, x_out, dim=-1).mean()
        torch.testing.assert_close(imp.block_influence[i], 1 - cos)


def test_hooks_removed_when_the_pass_fails():
    model = tiny_model("llama")
    with pytest.raises(IndexError):
        compute_importance(model, torch.full((2, 8), 10_000))  # token ids out of the vocab
    assert _hook_count(model) == 0


def test_deterministic_for_a_seed():
    model = tiny_model("qwen3")
    stream = np.random.default_rng(0).integers(3, 256, size=5000).astype(np.int32)
    first = compute_importance(model, sample_windows(stream, 6, 16, seed=7))
    second = compute_importance(model, sample_windows(stream, 6, 16, seed=7))
    other = compute_importance(model, sample_windows(stream, 6, 16, seed=8))
    for name in ("channel", "head", "kv_group", "neuron", "block_influence"):
        assert torch.equal(getattr(first, name), getattr(second, name))
    assert not torch.equal(first.channel, other.channel)


def test_cache_hit_returns_identical_tensors_without_running(tmp_path):
    model = tiny_model("glm4")
    key = ImportanceKey(parent_hash="abc", data="builtin", num_samples=6, seq_len=16, seed=0)
    first = compute_importance(model, _batches, key=key, cache_dir=tmp_path)
    assert importance_cache_path(key, tmp_path).exists()

    def must_not_run():
        raise AssertionError("a cache hit must not build batches")

    second = compute_importance(model, must_not_run, key=key, cache_dir=tmp_path)
    for name in ("channel", "head", "kv_group", "neuron", "block_influence"):
        assert torch.equal(getattr(first, name), getattr(second, name))
    assert second.key == key and second.num_tokens == first.num_tokens
    other_key = ImportanceKey("abc", "builtin", 6, 16, seed=1)
    assert importance_cache_path(other_key, tmp_path) != importance_cache_path(key, tmp_path)
    assert list(tmp_path.iterdir()) == [importance_cache_path(key, tmp_path)]  # no temp left


def test_save_load_roundtrip_and_cache_env(tmp_path, monkeypatch):
    imp = compute_importance(tiny_model("gemma3_text"), _batches())
    imp.save(tmp_path / "imp.safetensors")
    loaded = Importance.load(tmp_path / "imp.safetensors")
    assert torch.equal(loaded.neuron, imp.neuron) and loaded.model_type == "gemma3_text"
    monkeypatch.setenv("PLSEARCH_CACHE", str(tmp_path / "root"))
    assert default_cache_dir() == tmp_path / "root" / "importance"
