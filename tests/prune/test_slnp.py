"""SLNP (docs/method.md section 3): l2 keeps ||gamma||_2, none keeps gamma[kept], act matches the mean per-token L2 norm of the norm's output."""

from __future__ import annotations

import pytest
import torch

from plsearch.families import get_family, supported_model_types
from plsearch.families.testing import tiny_model
from plsearch.importance import compute_importance
from plsearch.prune import Recipe, build_candidate
from plsearch.prune.depth import top_k
from plsearch.prune.slnp import effective_scale, norm_modules

FAMILIES = supported_model_types()


def _tokens(seed: int, n: int = 8, seq: int = 16) -> torch.Tensor:
    return torch.randint(3, 256, (n, seq), generator=torch.Generator().manual_seed(seed))


def _build(model_type: str, slnp: str):
    model = tiny_model(model_type, seed=2)
    imp = compute_importance(model, _tokens(0))
    family = get_family(model)
    arch = family.arch_from_config(model.config).replace(num_hidden_layers=3, hidden_size=40)
    recipe = Recipe.preset("minitron", slnp=slnp)  # no CLAP or absorption: norms stay put
    candidate, report = build_candidate(model, imp, arch, recipe, calib_batches=_tokens(1))
    pairs = {}  # key -> (parent norm, candidate norm)
    parent_norms = norm_modules(model, family, report.kept_layers)
    cand_norms = norm_modules(candidate, family, list(range(3)))
    for key, norm in parent_norms.items():
        if key == "final_norm":
            pairs[key] = (norm, cand_norms[key])
        else:
            layer, slot = key[1:].split(".")
            new_index = report.kept_layers.index(int(layer))
            pairs[key] = (norm, cand_norms[f"L{new_index}.{slot}"])
    return model, family, imp, pairs, report


@pytest.mark.parametrize("model_type", FAMILIES)
def test_l2_preserves_gamma_norm_of_every_hidden_norm(model_type):
    _, family, _, pairs, _ = _build(model_type, "l2")
    for key, (old, new) in pairs.items():
        before = effective_scale(old, family.norm_offset).norm()
        after = effective_scale(new, family.norm_offset).norm()
        torch.testing.assert_close(after, before, msg=key)
    assert len(pairs) == 3 * (4 if family.sandwich else 2) + 1


@pytest.mark.parametrize("model_type", FAMILIES)
def test_none_leaves_kept_gamma_untouched(model_type):
    _, _, imp, pairs, _ = _build(model_type, "none")
    kept = top_k(imp.channel, 40)
    for key, (old, new) in pairs.items():
        assert torch.equal(new.weight, old.weight[kept]), key


@pytest.mark.parametrize("model_type", ["qwen3", "gemma3_text", "glm4"])
def test_act_matches_the_unpruned_output_l2_norm_on_the_parents_inputs(model_type):
    model, family, imp, pairs, report = _build(model_type, "act")
    kept = top_k(imp.channel, 40)
    calib = _tokens(1)
    captured = {}

    def keep(key):
        def hook(module, args, output):
            captured[key] = (args[0], output)
        return hook

    handles = [old.register_forward_hook(keep(k)) for k, (old, _) in pairs.items()]
    with torch.no_grad():
        family.decoder(model)(input_ids=calib)
    for handle in handles:
        handle.remove()
    with torch.no_grad():
        for key, (_, new) in pairs.items():
            x, y_full = captured[key]
            y_new = new(x[..., kept])  # the candidate's norm on the parent's own input
            torch.testing.assert_close(y_new.norm(dim=-1).mean(), y_full.norm(dim=-1).mean(),
                                       msg=key)
            # The RMS match this replaced gave ~1; the L2 match gives ~sqrt(64 / 40).
            assert report.slnp_scales[key] > 1.1, key
