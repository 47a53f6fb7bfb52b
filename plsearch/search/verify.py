"""Verification: measure the Pareto-front candidates end to end, next to their predictions.

The front is taken over fully evaluated trials only (COMPLETE, feasible, top rung reached):
(accuracy objective, predicted tokens/s), both maximized. Each front candidate is loaded
from its saved folder and timed on the device profile's workload (greedy generation, the
same harness as the profiler's whole-model rows); the parent is timed in the same run.
Measured tokens/s goes into the study's ``measured_tokens_per_s/<trial number>`` user
attribute (study.record_measurement) and the study's ``verification`` attribute holds the
comparison.
"""

from __future__ import annotations

import logging
import statistics
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from plsearch.config import DeviceProfile
from plsearch.search.ladder import pareto_ranks

__all__ = ["fully_evaluated", "pareto_front", "verify_front"]

logger = logging.getLogger(__name__)


def fully_evaluated(study_or_trials) -> list[FrozenTrial]:
    """COMPLETE feasible trials that reached the top rung (repeats of an arch left out)."""
    trials = (study_or_trials.get_trials(deepcopy=False)
              if isinstance(study_or_trials, optuna.Study) else study_or_trials)
    out = []
    for t in trials:
        a = t.user_attrs
        if (t.state == TrialState.COMPLETE and a.get("feasible") and "duplicate_of" not in a
                and a.get("rung") is not None and a.get("rungs_total") is not None
                and a["rung"] == a["rungs_total"] - 1):
            out.append(t)
    return out


def pareto_front(study_or_trials) -> list[FrozenTrial]:
    """Non-dominated fully evaluated trials, fastest first."""
    trials = fully_evaluated(study_or_trials)
    points = [(t.values[0], t.user_attrs["predicted_tokens_per_s"]) for t in trials]
    ranks = pareto_ranks(points)
    front = [t for t, r in zip(trials, ranks) if r == 0]
    return sorted(front, key=lambda t: -t.user_attrs["predicted_tokens_per_s"])


def verify_front(study: optuna.Study, profile: DeviceProfile, parent_dir: Path,
                 *, repeats: int = 5, seed: int = 0) -> dict[str, Any]:
    """Measure the front (and the parent) on this machine; store and return the comparison.

    Candidates already measured (another worker verified them) are measured again only
    when their value is missing.
    """
    from plsearch.latency.engine import measure_tokens_per_s  # the profile's engine
    from plsearch.models import load_model
    from plsearch.search.study import measured_tokens_per_s, record_measurement

    rows = []
    for trial in pareto_front(study):
        a = trial.user_attrs
        measured = measured_tokens_per_s(study.user_attrs, trial)
        if measured is None:
            folder = a.get("candidate_dir")
            if not folder or not Path(folder).exists():
                logger.warning("trial %d has no saved candidate (%s); not measured",
                               trial.number, folder)
                continue
            model, _, _ = load_model(folder)
            measured = measure_tokens_per_s(model, profile, repeats=repeats, seed=seed)
            del model
            record_measurement(study, trial.number, measured)
        predicted = a["predicted_tokens_per_s"]
        rows.append({"trial": trial.number, "predicted_tokens_per_s": predicted,
                     "measured_tokens_per_s": measured, "error": predicted / measured - 1.0})
    parent_measured = study.user_attrs.get("parent_measured_tokens_per_s")
    if parent_measured is None:
        parent, _, _ = load_model(parent_dir)
        parent_measured = measure_tokens_per_s(parent, profile, repeats=repeats, seed=seed)
        del parent
        study.set_user_attr("parent_measured_tokens_per_s", parent_measured)
    parent_predicted = study.user_attrs.get("parent_tokens_per_s")
    errors = [abs(r["error"]) for r in rows]
    summary = {
        "candidates": rows,
        "parent": {"predicted_tokens_per_s": parent_predicted,
                   "measured_tokens_per_s": parent_measured,
                   "error": (parent_predicted / parent_measured - 1.0
                             if parent_predicted else None)},
        "median_abs_error": statistics.median(errors) if errors else None,
        "max_abs_error": max(errors) if errors else None,
    }
    study.set_user_attr("verification", summary)
    return summary
