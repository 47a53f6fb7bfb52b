"""Measure a device: decoder blocks, the model head and whole models, in random order.

    plan = plan_measurements(parent_config, profile, quick=True, seed=0)
    rows = run_measurements(plan, parent_config, timer, profile, seed=0, on_progress=cb)
    append_rows(table_path, rows)

What is timed (every call as a serving engine makes it: inference mode, a KV cache,
greedy next-token choice, logits of the last position only):

- ``block``: decoder layers of the parent's family with random weights (a short stack of
  distinct layers of one shape, so weights are not cache-hot as a lone layer's would be),
  over a grid of aligned shapes (hidden, query heads, KV groups, FFN; head_dim is the
  parent's).
  ``prefill``: batch x prompt tokens into an empty cache. ``decode``: one token per
  sequence onto a cache holding ``context - 1`` tokens. Rotary cos/sin are computed once
  outside the timed call, as the whole model computes them once for all layers.
- ``head``: the model with its layers removed: embedding, final norm, lm_head, argmax and
  the per-forward bookkeeping of the HF model (rotary, masks, cache object), per hidden
  size, for prefill and decode.
- ``model``: a few whole candidates (config_for_arch, random weights) end to end:
  ``prefill`` alone and ``workload`` (prefill + generated_len - 1 decode steps). These
  rows only validate the predictor; it never fits on them.

The grid comes from the parent and the profile's alignment, or from a search-space YAML
(``load_space_axes``). Measurement order is shuffled with the seed to spread drift
(thermal, other processes) over all shapes instead of biasing one region of the grid.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from plsearch import __version__
from plsearch.arch import ArchConfig
from plsearch.config import DeviceProfile, read_yaml
from plsearch.errors import ConfigError
from plsearch.latency.timers import Timer, Timing

__all__ = [
    "FULL",
    "QUICK",
    "ArchAxes",
    "Measurement",
    "ProfileSettings",
    "axes_from_parent",
    "load_space_axes",
    "measure_workload",
    "plan_measurements",
    "run_measurements",
    "sample_archs",
]

logger = logging.getLogger(__name__)

Part = Literal["block", "head", "model"]
PhaseName = Literal["prefill", "decode", "workload"]
TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class ProfileSettings:
    """How much to measure; QUICK fits in a few minutes on a shared 2-core CPU."""

    block_shapes: int  # distinct (hidden, heads, KV groups, FFN) block shapes
    prefill_fractions: tuple[float, ...]  # prompt lengths as fractions of the workload's
    decode_points: int  # decode contexts spread over [1 .. prompt + generated]
    models: int  # whole candidates timed end to end (validation only)
    block_stack: int  # distinct layers timed together per block row (see _time_block)
    warmup: int
    repeats: int  # block and head rows
    model_repeats: int  # whole-model rows (each is a full workload)


QUICK = ProfileSettings(
    block_shapes=20, prefill_fractions=(0.5, 1.0), decode_points=3, models=4,
    block_stack=4, warmup=1, repeats=7, model_repeats=3,
)
FULL = ProfileSettings(
    block_shapes=64, prefill_fractions=(0.25, 0.5, 1.0), decode_points=6, models=10,
    block_stack=4, warmup=3, repeats=15, model_repeats=7,
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


_AXES = tuple(f.name for f in dataclasses.fields(ArchAxes))


def load_space_axes(path: str | Path, parent: ArchConfig) -> ArchAxes:
    """Arch axes from a search-space YAML: each axis a list of values or {min, max, step}.

    The axes may sit at the top level or under an ``axes:`` key (then other top-level
    keys are left to the search). An axis left out takes the parent's value only.
    Every problem of the file is reported in one ConfigError.
    """
    data = read_yaml(path)
    problems: list[str] = []
    if isinstance(data, dict) and "axes" in data:
        data = data["axes"]
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a search space must map arch axes to values; fix the file")
    unknown = sorted(set(data) - set(_AXES))
    if unknown:
        problems.append(f"unknown axis {unknown} (expected: {', '.join(_AXES)})")
    values = {}
    for axis in _AXES:
        raw = data.get(axis, [getattr(parent, axis)])
        parsed = _axis_values(raw, axis, problems)
        too_big = [v for v in parsed if v > getattr(parent, axis)]
        if too_big:
            problems.append(f"{axis} values {too_big} exceed the parent's {getattr(parent, axis)}")
        values[axis] = tuple(sorted(set(parsed)))
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems) + "; fix the file")
    return ArchAxes(**values)


def _axis_values(raw: object, axis: str, problems: list[str]) -> list[int]:
    def positive_int(v: object) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v > 0

    if isinstance(raw, list) and raw and all(positive_int(v) for v in raw):
        return list(raw)
    if isinstance(raw, dict) and set(raw) <= {"min", "max", "step"} and {"min", "max"} <= set(raw):
        low, high, step = raw["min"], raw["max"], raw.get("step", 1)
        if all(positive_int(v) for v in (low, high, step)) and low <= high:
            return list(range(low, high + 1, step))
    problems.append(
        f"{axis} must be a non-empty list of positive integers or "
        f"{{min, max, step}} with min <= max, got {raw!r}"
    )
    return []


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
    for arch in models:
        plan.append(Measurement("model", "prefill", arch, b, w.prompt_len, w.prompt_len))
        plan.append(Measurement("model", "workload", arch, b, w.prompt_len,
                                w.prompt_len + w.generated_len - 1, w.generated_len))
    rng.shuffle(plan)
    return plan


def _fits(arch: ArchConfig, axes: ArchAxes) -> bool:
    return (arch.hidden_size in axes.hidden_size
            and arch.intermediate_size in axes.intermediate_size
            and arch.num_key_value_heads in axes.num_key_value_heads
            and arch.num_attention_heads in axes.num_attention_heads)


# ---- running --------------------------------------------------------------------------


def run_measurements(
    plan: Sequence[Measurement],
    parent_config,
    timer: Timer,
    profile: DeviceProfile,
    settings: ProfileSettings,
    *,
    seed: int = 0,
    on_progress: Callable[[int, int, Measurement], None] | None = None,
) -> list[dict[str, object]]:
    """Time every planned measurement; one table row (a dict) per measurement."""
    from plsearch.families import get_family
    from plsearch.latency.table import device_tag

    family = get_family(parent_config.model_type)
    dtype = TORCH_DTYPES[profile.dtype]
    fingerprint = timer.fingerprint(profile.dtype)
    run_id = _now()
    tag = device_tag(profile.name, str(fingerprint["device_name"]))
    rows = []
    for i, m in enumerate(plan):
        generator = torch.Generator().manual_seed(seed * 100003 + i)
        torch.manual_seed(seed * 100003 + i)  # module init inside HF constructors
        if m.part == "block":
            timing = _time_block(m, family, parent_config, timer, dtype, settings, generator)
        elif m.part == "head":
            timing = _time_head(m, family, parent_config, timer, dtype, settings, generator)
        else:
            model = build_random_model(family, parent_config, m.arch, timer.device, dtype)
            timing = measure_workload(
                model, timer, m.batch_size, m.seq_len,
                m.generated_len if m.phase == "workload" else 1,
                warmup=1, repeats=settings.model_repeats, generator=generator,
            )
        layers = {"block": settings.block_stack, "head": 0}.get(m.part, m.arch.num_hidden_layers)
        rows.append(_row(m, layers, timing, run_id, tag, fingerprint, parent_config, seed))
        if on_progress is not None:
            on_progress(i + 1, len(plan), m)
    return rows


def _row(m: Measurement, layers: int, t: Timing, run_id, tag, fingerprint, parent_config,
         seed) -> dict:
    arch = m.arch.to_dict()
    del arch["tie_word_embeddings"]
    arch["num_hidden_layers"] = layers
    return {
        "run_id": run_id, "timestamp": _now(), "device_tag": tag, **fingerprint,
        "plsearch_version": __version__, "model_type": parent_config.model_type,
        "part": m.part, "phase": m.phase, **arch, "batch_size": m.batch_size,
        "seq_len": m.seq_len, "context": m.context, "generated_len": m.generated_len,
        "median_ms": t.median_ms, "p10_ms": t.p10_ms, "p90_ms": t.p90_ms,
        "repeats": t.repeats, "seed": seed,
    }


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def _time_block(m, family, parent_config, timer, dtype, settings, generator) -> Timing:
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

        return timer.time(call, warmup=settings.warmup, repeats=settings.repeats, reset=reset)


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


def _time_head(m, family, parent_config, timer, dtype, settings, generator) -> Timing:
    model = build_random_model(family, parent_config, m.arch.replace(num_hidden_layers=1),
                               timer.device, dtype)
    family.decoder(model).layers = nn.ModuleList()  # keep everything but the layers
    if m.phase == "prefill":
        return measure_workload(model, timer, m.batch_size, m.seq_len, 1,
                                warmup=settings.warmup, repeats=settings.repeats,
                                generator=generator)
    ids = torch.randint(0, m.arch.vocab_size, (m.batch_size, 1), generator=generator)
    ids = ids.to(timer.device)
    step = _greedy_step(model)
    cache = _new_model_cache(model)
    return timer.time(lambda: step(ids, cache), warmup=settings.warmup,
                      repeats=settings.repeats)


def build_random_model(family, parent_config, arch: ArchConfig, device, dtype) -> nn.Module:
    """A whole HF model of ``arch`` with random weights, on ``device`` in ``dtype``."""
    config = family.config_for_arch(parent_config, arch)
    config._attn_implementation = "sdpa"
    with torch.device(device):
        model = family.build_model(config)
    return model.to(dtype).eval()


def _new_model_cache(model):
    from transformers.cache_utils import DynamicCache

    return DynamicCache(config=model.config)


def _greedy_step(model) -> Callable:
    """step(ids, cache) -> next ids: one forward, last-position logits, argmax."""
    params = inspect.signature(model.forward).parameters
    cache_kw = "cache" if "cache" in params else "past_key_values"  # transformers 5 vs 4

    def step(ids, cache):
        out = model(input_ids=ids, use_cache=True, logits_to_keep=1, **{cache_kw: cache})
        return out.logits[:, -1].argmax(-1, keepdim=True)

    return step


def measure_workload(
    model: nn.Module,
    timer: Timer,
    batch_size: int,
    prompt_len: int,
    generated_len: int,
    *,
    warmup: int = 1,
    repeats: int = 5,
    generator: torch.Generator | None = None,
    flush: bool = False,
) -> Timing:
    """Time greedy generation: prefill the prompts, then ``generated_len - 1`` decode steps.

    ``generated_len == 1`` times the prefill alone (its logits give the first token).
    This is also how bench/latency_accuracy.py measures held-out archs end to end.
    """
    vocab = model.config.vocab_size
    prompt = torch.randint(0, vocab, (batch_size, prompt_len), generator=generator)
    prompt = prompt.to(timer.device)
    step = _greedy_step(model)

    def generate():
        cache = _new_model_cache(model)
        ids = step(prompt, cache)
        for _ in range(generated_len - 1):
            ids = step(ids, cache)

    return timer.time(generate, warmup=warmup, repeats=repeats, flush=flush)


def _randn(shape, generator, device, dtype) -> torch.Tensor:
    return torch.randn(shape, generator=generator).to(device=device, dtype=dtype)
