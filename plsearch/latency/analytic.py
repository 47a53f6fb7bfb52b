"""The analytic latency table: a roofline per op from the device profile's published peaks.

    table = analytic_table(parent_config, profile)     # DataFrame, clock == "analytic"
    predictor = fit_predictor(table)                     # predictor.analytic is True

For a device you do not have (an Ascend 910B, an H200 on a laptop). Every op of a decoder
layer (norms, QKV, rotary, KV-cache append, attention, output projection, MLP) and of the
model head (embedding, final norm, lm_head on the last position, argmax) takes

    max(FLOPs / peak compute, bytes moved / memory bandwidth)

in the profile's dtype, from ``peak`` in the profile YAML. The rows cover the same grid
``plsearch profile-npu`` would measure (block and head rows), plus whole-model rows
composed op by op, so `plsearch latency fit` reports how well the linear predictor
reproduces the roofline. What a roofline leaves out: kernel launches, the engine's Python
per call and per step, and any efficiency below peak, so it overstates the speed of small
models and is a planning aid only. Rows measured by `plsearch profile-npu` on the device
replace these: a measured table of the profile always wins (plsearch.latency.lookup).
"""

from __future__ import annotations

import logging

import pandas as pd

from plsearch import __version__
from plsearch.arch import ArchConfig
from plsearch.config import DeviceProfile
from plsearch.errors import ConfigError
from plsearch.latency.table import ANALYTIC_CLOCK, COLUMNS, _validated, device_tag

__all__ = ["analytic_rows", "analytic_table", "block_ms", "head_ms", "model_ms"]

logger = logging.getLogger(__name__)

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
# Sorts before every measured run id (ISO times), so rows profile-npu appends win.
RUN_ID = "0000-00-00T00:00:00.000+00:00"


def _op(flops: float, nbytes: float, peak) -> float:
    """Milliseconds of one op at the roofline."""
    compute = flops / (peak.compute_tflops * 1e12)
    memory = nbytes / (peak.memory_bandwidth_gbs * 1e9)
    return 1e3 * max(compute, memory)


def block_ms(arch: ArchConfig, batch: int, seq_len: int, context: int, phase: str,
             profile: DeviceProfile) -> float:
    """One decoder layer on ``batch`` x ``seq_len`` new tokens, the last seeing ``context``."""
    peak, nb = _peak(profile), DTYPE_BYTES[profile.dtype]
    d, f = arch.hidden_size, arch.intermediate_size
    q, kv = arch.num_attention_heads * arch.head_dim, arch.num_key_value_heads * arch.head_dim
    t = batch * seq_len
    past = context - seq_len  # cached keys before the call
    keys = (context + 1) / 2 if phase == "prefill" else context  # mean keys per query
    ops = [
        (4.0 * t * d, 2.0 * t * d * nb),  # input norm
        (2.0 * t * d * (q + 2 * kv), (d * (q + 2 * kv) + t * d + t * (q + 2 * kv)) * nb),
        (6.0 * t * (q + kv), 2.0 * t * (q + kv) * nb),  # rotary
        # appending to the KV cache copies it (torch.cat of the past and the new keys)
        (0.0, 2.0 * batch * (2 * max(past, 0) + seq_len) * kv * nb),
        (4.0 * t * q * keys, (batch * context * 2 * kv + 2 * t * q) * nb),  # attention
        (2.0 * t * q * d, (q * d + t * q + t * d) * nb),  # output projection
        (4.0 * t * d, 3.0 * t * d * nb),  # residual add and post-attention norm
        (4.0 * t * d * f, (2 * d * f + t * d + 2 * t * f) * nb),  # gate and up
        (4.0 * t * f, 3.0 * t * f * nb),  # activation times up
        (2.0 * t * f * d, (f * d + t * f + t * d) * nb),  # down
        (t * d, 3.0 * t * d * nb),  # residual add
    ]
    return sum(_op(fl, by, peak) for fl, by in ops)


def head_ms(arch: ArchConfig, batch: int, seq_len: int, profile: DeviceProfile) -> float:
    """Embedding and final norm over the new tokens, lm_head and argmax on the last one."""
    peak, nb = _peak(profile), DTYPE_BYTES[profile.dtype]
    d, v, t = arch.hidden_size, arch.vocab_size, batch * seq_len
    ops = [
        (0.0, 2.0 * t * d * nb),  # embedding lookup
        (4.0 * t * d, 2.0 * t * d * nb),  # final norm
        (2.0 * batch * v * d, (v * d + batch * d + batch * v) * nb),  # lm_head, last position
        (batch * v, batch * v * nb),  # argmax
    ]
    return sum(_op(fl, by, peak) for fl, by in ops)


def model_ms(arch: ArchConfig, batch: int, prompt_len: int, generated_len: int,
             profile: DeviceProfile) -> float:
    """A whole generation composed op by op: the prefill, then generated_len - 1 steps."""
    layers = arch.num_hidden_layers
    total = layers * block_ms(arch, batch, prompt_len, prompt_len, "prefill", profile)
    total += head_ms(arch, batch, prompt_len, profile)
    for k in range(1, generated_len):
        total += layers * block_ms(arch, batch, 1, prompt_len + k, "decode", profile)
        total += head_ms(arch, batch, 1, profile)
    return total


def _peak(profile: DeviceProfile):
    if profile.peak is None:
        raise ConfigError(f"device profile {profile.name} has no peak figures for an analytic "
                          "table; add peak: {compute_tflops, memory_bandwidth_gbs, source} to "
                          "its YAML, or measure the device with `plsearch profile-npu`")
    return profile.peak


def analytic_rows(parent_config, profile: DeviceProfile, axes=None) -> list[dict[str, object]]:
    """Block, head and whole-model rows of the profile's grid, computed from its peaks."""
    from plsearch.latency.profiler import FULL, plan_measurements, widths

    peak = _peak(profile)
    plan = plan_measurements(parent_config, profile, FULL, axes=axes, seed=0)
    # a coarse grid leaves no held-out shape: only the depth ladder has whole models then
    wholes = {m.arch for m in plan if m.part == "model"}
    if len({widths(a) for a in wholes}) < 2:
        plan += [m for m in _whole_models(parent_config, profile, axes) if m.arch not in wholes]
    fingerprint = {
        "backend": profile.kind, "clock": ANALYTIC_CLOCK,
        "device_name": f"{profile.name} peaks: {peak.compute_tflops:g} TFLOPS, "
                       f"{peak.memory_bandwidth_gbs:g} GB/s ({peak.source})",
        "torch_version": "", "cuda_version": "", "cann_version": "", "dtype": profile.dtype,
        "threads": 0, "engine": profile.engine, "host": "analytic", "load_avg": -1.0,
    }
    tag = device_tag(profile.name, "analytic")
    rows = []
    for m in sorted(plan, key=lambda m: (m.part, m.phase, str(m.arch), m.seq_len, m.context)):
        stack = FULL.block_stack if m.part == "block" else 0
        if m.part == "block":
            ms = stack * block_ms(m.arch, m.batch_size, m.seq_len, m.context, m.phase, profile)
        elif m.part == "head":
            ms = head_ms(m.arch, m.batch_size, m.seq_len, profile)
        else:
            stack = m.arch.num_hidden_layers
            generated = m.generated_len if m.phase == "workload" else 1
            ms = model_ms(m.arch, m.batch_size, m.seq_len, generated, profile)
        shape = m.arch.to_dict()
        del shape["tie_word_embeddings"]
        shape["num_hidden_layers"] = stack
        rows.append({
            "run_id": RUN_ID, "timestamp": RUN_ID, "device_tag": tag, **fingerprint,
            "plsearch_version": __version__, "model_type": parent_config.model_type,
            "part": m.part, "phase": m.phase, **shape, "batch_size": m.batch_size,
            "seq_len": m.seq_len, "context": m.context, "generated_len": m.generated_len,
            "median_ms": ms, "p10_ms": ms, "p90_ms": ms, "repeats": 1, "seed": 0,
        })
    return rows


def _whole_models(parent_config, profile: DeviceProfile, axes) -> list:
    """Whole-model rows of the parent and of the grid's smallest arch."""
    from plsearch.families import get_family
    from plsearch.latency.profiler import Measurement, _corner_archs, axes_from_parent

    parent = get_family(parent_config.model_type).arch_from_config(parent_config)
    axes = axes or axes_from_parent(parent, profile)
    w = profile.workload
    small = _corner_archs(axes, parent)[1].replace(num_hidden_layers=axes.num_hidden_layers[0])
    out = []
    for arch in (parent, small):
        out.append(Measurement("model", "prefill", arch, w.batch_size, w.prompt_len,
                               w.prompt_len))
        out.append(Measurement("model", "workload", arch, w.batch_size, w.prompt_len,
                               w.prompt_len + w.generated_len - 1, w.generated_len))
    return out


def analytic_table(parent_config, profile: DeviceProfile, axes=None) -> pd.DataFrame:
    """``analytic_rows`` as a schema-checked table."""
    rows = pd.DataFrame(analytic_rows(parent_config, profile, axes))[list(COLUMNS)]
    return _validated(rows.astype(str), f"the analytic table of {profile.name}")
