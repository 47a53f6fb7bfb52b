"""Post-RMSNorm absorption (docs/method.md section 4) on glm4, saved as stock glm."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import AutoModelForCausalLM

from plsearch.errors import UnsupportedModelError
from plsearch.families import get_family
from plsearch.families.testing import tiny_model
from plsearch.importance import compute_importance
from plsearch.prune import Recipe, build_candidate, save_candidate
from plsearch.prune.slnp import effective_scale


def _tokens(seed: int, n: int = 8, seq: int = 16) -> torch.Tensor:
    return torch.randint(3, 256, (n, seq), generator=torch.Generator().manual_seed(seed))


def _norm_count(model) -> int:
    return sum(1 for m in model.modules() if type(m).__name__.endswith("RMSNorm"))


class _ConstantScale(nn.Module):
    """gamma * z / r: what an absorbed post-norm computes."""

    def __init__(self, gamma: torch.Tensor, r: float) -> None:
        super().__init__()
        self.gamma, self.r = gamma, r

    def forward(self, z):
        return self.gamma * z / self.r


@pytest.fixture(scope="module")
def glm4():
    model = tiny_model("glm4", seed=6)
    imp = compute_importance(model, _tokens(0))
    arch = get_family(model).arch_from_config(model.config).replace(
        num_hidden_layers=3, hidden_size=48, intermediate_size=96)
    return model, imp, arch


def test_absorbed_model_is_glm_without_post_norms(glm4, tmp_path):
    model, imp, arch = glm4
    candidate, report = build_candidate(model, imp, arch, Recipe.preset("pangu"),
                                        calib_batches=_tokens(1))
    assert candidate.config.model_type == "glm" and report.model_type == "glm"
    assert type(candidate).__name__ == "GlmForCausalLM"
    assert _norm_count(candidate) == 2 * 3 + 1 < _norm_count(model)
    assert get_family(candidate).arch_from_config(candidate.config) == arch
    assert len(report.absorbed) == 2 * 3
    for entry in report.absorbed:
        assert entry["slot"] in ("post_attn_norm", "post_mlp_norm")
        assert entry["r"] > 0 and 0 <= entry["rel_error"] < 1
    assert report.absorbed_output_rel_error is not None
    out = save_candidate(candidate, None, tmp_path / "c", {"report": report.to_dict()})
    reloaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    assert type(reloaded).__name__ == "GlmForCausalLM"
    x = _tokens(2, n=2)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x).logits, candidate(x).logits, atol=1e-5, rtol=0)


def test_absorption_equals_constant_rms_post_norms(glm4):
    """The absorbed model computes exactly the unabsorbed candidate with every post-norm
    replaced by gamma * z / r, r being the reported constant."""
    model, imp, arch = glm4
    plain, _ = build_candidate(model, imp, arch, Recipe.preset("pangu", absorb_post_norm=False))
    absorbed, report = build_candidate(model, imp, arch, Recipe.preset("pangu"),
                                       calib_batches=_tokens(1))
    family = get_family(plain)
    for entry in report.absorbed:
        layer = family.layers(plain)[entry["layer"]]
        parts = family.layer_parts(layer)
        attr = {"post_attn_norm": "post_self_attn_layernorm",
                "post_mlp_norm": "post_mlp_layernorm"}[entry["slot"]]
        gamma = effective_scale(getattr(parts, entry["slot"]), family.norm_offset)
        setattr(layer, attr, _ConstantScale(gamma, entry["r"]))
    x = _tokens(3, n=2)
    with torch.no_grad():
        torch.testing.assert_close(absorbed(x).logits, plain(x).logits, atol=1e-5, rtol=1e-5)


def test_error_is_small_when_post_norm_input_rms_is_near_constant(glm4):
    """A sequence of one repeated token gives every position the same attention and MLP
    output, so rms(z) is constant and replacing it by r is (nearly) exact; random text
    gives a larger, reported error."""
    model, imp, arch = glm4
    constant = torch.full((8, 16), 7)
    _, report = build_candidate(model, imp, arch, Recipe.preset("pangu"), calib_batches=constant)
    assert max(e["rms_cv"] for e in report.absorbed) < 1e-3
    assert max(e["rel_error"] for e in report.absorbed) < 1e-3
    assert report.absorbed_output_rel_error < 1e-3
    _, noisy = build_candidate(model, imp, arch, Recipe.preset("pangu"), calib_batches=_tokens(1))
    assert max(e["rel_error"] for e in noisy.absorbed) > 1e-3


def test_absorption_only_where_the_family_allows_it():
    gemma = tiny_model("gemma3_text")
    imp = compute_importance(gemma, _tokens(0))
    arch = get_family(gemma).arch_from_config(gemma.config)
    _, report = build_candidate(gemma, imp, arch, Recipe.preset("pangu"))
    assert report.recipe["absorb_post_norm"] is False and not report.absorbed
    with pytest.raises(UnsupportedModelError, match="absorption is not available"):
        build_candidate(gemma, imp, arch, Recipe(absorb_post_norm=True),
                        calib_batches=_tokens(1))
