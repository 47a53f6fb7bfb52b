"""Latency: device timers, the engine, the profiler, the table, the predictor and its lookup.

    timer = get_timer("auto")                              # npu, then cuda, then cpu
    latency = load_latency(profile)                        # this device's table, fitted
    latency.tokens_per_s(arch, profile)                    # predicted (refined if corrected)
    measure_arch(arch, parent_config, profile)             # random weights, through the engine
    measure_model(model, profile)                          # a built model, through the engine
    measure_beside(model, parent, profile).speedup         # one call each in turn
    latency.with_correction(fit_correction(pairs))         # refine on whole-model measurements

The device profile names the engine that defines tokens/s (``hf-generate``: transformers
generate(); ``loop``: a bare forward loop); profiling, prediction and every measurement of
a whole model use it (plsearch.latency.engine). A profile with published ``peak`` figures
gets an ``analytic`` table (plsearch.latency.analytic) until its device is measured.
"""

from plsearch.latency.engine import (
    ENGINES,
    EngineMeasurement,
    SpeedUp,
    measure_arch,
    measure_beside,
    measure_model,
    measure_tokens_per_s,
)
from plsearch.latency.lookup import Latency, load_latency
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
from plsearch.latency.refine import Correction, fit_correction, refinement_report
from plsearch.latency.table import (
    COLUMNS,
    append_rows,
    default_db_dir,
    device_tag,
    fingerprint_matches,
    fingerprint_mismatches,
    is_analytic,
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
    torch_device,
)

__all__ = [
    "COLUMNS",
    "ENGINES",
    "Correction",
    "CpuTimer",
    "CudaTimer",
    "EngineMeasurement",
    "Latency",
    "LatencyPrediction",
    "LatencyPredictor",
    "NpuTimer",
    "SpeedUp",
    "Timer",
    "Timing",
    "ValidationReport",
    "append_rows",
    "default_db_dir",
    "device_tag",
    "fingerprint_matches",
    "fingerprint_mismatches",
    "fit_correction",
    "fit_predictor",
    "get_timer",
    "is_analytic",
    "load_latency",
    "load_predictor",
    "measure_arch",
    "measure_beside",
    "measure_model",
    "measure_tokens_per_s",
    "predict_latency",
    "predict_tokens_per_s",
    "read_table",
    "refinement_report",
    "resolve_device",
    "save_predictor",
    "torch_device",
    "validate_predictor",
]
