"""The trial record: everything one trial stores, as one frozen dataclass.

    record = TrialRecord(arch=arch, predicted_tokens_per_s=812.0, ...)
    write_record(trial, record)                       # -> Optuna user attributes
    record = TrialRecord.from_trial(frozen_trial, study.user_attrs)   # <- and back
    write_trials_csv(study, run_dir / "trials.csv")   # trial_rows(study): a flat dict each

The objective, run, verify, export, the report and the CLI read and write trial attributes
only through this module. A finished Optuna trial's own attributes are frozen, so what is
learnt after it ends (measured tokens/s, whether a measurement dominates it) lives in the
study's attributes, one key per trial; ``from_trial`` folds them in.

Attribute names (the search <-> report contract): arch, params, recipe,
predicted_tokens_per_s, feasible, constraint, screened_tokens_per_s (measured before the
build), rung (highest rung reached, -1 = not built), rungs_total, rung_scores (objective at each rung), rung_signals (per rung: objective,
accuracy, kl), build_kl (KL to the parent right after the build, before any KD), kd_steps,
kd_tokens, kd_curve, scores ({task: {metric, metric_stderr, samples}}), accuracy,
accuracy_stderr, objective, objective_stderr, kl, kl_stderr, perplexity, seconds,
fail_reason, candidate_dir, duplicate_of, surplus, speed_bin.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plsearch import atomic
from plsearch.arch import ArchConfig
from plsearch.search.scoring import interval
from plsearch.search.study import MEASURED_PREFIX, SPEEDUP_LOW_PREFIX, dead_trials

if TYPE_CHECKING:
    import optuna

__all__ = ["DOMINATED_PREFIX", "MEASURED_PREFIX", "TrialRecord", "trial_rows", "write_record",
           "write_trials_csv"]

DOMINATED_PREFIX = "dominated_by_measurement/"  # study attribute per trial number

# Fields that are not user attributes of the trial itself.
_NOT_ATTRS = ("number", "state", "values", "measured_tokens_per_s", "measured_speedup_low",
              "dominated_by_measurement", "retry_of")


@dataclass(frozen=True)
class TrialRecord:
    """One trial, as the search wrote it and the report reads it."""

    arch: ArchConfig | None = None
    params: int | None = None
    recipe: str = ""
    predicted_tokens_per_s: float | None = None
    feasible: bool | None = None
    constraint: float | None = None  # budget - predicted tokens/s (<= 0: meets the budget)
    # The pre-build check's speed: measured with random weights near the budget, else the
    # refined prediction when that alone rules the arch out.
    screened_tokens_per_s: float | None = None
    speed_bin: int | None = None  # the promotion bin of its predicted speed
    rung: int = -1  # highest rung reached; -1: not built
    rungs_total: int | None = None
    rung_scores: tuple[float, ...] = ()  # objective value at each rung reached
    rung_signals: tuple[dict[str, float | None], ...] = ()  # objective, accuracy, kl per rung
    build_kl: float | None = None  # held-out KL to the parent right after the build
    kd_steps: int = 0
    kd_tokens: int = 0
    kd_curve: tuple[tuple[float, ...], ...] = ()  # [step, tokens, kd_loss, ce_loss, lr]
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    accuracy: float | None = None  # weighted task score at the highest rung reached
    accuracy_stderr: float | None = None
    objective: float | None = None  # accuracy - kl_weight * kl: what the search maximizes
    objective_stderr: float | None = None
    kl: float | None = None  # held-out KL(parent || candidate), nats per token
    kl_stderr: float | None = None
    perplexity: float | None = None
    seconds: dict[str, float] = field(default_factory=dict)  # build, kd, eval, total
    fail_reason: str | None = None
    candidate_dir: str | None = None
    duplicate_of: int | None = None
    surplus: bool = False
    # Not trial attributes: the Optuna trial and the study's later findings.
    number: int | None = None
    state: str | None = None
    values: tuple[float, ...] | None = None
    measured_tokens_per_s: float | None = None
    # the lower end of the measured speed-up's 95% interval (verify.py; None: not known)
    measured_speedup_low: float | None = None
    dominated_by_measurement: bool = False
    retry_of: int | None = None

    # -- derived

    @property
    def built(self) -> bool:
        return self.rung >= 0

    @property
    def fully_evaluated(self) -> bool:
        """COMPLETE, feasible, an original (not a repeat), top rung reached."""
        return (self.state == "COMPLETE" and bool(self.feasible) and self.duplicate_of is None
                and self.rungs_total is not None and self.rung == self.rungs_total - 1
                and self.objective is not None)

    @property
    def tokens_per_s(self) -> float | None:
        """Measured tokens/s where it was measured, else the predicted."""
        return self.measured_tokens_per_s if self.measured_tokens_per_s else \
            self.predicted_tokens_per_s

    @property
    def objective_interval(self) -> tuple[float, float] | None:
        return None if self.objective is None else interval(self.objective,
                                                             self.objective_stderr)

    @property
    def accuracy_interval(self) -> tuple[float, float] | None:
        return None if self.accuracy is None else interval(self.accuracy, self.accuracy_stderr)

    def replace(self, **changes: Any) -> TrialRecord:
        return dataclasses.replace(self, **changes)

    # -- Optuna attributes

    def to_attrs(self) -> dict[str, Any]:
        """The trial's user attributes (JSON values; None and empty values left out)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in _NOT_ATTRS:
                continue
            value = getattr(self, f.name)
            if f.name == "arch":
                value = value.to_dict() if value is not None else None
            elif f.name == "kd_curve":
                value = [list(row) for row in value]
            elif f.name in ("rung_scores", "rung_signals"):
                value = list(value)
            if value is None or (f.name == "surplus" and not value):
                continue
            out[f.name] = value
        return out

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any], **extra: Any) -> TrialRecord:
        """A record from user attributes (unknown keys are ignored, missing ones default)."""
        names = {f.name for f in dataclasses.fields(cls)} - set(_NOT_ATTRS)
        kwargs: dict[str, Any] = {k: v for k, v in attrs.items() if k in names}
        arch = kwargs.get("arch")
        if isinstance(arch, dict):
            try:
                kwargs["arch"] = ArchConfig.from_dict(arch)
            except Exception:  # noqa: BLE001  an arch written by another version
                kwargs["arch"] = None
        elif arch is not None and not isinstance(arch, ArchConfig):
            kwargs["arch"] = None
        for name in ("rung_scores", "rung_signals"):
            if name in kwargs:
                kwargs[name] = tuple(kwargs[name] or ())
        if "kd_curve" in kwargs:
            kwargs["kd_curve"] = tuple(tuple(row) for row in kwargs["kd_curve"] or ())
        if kwargs.get("rung") is None:
            kwargs.pop("rung", None)
        return cls(**kwargs, **extra)

    @classmethod
    def from_trial(cls, trial, study_attrs: dict[str, Any] | None = None) -> TrialRecord:
        """A FrozenTrial (or FixedTrial) and its study's attributes -> the record."""
        study_attrs = study_attrs or {}
        attrs = dict(trial.user_attrs)
        number = getattr(trial, "number", None)
        state = getattr(trial, "state", None)
        values = getattr(trial, "values", None)
        measured = study_attrs.get(f"{MEASURED_PREFIX}{number}")
        if measured is None:  # written into the trial by a worker before it finished
            measured = attrs.get("measured_tokens_per_s")
        low = study_attrs.get(f"{SPEEDUP_LOW_PREFIX}{number}")
        system = getattr(trial, "system_attrs", {}) or {}
        if attrs.get("objective") is None and values and attrs.get("accuracy") is not None:
            attrs["objective"] = values[0]  # studies written before the record had it
        return cls.from_attrs(
            attrs, number=number, state=state.name if state is not None else None,
            values=tuple(values) if values else None,
            measured_tokens_per_s=float(measured) if measured is not None else None,
            measured_speedup_low=float(low) if low is not None else None,
            dominated_by_measurement=bool(study_attrs.get(f"{DOMINATED_PREFIX}{number}")),
            retry_of=system.get("failed_trial"))


def write_record(trial, record: TrialRecord, written: dict[str, Any] | None = None) -> None:
    """Set the record's attributes on a running trial (only those that changed since
    ``written``, which is updated in place)."""
    attrs = record.to_attrs()
    for key, value in attrs.items():
        if written is None or written.get(key, _MISSING) != value:
            trial.set_user_attr(key, value)
            if written is not None:
                written[key] = value


_MISSING = object()


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One flat dict per trial: the columns of trials.csv (scores with their 95% intervals)."""
    trials = study.get_trials(deepcopy=False)
    study_attrs, dead = study.user_attrs, dead_trials(trials)
    rows = []
    for t in trials:
        r = TrialRecord.from_trial(t, study_attrs)
        arch = r.arch.to_dict() if r.arch else {}
        objective_ci = r.objective_interval or (None, None)
        accuracy_ci = r.accuracy_interval or (None, None)
        fail = r.fail_reason or (f"worker died; arch retried by trial {dead[t.number]}"
                                 if t.number in dead else None)
        if r.feasible is False:
            fail = fail or "misses the budget: not built"
        rows.append({
            "number": t.number,
            "state": t.state.name,
            "objective": r.objective,
            "objective_stderr": r.objective_stderr,
            "objective_ci_low": objective_ci[0],
            "objective_ci_high": objective_ci[1],
            "accuracy": r.accuracy,
            "accuracy_stderr": r.accuracy_stderr,
            "accuracy_ci_low": accuracy_ci[0],
            "accuracy_ci_high": accuracy_ci[1],
            "kl": r.kl,
            "kl_stderr": r.kl_stderr,
            "build_kl": r.build_kl,
            "perplexity": r.perplexity,
            "predicted_tokens_per_s": r.predicted_tokens_per_s,
            "measured_tokens_per_s": r.measured_tokens_per_s,
            # the low end of its measured speed-up's 95% interval: above the budget, or
            # the candidate is not shown to meet it
            "measured_speedup_ci_low": r.measured_speedup_low,
            "dominated_by_measurement": r.dominated_by_measurement,
            "feasible": r.feasible,
            "speed_bin": r.speed_bin,
            "rung": r.rung,
            "rungs_total": r.rungs_total,
            "params": r.params,
            **{k: arch.get(k) for k in ("num_hidden_layers", "hidden_size",
                                        "num_attention_heads", "num_key_value_heads",
                                        "intermediate_size")},
            "recipe": r.recipe,
            "kd_steps": r.kd_steps,
            "kd_tokens": r.kd_tokens,
            **{f"seconds_{k}": r.seconds.get(k) for k in ("build", "kd", "eval", "total")},
            "candidate_dir": r.candidate_dir,
            "fail_reason": fail,
            "retry_of": r.retry_of,
            "duplicate_of": r.duplicate_of,
            **{f"{task}_{m}": v for task, metrics in r.scores.items()
               for m, v in metrics.items() if m != "samples"},
        })
    return rows


def write_trials_csv(study: optuna.Study, path: Path) -> None:
    """trials.csv: ``trial_rows``, written atomically."""
    import pandas as pd

    frame = pd.DataFrame(trial_rows(study))
    atomic.write_text(path, frame.to_csv(index=False))
