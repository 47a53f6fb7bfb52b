"""A 3-trial search on a tiny model through the CLI, verification, then export."""

from __future__ import annotations

import json

import optuna
import pytest

from plsearch.cli import main
from plsearch.search.run import built_count
from plsearch.search.study import storage_url
from plsearch.search.verify import fully_evaluated, pareto_front


def _search_args(tiny_dir, out, *extra):
    return ["search", "--budget", tiny_dir["budget"], "--model", str(tiny_dir["model"]),
            "--space", str(tiny_dir["space"]), "--device-profile", str(tiny_dir["profile"]),
            "--latency-db", str(tiny_dir["table"]), "--run", str(out), "--study", "e2e",
            "--no-report", *extra]


def test_three_trial_search_then_export(tiny_dir, tmp_path, cache_dir, capsys):
    out = tmp_path / "run"
    # --no-screen: on a busy machine the pre-build timing of tiny models can refuse every
    # arch near the budget; the screen's verdict is tested in test_objective.py and
    # tests/latency/test_screen.py
    assert main(_search_args(tiny_dir, out, "--trials", "3", "--no-screen")) == 0
    printed = capsys.readouterr().out
    assert "predicted" in printed and "measured" in printed  # verification table
    assert "on the front and measured within 15% above the budget: " in printed

    study = optuna.load_study(study_name="e2e", storage=storage_url(None, out))
    trials = study.get_trials()
    assert built_count(trials) == 3
    assert not [t for t in trials if t.state == optuna.trial.TrialState.FAIL], \
        [t.user_attrs.get("fail_reason") for t in trials]
    done = fully_evaluated(trials)
    assert done, "the first trial always climbs every rung"
    for r in done:
        assert r.kd_steps == 2 and len(r.kd_curve) == 2
        assert set(r.scores) >= {"plsearch_recall", "plsearch_add"}
        assert 0.0 <= r.accuracy <= 1.0 and r.perplexity > 1.0
        assert r.accuracy_stderr > 0 and r.kl > 0 and r.kl_stderr >= 0 and r.build_kl > 0
        low, high = r.objective_interval
        assert low < r.objective < high
    need = study.user_attrs["budget"]["tokens_per_s"]
    for t in trials:  # the params Optuna shows are the arch that was built
        arch = t.user_attrs["arch"]
        assert all(arch[name] == value for name, value in t.params.items())
        assert t.user_attrs["predicted_tokens_per_s"] >= need  # only feasible proposals
        if not t.user_attrs["feasible"]:  # measured below the budget before the build
            assert t.user_attrs["screened_tokens_per_s"] > 0
            assert t.user_attrs["rung"] == -1 and "accuracy" not in t.user_attrs
    for r in pareto_front(study):
        assert r.measured_tokens_per_s > 0
    assert study.user_attrs["parent_measured_tokens_per_s"] > 0
    assert study.user_attrs["verification"]["candidates"]
    assert "parent_accuracy" in study.user_attrs and "parent_accuracy_stderr" in study.user_attrs
    assert "archs meet the budget" in printed and "search ETA" in printed
    # the band was ranked by the real build KL, and its best arch was built first
    ranked = study.user_attrs["band_order"]
    assert ranked and all(kl > 0 for _, kl in ranked)
    assert [kl for _, kl in ranked] == sorted(kl for _, kl in ranked)
    assert trials[0].user_attrs["arch"] == ranked[0][0]
    assert "lowest held-out KL right after the build" in printed

    # Export the best candidate meeting the budget: an ordinary HF folder with a card.
    # --best-for reads measured speeds (the low end of each measured speed-up's 95%
    # interval): ask for what the fastest measured candidate reached (timings on a shared
    # machine may fall short of the predicted budget; the front may even be empty: a
    # candidate not shown to meet the budget leaves it).
    measured = [r for r in fully_evaluated(study) if r.measured_tokens_per_s]
    assert all(r.measured_speedup_low is not None for r in measured)
    reached = max(r.measured_speedup_low for r in measured)
    exported = tmp_path / "exported"
    assert main(["export", "--run", str(out), "--best-for", f"{reached * 0.999:.4f}x",
                 "--out", str(exported)]) == 0
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md",
            "plsearch.json"} <= {p.name for p in exported.iterdir()}
    card = (exported / "README.md").read_text()
    for needle in ("parent", "recipe: pangu", "optimizer steps", "predicted", "measured",
                   "95% interval"):
        assert needle in card
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(exported)
    meta = json.loads((exported / "plsearch.json").read_text())
    assert model.config.num_hidden_layers == meta["arch"]["num_hidden_layers"]

    # Running the same command again resumes: nothing to add, nothing re-run.
    assert main(_search_args(tiny_dir, out, "--trials", "3", "--no-screen")) == 0
    assert len(optuna.load_study(study_name="e2e", storage=storage_url(None, out))
               .get_trials()) == len(trials)
    # A non-empty export target is refused with one line.
    assert main(["export", "--run", str(out), "--trial", str(done[0].number),
                 "--out", str(exported)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_latency_table_of_another_device_is_refused(tiny_dir, tmp_path, capsys):
    table = tmp_path / "other.csv"
    text = tiny_dir["table"].read_text().splitlines()
    header = text[0].split(",")
    column = header.index("device_name")
    rows = []
    for line in text[1:]:
        cells = line.split(",")
        cells[column] = "Some Other CPU"
        rows.append(",".join(cells))
    table.write_text("\n".join([text[0], *rows]) + "\n")
    code = main(_search_args(tiny_dir, tmp_path / "run", "--latency-db", str(table)))
    err = capsys.readouterr().err
    assert code == 2
    assert "does not describe this device" in err and "plsearch profile-npu" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("budget", ["1000x", "fast"])
def test_bad_budgets_fail_in_one_line(tiny_dir, tmp_path, capsys, budget):
    args = _search_args(tiny_dir, tmp_path / "run")
    args[args.index(tiny_dir["budget"])] = budget
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("plsearch: error:") and "\n" not in err
