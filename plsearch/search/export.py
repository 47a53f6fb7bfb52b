"""Export: one searched candidate as an ordinary Hugging Face folder with a model card.

    study = open_for_export(out_dir="reports/demo")               # or storage + study name
    trial = choose_trial(study, best_for="1.5x")                  # or number=7
    export_candidate(study, trial, "exported/")

The folder is the candidate the search saved (config.json, model.safetensors, tokenizer,
plsearch.json) plus README.md: parent, arch, recipe, KD budget, scores, predicted and
measured tokens/s and the device. It is written to a temporary sibling and renamed, so a
failure leaves nothing behind.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import optuna

from plsearch import atomic
from plsearch.errors import ConfigError
from plsearch.search.record import TrialRecord
from plsearch.search.scoring import interval, separated
from plsearch.search.study import load_existing_study, storage_url

__all__ = ["choose_trial", "export_candidate", "meets_budget", "model_card", "open_for_export"]


def open_for_export(out_dir: str | Path | None = None, storage: str | None = None,
                    study: str | None = None) -> optuna.Study:
    """The study of a run folder (its study.db) or of a storage URL."""
    if out_dir and storage:
        raise ConfigError("give either --run DIR or --storage URL, not both")
    if out_dir:
        db = Path(out_dir) / "study.db"
        if not db.exists():
            raise ConfigError(f"{out_dir} holds no study.db; pass the run folder of a search "
                              "(its --run) or --storage URL --study NAME")
        return load_existing_study(storage_url(None, Path(out_dir)), study)
    if storage:
        return load_existing_study(storage_url(storage, Path(".")), study)
    raise ConfigError("name the search: --run DIR (its run folder) or --storage URL "
                      "[--study NAME]")


def interval_meets(low: float, parent_tokens_per_s: float, budget) -> bool:
    """Whether a measured speed-up whose 95% interval starts at ``low`` meets ``budget``:
    a relative one as a speed-up, an absolute one on the parent's measured scale."""
    return (low >= budget.value if budget.kind == "relative"
            else low * parent_tokens_per_s >= budget.value)


def meets_budget(record: TrialRecord, budget, study_attrs: dict[str, Any]) -> bool:
    """Whether ``record`` meets ``budget``: on measured speeds wherever they exist (the
    candidate's against the parent's, measured in the same run, for a relative budget;
    where verification measured its speed-up's 95% interval, the interval's low end)."""
    parent_predicted = study_attrs.get("parent_tokens_per_s") or 0.0
    parent_measured = study_attrs.get("parent_measured_tokens_per_s")
    if record.measured_speedup_low is not None and parent_measured:
        return interval_meets(record.measured_speedup_low, parent_measured, budget)
    if budget.kind == "relative":
        if record.measured_tokens_per_s and parent_measured:
            return record.measured_tokens_per_s >= budget.value * parent_measured
        return record.predicted_tokens_per_s >= budget.tokens_per_s(parent_predicted)
    return record.tokens_per_s >= budget.value


def choose_trial(study: optuna.Study, number: int | None = None,
                 best_for: str | None = None) -> TrialRecord:
    """Trial ``number``, or the best fully evaluated candidate meeting ``best_for``
    (highest objective; measured speed decides wherever it exists)."""
    from plsearch.search.budget import parse_budget
    from plsearch.search.verify import fully_evaluated

    if (number is None) == (best_for is None):
        raise ConfigError("choose the candidate with exactly one of --trial N or --best-for BUDGET")
    attrs = study.user_attrs
    if number is not None:
        trials = [t for t in study.get_trials(deepcopy=False) if t.number == number]
        if not trials:
            raise ConfigError(f"study {study.study_name!r} has no trial {number}")
        record = TrialRecord.from_trial(trials[0], attrs)
        if not record.candidate_dir:
            raise ConfigError(
                f"trial {number} has no saved candidate ({record.state}, rung {record.rung}); "
                "only candidates that reached the top rung are saved: pick one of "
                f"{[r.number for r in fully_evaluated(study, attrs)]}")
        return record
    budget = parse_budget(best_for)
    parent_tps = attrs.get("parent_tokens_per_s")
    if budget.kind == "relative" and not parent_tps:
        raise ConfigError(f"study {study.study_name!r} records no parent speed; use an "
                          "absolute budget such as 2500tok/s")
    done = [r for r in fully_evaluated(study, attrs) if r.candidate_dir]
    meeting = [r for r in done if meets_budget(r, budget, attrs)]
    if not meeting:
        fastest = max((r.tokens_per_s for r in done), default=None)
        reach = f"the fastest saved one runs {fastest:,.0f} tokens/s" if fastest else \
            "none was fully evaluated"
        raise ConfigError(f"no saved candidate meets {budget.spec}: {reach}; relax the budget "
                          "or export one with --trial N")
    return max(meeting, key=lambda r: (r.objective, r.tokens_per_s))


def export_candidate(study: optuna.Study, trial, out: str | Path) -> Path:
    """Copy the trial's candidate folder to ``out`` with a README.md model card."""
    if not isinstance(trial, TrialRecord):
        trial = TrialRecord.from_trial(trial, study.user_attrs)
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"output folder {out} already exists and is not empty; choose a new "
                          "--out or remove it")
    source = Path(trial.candidate_dir or "")
    if not (source / "config.json").exists():
        raise ConfigError(f"the candidate folder {source} of trial {trial.number} is missing "
                          "or incomplete; was the run folder (or artifact store) moved?")
    with atomic.new_dir(out) as tmp:  # replaces an empty out (checked above)
        for item in source.iterdir():
            if item.is_file():
                shutil.copy2(item, tmp / item.name)
        (tmp / "README.md").write_text(model_card(study, trial), encoding="utf-8")
    return out


def _with_interval(value: float | None, se: float | None) -> str:
    if value is None:
        return "n/a"
    ci = interval(value, se)
    return f"{value:.4f}" + (f" (95% interval {ci[0]:.4f} to {ci[1]:.4f})" if ci else "")


def model_card(study: optuna.Study, trial) -> str:
    """A Markdown model card from the study's attributes and the trial's record (a
    TrialRecord, or an Optuna trial read through one)."""
    s = study.user_attrs
    r = trial if isinstance(trial, TrialRecord) else TrialRecord.from_trial(trial, s)
    arch = r.arch.to_dict() if r.arch else {}
    parent_arch = s.get("parent_arch", {})
    budget = s.get("budget", {})
    fingerprint = s.get("device_fingerprint", {})
    profile = s.get("device_profile", {})
    workload = s.get("workload", {})
    parent_tps = s.get("parent_tokens_per_s")
    parent_measured = s.get("parent_measured_tokens_per_s")
    parent_acc, parent_se = s.get("parent_accuracy"), s.get("parent_accuracy_stderr")

    def speed(value: float | None, ref: float | None) -> str:
        if value is None:
            return "not measured"
        return f"{value:,.0f} tokens/s" + (f" ({value / ref:.2f}x the parent)" if ref else "")

    if parent_acc is not None and r.accuracy is not None:
        if separated(r.accuracy, r.accuracy_stderr, parent_acc, parent_se):
            word = "below" if r.accuracy < parent_acc else "above"
            compare = f"; {word} the parent's {_with_interval(parent_acc, parent_se)}"
        else:
            compare = (f"; the parent scores {_with_interval(parent_acc, parent_se)}: the "
                       "intervals overlap, so the two are not told apart")
        share = f" = {r.accuracy / parent_acc:.1%} of the parent's" if parent_acc else ""
    else:
        compare, share = "", ""
    lines = [
        *_front_matter(s.get("parent")),
        f"# plsearch candidate: trial {r.number} of study `{study.study_name}`",
        "",
        ("A decoder LLM pruned from its parent with the Pangu Light method (plsearch), then "
         "retrained by knowledge distillation from the parent. An ordinary Hugging Face "
         "folder: `AutoModelForCausalLM.from_pretrained(folder)`, no remote code."),
        "",
        "## Origin",
        (f"- parent: `{s.get('parent', '?')}`, {s.get('parent_params', 0):,} parameters, "
         f"arch {json.dumps(parent_arch)}"),
        f"- recipe: {r.recipe or '?'}",
        (f"- budget searched for: {budget.get('spec', '?')} "
         f"(>= {budget.get('tokens_per_s', 0):,.0f} tokens/s predicted)"),
        "",
        "## Architecture",
        f"- {r.params or 0:,} parameters",
        *[f"- {k}: {v}" for k, v in arch.items()],
        "",
        "## Recovery (knowledge distillation from the parent)",
        (f"- {r.kd_steps} optimizer steps, {r.kd_tokens:,} tokens; "
         f"rung {r.rung + 1} of {r.rungs_total or '?'}"),
        f"- final KD loss: {_last_kd_loss(r.kd_curve)}",
        "",
        "## Scores (95% intervals: normal approximation from the tasks' standard errors)",
        f"- accuracy (weighted task score): {_with_interval(r.accuracy, r.accuracy_stderr)}"
        + share + compare,
        (f"- search objective (accuracy - weight x held-out KL to the parent): "
         f"{_with_interval(r.objective, r.objective_stderr)}"),
        (f"- held-out KL to the parent: {_with_interval(r.kl, r.kl_stderr)} nats/token; "
         f"perplexity {r.perplexity if r.perplexity is not None else float('nan'):.3f}"
         + (f" (parent {s['parent_perplexity']:.3f})" if "parent_perplexity" in s else "")),
        *[f"- {task}: " + ", ".join(f"{m} {v:.4f}" if isinstance(v, float) else f"{m} {v}"
                                    for m, v in metrics.items())
          for task, metrics in r.scores.items()],
        "",
        "## Speed",
        (f"- device: {fingerprint.get('device_name', '?')} ({fingerprint.get('backend', '?')}, "
         f"{fingerprint.get('dtype', '?')}, {fingerprint.get('threads', '?')} threads), "
         f"profile `{profile.get('name', '?')}`"),
        (f"- workload: batch {workload.get('batch_size')}, prompt {workload.get('prompt_len')} "
         f"tokens, {workload.get('generated_len')} generated"),
        f"- predicted: {speed(r.predicted_tokens_per_s, parent_tps)}",
        f"- measured: {speed(r.measured_tokens_per_s, parent_measured)}",
        "",
        "## Reproduce",
        f"`{s.get('command', 'plsearch search ...')}`",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in (s.get("versions") or {}).items()),
        "",
    ]
    return "\n".join(lines)


def _front_matter(parent: str | None) -> list[str]:
    """The Hub's model-card metadata (YAML between --- lines); base_model only when the
    parent is a Hub model (an id, or a folder of the Hub cache), not a local folder."""
    import re

    base = None
    if parent:
        cached = re.search(r"models--([^/\\]+?)--([^/\\]+)", parent)
        if cached:
            base = f"{cached.group(1)}/{cached.group(2)}"
        elif re.fullmatch(r"[\w.-]+/[\w.-]+", parent) and not Path(parent).exists():
            base = parent
    return ["---", *([f"base_model: {base}"] if base else []), "library_name: transformers",
            "pipeline_tag: text-generation",
            "tags:", "- plsearch", "- pruned", "- knowledge-distillation", "---", ""]


def _last_kd_loss(curve: Any) -> str:
    if not curve:
        return "n/a"
    return f"{curve[-1][2]:.4f}"
