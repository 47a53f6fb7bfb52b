"""Pruning: parent + importance + arch + recipe -> a physically smaller HF model.

    model, report = build_candidate(parent, importance, arch, Recipe.preset("pangu"),
                                    calib_batches=windows)
    save_candidate(model, tokenizer, "out/cand", {"arch": arch.to_dict(), ...})

Width (hidden channels, KV groups, query heads, FFN neurons), depth with CLAP, SLNP and
post-norm absorption follow METHOD.md sections 2-4; build.py documents the order.
"""

from plsearch.prune.build import PruneReport, build_candidate, check_candidate
from plsearch.prune.recipe import RECIPE_NAMES, Recipe
from plsearch.prune.save import check_out_dir, save_candidate

__all__ = [
    "RECIPE_NAMES",
    "PruneReport",
    "Recipe",
    "build_candidate",
    "check_candidate",
    "check_out_dir",
    "save_candidate",
]
