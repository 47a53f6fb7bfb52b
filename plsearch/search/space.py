"""Search spaces: YAML -> a frozen SearchSpace; grids snapped to the device's alignment.

    space = load_space("configs/search/default.yaml")          # every error of the file at once
    grid = space.resolve(parent_arch, profile.alignment)      # values each axis may take
    arch = grid.suggest(trial)                                 # an Optuna trial -> ArchConfig

A space file has five sections (configs/search/default.yaml is the commented example):

    axes:        num_hidden_layers, hidden_size, num_key_value_heads, num_attention_heads,
                 intermediate_size: a list of values or {min, max, step}; an axis left out
                 keeps the parent's value. (The same block `plsearch profile-npu --space`
                 reads, so the latency table covers the shapes the search will ask for.)
    recipe:      pangu | minitron | shortgpt (how candidates are built)
    kd:          the retraining batches and optimizer settings
    ladder:      rungs (cumulative KD steps, items per task) and the promotion rate
    objective:   tasks and their weights for the accuracy objective, perplexity tie-break

Every value on an axis is snapped to the device's multiple (hidden and FFN widths, KV
groups) and capped by the parent, so the sampler only ever proposes buildable, aligned
shapes; query heads are snapped to a multiple of the trial's KV-group count.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plsearch.arch import ArchConfig, align_capped
from plsearch.config import Alignment, _convert, configs_dir, read_yaml, shipped_yaml
from plsearch.distill import KDConfig
from plsearch.errors import ConfigError
from plsearch.prune.recipe import RECIPE_NAMES
from plsearch.search.band import BAND_RANKS as _BAND_RANKS  # band imports no space
from plsearch.search.ladder import SIGNALS as _SIGNALS

__all__ = [
    "AXES",
    "Axis",
    "KDSettings",
    "Ladder",
    "Objective",
    "Rung",
    "SearchGrid",
    "SearchSpace",
    "load_space",
    "parse_axes",
    "space_path",
]

# The searched axes, in the order a trial suggests them (KV groups before query heads).
AXES = (
    "num_hidden_layers",
    "hidden_size",
    "num_key_value_heads",
    "num_attention_heads",
    "intermediate_size",
)
# Which alignment multiple applies to which axis (depth and query heads have none).
_MULTIPLE_OF = {
    "hidden_size": "hidden_multiple",
    "intermediate_size": "ffn_multiple",
    "num_key_value_heads": "kv_heads_multiple",
}
_RECIPES = RECIPE_NAMES


@dataclass(frozen=True)
class Axis:
    """Allowed values of one arch axis: an explicit list, or min..max by step."""

    values: tuple[int, ...]

    @classmethod
    def parse(cls, raw: Any, where: str, problems: list[str]) -> Axis | None:
        def positive_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool) and v > 0

        if isinstance(raw, list) and raw and all(positive_int(v) for v in raw):
            return cls(tuple(sorted(set(raw))))
        if isinstance(raw, dict) and set(raw) <= {"min", "max", "step"} and {"min", "max"} <= set(raw):
            low, high, step = raw["min"], raw["max"], raw.get("step", 1)
            if all(positive_int(v) for v in (low, high, step)) and low <= high:
                return cls(tuple(range(low, high + 1, step)))
        problems.append(f"{where} must be a non-empty list of positive integers or "
                        f"{{min, max, step}} with min <= max, got {raw!r}")
        return None


_KD = KDConfig(steps=1)  # the KD defaults live in distill.KDConfig only


@dataclass(frozen=True)
class KDSettings:
    """Retraining settings shared by every candidate (the budget is in the ladder).

    The optimizer defaults are distill.KDConfig's; a space file overrides them."""

    batch_size: int = 4  # sequences per optimizer step
    seq_len: int = 128  # tokens per sequence (the built-in parent trained on 128)
    lr: float = _KD.lr
    warmup_fraction: float = _KD.warmup_fraction  # of each rung's steps (own short schedule)
    temperature: float = _KD.temperature
    ce_weight: float = _KD.ce_weight  # share of plain next-token cross-entropy in the loss
    grad_clip: float = _KD.grad_clip
    data: str = "builtin"  # token source: builtin, a .txt/.jsonl file, an offline HF dataset
    # Recompute each layer's activations in the backward pass: less memory, about a third
    # more compute (large parents; see docs/multi-device.md).
    activation_checkpointing: bool = False


@dataclass(frozen=True)
class Rung:
    """One fidelity level: KD continues to ``kd_steps`` (cumulative), then scores."""

    kd_steps: int  # total optimizer steps the candidate has had when this rung scores it
    limit: int | None = None  # documents per task (None: the whole task)


@dataclass(frozen=True)
class Ladder:
    """Successive halving over the KD budget: only the best fraction climbs a rung."""

    rungs: tuple[Rung, ...]
    promotion_rate: float = 0.34  # share of a speed bin's trials at a rung that climb on
    # What promotion compares (ladder.py): kl, build_kl, accuracy or objective (the rung's
    # own objective); bench/fidelity.py measures which signal best predicts the top-rung
    # objective: the held-out KL on the built-in parent (see configs/search/default.yaml).
    signal: str = "kl"
    # Candidates compete only with those of similar predicted speed: the feasible set is
    # cut into this many bins of equal count (1: no bins).
    speed_bins: int = 3
    # Archs of the budget band (within 15% above the budget) queued before the sampler
    # proposes anything: the most capable feasible shapes are built first.
    band_first: int = 3
    # How the band is ordered (search/band.py): build_kl = the held-out KL to the parent
    # right after the build, lowest first (a build and one held-out pass per arch, for at
    # most band_probe archs of the band, a seeded sample of a larger band); params = most
    # parameters first (no model work).
    band_rank: str = "build_kl"
    band_probe: int = 160
    # Then one arch of each faster speed bin, at most this many, the fastest bin first: of
    # spread_probe archs evenly spaced by speed, the fastest bin's fastest of its better half
    # by build KL, the other bins' lowest build KL (search/band.py spread_order). 0: none.
    spread_first: int = 2
    spread_probe: int = 32


@dataclass(frozen=True)
class Objective:
    """The accuracy objective: weighted task score less a weighted held-out KL to the parent."""

    tasks: dict[str, float] = field(default_factory=dict)  # lm-eval task -> weight
    metric: str = "acc"  # the metric read from every task
    # objective = accuracy - kl_weight * KL(parent || candidate) on held-out text (nats per
    # token). The KL is continuous and has a far smaller standard error than a task score
    # on a few dozen items, so it orders candidates the tasks cannot tell apart. The
    # default's reason is in configs/search/default.yaml.
    kl_weight: float = 0.05
    perplexity_windows: int = 16  # held-out windows of kd.seq_len for the KL and perplexity


@dataclass(frozen=True)
class SearchSpace:
    """A parsed space file; ``resolve`` turns it into grids for one parent and device."""

    name: str
    axes: dict[str, Axis]  # only the axes the file names; the others keep the parent's
    recipe: str
    kd: KDSettings
    ladder: Ladder
    objective: Objective
    calibration_samples: int = 32  # windows for importance and absorption (seq_len kd.seq_len)
    source: str = ""

    def resolve(self, parent: ArchConfig, alignment: Alignment) -> SearchGrid:
        """Aligned values of every axis for ``parent``; ConfigError lists every problem."""
        problems: list[str] = []
        values: dict[str, tuple[int, ...]] = {}
        for name in AXES:
            theirs = getattr(parent, name)
            axis = self.axes.get(name)
            if axis is None:
                values[name] = (theirs,)
                continue
            too_big = [v for v in axis.values if v > theirs]
            if too_big:
                problems.append(f"axes.{name}: values {too_big} exceed the parent's {theirs}")
            multiple = getattr(alignment, _MULTIPLE_OF[name]) if name in _MULTIPLE_OF else 1
            snapped = sorted({align_capped(v, multiple, theirs) for v in axis.values if v <= theirs})
            if not snapped:
                problems.append(f"axes.{name}: no value fits the parent's {theirs}")
            values[name] = tuple(snapped)
        if not problems:
            for kv in values["num_key_value_heads"]:
                if not _heads_for(kv, values["num_attention_heads"], parent):
                    problems.append(
                        f"axes.num_attention_heads: no value is a multiple of {kv} KV groups "
                        f"with at most {parent.queries_per_group} query heads per group")
        if self.recipe == "shortgpt":
            changed = [n for n in AXES[1:] if values.get(n) and values[n] != (getattr(parent, n),)]
            if changed:
                problems.append(f"recipe shortgpt prunes depth only, but the space varies "
                                f"{', '.join(changed)}; remove those axes or use pangu")
        if problems:
            where = self.source or self.name
            raise ConfigError(f"{where} does not fit the parent ({parent}) on this device: "
                              + "; ".join(problems) + "; fix the space file")
        return SearchGrid(parent=parent, values=values)

    def to_dict(self) -> dict[str, Any]:
        """The space as a space file's mapping (``parse_space`` reads it back); where it was
        read from is left out, so a moved file is the same space."""
        out = dataclasses.asdict(self)
        del out["source"]
        out["axes"] = {name: list(axis.values) for name, axis in self.axes.items()}
        out["ladder"]["rungs"] = [dict(rung) for rung in out["ladder"]["rungs"]]
        return out


@dataclass(frozen=True)
class SearchGrid:
    """The aligned values of every axis for one parent; turns trials into arches."""

    parent: ArchConfig
    values: dict[str, tuple[int, ...]]

    def suggest(self, trial) -> ArchConfig:
        """Ask ``trial`` for every axis; off-grid values (FixedTrial, enqueued) are snapped."""
        params = {}
        for name in AXES:
            grid = self.values[name]
            if len(grid) == 1:
                params[name] = grid[0]
                continue
            step = _even_step(grid)
            if step:
                params[name] = trial.suggest_int(name, grid[0], grid[-1], step=step)
            else:
                params[name] = trial.suggest_categorical(name, list(grid))
        return self.arch(params)

    def arch(self, params: dict[str, int]) -> ArchConfig:
        """The nearest on-grid arch to ``params`` (missing axes: the parent's value)."""
        chosen = {}
        for name in AXES:
            wanted = params.get(name, getattr(self.parent, name))
            grid = self.values[name]
            if name == "num_attention_heads":
                grid = _heads_for(chosen["num_key_value_heads"], grid, self.parent)
            chosen[name] = min(grid, key=lambda v: (abs(v - wanted), v))
        return self.parent.replace(**chosen)

    def size(self) -> int:
        """How many distinct arches the grid holds."""
        total = 0
        for kv in self.values["num_key_value_heads"]:
            total += len(_heads_for(kv, self.values["num_attention_heads"], self.parent))
        for name in ("num_hidden_layers", "hidden_size", "intermediate_size"):
            total *= len(self.values[name])
        return total

    def archs(self):
        """Every arch of the grid (use ``size()`` first: it can be large)."""
        for layers, hidden, kv, ffn in itertools.product(
                self.values["num_hidden_layers"], self.values["hidden_size"],
                self.values["num_key_value_heads"], self.values["intermediate_size"]):
            for heads in _heads_for(kv, self.values["num_attention_heads"], self.parent):
                yield self.parent.replace(num_hidden_layers=layers, hidden_size=hidden,
                                          num_key_value_heads=kv, num_attention_heads=heads,
                                          intermediate_size=ffn)

    def smallest(self) -> ArchConfig:
        """The arch with the smallest value on every axis (usually the fastest)."""
        kv = self.values["num_key_value_heads"][0]
        return self.parent.replace(
            num_hidden_layers=self.values["num_hidden_layers"][0],
            hidden_size=self.values["hidden_size"][0],
            num_key_value_heads=kv,
            num_attention_heads=_heads_for(kv, self.values["num_attention_heads"], self.parent)[0],
            intermediate_size=self.values["intermediate_size"][0])

    def to_dict(self) -> dict[str, list[int]]:
        return {name: list(v) for name, v in self.values.items()}


def _heads_for(kv: int, heads: tuple[int, ...], parent: ArchConfig) -> tuple[int, ...]:
    """Query-head counts usable with ``kv`` groups: multiples of kv, within the parent's ratio."""
    return tuple(h for h in heads if h % kv == 0 and h // kv <= parent.queries_per_group)


def _even_step(grid: tuple[int, ...]) -> int | None:
    """The common step of an evenly spaced grid (suggest_int keeps the order), else None."""
    steps = {b - a for a, b in itertools.pairwise(grid)}
    return steps.pop() if len(steps) == 1 else None


# ---------------------------------------------------------------- loading


def space_path(name_or_path: str | Path | None) -> Path:
    """A YAML path as given, or a shipped space name (``default``, ``qwen3-8b``)."""
    if name_or_path is None:
        return configs_dir() / "search" / "default.yaml"
    return shipped_yaml(name_or_path, "search", "search space", "space")


def load_space(path: str | Path | dict | None = None) -> SearchSpace:
    """Read and validate a space file (or a space file's mapping, as a run file or run.json
    holds it inline); one ConfigError lists every problem in it."""
    if isinstance(path, dict):
        return parse_space(path, source="the run file's space")
    path = space_path(path)
    return parse_space(read_yaml(path), source=str(path))


_TOP_KEYS = ("name", "axes", "recipe", "kd", "ladder", "objective", "calibration_samples")


def parse_space(data: Any, source: str = "space") -> SearchSpace:
    problems: list[str] = []
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a search space must be a mapping with keys "
                          f"{', '.join(_TOP_KEYS)}; fix the file")
    unknown = sorted(set(data) - set(_TOP_KEYS))
    if unknown:
        problems.append(f"unknown key(s) {unknown} (expected: {', '.join(_TOP_KEYS)})")
    for key in ("axes", "ladder", "objective"):
        if key not in data:
            problems.append(f"missing key {key}")

    axes = parse_axes(data.get("axes", {}), problems)

    recipe = data.get("recipe", "pangu")
    if recipe not in _RECIPES:
        problems.append(f"recipe must be one of {list(_RECIPES)}, got {recipe!r}")

    raw_kd = data.get("kd", {}) or {}
    if isinstance(raw_kd, dict):
        _check_floats(raw_kd, "kd", problems, positive=("lr", "temperature"),
                      unit=("warmup_fraction", "ce_weight"), non_negative=("grad_clip",))
    kd = _convert_alone(KDSettings, raw_kd, "kd", problems)

    ladder = _parse_ladder(data.get("ladder"), problems)
    objective = _parse_objective(data.get("objective"), problems)

    calibration = data.get("calibration_samples", SearchSpace.calibration_samples)
    if isinstance(calibration, bool) or not isinstance(calibration, int) or calibration < 1:
        problems.append(f"calibration_samples must be a positive integer, got {calibration!r}")
    name = data.get("name", Path(source).stem)
    if not isinstance(name, str) or not name:
        problems.append(f"name must be a non-empty string, got {name!r}")

    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems) + "; fix the file")
    return SearchSpace(name=name, axes=axes, recipe=recipe, kd=kd, ladder=ladder,
                       objective=objective, calibration_samples=calibration, source=source)


def parse_axes(raw_axes: Any, problems: list[str], prefix: str = "axes.") -> dict[str, Axis]:
    """The ``axes`` block of a space file (also read by `plsearch profile-npu --space`)."""
    axes: dict[str, Axis] = {}
    if not isinstance(raw_axes, dict) or not raw_axes:
        problems.append(f"{prefix.rstrip('.') or 'the file'} must map at least one of "
                        f"{', '.join(AXES)} to its values")
        raw_axes = {}
    for name, raw in raw_axes.items():
        if name not in AXES:
            problems.append(f"unknown axis {prefix}{name} (expected: {', '.join(AXES)})")
            continue
        axis = Axis.parse(raw, f"{prefix}{name}", problems)
        if axis is not None:
            axes[name] = axis
    return axes


def _parse_ladder(raw: Any, problems: list[str]) -> Ladder | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        problems.append(f"ladder must be a mapping with rungs and promotion_rate, got {raw!r}")
        return None
    keys = ("rungs", "promotion_rate", "signal", "speed_bins", "band_first", "band_rank",
            "band_probe", "spread_first", "spread_probe")
    unknown = sorted(set(raw) - set(keys))
    if unknown:
        problems.append(f"unknown key(s) {unknown} in ladder (expected: {', '.join(keys)})")
    rungs_raw = raw.get("rungs")
    rungs = []
    if not isinstance(rungs_raw, list) or not rungs_raw:
        problems.append("ladder.rungs must be a non-empty list of {kd_steps, limit}")
    else:
        for i, item in enumerate(rungs_raw):
            rung = _convert_alone(Rung, item, f"ladder.rungs[{i}]", problems)
            if rung is None:
                continue
            if rungs and rung.kd_steps <= rungs[-1].kd_steps:
                problems.append(f"ladder.rungs[{i}].kd_steps ({rung.kd_steps}) must exceed "
                                f"the previous rung's ({rungs[-1].kd_steps}): steps are cumulative")
            rungs.append(rung)
    rate = raw.get("promotion_rate", Ladder.promotion_rate)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1:
        problems.append(f"ladder.promotion_rate must be a number in (0, 1], got {rate!r}")
    signal = raw.get("signal", Ladder.signal)
    if signal not in _SIGNALS:
        problems.append(f"ladder.signal must be one of {', '.join(_SIGNALS)}, got {signal!r}")
    band_rank = raw.get("band_rank", Ladder.band_rank)
    if band_rank not in _BAND_RANKS:
        problems.append(f"ladder.band_rank must be one of {', '.join(_BAND_RANKS)}, got "
                        f"{band_rank!r}")
    counts = {}
    for name, low in (("speed_bins", 1), ("band_first", 0), ("band_probe", 1),
                      ("spread_first", 0), ("spread_probe", 1)):
        value = raw.get(name, getattr(Ladder, name))
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            problems.append(f"ladder.{name} must be an integer >= {low}, got {value!r}")
        counts[name] = value
    if len(rungs) != len(rungs_raw or []) or problems:
        return None
    return Ladder(rungs=tuple(rungs), promotion_rate=float(rate), signal=signal,
                  band_rank=band_rank, **counts)


def _parse_objective(raw: Any, problems: list[str]) -> Objective | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        problems.append(f"objective must be a mapping with tasks, got {raw!r}")
        return None
    known = [f.name for f in dataclasses.fields(Objective)]
    unknown = sorted(set(raw) - set(known))
    if unknown:
        problems.append(f"unknown key(s) {unknown} in objective (expected: {', '.join(known)})")
    tasks = raw.get("tasks")
    if not isinstance(tasks, dict) or not tasks:
        problems.append("objective.tasks must map at least one lm-eval task to its weight")
        tasks = {}
    for task, weight in tasks.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
            problems.append(f"objective.tasks.{task} weight must be a positive number, "
                            f"got {weight!r}")
    metric = raw.get("metric", Objective.metric)
    if not isinstance(metric, str) or not metric:
        problems.append(f"objective.metric must be a metric name such as acc, got {metric!r}")
    weight = raw.get("kl_weight", Objective.kl_weight)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
        problems.append(f"objective.kl_weight must be a number >= 0, got {weight!r}")
    docs = raw.get("perplexity_windows", Objective.perplexity_windows)
    if isinstance(docs, bool) or not isinstance(docs, int) or docs < 0:
        problems.append(f"objective.perplexity_windows must be an integer >= 0, got {docs!r}")
    if problems:
        return None
    return Objective(tasks={str(k): float(v) for k, v in tasks.items()}, metric=metric,
                     kl_weight=float(weight), perplexity_windows=docs)


def _convert_alone(cls: type, data: Any, where: str, problems: list[str]) -> Any:
    """config._convert with its own problem list: earlier problems do not void the result."""
    own: list[str] = []
    value = _convert(cls, data, where, own)
    problems.extend(own)
    return value


def _check_floats(raw: dict, where: str, problems: list[str], *, positive=(), unit=(),
                  non_negative=()) -> None:
    """Number checks the generic dataclass loader does not make (it checks ints only)."""
    for name in positive + unit + non_negative:
        if name not in raw:
            continue
        value = raw[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            hint = " (YAML reads 1e-3 as text: write 1.0e-3)" if isinstance(value, str) else ""
            problems.append(f"{where}.{name} must be a number, got {value!r}{hint}")
        elif name in positive and value <= 0:
            problems.append(f"{where}.{name} must be > 0, got {value}")
        elif name in unit and not 0 <= value <= 1:
            problems.append(f"{where}.{name} must be in [0, 1], got {value}")
        elif name in non_negative and value < 0:
            problems.append(f"{where}.{name} must be >= 0, got {value}")
