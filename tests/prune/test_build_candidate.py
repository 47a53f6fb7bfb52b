"""build_candidate on tiny models of every family: identity, shapes, configs, reload."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from plsearch.errors import ConfigError, InvalidArchError, UnsupportedModelError
from plsearch.families import get_family, supported_model_types
from plsearch.families.testing import tiny_model
from plsearch.importance import compute_importance
from plsearch.prune import Recipe, build_candidate, check_candidate, save_candidate

FAMILIES = supported_model_types()
# Every recipe except absorption (absorption is exact only for constant post-norm RMS).
IDENTITY_RECIPES = [
    Recipe.preset("pangu", absorb_post_norm=False),
    Recipe.preset("pangu", absorb_post_norm=False, slnp="act"),
    Recipe.preset("minitron"),
    Recipe.preset("shortgpt"),
]


def _tokens(seed: int, n: int = 8, seq: int = 16) -> torch.Tensor:
    return torch.randint(3, 256, (n, seq), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module", params=FAMILIES)
def parent(request):
    model = tiny_model(request.param, seed=0)
    return model, compute_importance(model, _tokens(0))


def _smaller(model):
    arch = get_family(model).arch_from_config(model.config)
    return arch.replace(num_hidden_layers=2, hidden_size=48, num_attention_heads=2,
                        num_key_value_heads=1, intermediate_size=96)


@pytest.mark.parametrize("recipe", IDENTITY_RECIPES, ids=lambda r: f"{r.name}-{r.slnp}")
def test_own_shape_reproduces_parent_logits(parent, recipe):
    model, imp = parent
    arch = get_family(model).arch_from_config(model.config)
    candidate, report = build_candidate(model, imp, arch, recipe, calib_batches=_tokens(1))
    x = _tokens(2, n=2, seq=12)
    with torch.no_grad():
        torch.testing.assert_close(candidate(x).logits, model(x).logits, atol=1e-5, rtol=0)
    assert report.kept_layers == list(range(arch.num_hidden_layers))
    assert report.moved_groups == 0


def test_smaller_candidate_is_physically_smaller_and_consistent(parent):
    model, imp = parent
    before = {k: v.clone() for k, v in model.state_dict().items()}
    arch = _smaller(model)
    candidate, report = build_candidate(model, imp, arch, Recipe.preset("pangu"),
                                        calib_batches=_tokens(1))
    for k, v in model.state_dict().items():  # the parent is never written
        assert torch.equal(v, before[k]), k
    assert candidate is not model
    out_family = get_family(candidate)
    assert out_family.arch_from_config(candidate.config) == arch
    assert len(out_family.layers(candidate)) == 2
    for layer in out_family.layers(candidate):
        parts = out_family.layer_parts(layer)
        assert parts.q.weight.shape == (2 * 16, 48)
        assert parts.k.weight.shape == parts.v.weight.shape == (16, 48)
        assert parts.o.weight.shape == (48, 32)
        assert parts.down.weight.shape == (48, 96)
        for norm in parts.hidden_norms:
            assert norm.weight.shape == (48,)
    assert out_family.embed_tokens(candidate).weight.shape == (256, 48)
    assert out_family.lm_head(candidate).weight.shape == (256, 48)
    traits = out_family.traits(candidate.config)
    assert report.num_params == arch.num_params(traits) == sum(
        p.numel() for p in candidate.parameters())
    with torch.no_grad():
        assert torch.isfinite(candidate(_tokens(3, n=1)).logits).all()


@pytest.mark.parametrize("model_type", ["qwen3", "gemma3_text", "glm4"])
def test_tied_embeddings_stay_tied(model_type):
    model = tiny_model(model_type, tie_word_embeddings=True)
    imp = compute_importance(model, _tokens(0))
    candidate, _ = build_candidate(model, imp, _smaller(model), Recipe.preset("pangu"),
                                   calib_batches=_tokens(1))
    family = get_family(candidate)
    assert family.lm_head(candidate).weight is family.embed_tokens(candidate).weight
    assert candidate.config.tie_word_embeddings


@pytest.mark.parametrize("tied", [False, True])
def test_gemma_embedding_scale_is_compensated(tied):
    """Gemma multiplies embeddings by sqrt(hidden_size): the candidate keeps the parent's
    residual stream on the kept channels, and (tied) the logits keep the parent's scale."""
    model = tiny_model("gemma3_text", tie_word_embeddings=tied)
    imp = compute_importance(model, _tokens(0))
    arch = get_family(model).arch_from_config(model.config).replace(hidden_size=48)
    candidate, _ = build_candidate(model, imp, arch, Recipe.preset("minitron"))
    kept = torch.sort(torch.sort(imp.channel, descending=True, stable=True).indices[:48]).values
    x = _tokens(2, n=1)
    y = torch.randn(1, 4, 48)
    eps = model.config.rms_norm_eps
    gamma = 1.0 + model.model.norm.weight[kept]
    expected = (gamma * y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + eps)
                ) @ model.lm_head.weight[:, kept].T
    with torch.no_grad():
        torch.testing.assert_close(candidate.model.embed_tokens(x),
                                   model.model.embed_tokens(x)[..., kept])
        torch.testing.assert_close(candidate.lm_head(candidate.model.norm(y)), expected,
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("model_type", FAMILIES)
def test_saved_candidate_reloads_with_its_own_logits(model_type, tmp_path):
    model = tiny_model(model_type, seed=1)
    imp = compute_importance(model, _tokens(0))
    candidate, report = build_candidate(model, imp, _smaller(model), Recipe.preset("pangu"),
                                        calib_batches=_tokens(1))
    out = save_candidate(candidate, None, tmp_path / "cand", {"report": report.to_dict()})
    assert {"config.json", "model.safetensors", "plsearch.json"} <= {p.name for p in out.iterdir()}
    reloaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    assert reloaded.config.model_type == candidate.config.model_type
    x = _tokens(4, n=2, seq=12)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x).logits, candidate(x).logits, atol=1e-5, rtol=0)


def test_infeasible_requests_fail_before_any_work():
    model = tiny_model("llama")
    imp = compute_importance(model, _tokens(0))
    arch = get_family(model).arch_from_config(model.config)
    with pytest.raises(InvalidArchError, match="must not exceed"):
        check_candidate(model.config, arch.replace(intermediate_size=256), Recipe())
    with pytest.raises(InvalidArchError, match="head_dim"):
        check_candidate(model.config, arch.replace(head_dim=8), Recipe())
    with pytest.raises(InvalidArchError, match="depth only"):
        build_candidate(model, imp, arch.replace(hidden_size=32), Recipe.preset("shortgpt"))
    with pytest.raises(UnsupportedModelError, match="absorption"):
        check_candidate(model.config, arch, Recipe(absorb_post_norm=True))
    with pytest.raises(ConfigError, match="calibration"):
        build_candidate(model, imp, arch, Recipe(slnp="act"))
    other = compute_importance(tiny_model("llama", num_hidden_layers=3), _tokens(0))
    with pytest.raises(ConfigError, match="another model"):
        build_candidate(model, other, arch, Recipe())


def test_recipe_presets_and_validation():
    assert Recipe.preset("pangu") == Recipe()
    minitron = Recipe.preset("minitron", slnp="l2")
    assert (minitron.clap, minitron.slnp, minitron.absorb_post_norm) == (False, "l2", False)
    assert not Recipe.preset("shortgpt").width
    assert Recipe().resolved(get_family("glm4")).absorb_post_norm is True
    assert Recipe().resolved(get_family("gemma3_text")).absorb_post_norm is False
    assert Recipe().resolved(get_family("qwen3")).absorb_post_norm is False
    with pytest.raises(ConfigError, match="unknown recipe"):
        Recipe.preset("sheared")
    with pytest.raises(ConfigError, match="slnp"):
        Recipe(slnp="l1")
