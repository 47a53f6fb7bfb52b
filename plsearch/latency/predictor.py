"""From the latency table to tokens/s of any arch: a physical cost model per part.

    predictor = fit_predictor(table, seed=0)             # block + head rows only
    pred = predict_latency(arch, workload, predictor)    # LatencyPrediction
    predict_tokens_per_s(arch, profile, predictor)       # what the search asks
    validate_predictor(predictor, table)                 # error on the model rows

Each part and phase (block prefill, block decode, head prefill, head decode) is a
non-negative linear model (non-negative least squares, numpy only) over physical features
of the call: FLOPs of the projections and of attention, bytes of weights, KV cache and
activations moved, a per-head term, and a constant (kernel launches, Python). Non-negative
weights keep every feature a cost, so predictions grow with every shape axis and
extrapolate sanely. Rows are weighted by 1 / time^2, so the fit minimizes relative, not
absolute, error.

The head rows are timed through the table's engine (plsearch.latency.engine): their
constants are the engine's fixed cost per call (head prefill) and per generated token
(head decode), which dominate small models under transformers generate(). The predictor
names its engine, and says when its table is ``analytic`` (computed from published peaks,
not measured).

A whole model is composed as

    prefill  = L * s * block_prefill(batch, prompt) + head_prefill(batch, prompt)
    decode_k = L * (block_decode(batch, context = prompt + k) + o) + c + head_decode(batch)
    tokens/s = batch * generated / (prefill + sum over k = 1 .. generated - 1 of decode_k)

(the first generated token comes from the prefill logits). A layer costs a little more
inside the engine's whole model than alone, in a way that differs by phase
(``InModel``): a prefill layer is compute-bound and takes a factor ``s`` of its block
time (allocator and cache effects of the whole model's larger working set; 0.97-1.17 in 5
quick tables of a 2-core CPU under generate()), while a decode step of a layer is
dominated by fixed costs and pays a constant ``o`` ms more (the model's per-layer
bookkeeping of the cache and masks, which a block timed alone skips; 0.20-0.24 ms per
layer and step for glm4 in those tables, -0.03 to 0.35 ms for its absorbed type). Both are
fitted on the table's whole-model rows (medians over them; s = 1, o = 0 when there are
none). A constant, not a factor, for decode because the gap does not grow with a layer's
size: fitted as a factor on mid-sized archs it predicted small ones up to 15% too fast.
On 3 quick tables of one AMD EPYC VM, each with the 14 held-out archs of
bench/latency_accuracy.py (2026-12-02), speed-ups over the parent fell within +-10% for
95% of the 42 archs with the constant, 67% with a decode factor (median signed error
+2.6% against +7.1%). A decode step of a model with any layers also costs ``c`` ms more
than the head rows (a model without layers) say: the lm_head's step timed inside
generate() took 1.37 ms without layers, 1.79-1.94 ms behind 2 or 8 (d256, AMD VM). Fitted
into ``o`` alone, it went to the deep models the rows were, and shallow models came out
too fast. ``c`` is fitted on the profile's depth ladder (the parent's widths at a few
depths), and ``o`` on all rows once ``c`` is taken out. ``validate_predictor`` reports the
error on each whole model with ``InModel`` fitted on the other archs only (leave one arch
out).

Both overheads can be fixed costs (Python, kernel launches: alike for any width) or grow
with the weights a step reads: a block or the head timed alone, call after call, finds its
weights in cache, while inside the whole model each step reads every layer's and the
lm_head's weights again. ``fit_in_model`` fits ``c`` and ``o`` both ways, in ms and in ms
per MiB of weights (the layer's projections for ``o``, the lm_head for ``c``:
``InModel.per_weight_mib``), and keeps the form that leaves the table's own whole-model rows
the smaller mean error (ms on a tie). On two quick tables of the AMD EPYC VM (2026-12-03)
the ms form predicted the tables' own d64 models 58-71% too slow; per MiB (the form kept
on both), bench/latency_accuracy.py's 14 held-out archs went from median |error| 22.1% and
8.0% to 4.6% and 5.7%, speed-ups over the parent from 19.2% and 17.8% to 5.7% and 12.1%
(offline, on the same measurements). The shipped Intel table keeps ms (its whole models,
leave one arch out: 3.1% against 5.7% per MiB).

A family whose post-norms the pangu recipe absorbs (glm4 -> glm: two RMSNorms fewer per
layer) exports a model of another type. Its layers cost less than the parent family's
block rows say (3-4% in the shipped cpu table under generate()), so the profile also times
its whole-model archs as the absorbed type (rows of that model_type) and those rows give
``absorbed_in_model``: its own ``s``, the same ``c``, and ``o`` as the parent type's plus
the median over the archs of the two types' difference per layer (each arch timed as both:
its own error cancels); ``predict_latency(..., absorbed=True)`` uses it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from plsearch import atomic
from plsearch.arch import ArchConfig
from plsearch.config import DeviceProfile, Workload
from plsearch.errors import LatencyTableError
from plsearch.latency.table import ANALYTIC_CLOCK, FINGERPRINT_COLUMNS, rows_for_fingerprint

__all__ = [
    "InModel",
    "LatencyPrediction",
    "LatencyPredictor",
    "ValidationReport",
    "fit_predictor",
    "head_mib",
    "layer_mib",
    "load_predictor",
    "predict_latency",
    "predict_tokens_per_s",
    "save_predictor",
    "validate_predictor",
]

logger = logging.getLogger(__name__)

FORMAT = "plsearch-latency-predictor"
# 2: engine and analytic fields; 3: in_model replaces layer_scale; 4: in_model's
# step_overhead_ms (a version 3 file reads as 0 there: fitted without a depth ladder);
# 5: in_model's per_weight_mib (a version 3 or 4 file reads as false: overheads in ms)
FORMAT_VERSION = 5
READABLE_VERSIONS = (3, 4, FORMAT_VERSION)
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
BLOCK_FEATURES = (
    "const", "proj_flops", "attn_flops", "weight_bytes", "kv_bytes", "act_bytes",
    "attn_heads",
)
HEAD_FEATURES = ("const", "embed_bytes", "lm_flops", "lm_bytes")
PARTS = (("block", "prefill"), ("block", "decode"), ("head", "prefill"), ("head", "decode"))
# Outside these bounds (the factor; the overhead as a share of the median layer's decode
# step) a fitted InModel says the table is broken, not the engine: it is clipped to them.
_SCALE_RANGE = (0.5, 2.0)
_OVERHEAD_RANGE = (-0.5, 1.0)
_MIN_ROWS = 3


def _arr(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def block_features(
    arch: ArchConfig, batch, seq_len, context, phase: str, dtype_bytes: int
) -> dict[str, np.ndarray]:
    """Physical features of one decoder-block call; array-valued over rows.

    ``seq_len`` new tokens per sequence, ``context`` keys seen by the last of them.
    Prefill tokens attend to (context + 1) / 2 keys on average (causal).
    """
    batch, seq_len, context = _arr(batch), _arr(seq_len), _arr(context)
    d, h, f = arch.hidden_size, arch.head_dim, arch.intermediate_size
    q_out, kv_out = arch.num_attention_heads * h, arch.num_key_value_heads * h
    tokens = batch * seq_len
    keys = (context + 1) / 2 if phase == "prefill" else context
    proj_macs = d * q_out + 2 * d * kv_out + q_out * d + 3 * d * f
    one = np.ones_like(tokens)
    return {
        "const": one,
        "proj_flops": 2.0 * tokens * proj_macs,
        "attn_flops": 4.0 * tokens * q_out * keys,
        "weight_bytes": one * proj_macs * dtype_bytes,
        "kv_bytes": batch * context * 2.0 * kv_out * dtype_bytes,
        "act_bytes": tokens * (6.0 * d + 2 * q_out + 2 * kv_out + 4.0 * f) * dtype_bytes,
        "attn_heads": batch * arch.num_attention_heads * one,
    }


def head_features(
    arch: ArchConfig, batch, seq_len, dtype_bytes: int
) -> dict[str, np.ndarray]:
    """Embedding lookup + final norm over every new token, lm_head on the last one."""
    batch, seq_len = _arr(batch), _arr(seq_len)
    d, v = arch.hidden_size, arch.vocab_size
    one = np.ones_like(batch * seq_len)
    return {
        "const": one,
        "embed_bytes": batch * seq_len * d * 3.0 * dtype_bytes,
        "lm_flops": 2.0 * batch * v * d,
        "lm_bytes": one * v * d * dtype_bytes,
    }


@dataclass(frozen=True)
class LinearCost:
    """milliseconds = sum(coef[i] * feature[i]); every coef >= 0."""

    features: tuple[str, ...]
    coef: tuple[float, ...]
    rows: int  # table rows it was fitted on

    def __call__(self, feats: Mapping[str, np.ndarray]) -> np.ndarray:
        return sum(c * _arr(feats[name]) for name, c in zip(self.features, self.coef))


@dataclass(frozen=True)
class InModel:
    """How a layer costs inside the engine's whole model compared with its block rows."""

    prefill_scale: float = 1.0  # prefill time = block prefill time x this
    decode_overhead_ms: float = 0.0  # each decode step of a layer costs this much more
    # each decode step of a model with layers costs this much more than the head rows say
    step_overhead_ms: float = 0.0
    # True: the two overheads are ms per MiB of weights, the layer's projections' for o and
    # the lm_head's for c (the module note: what a step inside the model reads from memory
    # that a block or head timed alone, its weights left in cache, does not)
    per_weight_mib: bool = False

    def layer_ms(self, arch: ArchConfig, dtype_bytes: int) -> float:
        """``o`` of ``arch``: ms more each decode step of each of its layers."""
        return self.decode_overhead_ms * (layer_mib(arch, dtype_bytes) if self.per_weight_mib
                                          else 1.0)

    def step_ms(self, arch: ArchConfig, dtype_bytes: int) -> float:
        """``c`` of ``arch``: ms more each decode step of the model (when it has layers)."""
        return self.step_overhead_ms * (head_mib(arch, dtype_bytes) if self.per_weight_mib
                                        else 1.0)

    @property
    def units(self) -> tuple[str, str]:
        """What ``o`` and ``c`` are per, after "ms", for messages: ("", "") in ms."""
        if not self.per_weight_mib:
            return "", ""
        return " per MiB of the layer's weights", " per MiB of the lm_head's"

    def to_dict(self) -> dict[str, float | bool]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> InModel:
        # a predictor written before step_overhead_ms was fitted had none (0); one written
        # before per_weight_mib, overheads in ms
        return cls(float(data["prefill_scale"]), float(data["decode_overhead_ms"]),
                   float(data.get("step_overhead_ms", 0.0)),
                   bool(data.get("per_weight_mib", False)))


def layer_mib(arch: ArchConfig, dtype_bytes: int) -> float:
    """MiB of one layer's projection weights (block_features' weight_bytes)."""
    return float(block_features(arch, 1, 1, 1, "decode", dtype_bytes)["weight_bytes"]) / 2**20


def head_mib(arch: ArchConfig, dtype_bytes: int) -> float:
    """MiB of the lm_head's weights (head_features' lm_bytes)."""
    return float(head_features(arch, 1, 1, dtype_bytes)["lm_bytes"]) / 2**20


@dataclass(frozen=True)
class LatencyPredictor:
    """Fitted cost models for one device fingerprint and one model family."""

    costs: dict[str, LinearCost]  # keys "block/prefill", "block/decode", "head/..."
    dtype: str
    model_type: str
    fingerprint: dict[str, object]
    seed: int
    meta: dict[str, object] = field(default_factory=dict)
    engine: str = "hf-generate"  # what its head rows (and so its tokens/s) were timed with
    analytic: bool = False  # fitted on rows computed from published peaks, not measured
    # a layer inside the whole model against its block rows (fitted on whole-model rows)
    in_model: InModel = InModel()
    # the same for the family's post-norm-absorbed model type (None: not measured, then
    # in_model serves)
    absorbed_in_model: InModel | None = None

    def layers_in_model(self, absorbed: bool = False) -> InModel:
        """In-model layer cost of the parent's model type, or of its absorbed type."""
        if absorbed and self.absorbed_in_model is not None:
            return self.absorbed_in_model
        return self.in_model

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    def block_ms(self, arch: ArchConfig, phase: str, batch, seq_len, context) -> np.ndarray:
        feats = block_features(arch, batch, seq_len, context, phase, self.dtype_bytes)
        return self.costs[f"block/{phase}"](feats)

    def head_ms(self, arch: ArchConfig, phase: str, batch, seq_len) -> np.ndarray:
        feats = head_features(arch, batch, seq_len, self.dtype_bytes)
        return self.costs[f"head/{phase}"](feats)


@dataclass(frozen=True)
class LatencyPrediction:
    """Predicted times (ms) of one arch on one workload, with the per-part breakdown."""

    tokens_per_s: float
    prefill_ms: float
    decode_ms: float  # all decode steps together
    decode_ms_per_token: float  # mean decode step (0 when generated_len == 1)
    breakdown: dict[str, float]  # prefill_blocks_ms, prefill_head_ms, decode_*_ms

    @property
    def total_ms(self) -> float:
        return self.prefill_ms + self.decode_ms

    def to_dict(self) -> dict[str, object]:
        return {
            "tokens_per_s": self.tokens_per_s,
            "prefill_ms": self.prefill_ms,
            "decode_ms_per_token": self.decode_ms_per_token,
            "decode_ms": self.decode_ms,
            "total_ms": self.total_ms,
            "breakdown": dict(self.breakdown),
        }


# ---- fitting ----------------------------------------------------------------------------


def fit_predictor(table: pd.DataFrame, seed: int = 0, step_overhead_ms: float | None = None,
                  per_weight_mib: bool | None = None) -> LatencyPredictor:
    """Fit the four cost models on the block and head rows of the latest fingerprint.

    Deterministic: the non-negative least-squares solve has no randomness; ``seed`` is
    recorded so the call signature matches every other seeded step. ``step_overhead_ms``:
    ``c`` as given instead of fitted on the depth ladder (bench/latency_accuracy.py's
    figures without it: 0). ``per_weight_mib``: the overheads' form as given instead of
    the one that fits the whole-model rows better (the bench's figures in the other form).
    """
    rows = rows_for_fingerprint(table)
    dtype = str(rows["dtype"].iloc[0])
    if dtype not in DTYPE_BYTES:
        raise LatencyTableError(f"the table's dtype {dtype!r} is not one of {list(DTYPE_BYTES)}")
    parts = rows[rows["part"] != "model"].sort_values("run_id")
    model_type = str((parts if len(parts) else rows.sort_values("run_id"))["model_type"].iloc[-1])
    absorbed_type = _absorbed_type(model_type)
    absorbed_models = rows[(rows["part"] == "model") & (rows["model_type"] == absorbed_type)]
    model_types = rows["model_type"].unique()
    if len(set(model_types) - {model_type, absorbed_type}):
        logger.warning("table holds families %s; fitting %s only", list(model_types), model_type)
    rows = rows[rows["model_type"] == model_type]
    costs = {}
    for part, phase in PARTS:
        subset = rows[(rows["part"] == part) & (rows["phase"] == phase)]
        if len(subset) < _MIN_ROWS:
            raise LatencyTableError(
                f"the table has {len(subset)} {part} {phase} rows, the fit needs at least "
                f"{_MIN_ROWS}; run `plsearch profile-npu` (without --quick for more rows)"
            )
        costs[f"{part}/{phase}"] = _fit_cost(subset, part, phase, DTYPE_BYTES[dtype])
    last = rows.sort_values(["run_id", "timestamp"]).iloc[-1]
    fingerprint = {c: _plain(last[c]) for c in FINGERPRINT_COLUMNS if c != "load_avg"}
    loads = rows["load_avg"][rows["load_avg"] >= 0]
    meta = {"fitted_rows": int(sum(c.rows for c in costs.values())),
            "load_avg_max": float(loads.max()) if len(loads) else -1.0}
    predictor = LatencyPredictor(costs=costs, dtype=dtype, model_type=model_type,
                                 fingerprint=fingerprint, seed=seed, meta=meta,
                                 engine=str(last["engine"]),
                                 analytic=str(last["clock"]) == ANALYTIC_CLOCK)
    in_model = fit_in_model(predictor, rows[rows["part"] == "model"], step_overhead_ms,
                            per_weight_mib=per_weight_mib)
    # the step's cost is the engine's, whatever the layers' type: the ladder's, for both
    return dataclasses.replace(
        predictor, in_model=in_model,
        absorbed_in_model=(fit_in_model(predictor, absorbed_models,
                                        beside=(in_model, rows[rows["part"] == "model"]))
                           if len(absorbed_models) else None))


def _absorbed_type(model_type: str) -> str | None:
    """The model type the pangu recipe exports for ``model_type`` (None: the same)."""
    from plsearch.errors import UnsupportedModelError
    from plsearch.families import get_family

    try:
        return getattr(get_family(model_type), "absorbed_model_type", None)
    except UnsupportedModelError:
        return None


def fit_in_model(predictor: LatencyPredictor, models: pd.DataFrame,
                 step_overhead_ms: float | None = None,
                 beside: tuple[InModel, pd.DataFrame] | None = None,
                 per_weight_mib: bool | None = None) -> InModel:
    """``InModel`` from whole-model rows, each value clipped to its range.

    Prefill rows give the factor: the median of (model - head) / layers' block time.
    Workload rows, with the prefill part taken out at that factor, leave each decode step
    ``r`` = (what is left - head - layers' decode block time) / steps. A model of ``L``
    layers pays ``r = c + L * o``: ``c`` what a step costs more once any layer runs before
    the head (the head rows time a model without layers), ``o`` what each layer adds. ``c``
    is the intercept of a line through rows that differ in depth only (the profile's
    ``depth_ladder``; weighted by 1 / time^2 as the cost fits), else ``step_overhead_ms``
    (0 when neither: a table profiled before the ladder); ``o`` the median of
    ``(r - c) / L``. A phase without rows keeps the neutral value (1, 0). Both in ms, or
    both in ms per MiB of weights (``r = c * head MiB + L * o * layer MiB``): the form whose
    fit leaves the rows the smaller mean error, unless ``per_weight_mib`` names it.

    ``beside``: (the parent type's InModel, its whole-model rows) for the absorbed type,
    whose archs the profile times as both types: ``o`` is then the parent type's plus the
    median over those archs of the two types' difference in ``r / L``. An arch's own error
    (its blocks predicted a little fast or slow) is in both of its rows and cancels; a
    median over 4 archs of the absorbed rows alone kept it (see _paired_overhead). It takes
    the parent type's ``c`` and form too.
    """
    unit = dataclasses.replace(predictor, in_model=InModel())
    ratios = []
    for r in models[models["phase"] == "prefill"].to_dict("records"):
        arch, w = _arch_of_row(r), Workload(int(r["batch_size"]), int(r["seq_len"]), 1)
        pred = predict_latency(arch, w, unit)
        blocks = pred.breakdown["prefill_blocks_ms"]
        if blocks > 0:
            ratios.append((float(r["median_ms"]) - pred.breakdown["prefill_head_ms"]) / blocks)
    prefill = _clipped(ratios, 1.0, _SCALE_RANGE)
    if beside is not None:  # the parent type's form and c: the engine's step, either type
        per_weight_mib, step_overhead_ms = beside[0].per_weight_mib, beside[0].step_overhead_ms
    steps = _decode_steps(unit, models, prefill)
    if not steps:
        return InModel(prefill, 0.0, step_overhead_ms or 0.0, bool(per_weight_mib))
    forms = (False, True) if per_weight_mib is None else (per_weight_mib,)
    fits = [_overheads(unit, steps, prefill, per_mib, step_overhead_ms, beside)
            for per_mib in forms]
    # the form whose overheads leave the rows' own decode steps the smaller mean error;
    # ms on a tie (today's form, and the only one a single row can tell)
    return min(fits, key=lambda fit: (_step_error(fit, steps, unit.dtype_bytes),
                                      fit.per_weight_mib))


def _overheads(unit: LatencyPredictor, steps: list[_Step], prefill: float, per_mib: bool,
               step_overhead_ms: float | None, beside) -> InModel:
    """InModel with ``c`` and ``o`` fitted in one form: ms (``per_mib`` false) or ms per MiB
    of weights (each row's residual ``r = c * head MiB + L * o * layer MiB``)."""
    size = unit.dtype_bytes
    head = {s.arch: head_mib(s.arch, size) if per_mib else 1.0 for s in steps}
    layer = {s.arch: layer_mib(s.arch, size) if per_mib else 1.0 for s in steps}
    if step_overhead_ms is None:
        step_overhead_ms = _step_intercept(steps, head)
    bounds = tuple(x * float(np.median([s.block_ms / layer[s.arch] for s in steps]))
                   for x in _OVERHEAD_RANGE)
    overheads = [(s.residual_ms - step_overhead_ms * head[s.arch]) / (s.layers * layer[s.arch])
                 for s in steps]
    paired = (_paired_overhead(unit, steps, beside, layer) if beside is not None else None)
    if paired is not None:
        overheads = [paired]
    return InModel(prefill, _clipped(overheads, 0.0, bounds), step_overhead_ms, per_mib)


def _step_error(fit: InModel, steps: list[_Step], dtype_bytes: int) -> float:
    """Mean |error| of the rows' whole-model time with ``fit``'s decode overheads: the mean,
    not the median, so that the rows' narrowest and widest archs, where the two forms part,
    count."""
    return float(np.mean([
        abs(s.decode_steps * (fit.step_ms(s.arch, dtype_bytes) + s.layers
                              * fit.layer_ms(s.arch, dtype_bytes) - s.residual_ms))
        / s.total_ms for s in steps]))


def _decode_steps(unit: LatencyPredictor, models: pd.DataFrame, prefill: float) -> list[_Step]:
    """Each workload row's decode step left over by ``unit`` (InModel neutral), its prefill
    taken out at the factor ``prefill``."""
    steps = []
    for r in models[models["phase"] == "workload"].to_dict("records"):
        arch = _arch_of_row(r)
        w = Workload(int(r["batch_size"]), int(r["seq_len"]), int(r["generated_len"]))
        b = predict_latency(arch, w, unit).breakdown
        n = w.generated_len - 1  # decode steps
        if n > 0:
            rest = float(r["median_ms"]) - prefill * b["prefill_blocks_ms"] - b["prefill_head_ms"]
            steps.append(_Step(
                arch=arch, residual_ms=(rest - b["decode_head_ms"] - b["decode_blocks_ms"]) / n,
                total_ms=float(r["median_ms"]), decode_steps=n,
                block_ms=b["decode_blocks_ms"] / (n * arch.num_hidden_layers)))
    return steps


def _paired_overhead(unit: LatencyPredictor, steps: list[_Step],
                     beside: tuple[InModel, pd.DataFrame],
                     layer: Mapping[ArchConfig, float]) -> float | None:
    """``o`` of the absorbed type: the parent type's plus the median over the archs timed as
    both of ``(r_absorbed - r_parent) / L`` (over the layer's MiB too in that form; None:
    no arch timed as both). Exact where each
    arch's error is alike in its two rows (tests/latency/test_predictor.py); on the AMD EPYC
    VM, where a row's own noise is larger, it did not improve the absorbed archs: their
    median speed-up error over the parent in bench/latency_accuracy.py went from -2.2%,
    +16.2%, +5.2%, -5.4% (the absorbed rows alone) to -2.6%, +15.4%, +1.6%, -8.1% on four
    quick tables (2026-12-02/03)."""
    reference, rows = beside
    theirs = {s.arch: s for s in _decode_steps(unit, rows, reference.prefill_scale)}
    differences = [(s.residual_ms - theirs[s.arch].residual_ms) / (s.layers * layer[s.arch])
                   for s in steps if s.arch in theirs]
    if not differences:
        return None
    return reference.decode_overhead_ms + float(np.median(differences))


@dataclass(frozen=True)
class _Step:
    """A workload row's decode step left over by the unit predictor (fit_in_model)."""

    arch: ArchConfig
    residual_ms: float
    total_ms: float
    block_ms: float  # the predicted decode block time of one layer and step
    decode_steps: int

    @property
    def layers(self) -> int:
        return self.arch.num_hidden_layers

    @property
    def widths(self) -> tuple:
        """The arch's fields but depth: rows alike here differ in depth only."""
        return tuple(getattr(self.arch, k) for k in _SHAPE_KEYS if k != "num_hidden_layers")


def _step_intercept(steps: list[_Step], head: Mapping[ArchConfig, float]) -> float:
    """``c`` of ``r = c * head + L * o * layer`` over the rows of one shape but their depth
    (the shape timed at the most depths, at least two; one ``head`` and ``layer`` for all),
    clipped to [0, their largest ``r / head``]; 0 without such rows."""
    groups: dict[tuple, list[_Step]] = {}
    for s in steps:
        groups.setdefault(s.widths, []).append(s)
    ladder = max(groups.values(), key=lambda g: (len({s.layers for s in g}), len(g)))
    if len({s.layers for s in ladder}) < 2:
        return 0.0
    depth = np.array([s.layers for s in ladder], dtype=np.float64)
    residual = np.array([s.residual_ms / head[s.arch] for s in ladder])
    weight = 1.0 / np.array([s.total_ms for s in ladder])  # rows of relative noise
    design = np.column_stack([np.ones_like(depth), depth]) * weight[:, None]
    intercept = float(np.linalg.lstsq(design, residual * weight, rcond=None)[0][0])
    return float(min(max(intercept, 0.0), max(0.0, residual.max())))


def _clipped(values: list[float], neutral: float, bounds: tuple[float, float]) -> float:
    if not values:
        return neutral
    return float(min(max(np.median(values), bounds[0]), bounds[1]))


def _fit_cost(rows: pd.DataFrame, part: str, phase: str, dtype_bytes: int) -> LinearCost:
    names = BLOCK_FEATURES if part == "block" else HEAD_FEATURES
    feats = _row_features(rows, part, phase, dtype_bytes)
    matrix = np.column_stack([feats[name] for name in names])
    target = rows["median_ms"].to_numpy(dtype=np.float64)
    if part == "block":  # a block row times a stack of num_hidden_layers layers
        target = target / rows["num_hidden_layers"].clip(lower=1).to_numpy(dtype=np.float64)
    scale = np.abs(matrix).max(axis=0)
    scale[scale == 0] = 1.0
    # Non-negative least squares on scaled features; weights 1/y^2 = relative error.
    weight = 1.0 / target
    coef = nnls((matrix / scale) * weight[:, None], target * weight) / scale
    return LinearCost(features=names, coef=tuple(float(c) for c in coef), rows=len(rows))


def nnls(a: np.ndarray, b: np.ndarray, max_iter: int | None = None) -> np.ndarray:
    """argmin ||a x - b|| subject to x >= 0 (Lawson-Hanson active set)."""
    m, n = a.shape
    tol = 10 * np.finfo(np.float64).eps * np.abs(a).sum(axis=0).max() * max(m, n)
    active = np.zeros(n, dtype=bool)  # the free (positive) variables
    x = np.zeros(n)
    gradient = a.T @ (b - a @ x)
    for _ in range(max_iter or 3 * n + 30):
        if active.all() or gradient[~active].max() <= tol:
            break
        active[np.argmax(np.where(active, -np.inf, gradient))] = True
        while True:
            trial = np.zeros(n)
            if not active.any():
                break
            trial[active] = np.linalg.lstsq(a[:, active], b, rcond=None)[0]
            if trial[active].min() > 0:
                break
            blocking = active & (trial <= 0)
            step = np.min(x[blocking] / (x[blocking] - trial[blocking]))
            x = x + step * (trial - x)
            active &= x > tol
            x[~active] = 0.0
        x = trial
        gradient = a.T @ (b - a @ x)
    return x


def _row_features(rows: pd.DataFrame, part: str, phase: str, dtype_bytes: int):
    """Features of table rows, one arch per row (vectorized over the shape columns)."""
    out: dict[str, list[float]] = {}
    for r in rows.to_dict("records"):
        arch = _arch_of_row(r)
        if part == "block":
            feats = block_features(arch, r["batch_size"], r["seq_len"], r["context"],
                                   phase, dtype_bytes)
        else:
            feats = head_features(arch, r["batch_size"], r["seq_len"], dtype_bytes)
        for name, value in feats.items():
            out.setdefault(name, []).append(float(value))
    return {name: np.asarray(values) for name, values in out.items()}


def _arch_of_row(r) -> ArchConfig:
    return ArchConfig(
        num_hidden_layers=max(1, int(r["num_hidden_layers"])),
        hidden_size=int(r["hidden_size"]),
        num_attention_heads=int(r["num_attention_heads"]),
        num_key_value_heads=int(r["num_key_value_heads"]),
        head_dim=int(r["head_dim"]),
        intermediate_size=int(r["intermediate_size"]),
        vocab_size=int(r["vocab_size"]),
        tie_word_embeddings=False,  # lookups cost the same either way
    )


def _plain(value):
    return value.item() if hasattr(value, "item") else value


# ---- prediction ---------------------------------------------------------------------------


def predict_latency(
    arch: ArchConfig, workload: Workload, predictor: LatencyPredictor, *, absorbed: bool = False
) -> LatencyPrediction:
    """Prefill, decode and tokens/s of ``arch`` serving ``workload``; ``absorbed``: built as
    the family's post-norm-absorbed model type (what the pangu recipe exports)."""
    b, p, g = workload.batch_size, workload.prompt_len, workload.generated_len
    layers = arch.num_hidden_layers
    in_model = predictor.layers_in_model(absorbed)
    prefill_blocks = in_model.prefill_scale * layers * float(
        predictor.block_ms(arch, "prefill", b, p, p))
    prefill_head = float(predictor.head_ms(arch, "prefill", b, p))
    contexts = p + np.arange(1, g)  # decode step k attends to prompt + k keys
    steps = len(contexts)
    size = predictor.dtype_bytes
    decode_blocks = layers * float(
        np.sum(predictor.block_ms(arch, "decode", b, 1, contexts))
        + steps * in_model.layer_ms(arch, size)) + steps * in_model.step_ms(arch, size) * (layers > 0)
    decode_head = float(np.sum(predictor.head_ms(arch, "decode", b * np.ones(steps), 1)))
    prefill = prefill_blocks + prefill_head
    decode = decode_blocks + decode_head
    return LatencyPrediction(
        tokens_per_s=b * g / ((prefill + decode) / 1e3),
        prefill_ms=prefill,
        decode_ms=decode,
        decode_ms_per_token=decode / steps if steps else 0.0,
        breakdown={
            "prefill_blocks_ms": prefill_blocks,
            "prefill_head_ms": prefill_head,
            "decode_blocks_ms": decode_blocks,
            "decode_head_ms": decode_head,
        },
    )


def predict_tokens_per_s(
    arch: ArchConfig, profile: DeviceProfile, predictor: LatencyPredictor, *,
    absorbed: bool = False
) -> float:
    """Predicted tokens/s of ``arch`` on the profile's serving workload."""
    return predict_latency(arch, profile.workload, predictor, absorbed=absorbed).tokens_per_s


# ---- validation -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ValidationReport:
    """Error of composed predictions on whole-model rows (never used for fitting)."""

    rows: pd.DataFrame  # arch, phase, measured_ms, predicted_ms, error (signed, relative)

    def _errors(self, phase: str | None) -> np.ndarray:
        rows = self.rows if phase is None else self.rows[self.rows["phase"] == phase]
        return np.abs(rows["error"].to_numpy(dtype=np.float64))

    def median_ape(self, phase: str | None = "workload") -> float:
        errors = self._errors(phase)
        return float(np.median(errors)) if len(errors) else float("nan")

    def share_within(self, tolerance: float = 0.10, phase: str | None = "workload") -> float:
        errors = self._errors(phase)
        return float(np.mean(errors <= tolerance)) if len(errors) else float("nan")

    def count(self, phase: str | None = "workload") -> int:
        return len(self._errors(phase))


def validate_predictor(predictor: LatencyPredictor, table: pd.DataFrame) -> ValidationReport:
    """Compare composed predictions with the table's whole-model rows.

    Each arch is predicted with ``InModel`` fitted on the other archs' rows only, so the
    error is that of an arch the predictor has not seen whole.
    """
    rows = rows_for_fingerprint(table)
    rows = rows[(rows["part"] == "model") & (rows["model_type"] == predictor.model_type)]
    if rows.empty:
        raise LatencyTableError(
            "the table has no whole-model rows to validate on; run `plsearch profile-npu`"
        )
    shapes = rows[list(_SHAPE_KEYS)].astype(str).agg("/".join, axis=1)
    out = []
    for shape in sorted(set(shapes)):
        held_out = dataclasses.replace(predictor, in_model=fit_in_model(
            predictor, rows[shapes != shape], per_weight_mib=predictor.in_model.per_weight_mib))
        for r in rows[shapes == shape].to_dict("records"):
            arch = _arch_of_row(r)
            generated = int(r["generated_len"]) if r["phase"] == "workload" else 1
            workload = Workload(int(r["batch_size"]), int(r["seq_len"]), generated)
            predicted = predict_latency(arch, workload, held_out).total_ms
            measured = float(r["median_ms"])
            out.append({"arch": str(arch), "phase": r["phase"], "measured_ms": measured,
                        "predicted_ms": predicted, "error": predicted / measured - 1.0})
    return ValidationReport(pd.DataFrame(out))


_SHAPE_KEYS = ("num_hidden_layers", "hidden_size", "num_attention_heads",
               "num_key_value_heads", "intermediate_size")


# ---- persistence (JSON, never pickle) ----------------------------------------------------


def save_predictor(predictor: LatencyPredictor, path: str | Path) -> None:
    """Write the predictor as JSON (atomic rename)."""
    path = Path(path)
    data = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "dtype": predictor.dtype,
        "model_type": predictor.model_type,
        "seed": predictor.seed,
        "engine": predictor.engine,
        "analytic": predictor.analytic,
        "in_model": predictor.in_model.to_dict(),
        "absorbed_in_model": (predictor.absorbed_in_model.to_dict()
                              if predictor.absorbed_in_model else None),
        "fingerprint": predictor.fingerprint,
        "meta": predictor.meta,
        "costs": {
            key: {"features": list(c.features), "coef": list(c.coef), "rows": c.rows}
            for key, c in predictor.costs.items()
        },
    }
    atomic.write_text(path, json.dumps(data, indent=2) + "\n")


def _in_model_or_none(data) -> InModel | None:
    return None if data is None else InModel.from_dict(data)


def load_predictor(path: str | Path) -> LatencyPredictor:
    """Read a predictor written by save_predictor; LatencyTableError if it is not one."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LatencyTableError(
            f"predictor file {path} does not exist; write one with `plsearch latency fit`"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LatencyTableError(
            f"{path} is not a readable predictor ({exc}); re-run `plsearch latency fit`"
        ) from None
    try:
        if data.get("format") != FORMAT or data.get("version") not in READABLE_VERSIONS:
            raise KeyError("format")
        costs = {}
        for key, c in data["costs"].items():
            features = tuple(c["features"])
            expected = BLOCK_FEATURES if key.startswith("block/") else HEAD_FEATURES
            if features != expected or len(c["coef"]) != len(features):
                raise KeyError(key)
            costs[key] = LinearCost(features, tuple(float(v) for v in c["coef"]), int(c["rows"]))
        if set(costs) != {f"{p}/{ph}" for p, ph in PARTS} or data["dtype"] not in DTYPE_BYTES:
            raise KeyError("costs")
        return LatencyPredictor(costs=costs, dtype=data["dtype"],
                                model_type=data["model_type"],
                                fingerprint=dict(data["fingerprint"]), seed=int(data["seed"]),
                                meta=dict(data.get("meta", {})), engine=str(data["engine"]),
                                analytic=bool(data["analytic"]),
                                in_model=InModel.from_dict(data["in_model"]),
                                absorbed_in_model=_in_model_or_none(
                                    data.get("absorbed_in_model")))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise LatencyTableError(
            f"{path} is not a plsearch latency predictor (bad or missing {exc}); "
            "re-run `plsearch latency fit`"
        ) from None
