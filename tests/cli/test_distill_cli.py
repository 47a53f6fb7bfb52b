"""`plsearch distill` through the CLI: a few KD steps on a tiny pruned student (issue 15)."""

from __future__ import annotations

import csv
import json

import pytest

from plsearch.cli import main


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(teacher folder, student folder recording it as its parent, a text file)."""
    from transformers import AutoModelForCausalLM

    from plsearch.search.testing import write_tiny_files, write_tiny_parent

    root = tmp_path_factory.mktemp("kd")
    teacher = write_tiny_parent(root / "teacher")
    data = write_tiny_files(root / "inputs")["data"]
    student = root / "student"
    assert main(["prune", "--model", str(teacher), "--out", str(student), "--device", "cpu",
                 "--num-hidden-layers", "2", "--calib-data", str(data), "--calib-samples",
                 "4", "--calib-seq-len", "32", "--cache-dir", str(root / "cache")]) == 0
    AutoModelForCausalLM.from_pretrained(student)  # an ordinary HF folder
    return teacher, student, data


def test_distill_cli_runs_kd_and_writes_a_model_folder(pair, tmp_path, capsys):
    teacher, student, data = pair
    capsys.readouterr()
    out = tmp_path / "kd"
    stale = tmp_path / ".kd.k1ll3d.tmp"  # what a killed distill leaves behind
    stale.mkdir()
    assert main(["distill", "--student", str(student), "--out", str(out), "--steps", "3",
                 "--batch-size", "2", "--seq-len", "32", "--data", str(data), "--device",
                 "cpu", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["steps"] == 3 and result["tokens"] == 3 * 2 * 32
    assert result["teacher_weights_hash"] and result["kd_loss_final"] > 0
    assert result["out"] == str(out) and not stale.exists()
    with (out / "loss_curve.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == 3
    record = json.loads((out / "plsearch.json").read_text())
    assert record["kd"]["steps"] == 3 and record["kd"]["teacher"] == str(teacher)
    from plsearch.models import load_model

    model, tokenizer, _ = load_model(out)
    assert model.config.num_hidden_layers == 2 and tokenizer is not None


@pytest.mark.parametrize(("args", "message"), [
    (["--seq-len", "100000"], "exceeds the student's max_position_embeddings (256)"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
])
def test_distill_cli_refuses_bad_sizes_in_one_line(pair, tmp_path, capsys, args, message):
    _, student, data = pair
    capsys.readouterr()
    assert main(["distill", "--student", str(student), "--out", str(tmp_path / "x"),
                 "--steps", "1", "--data", str(data), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "x").exists()
