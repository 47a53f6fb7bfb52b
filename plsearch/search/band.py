"""Which archs of the budget band are built first: the band ranked by a zero-cost proxy.

    order = band_order(pipeline, feasible.band(), rank="build_kl", probe=64, seed=0)
    order.archs          # lowest held-out KL right after the build first
    order.build_kl       # {arch: KL} for the archs measured

The budget band (feasible archs at most 15% above the budget) holds the most capable
shapes that meet the budget, but not in parameter order: on the built-in parent at 2x the
largest band archs are shallow and wide (4 layers, d256) and keep 55-65% of the parent's
score after 400 KD steps, while deep narrow ones (6-7 layers, d128-160) keep 90-95%.
The held-out KL to the parent right after the re-initialized build (no KD) orders them
far better: over the search-quality runs' fully evaluated archs its Spearman rho with the
top-rung objective was +0.68 (1.25x, 9 archs), +0.82 (1.5x, 7), +0.56 (2x, 12), and +0.86
on 8 archs of the 2x band, against +0.10, +0.04, -0.52 for the parameter count (see
configs/search/default.yaml). It costs a build and one pass over the held-out windows: well
under a second per arch for the built-in parent, so ``probe`` archs of the band (a seeded
sample when the band is larger) are measured before the first trial.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from plsearch.arch import ArchConfig

__all__ = ["BAND_RANKS", "BandOrder", "band_order"]

logger = logging.getLogger(__name__)

BAND_RANKS = ("build_kl", "params")


@dataclass(frozen=True)
class BandOrder:
    """The band archs in the order they are proposed, and what ordered them."""

    archs: tuple[ArchConfig, ...]
    rank: str  # build_kl or params
    build_kl: dict[ArchConfig, float] = field(default_factory=dict)  # the archs measured

    def to_attr(self) -> list[list]:
        """A study attribute: [[arch dict, build KL], ...] in proposal order."""
        return [[a.to_dict(), self.build_kl[a]] for a in self.archs if a in self.build_kl]

    def describe(self, count: int) -> str:
        head = self.archs[:count]
        if self.rank == "params":
            return (f"the {len(head)} largest archs of the budget band "
                    f"({'; '.join(str(a) for a in head)})")
        shown = "; ".join(f"{a} (KL {self.build_kl[a]:.2f})" if a in self.build_kl
                          else f"{a} (not measured)" for a in head)
        return (f"the {len(head)} budget-band archs with the lowest held-out KL right after "
                f"the build, of {len(self.build_kl)} measured ({shown})")


def band_order(pipeline, band: Sequence[ArchConfig], *, rank: str = "build_kl",
               probe: int = 64, seed: int = 0,
               progress: Callable[[str], None] | None = None,
               known: Sequence[Sequence] = ()) -> BandOrder:
    """Order ``band`` (largest first, as FeasibleSet.band gives it) for proposing.

    ``rank="params"`` keeps the parameter order. ``rank="build_kl"`` builds up to ``probe``
    band archs through ``pipeline`` (``build``, ``heldout_kl``, ``release``: under torchrun
    every rank makes the same calls) and orders them lowest KL first, ties by size; the
    archs not measured follow in parameter order. ``known`` is a ``to_attr`` list from an
    earlier start of the same study: those archs are not built again.
    """
    if rank not in BAND_RANKS:
        raise ValueError(f"band rank must be one of {BAND_RANKS}, got {rank!r}")
    band = list(band)
    if rank == "params" or not band:
        return BandOrder(archs=tuple(band), rank="params")
    in_band = set(band)
    measured = {ArchConfig.from_dict(a): float(kl) for a, kl in known}
    measured = {a: kl for a, kl in measured.items() if a in in_band}
    if len(band) > probe:
        chosen = random.Random(seed).sample(range(len(band)), probe)
        todo = [band[i] for i in sorted(chosen)]  # largest first among the sample
    else:
        todo = band
    todo = [a for a in todo if a not in measured]
    failed: list[ArchConfig] = []
    for k, arch in enumerate(todo, 1):
        if progress:
            progress(f"ranking the budget band: build KL of arch {k} of {len(todo)} ({arch})")
        try:  # a candidate that cannot be built here fails as its own trial, if proposed
            model = pipeline.build(arch)
        except Exception as exc:  # noqa: BLE001 - one bad arch never ends a search
            logger.warning("band ranking: could not build %s (%s); it ranks last", arch, exc)
            failed.append(arch)
            continue
        try:
            measured[arch] = float(pipeline.heldout_kl(model)[0])
        finally:
            pipeline.release(model)
    size = {a: i for i, a in enumerate(band)}  # 0 = most params
    # a KL that is not a number (no held-out windows, a diverged build) ranks last
    ranked = sorted(measured, key=lambda a: (measured[a] if math.isfinite(measured[a])
                                             else math.inf, size[a]))
    rest = [a for a in band if a not in measured and a not in failed] + failed
    logger.info("budget band ranked by build KL: %s", ", ".join(
        f"{a} {measured[a]:.3f}" for a in ranked[:8]))
    return BandOrder(archs=tuple(ranked + rest), rank="build_kl", build_kl=measured)
