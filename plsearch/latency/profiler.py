"""Measure a device: decoder blocks, the model head and whole models, in random order.

    plan = plan_measurements(parent_config, profile, QUICK, seed=0)
    run = profile_rows(plan, parent_config, timer, profile, QUICK, seed=0, on_progress=cb)
    append_rows(table_path, run.rows)          # run.refused: rows too noisy to keep

What is timed (every call as the profile's engine makes it: inference mode, a KV cache,
greedy next-token choice, logits of the last position only):

- ``block``: decoder layers of the parent's family with random weights (a short stack of
  distinct layers of one shape, so weights are not cache-hot as a lone layer's would be),
  over a grid of aligned shapes (hidden, query heads, KV groups, FFN; head_dim is the
  parent's).
  ``prefill``: batch x prompt tokens into an empty cache. ``decode``: one token per
  sequence onto a cache holding ``context - 1`` tokens. Rotary cos/sin are computed once
  outside the timed call, as the whole model computes them once for all layers.
- ``head``: the model with its layers removed, run through the profile's engine (see
  plsearch.latency.engine): embedding, final norm, lm_head, argmax, the per-forward
  bookkeeping of the HF model (rotary, masks, cache object) and the engine's own fixed
  costs, per hidden size. ``prefill``: one call generating one token (the engine's cost per
  call). ``decode``: the cost of one more generated token, measured as the difference of
  calls generating ``engine_steps + 1`` and 1 tokens, divided by ``engine_steps`` (the
  engine's cost per step).
- ``model``: a few whole candidates (config_for_arch, random weights) through the engine:
  ``prefill`` alone and ``workload`` (prefill + generated_len - 1 decode steps). The cost
  models never fit on them; they give the layer scale (and validate the predictor), and
  the parent's widths at a few depths (``depth_ladder``) give the cost of a decode step
  once layers run before the head. Where
  the family has a post-norm-absorbed model type (glm4 -> glm, what the pangu recipe
  exports) the same archs are timed as that type too: rows of that ``model_type``, which
  give the absorbed layer scale.

Trust: every row is visited in ``rounds`` rounds, each round over all rows in a new random
order, so drift (thermal, other processes) lands on every row instead of one region of
the grid; a row's samples are pooled over its rounds (their median ignores one slow round
of three). Rows whose rounds disagree by more than ``max_spread`` (``sample_spread``: the
median absolute deviation of the round medians) are measured again (``retries`` times); rows still too
noisy are refused, never written, and listed by the caller. Every row records the host's
load average.

The grid comes from the parent and the profile's alignment, or from a search-space YAML
(``load_space_axes``). Measurement order is shuffled with the seed to spread drift
(thermal, other processes) over all shapes instead of biasing one region of the grid.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from plsearch import __version__
from plsearch.arch import ArchConfig
from plsearch.config import DeviceProfile
from plsearch.latency.engine import (
    TORCH_DTYPES,
    build_random_model,
    generation_call,
    greedy_step,
    random_prompt,
)
from plsearch.latency.timers import Timer, Timing, load_average

__all__ = [
    "FULL",
    "QUICK",
    "ArchAxes",
    "Measurement",
    "ProfileRun",
    "ProfileSettings",
    "axes_from_parent",
    "build_random_model",
    "load_space_axes",
    "plan_measurements",
    "profile_rows",
    "sample_archs",
    "time_visit",
]

logger = logging.getLogger(__name__)

Part = Literal["block", "head", "model"]
PhaseName = Literal["prefill", "decode", "workload"]


@dataclass(frozen=True)
class ProfileSettings:
    """How much to measure; QUICK fits in a few minutes on a shared 2-core CPU."""

    block_shapes: int  # distinct (hidden, heads, KV groups, FFN) block shapes
    prefill_fractions: tuple[float, ...]  # prompt lengths as fractions of the workload's
    decode_points: int  # decode contexts spread over [1 .. prompt + generated]
    models: int  # whole candidates timed end to end (validation only)
    depths: int  # whole models of the parent's widths at this many depths (see plan_measurements)
    block_stack: int  # distinct layers timed together per block row (see _time_block)
    warmup: int  # untimed calls at every visit of a row
    repeats: int  # timed calls per visit, block and head rows
    model_repeats: int  # timed calls per visit, whole-model rows (each a full workload)
    rounds: int = 3  # visits of every row, each round in a new random order
    max_spread: float = 0.10  # rounds' disagreement (sample_spread) that re-measures a row
    retries: int = 1  # re-measurements of a noisy row before it is refused
    engine_steps: int = 8  # extra tokens of the head decode rows (engine cost per step)


QUICK = ProfileSettings(
    block_shapes=20, prefill_fractions=(0.5, 1.0), decode_points=3, models=4, depths=3,
    block_stack=4, warmup=1, repeats=3, model_repeats=2,
)
FULL = ProfileSettings(
    block_shapes=64, prefill_fractions=(0.25, 0.5, 1.0), decode_points=6, models=10, depths=4,
    block_stack=4, warmup=2, repeats=5, model_repeats=2, retries=2,
)


@dataclass(frozen=True)
class ArchAxes:
    """The values each arch axis may take (sorted); head_dim and vocab stay the parent's."""

    num_hidden_layers: tuple[int, ...]
    hidden_size: tuple[int, ...]
    num_key_value_heads: tuple[int, ...]
    num_attention_heads: tuple[int, ...]  # kept only where divisible by the KV groups
    intermediate_size: tuple[int, ...]


@dataclass(frozen=True)
class Measurement:
    """One timed call. ``arch`` is the whole model for ``model`` rows; for ``block`` and
    ``head`` rows only its widths matter (the table stores the stack depth, or 0)."""

    part: Part
    phase: PhaseName
    arch: ArchConfig
    batch_size: int
    seq_len: int  # new tokens per sequence in the call
    context: int  # keys the last new token attends to
    generated_len: int = 0  # workload rows only
    absorbed: bool = False  # model rows: built as the family's post-norm-absorbed type



# ---- the grid -------------------------------------------------------------------------


def axes_from_parent(parent: ArchConfig, profile: DeviceProfile) -> ArchAxes:
    """Aligned values from a quarter of the parent's widths (and depth) up to the parent's."""
    al = profile.alignment

    def span(full: int, multiple: int) -> tuple[int, ...]:
        low = max(multiple, -(-(full // 4) // multiple) * multiple)
        values = list(range(low, full + 1, multiple)) or [full]
        return tuple(sorted(set(values)))

    kv = tuple(
        v for v in range(al.kv_heads_multiple, parent.num_key_value_heads + 1,
                         al.kv_heads_multiple)
    ) or (parent.num_key_value_heads,)
    return ArchAxes(
        num_hidden_layers=tuple(range(max(1, parent.num_hidden_layers // 4),
                                      parent.num_hidden_layers + 1)),
        hidden_size=span(parent.hidden_size, al.hidden_multiple),
        num_key_value_heads=kv,
        num_attention_heads=tuple(range(1, parent.num_attention_heads + 1)),
        intermediate_size=span(parent.intermediate_size, al.ffn_multiple),
    )


def load_space_axes(path: str | Path, parent: ArchConfig) -> ArchAxes:
    """Arch axes from a search-space YAML, parsed by the search's own axis parser.

    The axes may sit at the top level or under an ``axes:`` key (then other top-level
    keys are left to the search). An axis left out takes the parent's value only.
    Every problem of the file is reported in one ConfigError.
    """
    from plsearch.config import read_yaml
    from plsearch.errors import ConfigError
    from plsearch.search.space import parse_axes

    data = read_yaml(path)
    nested = isinstance(data, dict) and "axes" in data
    problems: list[str] = []
    parsed = parse_axes(data["axes"] if nested else data, problems,
                        prefix="axes." if nested else "")
    values = {}
    for axis in ArchAxes.__dataclass_fields__:
        theirs = getattr(parent, axis)
        allowed = parsed[axis].values if axis in parsed else (theirs,)
        too_big = [v for v in allowed if v > theirs]
        if too_big:
            problems.append(f"{axis} values {too_big} exceed the parent's {theirs}")
        values[axis] = tuple(sorted(set(allowed)))
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems) + "; fix the file")
    return ArchAxes(**values)


def sample_archs(
    axes: ArchAxes,
    parent: ArchConfig,
    n: int,
    rng: random.Random,
    *,
    exclude_widths: set[tuple[int, int, int, int]] | None = None,
    max_tries: int = 10000,
) -> list[ArchConfig]:
    """Up to ``n`` distinct random archs on the axes that fit the parent.

    ``exclude_widths``: (hidden, query heads, KV groups, FFN) shapes to avoid; the
    returned archs also have pairwise distinct widths.
    """
    taken = set(exclude_widths or ())
    out = []
    for _ in range(max_tries):
        if len(out) == n:
            break
        kv = rng.choice(axes.num_key_value_heads)
        heads = [q for q in axes.num_attention_heads
                 if q % kv == 0 and q // kv <= parent.queries_per_group]
        if not heads:
            continue
        arch = parent.replace(
            num_hidden_layers=rng.choice(axes.num_hidden_layers),
            hidden_size=rng.choice(axes.hidden_size),
            num_key_value_heads=kv,
            num_attention_heads=rng.choice(heads),
            intermediate_size=rng.choice(axes.intermediate_size),
        )
        if widths(arch) in taken:
            continue
        taken.add(widths(arch))
        out.append(arch)
    return out


def widths(arch: ArchConfig) -> tuple[int, int, int, int]:
    """The block shape of an arch: (hidden, query heads, KV groups, FFN)."""
    return (arch.hidden_size, arch.num_attention_heads, arch.num_key_value_heads,
            arch.intermediate_size)


def _corner_archs(axes: ArchAxes, parent: ArchConfig) -> list[ArchConfig]:
    """The parent's own widths and the smallest widths: the grid's extremes."""
    small_kv = axes.num_key_value_heads[0]
    small_q = next((q for q in axes.num_attention_heads if q % small_kv == 0), small_kv)
    smallest = parent.replace(
        hidden_size=axes.hidden_size[0], num_key_value_heads=small_kv,
        num_attention_heads=small_q, intermediate_size=axes.intermediate_size[0],
    )
    return [parent, smallest]


def decode_contexts(prompt_len: int, generated_len: int, points: int, limit: int) -> list[int]:
    """``points`` contexts spread from 1 to prompt + generated (and at most ``limit``)."""
    top = min(prompt_len + generated_len, limit)
    if points <= 1:
        return [top]
    values = {max(1, round(1 + (top - 1) * i / (points - 1))) for i in range(points)}
    return sorted(values | {min(prompt_len + 1, top)})


def plan_measurements(
    parent_config,
    profile: DeviceProfile,
    settings: ProfileSettings,
    *,
    axes: ArchAxes | None = None,
    seed: int = 0,
) -> list[Measurement]:
    """Every measurement of one profiling run, in a seeded random order."""
    from plsearch.families import get_family

    family = get_family(parent_config.model_type)
    parent = family.arch_from_config(parent_config)
    axes = axes or axes_from_parent(parent, profile)
    rng = random.Random(seed)
    w = profile.workload
    limit = int(getattr(parent_config, "max_position_embeddings", 0) or 1 << 30)
    prefill_lens = sorted({max(1, round(w.prompt_len * f)) for f in settings.prefill_fractions})
    contexts = decode_contexts(w.prompt_len, w.generated_len, settings.decode_points, limit)

    corners = [a for a in _corner_archs(axes, parent) if _fits(a, axes)]
    shapes = corners + sample_archs(
        axes, parent, settings.block_shapes - len(corners), rng,
        exclude_widths={widths(a) for a in corners},
    )
    plan: list[Measurement] = []
    b = w.batch_size
    for arch in shapes:
        plan += [Measurement("block", "prefill", arch, b, s, s) for s in prefill_lens]
        plan += [Measurement("block", "decode", arch, b, 1, c) for c in contexts]
    for hidden in sorted({a.hidden_size for a in shapes}):
        arch = parent.replace(hidden_size=hidden)
        plan += [Measurement("head", "prefill", arch, b, s, s) for s in prefill_lens]
        plan += [Measurement("head", "decode", arch, b, 1, c) for c in contexts]
    models = sample_archs(axes, parent, settings.models, rng,
                          exclude_widths={widths(a) for a in shapes})
    # the same archs as the absorbed type too, where the family has one (pangu exports it)
    kinds = (False, True) if getattr(family, "absorbed_model_type", None) else (False,)
    wholes = [(arch, absorbed) for arch in models for absorbed in kinds]
    wholes += [(a, False) for a in depth_ladder(axes, parent, settings.depths) if a not in models]
    for arch, absorbed in wholes:
        plan.append(Measurement("model", "prefill", arch, b, w.prompt_len, w.prompt_len,
                                absorbed=absorbed))
        plan.append(Measurement("model", "workload", arch, b, w.prompt_len,
                                w.prompt_len + w.generated_len - 1, w.generated_len,
                                absorbed=absorbed))
    rng.shuffle(plan)
    return plan


def depth_ladder(axes: ArchAxes, parent: ArchConfig, n: int) -> list[ArchConfig]:
    """The parent's widths at ``n`` depths spread from the shallowest on the axes to the
    deepest: whole models that differ in depth only. Their per-step time against their
    depth separates what each layer adds inside the engine from what a step costs once
    any layer runs before the head, which a head row (a model without layers) misses."""
    depths = axes.num_hidden_layers
    if n <= 0 or not depths:
        return []
    picks = sorted({depths[round(i * (len(depths) - 1) / max(1, n - 1))] for i in range(n)})
    return [parent.replace(num_hidden_layers=d) for d in picks]


def _fits(arch: ArchConfig, axes: ArchAxes) -> bool:
    return (arch.hidden_size in axes.hidden_size
            and arch.intermediate_size in axes.intermediate_size
            and arch.num_key_value_heads in axes.num_key_value_heads
            and arch.num_attention_heads in axes.num_attention_heads)


# ---- running --------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileRun:
    """The rows of one profiling run and what happened to the noisy ones."""

    rows: list[dict[str, object]]  # table rows, in plan order, refused rows left out
    remeasured: int  # rows measured again because their spread exceeded max_spread
    refused: list[tuple[Measurement, float]]  # (row, spread) still too noisy: not written
    max_spread: float
    median_spread: float  # over the kept rows
    load_avg: tuple[float, float]  # host load average at the start and the end


def profile_rows(
    plan: Sequence[Measurement],
    parent_config,
    timer: Timer,
    profile: DeviceProfile,
    settings: ProfileSettings,
    *,
    seed: int = 0,
    on_progress: Callable[[int, int, Measurement], None] | None = None,
) -> ProfileRun:
    """Time every planned measurement in interleaved rounds; re-measure or refuse noisy rows.

    ``on_progress(done, total, m)`` after every visit (``total`` grows when rows are
    measured again).
    """
    from plsearch.families import get_family
    from plsearch.latency.table import device_tag

    family = get_family(parent_config.model_type)
    dtype = TORCH_DTYPES[profile.dtype]
    fingerprint = {**timer.fingerprint(profile.dtype), "engine": profile.engine}
    run_id = _now()
    tag = device_tag(profile.name, str(fingerprint["device_name"]))
    start_load = load_average()
    rng = random.Random(seed * 7919 + 1)
    samples: dict[int, list[list[float]]] = {i: [] for i in range(len(plan))}  # per round
    loads: dict[int, float] = {}
    stamps: dict[int, str] = {}
    pending = list(range(len(plan)))
    total = len(plan) * settings.rounds
    done = 0
    remeasured: set[int] = set()
    for attempt in range(settings.retries + 1):
        for r in range(settings.rounds):
            order = list(pending)
            rng.shuffle(order)
            for i in order:
                m = plan[i]
                salt = (seed * 100003 + i) * 31 + attempt * settings.rounds + r
                samples[i].append(time_visit(m, family, parent_config, timer, profile, dtype,
                                         settings, salt))
                loads[i], stamps[i] = load_average(), _now()
                done += 1
                if on_progress is not None:
                    on_progress(done, total, m)
        noisy = [i for i in pending if sample_spread(samples[i]) > settings.max_spread]
        if not noisy or attempt == settings.retries:
            break
        logger.info("%d of %d rows spread more than %.0f%%: measuring them again",
                    len(noisy), len(pending), 100 * settings.max_spread)
        for i in noisy:
            samples[i] = []
        remeasured.update(noisy)
        pending = noisy
        total += len(noisy) * settings.rounds
    refused = [(plan[i], sample_spread(samples[i])) for i in range(len(plan))
               if sample_spread(samples[i]) > settings.max_spread]
    refused_ids = {i for i in range(len(plan)) if sample_spread(samples[i]) > settings.max_spread}
    rows = []
    for i, m in enumerate(plan):
        if i in refused_ids:
            continue
        layers = {"block": settings.block_stack, "head": 0}.get(m.part, m.arch.num_hidden_layers)
        row_print = {**fingerprint, "load_avg": loads[i]}
        pooled = [x for visit in samples[i] for x in visit]
        model_type = family.absorbed_model_type if m.absorbed else parent_config.model_type
        rows.append(_row(m, layers, Timing.from_samples(pooled), run_id, stamps[i], tag,
                         row_print, model_type, seed))
    kept = [sample_spread(samples[i]) for i in range(len(plan)) if i not in refused_ids]
    kept.sort()
    return ProfileRun(rows=rows, remeasured=len(remeasured), refused=refused,
                      max_spread=settings.max_spread,
                      median_spread=kept[len(kept) // 2] if kept else float("nan"),
                      load_avg=(start_load, load_average()))


def sample_spread(rounds: Sequence[Sequence[float]]) -> float:
    """How far a row's rounds disagree: the median absolute deviation of the round medians
    over their median.

    A shared machine (or a VM's neighbours) has slow spells of a few seconds that can slow
    one round of a row by 1.5-2x; the pooled median ignores such a round, and so does this
    measure: with 3 rounds it is the gap between the middle round and its nearer neighbour,
    so a row passes when a majority of its rounds agree. Drift that moves every round
    apart still counts. With one round: (p90 - p10) / median.
    """
    pooled = [x for visit in rounds for x in visit]
    if len(pooled) < 2:
        return 0.0
    if len(rounds) < 2:
        t = Timing.from_samples(pooled)
        return (t.p90_ms - t.p10_ms) / t.median_ms if t.median_ms > 0 else float("inf")
    medians = [Timing.from_samples(list(visit)).median_ms for visit in rounds]
    center = statistics.median(medians)
    if center <= 0:
        return float("inf")
    return statistics.median(abs(m - center) for m in medians) / center


def time_visit(m: Measurement, family, parent_config, timer, profile, dtype, settings,
           salt: int) -> list[float]:
    """One visit of a row: build its modules, warm up, return the timed samples (ms).
    (plsearch.latency.drift times a table's model rows again through it.)"""
    generator = torch.Generator().manual_seed(salt)
    torch.manual_seed(salt)  # module init inside HF constructors
    if m.part == "block":
        return _time_block(m, family, parent_config, timer, dtype, settings, generator)
    if m.part == "head":
        return _time_head(m, family, parent_config, timer, profile, dtype, settings, generator)
    model = build_random_model(family, parent_config, m.arch, timer.device, dtype,
                               profile.attn_implementation, absorbed=m.absorbed)
    new_tokens = m.generated_len if m.phase == "workload" else 1
    prompt = random_prompt(m.arch.vocab_size, m.batch_size, m.seq_len, timer.device, generator)
    call = generation_call(model, prompt, new_tokens, profile.engine)
    return timer.samples(call, warmup=1, repeats=settings.model_repeats)


def _row(m: Measurement, layers: int, t: Timing, run_id, stamp, tag, fingerprint,
         model_type: str, seed) -> dict:
    arch = m.arch.to_dict()
    del arch["tie_word_embeddings"]
    arch["num_hidden_layers"] = layers
    return {
        "run_id": run_id, "timestamp": stamp, "device_tag": tag, **fingerprint,
        "plsearch_version": __version__, "model_type": model_type,
        "part": m.part, "phase": m.phase, **arch, "batch_size": m.batch_size,
        "seq_len": m.seq_len, "context": m.context, "generated_len": m.generated_len,
        "median_ms": t.median_ms, "p10_ms": t.p10_ms, "p90_ms": t.p90_ms,
        "repeats": t.repeats, "seed": seed,
    }


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def _time_block(m, family, parent_config, timer, dtype, settings, generator) -> list[float]:
    """Time a stack of ``settings.block_stack`` distinct layers of one shape, one cache.

    A stack, not one layer called again and again: inside a model the other layers' weights
    push a layer's weights out of the small caches between its calls; a lone layer would
    keep them hot and look faster than it is. The row stores the stack's depth.
    """
    depth = settings.block_stack
    config = family.config_for_arch(parent_config, m.arch.replace(num_hidden_layers=depth))
    blocks = [family.build_block(config, i, device=timer.device, dtype=dtype).eval()
              for i in range(depth)]
    d, b = m.arch.hidden_size, m.batch_size
    with torch.inference_mode():
        if m.phase == "prefill":
            x = _randn((b, m.seq_len, d), generator, timer.device, dtype)
            positions = torch.arange(m.seq_len, device=timer.device)[None]
            past = 0
        else:
            x = _randn((b, 1, d), generator, timer.device, dtype)
            positions = torch.tensor([[m.context - 1]], device=timer.device)
            past = m.context - 1
        cos_sin = family.position_embeddings(blocks[0].rotary, x, positions, config, 0)
        state = {"cache": _filled_cache(blocks, m.arch, b, past, generator, timer.device,
                                       dtype)}
        layers = [block.layer for block in blocks]

        def call():
            for layer in layers:
                layer(x, attention_mask=None, position_ids=positions, cache=state["cache"],
                      use_cache=True, position_embeddings=cos_sin)

        # Decode: after each step, put back the cache layers' state (their tensors are
        # replaced, never written in place), so every step sees context - 1 past tokens.
        saved = [dict(layer.__dict__) for layer in state["cache"].layers]

        def reset():
            if m.phase == "prefill":
                state["cache"] = blocks[0].new_cache()
                return
            for layer, snapshot in zip(state["cache"].layers, saved):
                layer.__dict__.clear()
                layer.__dict__.update(snapshot)

        return timer.samples(call, warmup=settings.warmup, repeats=settings.repeats,
                             reset=reset)


def _filled_cache(blocks, arch, batch, tokens, generator, device, dtype):
    """A cache shared by the stack, holding ``tokens`` random past keys/values per layer.

    Random K/V of the right shape cost the decode step exactly what real ones do, and
    writing them is far cheaper than running a prefill to produce them.
    """
    cache = blocks[0].new_cache()
    shape = (batch, arch.num_key_value_heads, tokens, arch.head_dim)
    for i in range(len(blocks) if tokens else 0):
        cache.update(_randn(shape, generator, device, dtype),
                     _randn(shape, generator, device, dtype), i)
    return cache


def _time_head(m, family, parent_config, timer, profile, dtype, settings,
               generator) -> list[float]:
    """The model without its layers, through the engine: per call (prefill), per step."""
    model = build_random_model(family, parent_config, m.arch.replace(num_hidden_layers=1),
                               timer.device, dtype, profile.attn_implementation)
    family.decoder(model).layers = nn.ModuleList()  # keep everything but the layers
    if m.phase == "prefill":
        prompt = random_prompt(m.arch.vocab_size, m.batch_size, m.seq_len, timer.device,
                               generator)
        call = generation_call(model, prompt, 1, profile.engine)
        return timer.samples(call, warmup=settings.warmup, repeats=settings.repeats)
    if profile.engine == "loop":
        ids = random_prompt(m.arch.vocab_size, m.batch_size, 1, timer.device, generator)
        step = greedy_step(model)
        from transformers.cache_utils import DynamicCache

        cache = DynamicCache(config=model.config)
        return timer.samples(lambda: step(ids, cache), warmup=settings.warmup,
                             repeats=settings.repeats)
    # One more generated token costs (t(k + 1 tokens) - t(1 token)) / k; the pair is timed
    # back to back in every repeat, so drift cancels in the difference.
    k = settings.engine_steps
    prompt = random_prompt(m.arch.vocab_size, m.batch_size, max(1, m.context - 1 - k // 2),
                           timer.device, generator)
    short = generation_call(model, prompt, 1, profile.engine)
    long = generation_call(model, prompt, k + 1, profile.engine)
    for _ in range(settings.warmup):
        timer.time_once(short)
        timer.time_once(long)
    out = []
    for _ in range(settings.repeats):
        first = timer.time_once(short)
        out.append(max(timer.time_once(long) - first, 1e-6) / k)
    return out


def _randn(shape, generator, device, dtype) -> torch.Tensor:
    return torch.randn(shape, generator=generator).to(device=device, dtype=dtype)
