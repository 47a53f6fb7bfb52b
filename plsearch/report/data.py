"""Data step: an Optuna study and its run folder -> pandas tables + a frozen dataclass.

Definitions (eligible trial, front, hypervolume, predictor error): see plsearch.report.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from plsearch.errors import ConfigError
from plsearch.search.study import dead_trials, load_existing_study, measured_tokens_per_s

log = logging.getLogger(__name__)

ARCH_KEYS = ("num_hidden_layers", "hidden_size", "num_attention_heads",
             "num_key_value_heads", "head_dim", "intermediate_size")
STAGES = ("build", "kd", "eval", "total")
KD_CURVE_COLUMNS = ("step", "tokens", "kd_loss", "ce_loss", "lr")


@dataclass(frozen=True)
class ReportFacts:
    """The numbers a reader looks for first; everything is None when the study lacks it."""

    study_name: str
    storage: str  # the storage URL with any password hidden
    run_dir: str | None
    n_trials: int
    n_complete: int
    n_failed: int
    n_eligible: int  # fully evaluated: see the module docstring
    rungs_total: int | None  # KD ladder length; eligible trials reached rung rungs_total - 1
    budget_spec: str | None  # e.g. "1.5x"
    budget_tokens_per_s: float | None
    parent_tokens_per_s: float | None  # predicted
    parent_measured_tokens_per_s: float | None
    parent_accuracy: float | None
    reference_point: tuple[float, float]  # (accuracy, tokens/s) of the hypervolume
    hypervolume: float  # of the final front, accuracy x tokens/s
    best_feasible_accuracy: float | None
    best_feasible_trial: int | None
    predictor_n: int  # verified points (trials and parent) in the predictor check
    predictor_mean_abs_error_pct: float | None
    predictor_max_abs_error_pct: float | None
    predictor_mean_error_pct: float | None  # signed: > 0 means the predictor is optimistic
    wall_seconds: float | None  # first trial start to last trial end


@dataclass(frozen=True)
class ReportData:
    facts: ReportFacts
    trials: pd.DataFrame  # one row per trial, columns described in _trial_row
    front: pd.DataFrame  # the Pareto front rows of `trials`, by predicted tokens/s
    progress: pd.DataFrame  # number, hypervolume, best_feasible_accuracy
    predictor: pd.DataFrame  # label, number, predicted/measured tokens/s, error_pct
    kd_curves: pd.DataFrame  # number + KD_CURVE_COLUMNS, every trial with a curve
    stage_seconds: pd.DataFrame  # stage, seconds (sum over trials), trials
    study_attrs: dict[str, Any]  # the study's user_attrs (run facts)
    run_config: dict[str, Any]  # run.json, when the run folder has one
    ablation: pd.DataFrame | None  # ablation.csv
    ablation_text: str | None  # ablation.md


def load_report_data(storage_url: str | None = None, study_name: str | None = None,
                     run_dir: str | Path | None = None) -> ReportData:
    """Read a study and its run folder. Give ``run_dir`` alone (its study.db), or a storage.

    With only a storage, the run folder is the study's ``run_dir`` attribute when that
    folder exists here. The study name may be left out when the storage holds one study.
    """
    import optuna

    run_path = Path(run_dir) if run_dir is not None else None
    if run_path is not None and not run_path.is_dir():
        raise ConfigError(f"run folder {run_path} does not exist; pass the --out folder of "
                          "a search")
    if storage_url is None:
        if run_path is None:
            raise ConfigError("give a run folder (--run DIR) or a storage URL (--storage URL)")
        db = run_path / "study.db"
        if not db.is_file():
            raise ConfigError(f"{run_path} has no study.db; pass --storage URL --study NAME "
                              "for a study stored elsewhere")
        storage_url = f"sqlite:///{db.resolve()}"
    elif storage_url.startswith("sqlite:///"):
        db = Path(storage_url[len("sqlite:///"):])
        if not db.is_file():  # optuna would create an empty database
            raise ConfigError(f"SQLite file {db} does not exist; check the --storage URL")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = load_existing_study(storage_url, study_name)
    study_name = study.study_name
    attrs = dict(study.user_attrs)
    if run_path is None and attrs.get("run_dir") and Path(attrs["run_dir"]).is_dir():
        run_path = Path(attrs["run_dir"])
    run_config = _read_json(run_path / "run.json") if run_path else {}
    ablation, ablation_text = _read_ablation(run_path)
    return build_report_data(
        study.get_trials(deepcopy=False), attrs, study_name=study_name,
        storage=_hide_password(storage_url), run_dir=str(run_path) if run_path else None,
        run_config=run_config, ablation=ablation, ablation_text=ablation_text)


def build_report_data(trials: list, study_attrs: dict[str, Any], *, study_name: str,
                      storage: str = "", run_dir: str | None = None,
                      run_config: dict[str, Any] | None = None,
                      ablation: pd.DataFrame | None = None,
                      ablation_text: str | None = None) -> ReportData:
    """The data step proper, on a list of optuna FrozenTrials and the study's user_attrs."""
    budget = study_attrs.get("budget") or {}
    budget_tps = as_number(budget.get("tokens_per_s")) if isinstance(budget, dict) else None
    dead = dead_trials(trials)
    table = pd.DataFrame([_trial_row(t, study_attrs, dead) for t in trials],
                         columns=_TRIAL_COLUMNS)
    table = table.sort_values("number", ignore_index=True)

    rungs_total = table["rungs_total"].max()
    table["eligible"] = ((table["state"] == "COMPLETE") & table["feasible"]
                         & table["accuracy"].notna() & table["predicted_tokens_per_s"].notna()
                         & (table["rungs_total"].isna()
                            | (table["rung"] == table["rungs_total"] - 1)))
    # The front is taken on the study's own objectives, as the search's verification and
    # export take it: the first may break accuracy ties by perplexity.
    points = table.loc[table["eligible"], ["objective", "predicted_tokens_per_s"]].to_numpy()
    on_front = pareto_mask(points)
    table["on_front"] = False
    table.loc[table.index[table["eligible"]][on_front], "on_front"] = True
    table["status"] = table.apply(_status, axis=1)
    front = table[table["on_front"]].sort_values("predicted_tokens_per_s", ignore_index=True)

    reference = (0.0, budget_tps or 0.0)
    progress = _progress(table, reference)
    best = table[table["eligible"]].sort_values(["accuracy", "number"], ascending=[False, True])
    predictor = _predictor_table(table, study_attrs)
    errors = predictor["error_pct"].abs()
    starts = pd.to_datetime(table["datetime_start"]).dropna()
    ends = pd.to_datetime(table["datetime_complete"]).dropna()
    facts = ReportFacts(
        study_name=study_name, storage=storage, run_dir=run_dir, n_trials=len(table),
        n_complete=int((table["state"] == "COMPLETE").sum()),
        n_failed=int((table["state"] == "FAIL").sum()),
        n_eligible=int(table["eligible"].sum()),
        rungs_total=None if pd.isna(rungs_total) else int(rungs_total),
        budget_spec=str(budget["spec"]) if isinstance(budget, dict) and "spec" in budget else None,
        budget_tokens_per_s=budget_tps,
        parent_tokens_per_s=as_number(study_attrs.get("parent_tokens_per_s")),
        parent_measured_tokens_per_s=as_number(study_attrs.get("parent_measured_tokens_per_s")),
        parent_accuracy=as_number(study_attrs.get("parent_accuracy")),
        reference_point=reference,
        hypervolume=float(progress["hypervolume"].iloc[-1]) if len(progress) else 0.0,
        best_feasible_accuracy=float(best["accuracy"].iloc[0]) if len(best) else None,
        best_feasible_trial=int(best["number"].iloc[0]) if len(best) else None,
        predictor_n=len(predictor),
        predictor_mean_abs_error_pct=float(errors.mean()) if len(errors) else None,
        predictor_max_abs_error_pct=float(errors.max()) if len(errors) else None,
        predictor_mean_error_pct=float(predictor["error_pct"].mean()) if len(errors) else None,
        wall_seconds=(ends.max() - starts.min()).total_seconds()
        if len(starts) and len(ends) else None,
    )
    return ReportData(
        facts=facts, trials=table, front=front, progress=progress, predictor=predictor,
        kd_curves=_kd_curves(trials), stage_seconds=_stage_seconds(table),
        study_attrs=study_attrs, run_config=run_config or {}, ablation=ablation,
        ablation_text=ablation_text)


def pareto_mask(points) -> list[bool]:
    """Which rows of an (n, 2) array of objectives, both maximized, no other row dominates."""
    rows = [tuple(map(float, p)) for p in points]
    return [not any(o[0] >= p[0] and o[1] >= p[1] and o != p for o in rows) for p in rows]


def hypervolume_2d(points, reference: tuple[float, float]) -> float:
    """Area dominated by ``points`` (both objectives maximized) above ``reference``."""
    rx, ry = reference
    kept = sorted(((float(a), float(t)) for a, t in points if a > rx and t > ry),
                  key=lambda p: p[1], reverse=True)
    area, best_a = 0.0, rx
    for a, t in kept:  # sweep from the fastest point down; each adds a new strip of accuracy
        if a > best_a:
            area += (t - ry) * (a - best_a)
            best_a = a
    return area


_TRIAL_COLUMNS = (
    ["number", "state", "accuracy", "objective", "predicted_tokens_per_s", "measured_tokens_per_s",
     "params", "recipe", "rung", "rungs_total", "feasible", "constraint", "perplexity",
     "kd_steps", "kd_tokens", "fail_reason", "candidate_dir", "arch_label", *ARCH_KEYS]
    + [f"seconds_{s}" for s in STAGES] + ["datetime_start", "datetime_complete"]
)


def _trial_row(trial, study_attrs: dict[str, Any], dead: dict[int, int]) -> dict[str, Any]:
    a = trial.user_attrs
    state = trial.state.name
    values = list(trial.values or []) if state == "COMPLETE" else []
    feasible = _feasible(trial)
    accuracy = as_number(a.get("accuracy"))
    if accuracy is None and values and feasible:  # infeasible arches are never built
        accuracy = as_number(values[0])
    predicted = as_number(a.get("predicted_tokens_per_s"))
    if predicted is None and len(values) > 1:
        predicted = as_number(values[1])
    arch = a.get("arch") if isinstance(a.get("arch"), dict) else {}
    seconds = a.get("seconds") if isinstance(a.get("seconds"), dict) else {}
    objective = as_number(values[0]) if values and accuracy is not None else None
    row = {
        "number": trial.number, "state": state, "accuracy": accuracy,
        "objective": accuracy if objective is None else objective,
        "predicted_tokens_per_s": predicted,
        "measured_tokens_per_s": as_number(measured_tokens_per_s(study_attrs, trial)),
        "params": as_number(a.get("params")), "recipe": as_text(a.get("recipe")),
        "rung": as_number(a.get("rung")), "rungs_total": as_number(a.get("rungs_total")),
        "feasible": feasible, "constraint": as_number(a.get("constraint")),
        "perplexity": as_number(a.get("perplexity")), "kd_steps": as_number(a.get("kd_steps")),
        "kd_tokens": as_number(a.get("kd_tokens")), "fail_reason": as_text(a.get("fail_reason")),
        "candidate_dir": as_text(a.get("candidate_dir")), "arch_label": arch_label(arch),
        "datetime_start": trial.datetime_start, "datetime_complete": trial.datetime_complete,
    }
    if a.get("surplus"):
        row["fail_reason"] = "not built: other workers had built enough candidates"
    if state == "FAIL" and not row["fail_reason"]:
        row["fail_reason"] = (f"worker died; its arch was retried by trial {dead[trial.number]}"
                              if trial.number in dead
                              else as_text(trial.system_attrs.get("fail_reason")))
    row.update({k: as_number(arch.get(k)) for k in ARCH_KEYS})
    row.update({f"seconds_{s}": as_number(seconds.get(s)) for s in STAGES})
    return row


def _feasible(trial) -> bool:
    """The contract's `feasible` attribute, else the constraint values (<= 0), else True."""
    a = trial.user_attrs
    if "feasible" in a:
        return bool(a["feasible"])
    if as_number(a.get("constraint")) is not None:
        return as_number(a["constraint"]) <= 0
    constraints = trial.constraints  # optuna >= 5: {name: value}; older: a tuple
    values = constraints.values() if isinstance(constraints, dict) else constraints or ()
    return all(as_number(v) is not None and as_number(v) <= 0 for v in values)


def _status(row) -> str:
    """One plotting category per trial; failures and infeasible trials first."""
    if row["state"] == "FAIL":
        return "failed"
    if not row["feasible"]:
        return "infeasible"
    if row["on_front"]:
        return "front"
    if row["eligible"]:
        return "dominated"
    if pd.notna(row["accuracy"]) and row["state"] in ("COMPLETE", "PRUNED"):
        return "lower rung"
    return "unfinished"


def _progress(table: pd.DataFrame, reference: tuple[float, float]) -> pd.DataFrame:
    rows, points, best = [], [], None
    for _, row in table.iterrows():
        if row["eligible"]:
            points.append((row["accuracy"], row["predicted_tokens_per_s"]))
            best = row["accuracy"] if best is None else max(best, row["accuracy"])
        rows.append({"number": row["number"], "hypervolume": hypervolume_2d(points, reference),
                     "best_feasible_accuracy": best})
    return pd.DataFrame(rows, columns=["number", "hypervolume", "best_feasible_accuracy"])


def _predictor_table(table: pd.DataFrame, attrs: dict[str, Any]) -> pd.DataFrame:
    rows = []
    parent_p = as_number(attrs.get("parent_tokens_per_s"))
    parent_m = as_number(attrs.get("parent_measured_tokens_per_s"))
    if parent_p is not None and parent_m:
        rows.append({"label": "parent", "number": None, "predicted_tokens_per_s": parent_p,
                     "measured_tokens_per_s": parent_m})
    verified = table[table["measured_tokens_per_s"].gt(0)
                     & table["predicted_tokens_per_s"].notna()]
    for _, row in verified.iterrows():
        rows.append({"label": f"trial {row['number']}", "number": row["number"],
                     "predicted_tokens_per_s": row["predicted_tokens_per_s"],
                     "measured_tokens_per_s": row["measured_tokens_per_s"]})
    frame = pd.DataFrame(rows, columns=["label", "number", "predicted_tokens_per_s",
                                        "measured_tokens_per_s"])
    frame["error_pct"] = ((frame["predicted_tokens_per_s"] - frame["measured_tokens_per_s"])
                          / frame["measured_tokens_per_s"] * 100).astype(float)
    return frame


def _kd_curves(trials: list) -> pd.DataFrame:
    rows = []
    for trial in trials:
        curve = trial.user_attrs.get("kd_curve")
        if not isinstance(curve, list):
            continue
        for point in curve:
            if isinstance(point, (list, tuple)) and len(point) >= 3:
                values = [as_number(v) for v in list(point)[:len(KD_CURVE_COLUMNS)]]
                values += [None] * (len(KD_CURVE_COLUMNS) - len(values))
                rows.append({"number": trial.number, **dict(zip(KD_CURVE_COLUMNS, values))})
    return pd.DataFrame(rows, columns=["number", *KD_CURVE_COLUMNS])


def _stage_seconds(table: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for stage in STAGES:
        column = table[f"seconds_{stage}"]
        if column.notna().any():
            rows.append({"stage": stage, "seconds": float(column.sum()),
                         "trials": int(column.notna().sum())})
    return pd.DataFrame(rows, columns=["stage", "seconds", "trials"])


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("ignoring %s: %s", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def _read_ablation(run_path: Path | None) -> tuple[pd.DataFrame | None, str | None]:
    """The run folder's ablation.csv (rows of bench/reinit_ablation.py) and ablation.md."""
    if run_path is None:
        return None, None
    csv_path, md_path = run_path / "ablation.csv", run_path / "ablation.md"
    frame, text = None, None
    if csv_path.is_file():
        try:
            frame = pd.read_csv(csv_path)
        except (OSError, ValueError) as exc:
            log.warning("ignoring %s: %s", csv_path, exc)
    if md_path.is_file():
        text = md_path.read_text(encoding="utf-8", errors="replace")
    return frame, text


ABLATION_METRICS = ("kd_loss_step0", "kd_loss_final", "skills_acc_step0", "skills_acc_final")


def ablation_summary(frame: pd.DataFrame,
                     metrics: tuple[str, ...] = ABLATION_METRICS) -> pd.DataFrame | None:
    """Mean and sample sd over seeds per (shape, recipe), with ratios to minitron's mean on
    the same shape: the table of bench/reinit_ablation.py's ablation.md.

    None when the frame lacks that bench's columns (shape, recipe, kd_loss_final).
    """
    if not {"shape", "recipe", "kd_loss_final"} <= set(frame.columns):
        return None
    metrics = tuple(m for m in metrics if m in frame.columns)
    rows = []
    for (shape, recipe), group in frame.groupby(["shape", "recipe"], sort=False):
        row: dict[str, Any] = {"shape": shape, "recipe": recipe, "seeds": len(group)}
        if "params" in group:
            row["params"] = group["params"].iloc[0]
        for metric in metrics:
            row[metric] = float(group[metric].mean())
            row[f"{metric}_sd"] = float(group[metric].std()) if len(group) > 1 else None
        rows.append(row)
    out = pd.DataFrame(rows)
    for metric in metrics:
        base = out[out["recipe"] == "minitron"].set_index("shape")[metric]
        out[f"{metric}_ratio"] = [value / base.get(shape) if base.get(shape) else None
                                  for shape, value in zip(out["shape"], out[metric])]
    return out


def as_number(value: Any) -> float | None:
    """A finite float, or None for anything missing, non-numeric or not finite."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def as_text(value: Any) -> str:
    return "" if value is None else str(value)


def arch_label(arch: dict[str, Any]) -> str:
    if not all(k in arch for k in ARCH_KEYS):
        return ""
    return (f"L{arch['num_hidden_layers']} d{arch['hidden_size']} "
            f"q{arch['num_attention_heads']}/kv{arch['num_key_value_heads']}x{arch['head_dim']} "
            f"ffn{arch['intermediate_size']}")


def _hide_password(url: str) -> str:
    from plsearch.search.study import redact_url

    return redact_url(url)
