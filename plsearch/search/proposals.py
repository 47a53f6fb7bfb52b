"""Only feasible proposals: the archs that meet the budget, and a sampler that keeps to them.

The latency predictor is cheap, so the search knows before its first trial which archs of
the aligned grid meet the budget:

    feasible = feasible_set(grid, predict, need, num_params)   # enumerated (or sampled)
    feasible.count, feasible.band()                            # how many; the budget band
    sampler = FeasibleSampler(make_sampler("gp", seed, n), grid, feasible, seed)

- Grids up to ``ENUMERATE_LIMIT`` archs are enumerated and predicted in one pass (the
  default space's 625 archs take a tenth of a second); larger grids are sampled and the
  archs that miss the budget rejected, so ``count`` is then an estimate (``enumerated``
  says which).
- ``FeasibleSampler`` wraps any Optuna sampler. A proposal of the inner sampler that misses
  the budget is replaced by the nearest feasible arch not tried yet (axis positions scaled
  to [0, 1]); independent (random) sampling draws whole archs from the feasible set. So an
  infeasible arch is never built, never scored and never reported to the sampler, and the
  params Optuna records are the arch that is built.
- The budget band (feasible archs at most 15% above the budget, the most capable shapes
  that still meet it) comes first: its best archs (band.py orders them) are proposed
  before the inner sampler is asked anything, until ``first_count`` of them passed the
  pre-build timing check (a refused one hands its place to the next). Then the archs of
  ``propose_then`` (band.spread_order: one capable shape of each faster bin), once each.
- Speed bins: the feasible set's predicted speeds cut into equal-count bins; the ladder
  compares a candidate only with candidates of its bin, so speed alone carries no one up.
  Whole archs drawn at random (the inner sampler's start-up trials, or the random
  sampler) come from the bin with the fewest trials so far, the faster bin on a tie: the
  band fills the slowest bin first, so the next draws reach the fast end and the front
  spans the speeds a user may pick from, not only the budget's.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import BaseDistribution

from plsearch.arch import ArchConfig
from plsearch.search.space import AXES, SearchGrid

__all__ = ["ENUMERATE_LIMIT", "FeasibleSampler", "FeasibleSet", "feasible_set"]

logger = logging.getLogger(__name__)

ENUMERATE_LIMIT = 50_000  # archs predicted one by one before the search starts
SAMPLE_SIZE = 5_000  # random archs predicted when the grid is larger


@dataclass(frozen=True)
class FeasibleSet:
    """The archs that meet the budget, with their predicted speed and parameter count."""

    archs: tuple[ArchConfig, ...]
    tokens_per_s: tuple[float, ...]
    params: tuple[int, ...]
    need: float  # the budget in predicted tokens/s
    grid_size: int
    enumerated: bool  # False: ``archs`` come from a random sample of a large grid
    sampled: int  # archs predicted

    @property
    def count(self) -> int:
        """Archs of the grid that meet the budget (an estimate when not enumerated)."""
        if self.enumerated:
            return len(self.archs)
        return round(len(self.archs) / max(self.sampled, 1) * self.grid_size)

    def describe(self) -> str:
        how = "" if self.enumerated else f" (estimated from {self.sampled:,} sampled)"
        return (f"{self.count:,} of the space's {self.grid_size:,} aligned archs meet the "
                f"budget{how}; {len(self.band()):,} lie within 15% above it")

    def band(self, width: float = 0.15) -> list[ArchConfig]:
        """Feasible archs predicted at most ``width`` above the budget, most params first."""
        top = self.need * (1.0 + width)
        rows = [(p, a) for a, t, p in zip(self.archs, self.tokens_per_s, self.params) if t <= top]
        return [a for _, a in sorted(rows, key=lambda r: (-r[0], str(r[1])))]

    def largest_first(self) -> list[ArchConfig]:
        """Every feasible arch, most parameters first (the largest-first baseline)."""
        order = sorted(range(len(self.archs)), key=lambda i: (-self.params[i], str(self.archs[i])))
        return [self.archs[i] for i in order]

    def bin_edges(self, bins: int) -> list[float]:
        """Speeds that cut the feasible set into ``bins`` bins of equal count."""
        speeds = sorted(self.tokens_per_s)
        if bins <= 1 or not speeds:
            return []
        return [speeds[min(len(speeds) - 1, len(speeds) * k // bins)] for k in range(1, bins)]

    def speed_bin(self, tokens_per_s: float, bins: int) -> int:
        """0 for the slowest bin (nearest the budget), bins - 1 for the fastest."""
        return self.binner(bins)(tokens_per_s)

    def binner(self, bins: int) -> Callable[[float], int]:
        """``speed_bin`` for many speeds: the edges are computed once."""
        edges = self.bin_edges(bins)
        return lambda tokens_per_s: bisect.bisect_right(edges, tokens_per_s)


def feasible_set(grid: SearchGrid, predict, need: float, num_params, *, seed: int = 0,
                 limit: int = ENUMERATE_LIMIT, sample: int = SAMPLE_SIZE) -> FeasibleSet:
    """Predict the grid (or a sample of it) and keep the archs that meet ``need``."""
    size = grid.size()
    if size <= limit:
        candidates, enumerated = list(grid.archs()), True
    else:
        rng = random.Random(seed)
        seen: dict[ArchConfig, None] = {}
        for _ in range(sample):
            seen[grid.arch({n: rng.choice(v) for n, v in grid.values.items()})] = None
        candidates, enumerated = list(seen), False
    archs, speeds, params = [], [], []
    for arch in candidates:
        tps = float(predict(arch))
        if tps >= need:
            archs.append(arch)
            speeds.append(tps)
            params.append(int(num_params(arch)))
    return FeasibleSet(archs=tuple(archs), tokens_per_s=tuple(speeds), params=tuple(params),
                       need=need, grid_size=size, enumerated=enumerated,
                       sampled=len(candidates))


def arch_params(grid: SearchGrid, arch: ArchConfig) -> dict[str, int]:
    """The Optuna params of ``arch``: its value on every searched axis."""
    return {name: getattr(arch, name) for name in AXES if len(grid.values[name]) > 1}


class FeasibleSampler(optuna.samplers.BaseSampler):
    """An Optuna sampler whose every proposal is a feasible, not yet tried, arch."""

    def __init__(self, inner: optuna.samplers.BaseSampler, grid: SearchGrid,
                 feasible: FeasibleSet, seed: int = 0, first: tuple[ArchConfig, ...] = (),
                 first_count: int | None = None, speed_bins: int = 1):
        if not feasible.archs:
            raise ValueError("FeasibleSampler needs at least one feasible arch")
        self.inner = inner
        self.grid = grid
        self.feasible = feasible
        self.propose_first(first, first_count)
        self.then: tuple[ArchConfig, ...] = ()
        self._rng = random.Random(seed)
        self.speed_bins = speed_bins  # the ladder's: random draws spread over them
        self._searched = [n for n in AXES if len(grid.values[n]) > 1]
        self._all = feasible  # narrow() picks from this, so a looser correction can widen
        self._coords = [self._position(a) for a in feasible.archs]
        self._chosen: dict[int, ArchConfig] = {}  # trial id -> arch (independent sampling)
        self.exhausted = False  # narrow() left no arch: nothing meets the budget as measured

    def propose_first(self, first: tuple[ArchConfig, ...] | list[ArchConfig],
                      count: int | None = None) -> None:
        """Propose ``first`` (the budget band in the order band.band_order gives) before
        anything else until ``count`` of its archs were tried and not ruled out by the
        pre-build timing check (a refused band arch hands its place to the next one); at
        most 4 x count band archs are tried that way."""
        self.first = tuple(first)
        self._first_set = set(self.first)
        self.first_count = len(self.first) if count is None else count

    def propose_then(self, archs: tuple[ArchConfig, ...] | list[ArchConfig]) -> None:
        """Propose ``archs`` (band.spread_order: the faster bins' picks) once each, after
        the band's and before the inner sampler is asked anything."""
        self.then = tuple(archs)

    def narrow(self, keep: Callable[[ArchConfig], bool]) -> int:
        """Propose only the feasible archs that ``keep`` accepts from now on (the latency
        correction learnt from measurements during the search says the others miss the
        budget); returns how many are left. With none left the proposals stay as they were
        and ``exhausted`` is set."""
        idx = [i for i, a in enumerate(self._all.archs) if keep(a)]
        self.exhausted = not idx
        if idx:
            pick = lambda values: tuple(values[i] for i in idx)
            self.feasible = dataclasses.replace(
                self._all, archs=pick(self._all.archs),
                tokens_per_s=pick(self._all.tokens_per_s), params=pick(self._all.params))
            self._coords = [self._position(a) for a in self.feasible.archs]
        return len(idx)

    # -- the Optuna sampler interface

    def infer_relative_search_space(self, study, trial) -> dict[str, BaseDistribution]:
        return self.inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space) -> dict[str, Any]:
        records = self._records(study)  # parsed once for this proposal
        if self._queued_untried(records) is not None:
            return {}  # the queued archs come first (sample_independent hands them out)
        params = self.inner.sample_relative(study, trial, search_space)
        if not params or any(n not in params for n in self._searched):
            return {}  # nothing (or part of an arch) proposed: draw whole archs instead
        proposed = self.grid.arch(params)
        chosen = self._nearest_untried(records, proposed)
        if chosen != proposed:
            logger.debug("trial %d: %s misses the budget or was tried; proposing %s",
                         trial.number, proposed, chosen)
        return {n: v for n, v in arch_params(self.grid, chosen).items() if n in search_space}

    def sample_independent(self, study, trial, param_name, param_distribution) -> Any:
        arch = self._chosen.get(trial._trial_id)
        if arch is None:
            records = self._records(study)  # parsed once for this proposal
            arch = self._queued_untried(records) or self._random_untried(records)
            self._chosen[trial._trial_id] = arch
        return getattr(arch, param_name)

    def before_trial(self, study, trial) -> None:
        self.inner.before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self._chosen.pop(trial._trial_id, None)
        self.inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()

    # -- helpers

    def _position(self, arch: ArchConfig) -> list[float]:
        out = []
        for name in self._searched:
            values = self.grid.values[name]
            value = getattr(arch, name)
            index = min(range(len(values)), key=lambda i: abs(values[i] - value))
            out.append(index / (len(values) - 1))
        return out

    @staticmethod
    def _records(study) -> list:
        from plsearch.search.record import TrialRecord

        return [(t, TrialRecord.from_trial(t)) for t in study.get_trials(deepcopy=False)]

    def _tried(self, records: list) -> set[ArchConfig]:
        """The archs of ``records`` (``_records``): the built arch, else the params'."""
        tried = set()
        for t, record in records:
            if record.arch is not None:
                tried.add(record.arch)
            elif t.params and all(n in t.params for n in self._searched):
                tried.add(self.grid.arch(t.params))
        return tried

    def _first_untried(self, records: list) -> ArchConfig | None:
        if not self.first or self.first_count <= 0:
            return None
        left = self._first_set & set(self.feasible.archs)  # untried, still feasible
        seen: set[ArchConfig] = set()
        kept = 0
        for _, record in records:
            if record.arch in self._first_set and record.arch not in seen:
                seen.add(record.arch)  # a repeat of an arch counts once
                left.discard(record.arch)
                kept += record.feasible is not False  # refused by the timing check: False
        if kept >= self.first_count or len(seen) >= 4 * self.first_count:
            return None
        return next((a for a in self.first if a in left), None)

    def _queued_untried(self, records: list) -> ArchConfig | None:
        """The band's next arch, else the next of ``then`` not tried yet (None: neither)."""
        first = self._first_untried(records)
        if first is not None or not self.then:
            return first
        tried = self._tried(records)
        left = set(self.feasible.archs)  # narrow() may have ruled some out
        return next((a for a in self.then if a in left and a not in tried), None)

    def _untried(self, records: list) -> list[int]:
        tried = self._tried(records)
        left = [i for i, a in enumerate(self.feasible.archs) if a not in tried]
        return left or list(range(len(self.feasible.archs)))  # all tried: repeats allowed

    def _nearest_untried(self, records: list, proposed: ArchConfig) -> ArchConfig:
        target = self._position(proposed)
        left = self._untried(records)
        best = min(left, key=lambda i: (sum(abs(a - b) for a, b in zip(self._coords[i], target)),
                                        -self.feasible.params[i]))
        return self.feasible.archs[best]

    def _random_untried(self, records: list) -> ArchConfig:
        """An untried feasible arch, uniform within the speed bin (of the ladder's bins)
        with the fewest trials so far; the faster bin on a tie."""
        left = self._untried(records)
        if self.speed_bins > 1:
            speed_bin = self._all.binner(self.speed_bins)  # as the ladder cuts them
            bin_of = {i: speed_bin(self.feasible.tokens_per_s[i]) for i in left}
            tried = Counter(record.speed_bin for _, record in records)
            chosen = min(set(bin_of.values()), key=lambda b: (tried[b], -b))
            left = [i for i in left if bin_of[i] == chosen]
        return self.feasible.archs[self._rng.choice(left)]
