"""Latency: device timers, the profiler, the on-disk table and the tokens/s predictor.

    timer = get_timer("auto")                               # npu, then cuda, then cpu
    table = read_table("latency_db/cpu-amd-epyc.csv")      # schema-checked DataFrame
    predictor = fit_predictor(table, seed=0)
    predict_tokens_per_s(arch, load_device_profile("cpu"), predictor)

The profiler itself (plsearch.latency.profiler) is used by `plsearch profile-npu` and the
benchmark; it imports torch and transformers, the rest of this package only needs torch
for the timers.
"""

from plsearch.latency.predictor import (
    LatencyPrediction,
    LatencyPredictor,
    ValidationReport,
    fit_predictor,
    load_predictor,
    predict_latency,
    predict_tokens_per_s,
    save_predictor,
    validate_predictor,
)
from plsearch.latency.table import (
    COLUMNS,
    append_rows,
    default_db_dir,
    device_tag,
    fingerprint_matches,
    fingerprint_mismatches,
    read_table,
)
from plsearch.latency.timers import (
    CpuTimer,
    CudaTimer,
    NpuTimer,
    Timer,
    Timing,
    get_timer,
    resolve_device,
)

__all__ = [
    "COLUMNS",
    "CpuTimer",
    "CudaTimer",
    "LatencyPrediction",
    "LatencyPredictor",
    "NpuTimer",
    "Timer",
    "Timing",
    "ValidationReport",
    "append_rows",
    "default_db_dir",
    "device_tag",
    "fingerprint_matches",
    "fingerprint_mismatches",
    "fit_predictor",
    "get_timer",
    "load_predictor",
    "predict_latency",
    "predict_tokens_per_s",
    "read_table",
    "resolve_device",
    "save_predictor",
    "validate_predictor",
]
