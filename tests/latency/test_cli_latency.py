"""`plsearch profile-npu` and `plsearch latency fit|predict` from the command line."""

from __future__ import annotations

import builtins
import json
import subprocess
import sys

import pytest
from latency_synthetic import BASE, row, synthetic_rows

from plsearch.cli import main
from plsearch.config import Workload
from plsearch.latency.predictor import fit_predictor, predict_latency, validate_predictor
from plsearch.latency.table import append_rows, read_table


@pytest.fixture
def db(tmp_path):
    rows = synthetic_rows()
    predictor = fit_predictor(append_rows(tmp_path / "fit.csv", rows))
    for layers, error in ((2, 1.05), (4, 0.8), (6, 1.0)):
        arch = BASE.replace(num_hidden_layers=layers)
        ms = predict_latency(arch, Workload(2, 16, 4), predictor).total_ms * error
        rows.append(row("model", "workload", arch, layers, 2, 16, 19, ms, generated=4))
    return append_rows(tmp_path / "t.csv", rows) is not None and tmp_path / "t.csv"


def test_fit_reports_held_out_error_as_json(db, capsys):
    assert main(["latency", "fit", "--latency-db", str(db), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["validation_models"] == 3
    report = validate_predictor(fit_predictor(read_table(db)), read_table(db))
    assert result["median_abs_pct_error"] == pytest.approx(100 * report.median_ape())
    assert result["prefill_median_abs_pct_error"] is None  # no prefill rows here
    assert result["share_within_10pct"] == pytest.approx(report.share_within(0.10))
    assert result["engine"] == "hf-generate" and result["analytic"] is False
    assert (db.parent / "t.predictor.json").exists()


def test_fit_prints_a_readable_report(db, capsys):
    assert main(["latency", "fit", "--latency-db", str(db)]) == 0
    out = capsys.readouterr().out
    report = validate_predictor(fit_predictor(read_table(db)), read_table(db))
    assert f"median |error| {100 * report.median_ape():.1f}%" in out
    assert f"within +-10%: {100 * report.share_within(0.10):.0f}% of 3" in out
    assert "measured, engine hf-generate" in out


def test_predict_json_for_an_arch_file(db, tmp_path, capsys):
    arch_path = tmp_path / "arch.json"
    BASE.replace(num_hidden_layers=3).to_json(arch_path)
    assert main(["latency", "predict", "--latency-db", str(db), "--arch", str(arch_path),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("tokens_per_s", "prefill_ms", "decode_ms_per_token"):
        assert result[key] > 0
    assert result["profile"] == "cpu" and result["arch"]["num_hidden_layers"] == 3
    assert set(result["breakdown"]) == {"prefill_blocks_ms", "prefill_head_ms",
                                        "decode_blocks_ms", "decode_head_ms"}


def test_predict_from_a_saved_predictor_and_a_model_folder(db, tmp_path, capsys):
    from plsearch.families.testing import tiny_model

    tiny_model("glm4").save_pretrained(tmp_path / "m")
    assert main(["latency", "fit", "--latency-db", str(db), "--out", str(tmp_path / "p.json"),
                 "--json"]) == 0
    capsys.readouterr()
    assert main(["latency", "predict", "--predictor", str(tmp_path / "p.json"),
                 "--model", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    assert "tokens/s" in out and "decode_blocks_ms" in out


def test_predict_an_absorbed_arch_with_its_own_in_model_cost(db, tmp_path, capsys):
    # the same whole models timed as glm (glm4 with its post-norms absorbed): 10% faster
    rows = read_table(db).to_dict("records")
    rows += [{**r, "model_type": "glm", "median_ms": 0.9 * r["median_ms"]}
             for r in rows if r["part"] == "model"]
    append_rows(tmp_path / "both.csv", rows)
    arch_path = tmp_path / "arch.json"
    BASE.replace(num_hidden_layers=3).to_json(arch_path)
    speeds = {}
    for flag in ([], ["--absorbed"]):
        assert main(["latency", "predict", "--latency-db", str(tmp_path / "both.csv"),
                     "--arch", str(arch_path), "--json", *flag]) == 0
        result = json.loads(capsys.readouterr().out)
        speeds[result["absorbed"]] = result["tokens_per_s"]
    assert speeds[True] > speeds[False] * 1.03


def test_corrupt_db_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("name,score\nx,1\n")
    assert main(["latency", "fit", "--latency-db", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a plsearch latency table" in err


def test_profile_npu_without_torch_npu_exits_2(monkeypatch, capsys):
    real_import = builtins.__import__

    def no_torch_npu(name, *args, **kwargs):
        if name == "torch_npu":
            raise ImportError("No module named 'torch_npu'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch_npu)
    assert main(["profile-npu", "--device", "npu", "--quick"]) == 2
    err = capsys.readouterr().err
    assert "pip install plsearch[npu]" in err and "CANN toolkit" in err


@pytest.mark.slow
@pytest.mark.skipif(
    __import__("importlib").util.find_spec("torch_npu") is not None,
    reason="torch_npu is installed here",
)
def test_profile_npu_process_exit_code():
    proc = subprocess.run([sys.executable, "-m", "plsearch", "profile-npu", "--device", "npu"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 2
    assert "pip install plsearch[npu]" in proc.stderr and "Traceback" not in proc.stderr


def test_profile_rejects_a_profile_of_another_device(capsys):
    assert main(["profile-npu", "--device", "cpu", "--device-profile", "h200"]) == 2
    assert "is for cuda" in capsys.readouterr().err


@pytest.mark.slow
def test_profile_quick_on_a_tiny_model_then_fit(tmp_path, capsys):
    from plsearch.families.testing import tiny_model

    tiny_model("glm4").save_pretrained(tmp_path / "m")
    profile = tmp_path / "tiny.yaml"
    profile.write_text("name: tiny\nkind: cpu\nthreads: 1\ncpu_clock: thread\n"
                       "alignment: {hidden_multiple: 16, ffn_multiple: 32}\n"
                       "workload: {batch_size: 1, prompt_len: 16, generated_len: 4}\n")
    out = tmp_path / "t.csv"
    assert main(["profile-npu", "--device", "cpu", "--device-profile", str(profile),
                 "--model", str(tmp_path / "m"), "--quick", "--latency-db", str(out),
                 # the pipeline, not the noise filter (tested on its own): a loaded CI
                 # machine must not refuse the rows this test needs
                 "--max-spread", "100"]) == 0
    assert main(["latency", "fit", "--latency-db", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["validation_models"] >= 1


def test_predict_defaults_to_the_builtin_parent(db, capsys):
    assert main(["latency", "predict", "--latency-db", str(db), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["arch"]["num_hidden_layers"] == 8 and result["tokens_per_s"] > 0
