"""A table's own whole models timed again (plsearch.latency.drift, `plsearch latency check`)."""

from __future__ import annotations

import json

import pytest

from plsearch.cli import main
from plsearch.config import load_device_profile
from plsearch.errors import LatencyTableError
from plsearch.latency.drift import check_drift, table_models
from plsearch.latency.table import read_table
from plsearch.models import read_config


def _workload_rows(table):
    return table[(table["part"] == "model") & (table["phase"] == "workload")]


def test_the_tables_models_are_its_workload_rows_of_both_model_types(tiny_dir):
    table = read_table(tiny_dir["table"])
    rows = _workload_rows(table)
    models = table_models(table, "glm4", absorbed_type="glm")
    # 2 archs, each as glm4 and as its absorbed glm, and the parent's widths at 3 depths
    assert len(models) == len(rows) == 7
    assert sorted(m.absorbed for m in models) == [False] * 5 + [True] * 2
    assert sorted(m.median_ms for m in models) == sorted(rows["median_ms"])
    assert all((m.workload.batch_size, m.workload.prompt_len, m.workload.generated_len)
               == (1, 16, 4) for m in models)  # the tiny profile's workload, as profiled
    assert len(table_models(table, "glm4")) == 5  # without the absorbed type
    # each is timed as profile-npu planned its row: the same call, context included
    for m, r in zip(sorted(models, key=lambda m: m.median_ms),
                    rows.sort_values("median_ms").to_dict("records")):
        timed = m.measurement
        assert (timed.part, timed.phase) == ("model", "workload")
        assert timed.absorbed == (r["model_type"] == "glm")
        assert (timed.batch_size, timed.seq_len, timed.context, timed.generated_len) == (
            r["batch_size"], r["seq_len"], r["context"], r["generated_len"])
        assert timed.arch.num_hidden_layers == r["num_hidden_layers"]


def test_check_times_each_model_again_and_compares_with_the_table(tiny_dir):
    table = read_table(tiny_dir["table"])
    report = check_drift(table, read_config(tiny_dir["model"]),
                         load_device_profile(tiny_dir["profile"]), rounds=2, repeats=2)
    assert len(report.models) == 7
    for m in report.models:
        assert len(m.samples_ms) == 4  # rounds x repeats
        assert m.drift == pytest.approx(m.now_ms / m.model.median_ms - 1)
        assert 0.1 < m.now_ms / m.model.median_ms < 10  # the same models, minutes apart
    drifts = sorted(m.drift for m in report.models)
    assert report.median_drift == pytest.approx(drifts[3])  # the middle of 7


def test_the_table_not_the_machine_sets_the_reference(tiny_dir, tmp_path):
    """A table that says its models took 10x as long reads as a machine 10x faster now."""
    table = read_table(tiny_dir["table"])
    slow = table.copy()
    models = slow["part"] == "model"
    slow.loc[models, "median_ms"] = slow.loc[models, "median_ms"] * 10
    args = (read_config(tiny_dir["model"]), load_device_profile(tiny_dir["profile"]))
    then = check_drift(table, *args, rounds=1)
    ten = check_drift(slow, *args, rounds=1)
    assert [m.model.median_ms for m in ten.models] == pytest.approx(
        [10 * m.model.median_ms for m in then.models])
    # 10x apart, within what the host's timing noise moves two checks minutes apart
    assert 3 < (1 + then.median_drift) / (1 + ten.median_drift) < 30


def test_cli_check_exits_1_beyond_the_drift_allowed(tiny_dir, capsys):
    base = ["latency", "check", "--latency-db", str(tiny_dir["table"]), "--model",
            str(tiny_dir["model"]), "--device-profile", str(tiny_dir["profile"]), "--rounds", "1"]
    assert main([*base, "--max-drift", "100"]) == 0
    out = capsys.readouterr().out
    assert "its 7 whole models" in out and "within the 10000% allowed" in out
    assert out.count(" ms   now ") == 7 and out.count("(absorbed type)") == 2
    assert main([*base, "--max-drift", "0", "--json"]) == 1  # no timing matches to the bit
    result = json.loads(capsys.readouterr().out)
    assert result["within"] is False and len(result["models"]) == 7
    drifts = sorted(m["drift"] for m in result["models"])
    assert result["median_drift"] == pytest.approx(drifts[3])  # the middle of 7
    assert {m["table_ms"] for m in result["models"]} == set(
        _workload_rows(read_table(tiny_dir["table"]))["median_ms"])


def _check(table, tiny_dir, tmp_path, capsys) -> str:
    path = tmp_path / "t.csv"
    table.to_csv(path, index=False)
    code = main(["latency", "check", "--latency-db", str(path), "--model", str(tiny_dir["model"]),
                 "--device-profile", str(tiny_dir["profile"]), "--rounds", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_tables_that_cannot_be_checked_here_are_refused_in_one_line(tiny_dir, tmp_path, capsys):
    table = read_table(tiny_dir["table"])
    other = table.assign(device_name="Some Other CPU")
    assert "device_name: table has 'Some Other CPU'" in _check(other, tiny_dir, tmp_path, capsys)
    threads = table.assign(threads=2)  # another setup of this device: the search's rule too
    assert "threads: table has '2'" in _check(threads, tiny_dir, tmp_path, capsys)
    vocab = table.assign(vocab_size=4096)
    assert "--model" in _check(vocab, tiny_dir, tmp_path, capsys)
    no_models = table[table["part"] != "model"]
    assert "no whole-model rows" in _check(no_models, tiny_dir, tmp_path, capsys)
    analytic = table.assign(clock="analytic")
    assert "analytic" in _check(analytic, tiny_dir, tmp_path, capsys)
    with pytest.raises(LatencyTableError, match="rounds"):
        check_drift(table, read_config(tiny_dir["model"]),
                    load_device_profile(tiny_dir["profile"]), rounds=0)
