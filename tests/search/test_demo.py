"""`make demo`'s code path, smoke-tested: one candidate on a tiny parent and space."""

from __future__ import annotations

import json

import optuna


def test_one_candidate_demo_on_a_tiny_space(tiny_dir, tmp_path, cache_dir, capsys):
    from plsearch.demo import main

    out = tmp_path / "demo"
    code = main(["--trials", "1", "--budget", tiny_dir["budget"], "--out", str(out),
                 "--model", str(tiny_dir["model"]), "--space", str(tiny_dir["space"]),
                 "--device-profile", str(tiny_dir["profile"]),
                 "--latency-db", str(tiny_dir["table"]),
                 # feasibility from the predictor alone: timings of a tiny model on a busy
                 # machine must not decide whether the smoke test builds its one candidate
                 "--no-screen"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "matches this machine: no profiling needed" in printed
    assert "measured speed-up" in printed and "demo finished" in printed
    # each of budget_verdict's three verdicts, whole (the middle one carries its reason)
    assert any(f"{verdict} in this timing" in printed for verdict in
               ("meets the budget", "BELOW the budget",
                "not shown to meet the budget (its 95% interval reaches below)"))
    study = optuna.load_study(study_name="demo", storage=f"sqlite:///{out / 'study.db'}")
    assert len([t for t in study.trials if t.user_attrs.get("candidate_dir")]) == 1
    assert (out / "report.html").is_file() and (out / "run.json").is_file()
    meta = json.loads((out / "best" / "plsearch.json").read_text())
    assert meta["arch"]["num_hidden_layers"] >= 1
    assert (out / "best" / "README.md").read_text().startswith("---\n")


def test_the_demo_says_whether_its_final_timing_meets_the_budget():
    from plsearch.demo import budget_verdict

    timed = {"measured": 1.55, "low": 1.51, "exported": 310.0, "parent": 200.0}
    assert budget_verdict(timed, "1.5x") == "meets the budget"
    assert budget_verdict({**timed, "low": 1.42}, "1.5x").startswith("not shown")
    assert budget_verdict({**timed, "measured": 1.49, "low": 1.42}, "1.5x") == "BELOW the budget"
    assert budget_verdict(timed, "300tok/s") == "meets the budget"  # 1.51 x 200 = 302
    assert budget_verdict(timed, "305tok/s").startswith("not shown")
    assert budget_verdict(timed, "320tok/s") == "BELOW the budget"
