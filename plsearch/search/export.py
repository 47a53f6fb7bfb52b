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
from optuna.trial import FrozenTrial

from plsearch import atomic
from plsearch.errors import ConfigError
from plsearch.search.study import load_existing_study, measured_tokens_per_s, storage_url

__all__ = ["choose_trial", "export_candidate", "model_card", "open_for_export"]


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


def choose_trial(study: optuna.Study, number: int | None = None,
                 best_for: str | None = None) -> FrozenTrial:
    """Trial ``number``, or the most accurate fully evaluated candidate meeting ``best_for``."""
    from plsearch.search.budget import parse_budget
    from plsearch.search.verify import fully_evaluated

    if (number is None) == (best_for is None):
        raise ConfigError("choose the candidate with exactly one of --trial N or --best-for BUDGET")
    if number is not None:
        trials = [t for t in study.get_trials(deepcopy=False) if t.number == number]
        if not trials:
            raise ConfigError(f"study {study.study_name!r} has no trial {number}")
        trial = trials[0]
        if not trial.user_attrs.get("candidate_dir"):
            rung = trial.user_attrs.get("rung")
            raise ConfigError(
                f"trial {number} has no saved candidate ({trial.state.name}, rung {rung}); "
                "only candidates that reached the top rung are saved: pick one of "
                f"{[t.number for t in fully_evaluated(study)]}")
        return trial
    budget = parse_budget(best_for)
    parent_tps = study.user_attrs.get("parent_tokens_per_s")
    if budget.kind == "relative" and not parent_tps:
        raise ConfigError(f"study {study.study_name!r} records no parent speed; use an "
                          "absolute budget such as 2500tok/s")
    need = budget.tokens_per_s(parent_tps or 0.0)
    done = [t for t in fully_evaluated(study) if t.user_attrs.get("candidate_dir")]
    meeting = [t for t in done if t.user_attrs["predicted_tokens_per_s"] >= need]
    if not meeting:
        fastest = max((t.user_attrs["predicted_tokens_per_s"] for t in done), default=None)
        reach = f"the fastest saved one predicts {fastest:,.0f} tokens/s" if fastest else \
            "none was fully evaluated"
        raise ConfigError(f"no saved candidate meets {budget.spec} ({need:,.0f} tokens/s): "
                          f"{reach}; relax the budget or export one with --trial N")
    return max(meeting, key=lambda t: (t.values[0], t.user_attrs["predicted_tokens_per_s"]))


def export_candidate(study: optuna.Study, trial: FrozenTrial, out: str | Path) -> Path:
    """Copy the trial's candidate folder to ``out`` with a README.md model card."""
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"output folder {out} already exists and is not empty; choose a new "
                          "--out or remove it")
    source = Path(trial.user_attrs["candidate_dir"])
    if not (source / "config.json").exists():
        raise ConfigError(f"the candidate folder {source} of trial {trial.number} is missing "
                          "or incomplete; was the run folder (or artifact store) moved?")
    with atomic.new_dir(out) as tmp:  # replaces an empty out (checked above)
        for item in source.iterdir():
            if item.is_file():
                shutil.copy2(item, tmp / item.name)
        (tmp / "README.md").write_text(model_card(study, trial), encoding="utf-8")
    return out


def model_card(study: optuna.Study, trial: FrozenTrial) -> str:
    """A Markdown model card from the study's and the trial's attributes."""
    a, s = trial.user_attrs, study.user_attrs
    arch = a.get("arch", {})
    parent_arch = s.get("parent_arch", {})
    budget = s.get("budget", {})
    fingerprint = s.get("device_fingerprint", {})
    profile = s.get("device_profile", {})
    workload = s.get("workload", {})
    measured = measured_tokens_per_s(s, trial)
    parent_tps = s.get("parent_tokens_per_s")
    parent_measured = s.get("parent_measured_tokens_per_s")

    def speed(value: float | None, ref: float | None) -> str:
        if value is None:
            return "not measured"
        return f"{value:,.0f} tokens/s" + (f" ({value / ref:.2f}x the parent)" if ref else "")

    lines = [
        *_front_matter(s.get("parent")),
        f"# plsearch candidate: trial {trial.number} of study `{study.study_name}`",
        "",
        ("A decoder LLM pruned from its parent with the Pangu Light method (plsearch), then "
         "retrained by knowledge distillation from the parent. An ordinary Hugging Face "
         "folder: `AutoModelForCausalLM.from_pretrained(folder)`, no remote code."),
        "",
        "## Origin",
        (f"- parent: `{s.get('parent', '?')}`, {s.get('parent_params', 0):,} parameters, "
         f"arch {json.dumps(parent_arch)}"),
        f"- recipe: {a.get('recipe', '?')}",
        (f"- budget searched for: {budget.get('spec', '?')} "
         f"(>= {budget.get('tokens_per_s', 0):,.0f} tokens/s predicted)"),
        "",
        "## Architecture",
        f"- {a.get('params', 0):,} parameters",
        *[f"- {k}: {v}" for k, v in arch.items()],
        "",
        "## Recovery (knowledge distillation from the parent)",
        (f"- {a.get('kd_steps', 0)} optimizer steps, {a.get('kd_tokens', 0):,} tokens; "
         f"rung {a.get('rung', 0) + 1} of {a.get('rungs_total', '?')}"),
        f"- final KD loss: {_last_kd_loss(a.get('kd_curve'))}",
        "",
        "## Scores",
        (f"- accuracy (weighted task score): {a.get('accuracy', float('nan')):.4f}"
         + (f" (parent {s['parent_accuracy']:.4f})" if "parent_accuracy" in s else "")),
        (f"- held-out perplexity: {a.get('perplexity', float('nan')):.3f}"
         + (f" (parent {s['parent_perplexity']:.3f})" if "parent_perplexity" in s else "")),
        *[f"- {task}: " + ", ".join(f"{m} {v:.4f}" if isinstance(v, float) else f"{m} {v}"
                                    for m, v in metrics.items())
          for task, metrics in (a.get("scores") or {}).items()],
        "",
        "## Speed",
        (f"- device: {fingerprint.get('device_name', '?')} ({fingerprint.get('backend', '?')}, "
         f"{fingerprint.get('dtype', '?')}, {fingerprint.get('threads', '?')} threads), "
         f"profile `{profile.get('name', '?')}`"),
        (f"- workload: batch {workload.get('batch_size')}, prompt {workload.get('prompt_len')} "
         f"tokens, {workload.get('generated_len')} generated"),
        f"- predicted: {speed(a.get('predicted_tokens_per_s'), parent_tps)}",
        f"- measured: {speed(measured, parent_measured)}",
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
