"""Does a latency table still hold on this machine? Its own whole models, timed again now.

    models = table_models(table, "glm4", absorbed_type="glm")   # what the table says
    report = check_drift(table, parent_config, profile)          # DriftReport
    report.median_drift      # now / then - 1, median over the models (+ = slower now)

A table is measured once; the machine it describes changes: another tenant on a shared
VM, a driver, a power mode, a thermal state. ``plsearch profile-npu`` times a few whole
candidates through the profile's engine besides its block and head rows; here those same
candidates (random weights of their shape, as their rows say) are timed again the same
way, in interleaved rounds, and compared with the table. The predictor is as far off as
the machine drifted: on the AMD EPYC VM, a quick table's models ran 17% faster in one run
and 12% slower in another, minutes after profiling, and the predictor's median error on
14 held-out archs (bench/latency_accuracy.py) was 19% and 13%; with the table re-anchored
by that drift, 3.5% and 3.8% (2026-12-02).

The search corrects for drift on its own (it times the parent first and refines the
predictor on every measurement: plsearch.latency.refine); this check is for a table
about to be trusted as it is: ``plsearch latency predict``, a search on another day, a
table someone shipped.
"""

from __future__ import annotations

import dataclasses
import random
import statistics
from dataclasses import dataclass

import pandas as pd

from plsearch.arch import ArchConfig
from plsearch.config import DeviceProfile, Workload
from plsearch.errors import LatencyTableError

__all__ = ["DriftReport", "ModelDrift", "TableModel", "check_drift", "table_models"]

_SHAPE = ("num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads",
          "intermediate_size")


@dataclass(frozen=True)
class TableModel:
    """One whole-model workload row of the table: an arch, how it was built, its time."""

    arch: ArchConfig
    absorbed: bool  # built as the family's post-norm-absorbed model type
    workload: Workload
    median_ms: float

    @property
    def measurement(self):
        """The row as profile-npu planned it (plsearch.latency.profiler.Measurement)."""
        from plsearch.latency.profiler import Measurement

        w = self.workload
        return Measurement("model", "workload", self.arch, w.batch_size, w.prompt_len,
                           w.prompt_len + w.generated_len - 1, w.generated_len,
                           absorbed=self.absorbed)


@dataclass(frozen=True)
class ModelDrift:
    """A table model timed again now."""

    model: TableModel
    samples_ms: tuple[float, ...]

    @property
    def now_ms(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def drift(self) -> float:
        """now / then - 1: + when the machine runs it slower than the table says."""
        return self.now_ms / self.model.median_ms - 1.0


@dataclass(frozen=True)
class DriftReport:
    """The table's whole models, then and now, on one device."""

    models: list[ModelDrift]
    device_name: str
    run_id: str  # the table's latest profiling run

    @property
    def median_drift(self) -> float:
        return statistics.median(m.drift for m in self.models)

    def to_dict(self) -> dict[str, object]:
        return {
            "device_name": self.device_name, "run_id": self.run_id,
            "median_drift": self.median_drift,
            "models": [{"arch": m.model.arch.to_dict(), "absorbed": m.model.absorbed,
                        "table_ms": m.model.median_ms, "now_ms": m.now_ms,
                        "drift": m.drift, "samples_ms": list(m.samples_ms)}
                       for m in self.models],
        }


def table_models(table: pd.DataFrame, model_type: str, *, absorbed_type: str | None = None,
                 parent: ArchConfig | None = None) -> list[TableModel]:
    """The whole-model workload rows measured with the table's latest device fingerprint,
    for ``model_type`` (and, as ``absorbed``, for ``absorbed_type``), that type first.
    ``parent``: the archs take its vocabulary, head size and embedding tying (else the
    row's vocabulary, untied)."""
    from plsearch.latency.table import rows_for_fingerprint

    rows = rows_for_fingerprint(table)
    kinds = {model_type: False, **({absorbed_type: True} if absorbed_type else {})}
    rows = rows[(rows["part"] == "model") & (rows["phase"] == "workload")
                & rows["model_type"].isin(list(kinds))]
    out = []
    for r in rows.sort_values(list(_SHAPE), kind="stable").to_dict("records"):
        shape = {k: int(r[k]) for k in _SHAPE}
        if parent is not None:
            arch = parent.replace(**shape)
        else:
            arch = ArchConfig(**shape, head_dim=int(r["head_dim"]),
                              vocab_size=int(r["vocab_size"]), tie_word_embeddings=False)
        workload = Workload(int(r["batch_size"]), int(r["seq_len"]), int(r["generated_len"]))
        out.append(TableModel(arch, kinds[r["model_type"]], workload, float(r["median_ms"])))
    return sorted(out, key=lambda m: m.absorbed)  # stable: by shape within each type


def check_drift(table: pd.DataFrame, parent_config, profile: DeviceProfile, *,
                rounds: int = 3, repeats: int = 2, seed: int = 0) -> DriftReport:
    """Time the table's whole models again, now, as ``profile-npu`` timed them.

    ``parent_config``: the parent the table was profiled for (its family builds the
    models). Each round visits every model once in a new seeded order, as the profiler
    visits a row (profiler.time_visit: built with random weights, one warm-up call,
    ``repeats`` timed calls). LatencyTableError when the table cannot be checked here
    (analytic, no whole-model rows, another parent, another device or setup: the search's
    fingerprint rule); DeviceError when the profile's device is not on this machine.
    """
    from plsearch.families import get_family
    from plsearch.latency.engine import TORCH_DTYPES, local_timer
    from plsearch.latency.profiler import QUICK, time_visit
    from plsearch.latency.table import fingerprint_mismatches, is_analytic, rows_for_fingerprint
    from plsearch.latency.timers import device_threads

    if rounds < 1 or repeats < 1:
        raise LatencyTableError(f"need rounds >= 1 and repeats >= 1, got {rounds}, {repeats}")
    latest = rows_for_fingerprint(table)
    last = latest.sort_values(["run_id", "timestamp"]).iloc[-1]
    if is_analytic(table):
        raise LatencyTableError(
            "the table is analytic (computed from published peaks): there is nothing measured "
            "to check; measure the device with `plsearch profile-npu`")
    family = get_family(parent_config.model_type)
    parent = family.arch_from_config(parent_config)
    models = table_models(table, parent_config.model_type,
                          absorbed_type=getattr(family, "absorbed_model_type", None),
                          parent=parent)
    if not models:
        raise LatencyTableError(
            f"the table has no whole-model rows of {parent_config.model_type} to check against; "
            "profile with `plsearch profile-npu` (it times a few whole models), or pass the "
            "parent it was profiled for with --model")
    wrong = latest[(latest["part"] == "model")
                   & ((latest["vocab_size"] != parent.vocab_size)
                      | (latest["head_dim"] != parent.head_dim))]
    if len(wrong):
        raise LatencyTableError(
            f"the table's models have vocabulary {int(wrong['vocab_size'].iloc[0])} and head "
            f"size {int(wrong['head_dim'].iloc[0])}, the parent {parent.vocab_size} and "
            f"{parent.head_dim}; pass the parent the table was profiled for with --model")
    timer = local_timer(profile)
    with device_threads(profile):  # the same comparison as the search's (lookup.load_latency)
        here = {**timer.fingerprint(profile.dtype), "engine": profile.engine}
    mismatches = fingerprint_mismatches(table, here)
    if mismatches:
        raise LatencyTableError(
            f"the table does not describe this device ({'; '.join(mismatches)}); check it "
            "where it was measured (with the device profile it was measured with: "
            "--device-profile), or profile this device with `plsearch profile-npu`")
    dtype = TORCH_DTYPES[str(last["dtype"])]
    settings = dataclasses.replace(QUICK, model_repeats=repeats)
    samples: list[list[float]] = [[] for _ in models]
    order = list(range(len(models)))
    rng = random.Random(seed)
    with device_threads(profile):
        for r in range(rounds):
            rng.shuffle(order)
            for i in order:
                samples[i] += time_visit(models[i].measurement, family, parent_config, timer,
                                         profile, dtype, settings,
                                         salt=seed * 100003 + r * len(models) + i)
    return DriftReport([ModelDrift(m, tuple(s)) for m, s in zip(models, samples)],
                       device_name=str(here["device_name"]), run_id=str(last["run_id"]))
