"""Pruning: parent + importance + arch + recipe -> a physically smaller HF model.

    model, report = build_candidate(parent, importance, arch, Recipe.preset("pangu"),
                                    calib_batches=windows)
    save_candidate(model, tokenizer, "out/cand", {"arch": arch.to_dict(), ...})

Width (hidden channels, KV groups, query heads, FFN neurons), depth with CLAP, SLNP and
post-norm absorption follow docs/method.md sections 2-4; build.py documents the order.
"""

from plsearch.prune.recipe import RECIPE_NAMES, Recipe
from plsearch.prune.save import check_out_dir, save_candidate

# build.py imports torch: loaded on first use, so that `plsearch --help` (whose parser
# reads RECIPE_NAMES) stays fast.
_LAZY = {"PruneReport", "build_candidate", "check_candidate"}


def __getattr__(name: str):
    if name in _LAZY:
        from plsearch.prune import build

        return getattr(build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "RECIPE_NAMES",
    "PruneReport",
    "Recipe",
    "build_candidate",
    "check_candidate",
    "check_out_dir",
    "save_candidate",
]
