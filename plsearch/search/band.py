"""What is built first: the budget band ranked by a zero-cost proxy, then the spread.

    order = band_order(pipeline, feasible.band(), rank="build_kl", probe=160, seed=0)
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

The same proxy picks what follows the band (``spread_order``): one arch of each faster
speed bin, so the front reaches the fast end with capable shapes rather than whatever a
random draw finds there (2- and 4-head shapes that keep far less of the parent).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from plsearch.arch import ArchConfig

__all__ = ["BAND_RANKS", "BandOrder", "SpreadOrder", "band_order", "coarse_to_fine",
           "spread_order"]

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
               known: Sequence[Sequence] = (),
               stop: Callable[[], bool] | None = None) -> BandOrder:
    """Order ``band`` (largest first, as FeasibleSet.band gives it) for proposing.

    ``rank="params"`` keeps the parameter order. ``rank="build_kl"`` builds up to ``probe``
    band archs through ``pipeline`` (``build``, ``heldout_kl``, ``release``: under torchrun
    every rank makes the same calls) and orders them lowest KL first, ties by size; the
    archs not measured follow in parameter order. ``known`` is a ``to_attr`` list from an
    earlier start of the same study: those archs are not built again. ``stop()`` true
    (the search's time is up) ends the probing early: the sample is measured coarse to
    fine over its sizes (``coarse_to_fine``), so a cut probe still spans the band.
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
    todo = [todo[i] for i in coarse_to_fine(len(todo)) if todo[i] not in measured]
    failed = _measure(pipeline, todo, measured, progress, "ranking the budget band", stop)
    size = {a: i for i, a in enumerate(band)}  # 0 = most params
    # a KL that is not a number (no held-out windows, a diverged build) ranks last
    ranked = sorted(measured, key=lambda a: (measured[a] if math.isfinite(measured[a])
                                             else math.inf, size[a]))
    rest = [a for a in band if a not in measured and a not in failed] + failed
    logger.info("budget band ranked by build KL: %s", ", ".join(
        f"{a} {measured[a]:.3f}" for a in ranked[:8]))
    return BandOrder(archs=tuple(ranked + rest), rank="build_kl", build_kl=measured)


def coarse_to_fine(n: int) -> list[int]:
    """0..n-1 in an order whose every prefix spreads evenly over the range: 0, then every
    2^k-th index for falling k (n=8: 0, 4, 2, 6, 1, 3, 5, 7)."""
    order: list[int] = []
    seen: set[int] = set()
    step = 1 << max(n - 1, 0).bit_length()
    while step:
        for i in range(0, n, step):
            if i not in seen:
                seen.add(i)
                order.append(i)
        step //= 2
    return order


def _measure(pipeline, archs: Sequence[ArchConfig], into: dict[ArchConfig, float],
             progress: Callable[[str], None] | None, what: str,
             stop: Callable[[], bool] | None = None) -> list[ArchConfig]:
    """Build each arch, put its held-out KL right after the build into ``into``, until
    ``stop()`` is true; returns the archs that could not be built (a candidate that cannot
    be built here fails as its own trial, if proposed)."""
    failed: list[ArchConfig] = []
    for k, arch in enumerate(archs, 1):
        if stop is not None and stop():
            logger.info("%s: stopped after %d of %d archs (time is up)", what, k - 1, len(archs))
            break
        if progress:
            progress(f"{what}: build KL of arch {k} of {len(archs)} ({arch})")
        try:
            model = pipeline.build(arch)
        except Exception as exc:  # noqa: BLE001 - one bad arch never ends a search
            logger.warning("%s: could not build %s (%s)", what, arch, exc)
            failed.append(arch)
            continue
        try:
            into[arch] = float(pipeline.heldout_kl(model)[0])
        finally:
            pipeline.release(model)
    return failed


@dataclass(frozen=True)
class SpreadOrder:
    """Archs of the faster speed bins proposed after the band, fastest first."""

    archs: tuple[ArchConfig, ...]
    build_kl: dict[ArchConfig, float] = field(default_factory=dict)  # the archs measured

    def to_attr(self) -> list[list]:
        return [[a.to_dict(), kl] for a, kl in self.build_kl.items()]

    def describe(self, speeds: dict[ArchConfig, float]) -> str:
        return ("; ".join(f"{a} ({speeds[a]:,.0f} tokens/s, KL {self.build_kl[a]:.2f})"
                          for a in self.archs) or "none")


def spread_order(pipeline, archs: Sequence[ArchConfig], speeds: Sequence[float],
                 bins: Sequence[int], *, count: int, probe: int = 32,
                 progress: Callable[[str], None] | None = None,
                 known: Sequence[Sequence] = (),
                 stop: Callable[[], bool] | None = None) -> SpreadOrder:
    """Up to ``count`` archs of ``archs`` (the feasible archs of the speed bins faster than
    the budget's, predicted ``speeds``, ladder bin ``bins``), one per bin, the fastest bin
    first, so the front spans the speeds a user may pick from with capable shapes.

    ``probe`` of them, evenly spaced by predicted speed (the fastest included), are built
    and their held-out KL right after the build measured. The fastest bin's pick stretches
    the front: the fastest of the bin's better half by that KL (the fastest shape that
    keeps as much of the parent as a typical one of its bin, not the fastest at any cost).
    Every other bin's pick is its most capable: the lowest KL. Each is then the first
    candidate of its bin, so the ladder takes it to the top rung. ``stop()`` true ends the
    probing early; the probe is measured coarse to fine from the fastest, so a cut one
    still spans the speeds.
    """
    if count <= 0 or not archs:
        return SpreadOrder(archs=())
    order = sorted(range(len(archs)), key=lambda i: (speeds[i], str(archs[i])))
    if len(order) > probe:  # evenly spaced by speed rank, the fastest included
        step = (len(order) - 1) / max(probe - 1, 1)
        order = sorted({order[round(len(order) - 1 - k * step)] for k in range(probe)})
    speed = {archs[i]: float(speeds[i]) for i in order}
    bin_of = {archs[i]: bins[i] for i in order}
    measured = {ArchConfig.from_dict(a): float(kl) for a, kl in known}
    measured = {a: kl for a, kl in measured.items() if a in speed}
    probed = sorted(speed, key=lambda a: (-speed[a], str(a)))  # fastest first
    _measure(pipeline, [probed[i] for i in coarse_to_fine(len(probed))
                        if probed[i] not in measured], measured, progress,
             "spreading the front", stop)
    groups: dict[int, list[ArchConfig]] = {}
    for a, kl in measured.items():
        if math.isfinite(kl):
            groups.setdefault(bin_of[a], []).append(a)
    chosen: list[ArchConfig] = []
    for k, b in enumerate(sorted(groups, reverse=True)[:count]):
        members = groups[b]
        if k == 0:  # the fastest bin: its better half's fastest
            median = sorted(measured[a] for a in members)[(len(members) - 1) // 2]
            good = [a for a in members if measured[a] <= median]
            chosen.append(max(good, key=lambda a: (speed[a], -measured[a])))
        else:
            chosen.append(min(members, key=lambda a: (measured[a], -speed[a])))
    logger.info("front spread over speed: %s", ", ".join(
        f"{a} {speed[a]:.0f} tokens/s KL {measured[a]:.3f}" for a in chosen))
    return SpreadOrder(archs=tuple(chosen), build_kl=measured)
