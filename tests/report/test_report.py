"""The report's data step on hand-computed numbers, the render step's HTML, and the CLI.

Studies here are real Optuna SQLite storages in tmp. `make_fixture_study` is a test fixture
that fakes a search: its objective sets the search<->report contract attributes from a seeded
rng with plausible numbers; nothing is trained. test_report_browser.py reuses it.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from plsearch.arch import ArchConfig, ArchTraits
from plsearch.cli import main
from plsearch.errors import ConfigError
from plsearch.report import (
    FIGURE_IDS,
    ablation_summary,
    build_report_data,
    export_command,
    hypervolume_2d,
    load_report_data,
    pareto_mask,
    render_report,
    write_report,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

PARENT = ArchConfig(num_hidden_layers=8, hidden_size=256, num_attention_heads=8,
                    num_key_value_heads=2, head_dim=32, intermediate_size=768,
                    vocab_size=8192, tie_word_embeddings=True)
TRAITS = ArchTraits(qkv_bias=True, norms_per_layer=4)
NASTY = "pangu</script><img src=x onerror=alert(1)>"  # a recipe name a user could type


def make_fixture_study(run_dir=None, n_trials=12, seed=0, name="fixture", ablation=True):
    """A fake search: a run folder with study.db (contract attrs), run.json, ablation.csv.

    Without run_dir, the in-memory study alone. The trials are made in memory, then written
    once more with the front's measured tokens/s (the search measures its front after the
    trials end), which is also far faster than a commit per attribute in SQLite.
    """
    rng = np.random.default_rng(seed)
    parent_tps, budget_tps = 1000.0, 1500.0
    parent_params = PARENT.num_params(TRAITS)
    draft = optuna.create_study(directions=["maximize", "maximize"],
                                sampler=optuna.samplers.RandomSampler(seed=seed))

    def objective(trial):
        kv = trial.suggest_categorical("num_key_value_heads", [1, 2])
        arch = PARENT.replace(
            num_hidden_layers=trial.suggest_int("num_hidden_layers", 3, 8),
            hidden_size=trial.suggest_categorical("hidden_size", [128, 192, 256]),
            num_key_value_heads=kv,
            num_attention_heads=kv * trial.suggest_categorical("queries_per_group", [2, 4]),
            intermediate_size=trial.suggest_categorical("intermediate_size", [256, 512, 768]))
        params = arch.num_params(TRAITS)
        share = params / parent_params
        predicted = parent_tps / share ** 0.8 * float(rng.normal(1.0, 0.05))
        feasible = predicted >= budget_tps
        for key, value in {
            "arch": arch.to_dict(), "params": params, "predicted_tokens_per_s": predicted,
            "constraint": budget_tps - predicted, "feasible": bool(feasible),
            "recipe": NASTY if trial.number == 1 else "pangu", "rung": -1, "rungs_total": 2,
        }.items():
            trial.set_user_attr(key, value)
        if not feasible:  # never built, as the search does
            return 0.0, predicted
        if rng.random() < 0.1:
            trial.set_user_attr("fail_reason", "out of memory <script>alert(2)</script>")
            raise RuntimeError("out of memory")
        full = rng.random() < 0.7
        accuracy = 0.25 + 0.45 * share ** 0.5 + float(rng.normal(0, 0.02)) - (0 if full else 0.05)
        perplexity = float(30 - 15 * share)
        steps = 40 if full else 10
        curve = [[s * 5, s * 5 * 4096, 3.0 * np.exp(-s / 15) + 0.4 + 0.2 * (1 - share),
                  3.5 * np.exp(-s / 15) + 1.0, 3e-4] for s in range(steps + 1)]
        for key, value in {
            "rung": 1 if full else 0, "kd_steps": steps * 5, "kd_tokens": steps * 5 * 4096,
            "kd_curve": curve, "scores": {"plsearch_recall": {"acc": accuracy}},
            "accuracy": accuracy, "perplexity": perplexity,
            "seconds": {"build": 1.5, "kd": 20.0 * steps / 40, "eval": 4.0, "total": 25.5},
        }.items():
            trial.set_user_attr(key, value)
        return accuracy - 1e-3 * np.log(perplexity), predicted

    draft.optimize(objective, n_trials=n_trials, catch=(RuntimeError,))
    trials = draft.get_trials()  # deep copies
    while True:  # measure the front until measured speed decides it, as verify_front does
        front = build_report_data(trials, {}, study_name=name).front["number"].tolist()
        todo = [t for t in trials if t.number in front
                and "measured_tokens_per_s" not in t.user_attrs]
        if not todo:
            break
        for trial in todo:
            trial.user_attrs["measured_tokens_per_s"] = \
                trial.user_attrs["predicted_tokens_per_s"] * float(rng.normal(0.95, 0.04))
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
    storage = None if run_dir is None else f"sqlite:///{run_dir / 'study.db'}"
    study = optuna.create_study(study_name=name, storage=storage,
                                directions=["maximize", "maximize"])
    study.add_trials(trials)
    for key, value in {
        "parent": "builtin", "parent_arch": PARENT.to_dict(), "parent_params": parent_params,
        "parent_tokens_per_s": parent_tps, "parent_measured_tokens_per_s": 950.0,
        "parent_accuracy": 0.71, "budget": {"spec": "1.5x", "tokens_per_s": budget_tps},
        "device_fingerprint": {"kind": "cpu", "name": "fixture CPU <b>"},
        "workload": {"batch": 1, "prompt": 128, "generate": 128}, "sampler": "RandomSampler",
        "seed": seed, "versions": {"plsearch": "0.1.0", "optuna": optuna.__version__},
        "command": f"plsearch search --budget 1.5x --out {run_dir}",
    }.items():
        study.set_user_attr(key, value)
    if run_dir is None:
        return study
    study.set_user_attr("run_dir", str(run_dir))
    (run_dir / "run.json").write_text(json.dumps({"budget": "1.5x", "trials": n_trials}))
    if ablation:
        (run_dir / "ablation.csv").write_text(
            "recipe,seed,loss_step0,loss_final\nminitron,0,6.1,3.2\npangu,0,5.2,3.0\n"
            f"\"{NASTY}\",1,5.0,2.9\n")
    return study


# ---- numbers -----------------------------------------------------------------------------

def test_pareto_mask_keeps_ties_and_drops_dominated():
    points = [(0.5, 2000), (0.6, 1800), (0.55, 1700), (0.6, 1800), (0.4, 1000)]
    assert pareto_mask(points) == [True, True, False, True, False]
    assert pareto_mask([]) == []


def test_hypervolume_2d_by_hand():
    assert hypervolume_2d([(1, 3), (3, 1)], (0, 0)) == pytest.approx(5.0)
    assert hypervolume_2d([(0.5, 2000), (0.6, 1800), (0.65, 1550)], (0, 1500)) == \
        pytest.approx(500 * 0.5 + 300 * 0.1 + 50 * 0.05)
    # points below the reference point and dominated points add nothing
    assert hypervolume_2d([(0.5, 2000), (0.4, 1900), (0.9, 1400)], (0, 1500)) == \
        pytest.approx(250.0)
    assert hypervolume_2d([], (0, 0)) == 0.0


def _hand_study(path):
    """Eight trials whose front, hypervolume and predictor errors are computed by hand."""
    from optuna.trial import TrialState, create_trial

    study = optuna.create_study(study_name="hand", storage=f"sqlite:///{path}",
                                directions=["maximize", "maximize"])
    study.set_user_attr("budget", {"spec": "1.5x", "tokens_per_s": 1500.0})
    study.set_user_attr("parent_tokens_per_s", 1000.0)
    study.set_user_attr("parent_measured_tokens_per_s", 800.0)
    study.set_user_attr("parent_accuracy", 0.7)
    arch = PARENT.to_dict()

    def add(acc, tps, rung=1, state=TrialState.COMPLETE, feasible=True, measured=None, **extra):
        attrs = {"arch": arch, "rung": rung, "rungs_total": 2, "predicted_tokens_per_s": tps,
                 "feasible": feasible, "recipe": "pangu", **extra}
        if acc is not None:
            attrs["accuracy"] = acc
        if measured is not None:
            attrs["measured_tokens_per_s"] = measured
        values = [acc if acc is not None else 0.0, tps] if state == TrialState.COMPLETE else None
        study.add_trial(create_trial(state=state, values=values, user_attrs=attrs))

    add(0.50, 2000, measured=1600)            # 0 front, predictor +25%
    add(0.60, 1800, measured=2000)            # 1 front, predictor -10%
    add(0.55, 1700)                           # 2 dominated by 1
    add(0.70, 1600, rung=0)                   # 3 lower rung: never on the front
    add(None, 1900, state=TrialState.FAIL, fail_reason="OOM")  # 4 failed
    add(None, 1200, feasible=False)           # 5 infeasible, never built
    add(0.65, 1550, seconds={"build": 1, "kd": 10, "eval": 2, "total": 13})  # 6 front
    add(0.60, 1800, seconds={"build": 2, "kd": 20, "eval": 3, "total": 25})  # 7 tie with 1
    return study


def test_data_step_on_hand_numbers(tmp_path):
    _hand_study(tmp_path / "hand.db")
    data = load_report_data(storage_url=f"sqlite:///{tmp_path / 'hand.db'}")
    facts, trials = data.facts, data.trials
    assert facts.study_name == "hand" and facts.n_trials == 8
    assert (facts.n_complete, facts.n_failed, facts.n_eligible) == (7, 1, 5)
    assert facts.rungs_total == 2
    # by tokens/s, measured where measured: trial 1 measured 2000 tokens/s now dominates
    # trial 7 (predicted 1800, same accuracy) and trial 0 (measured 1600, less accurate)
    assert data.front["number"].tolist() == [6, 1]
    assert trials.set_index("number")["status"].to_dict() == {
        0: "dominated", 1: "front", 2: "dominated", 3: "lower rung", 4: "failed",
        5: "infeasible", 6: "front", 7: "dominated"}
    assert np.isnan(trials.loc[5, "accuracy"])  # infeasible: values[0] is not an accuracy
    assert facts.reference_point == (0.0, 1500.0)
    assert facts.hypervolume == pytest.approx(302.5)
    assert data.progress["hypervolume"].tolist() == pytest.approx(
        [50, 300, 300, 300, 300, 300, 302.5, 302.5])
    assert data.progress["best_feasible_accuracy"].tolist() == pytest.approx(
        [0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.65, 0.65])
    assert (facts.best_feasible_accuracy, facts.best_feasible_trial) == (0.65, 6)
    assert data.predictor["label"].tolist() == ["parent", "trial 0", "trial 1"]
    assert data.predictor["error_pct"].tolist() == pytest.approx([25, 25, -10])
    assert facts.predictor_n == 3
    assert facts.predictor_mean_abs_error_pct == pytest.approx(20.0)
    assert facts.predictor_max_abs_error_pct == pytest.approx(25.0)
    assert facts.predictor_mean_error_pct == pytest.approx(40 / 3)
    assert data.stage_seconds.set_index("stage")["seconds"].to_dict() == {
        "build": 3, "kd": 30, "eval": 5, "total": 38}
    assert trials.loc[4, "fail_reason"] == "OOM"


def test_feasibility_falls_back_to_constraints():
    from optuna.trial import create_trial

    trials = [create_trial(values=[0.5, 1000], constraints={"budget": 10.0}),
              create_trial(values=[0.4, 1600], constraints={"budget": -100.0}),
              create_trial(values=[0.3, 1700], user_attrs={"constraint": 5.0})]
    for number, trial in enumerate(trials):
        trial.number = number
    data = build_report_data(trials, {}, study_name="s")
    assert data.trials["feasible"].tolist() == [False, True, False]
    assert data.front["number"].tolist() == [1]
    assert data.facts.reference_point == (0.0, 0.0)  # no budget in the study


def test_front_uses_the_objectives_and_matches_the_search():
    """Accuracy ties are broken by the objective (perplexity tie-break), as the search does;
    the report's front is the one plsearch.search verifies and exports."""
    from optuna.trial import create_trial

    from plsearch.search import pareto_front

    attrs = {"feasible": True, "rung": 0, "rungs_total": 1, "accuracy": 0.6,
             "predicted_tokens_per_s": 1800.0}
    trials = [create_trial(values=[0.6 - 1e-3 * np.log(10), 1800], user_attrs=attrs),
              create_trial(values=[0.6 - 1e-3 * np.log(20), 1800], user_attrs=attrs)]
    for number, trial in enumerate(trials):
        trial.number = number
    assert build_report_data(trials, {}, study_name="s").front["number"].tolist() == [0]

    study = make_fixture_study(n_trials=30, seed=5)
    front = build_report_data(study.get_trials(), study.user_attrs, study_name="f").front
    assert sorted(front["number"]) == sorted(t.number for t in pareto_front(study))
    assert front["measured_tokens_per_s"].notna().all()


def test_empty_study_renders_no_data_notes(tmp_path):
    optuna.create_study(study_name="empty", storage=f"sqlite:///{tmp_path / 'e.db'}",
                        directions=["maximize", "maximize"])
    data = load_report_data(storage_url=f"sqlite:///{tmp_path / 'e.db'}", study_name="empty")
    assert data.facts.n_trials == 0 and data.front.empty and data.facts.hypervolume == 0.0
    page = render_report(data)
    assert page.count("No data:") == 7  # five figures, the trials table, the ablation
    assert 'class="plsearch-figure"' not in page


def test_load_errors_name_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_report_data(run_dir=tmp_path / "missing")
    with pytest.raises(ConfigError, match="no study.db"):
        load_report_data(run_dir=tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_report_data(storage_url=f"sqlite:///{tmp_path / 'nope.db'}")
    assert not (tmp_path / "nope.db").exists()
    _hand_study(tmp_path / "hand.db")
    with pytest.raises(ConfigError, match="holds: hand"):
        load_report_data(storage_url=f"sqlite:///{tmp_path / 'hand.db'}", study_name="other")


def test_ablation_markdown_and_run_folder_beside_a_storage(tmp_path):
    _hand_study(tmp_path / "hand.db")
    run = tmp_path / "run"
    run.mkdir()
    (run / "ablation.md").write_text("| recipe | loss |\n| <i>pangu</i> | 3.0 |\n")
    data = load_report_data(storage_url=f"sqlite:///{tmp_path / 'hand.db'}", run_dir=run)
    assert data.ablation is None and "<i>pangu</i>" in data.ablation_text
    page = render_report(data)
    assert "&lt;i&gt;pangu&lt;/i&gt;" in page and "<i>pangu" not in page
    assert "plsearch export --run" not in page  # the run folder holds no study.db


# ---- render ------------------------------------------------------------------------------

def test_report_of_fixture_study_is_complete_and_escaped(tmp_path):
    run = tmp_path / "run"
    make_fixture_study(run, n_trials=12)
    data = load_report_data(run_dir=run)
    assert data.facts.run_dir == str(run) and len(data.front) >= 1
    assert data.ablation is not None and len(data.ablation) == 3
    out = write_report(data, out=run / "report.html")
    page = out.read_text(encoding="utf-8")
    for fig_id in FIGURE_IDS:
        assert f'<div id="{fig_id}" class="plsearch-figure">' in page, fig_id
    assert "No data:" not in page
    # plotly.js once, no external resources: the file opens with no network
    assert page.count("plotly.js v") == 1
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page)
    # user strings are escaped in HTML and cannot break out of the JSON <script>
    assert NASTY not in page and "<script>alert" not in page and "CPU <b>" not in page
    assert html.escape(NASTY) in page and "CPU &lt;b&gt;" in page
    assert page.count("</script>") == 3  # plotly.js, the figures' JSON, the page script
    figures = json.loads(page.split('type="application/json">')[1].split("</script>")[0])
    assert set(figures) == set(FIGURE_IDS)
    # export commands for exactly the front candidates
    for number in data.front["number"]:
        assert html.escape(export_command(data, number)) in page
    assert page.count(">plsearch export") == len(data.front)
    assert not list(run.glob(".report.html.*"))  # no temporary file left


def test_fifty_trial_report_is_under_6_mb(tmp_path):
    study = make_fixture_study(n_trials=50, seed=1)
    data = build_report_data(study.get_trials(), study.user_attrs, study_name="fifty")
    assert len(data.trials) == 50 and len(data.front) >= 2
    out = write_report(data, out=tmp_path / "r.html")
    assert out.stat().st_size < 6e6


def test_write_report_is_atomic(tmp_path, monkeypatch):
    from plsearch import atomic

    run = tmp_path / "run"
    make_fixture_study(run, n_trials=3)
    (run / "report.html").write_text("old")

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", broken)
    with pytest.raises(OSError):
        write_report(out=run / "report.html", run_dir=run)
    assert (run / "report.html").read_text() == "old"
    assert sorted(p.name for p in run.iterdir() if "report" in p.name) == ["report.html"]


# ---- CLI ---------------------------------------------------------------------------------

def test_cli_report_from_run_and_from_storage(tmp_path, capsys):
    run = tmp_path / "run"
    make_fixture_study(run, n_trials=6)
    assert main(["report", "--run", str(run)]) == 0
    assert "wrote" in capsys.readouterr().out and (run / "report.html").is_file()
    out = tmp_path / "elsewhere" / "r.html"
    assert main(["report", "--study", "fixture", "--storage", f"sqlite:///{run / 'study.db'}",
                 "--out", str(out)]) == 0
    assert out.is_file()


@pytest.mark.parametrize("argv, message", [
    ([], "give --run DIR"),
    (["--run", "/nonexistent/run"], "does not exist"),
    (["--run", "x", "--storage", "sqlite:///x.db"], "not both"),
])
def test_cli_report_bad_input_is_one_line(argv, message, capsys):
    assert main(["report", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_ablation_summary_reproduces_the_shipped_ablation_table(tmp_path):
    shipped = Path(__file__).resolve().parents[2] / "reports"
    summary = ablation_summary(pd.read_csv(shipped / "ablation.csv"))
    row = summary[(summary["shape"] == "joint") & (summary["recipe"] == "pangu")].iloc[0]
    # reports/ablation.md (written by bench/reinit_ablation.py) holds the same numbers
    md_row = next(line for line in (shipped / "ablation.md").read_text().splitlines()
                  if line.startswith("| joint | pangu |"))
    final = f"{row['kd_loss_final']:.3f} +- {row['kd_loss_final_sd']:.3f}"
    ratio = f"{row['kd_loss_final_ratio']:.3f}"
    assert row["seeds"] == 3
    assert final in md_row and f"| {ratio} |" in md_row
    assert summary[summary["recipe"] == "minitron"]["kd_loss_final_ratio"].eq(1.0).all()

    run = tmp_path / "run"
    make_fixture_study(run, n_trials=4, ablation=False)
    for name in ("ablation.csv", "ablation.md"):
        (run / name).write_bytes((shipped / name).read_bytes())
    page = render_report(load_report_data(run_dir=run))
    table = page.split("id='ablation'")[1].split("</table>")[0]
    assert final in table and ratio in table
    assert "Command: `python bench/reinit_ablation.py" in page


def test_measurements_surplus_and_dead_worker_trials(tmp_path):
    """Measured tokens/s kept in the study's attributes (how verification stores them), a
    surplus trial and a dead worker's trial with its retry, as the trials table shows them."""
    from optuna.trial import TrialState, create_trial

    from plsearch.search.study import record_measurement

    study = optuna.create_study(study_name="w", storage=f"sqlite:///{tmp_path / 'w.db'}",
                                directions=["maximize", "maximize"])
    attrs = {"arch": PARENT.to_dict(), "rung": 1, "rungs_total": 2, "feasible": True,
             "recipe": "pangu", "predicted_tokens_per_s": 900.0, "accuracy": 0.5}
    study.add_trial(create_trial(state=TrialState.COMPLETE, values=[0.5, 900.0],
                                 user_attrs=attrs))
    record_measurement(study, 0, 1000.0)
    study.add_trial(create_trial(state=TrialState.PRUNED, user_attrs={
        "arch": PARENT.to_dict(), "feasible": True, "surplus": True}))
    study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={"feasible": True}))
    study.add_trial(create_trial(state=TrialState.COMPLETE, values=[0.4, 950.0],
                                 user_attrs={**attrs, "accuracy": 0.4,
                                             "predicted_tokens_per_s": 950.0},
                                 system_attrs={"failed_trial": 2, "retry_history": [2]}))
    table = load_report_data(storage_url=f"sqlite:///{tmp_path / 'w.db'}").trials
    rows = table.set_index("number")
    assert rows.loc[0, "measured_tokens_per_s"] == 1000.0
    assert rows.loc[1, "fail_reason"].startswith("not built")
    assert rows.loc[2, "fail_reason"] == "worker died; its arch was retried by trial 3"
    assert not rows.loc[3, "fail_reason"]
