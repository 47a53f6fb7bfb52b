"""`plsearch search` under torchrun with 2 CPU ranks (gloo): rank 0 drives Optuna and
broadcasts each model call, both ranks build, retrain and score the same candidate on
FSDP2-sharded models, and the study equals a 1-process search of the same seed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from plsearch.cli import main
from plsearch.search.study import storage_url

ROOT = Path(__file__).resolve().parents[2]


def _args(tiny_dir, out):
    return ["search", "--budget", tiny_dir["budget"], "--model", str(tiny_dir["model"]),
            "--space", str(tiny_dir["space"]), "--device-profile", str(tiny_dir["profile"]),
            "--latency-db", str(tiny_dir["table"]), "--out", str(out), "--study", "ranks",
            "--no-report", "--no-verify", "--no-screen", "--trials", "2"]


def _verbose(args):
    return ["-v", *args]


def _finished(out):
    study = optuna.load_study(study_name="ranks", storage=storage_url(None, out))
    return [t for t in study.get_trials() if "kd_curve" in t.user_attrs]


@pytest.mark.slow  # about a minute on two shared cores: a 1-process and a 2-rank search
def test_two_rank_search_equals_one_process(tiny_dir, tmp_path, cache_dir, capsys):
    one = tmp_path / "one"
    assert main(_args(tiny_dir, one)) == 0
    capsys.readouterr()
    two = tmp_path / "two"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get(
        "PYTHONPATH", "")]), "TQDM_DISABLE": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node", "2", "-m", "plsearch", *_verbose(_args(tiny_dir, two))],
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, "\n".join(  # each rank's own error, not torchrun's report
        line for line in proc.stderr.splitlines() if "Error" in line or "rror:" in line)
    assert proc.stdout.count("== done in") == 1  # rank 0 alone prints
    assert "rank 1 of 2 on cpu (gloo)" in proc.stderr  # -v: both ranks joined
    built_one = _finished(one)
    built_two = _finished(two)
    assert len(built_two) == len(built_one) >= 1
    curves_differ = []
    for a, b in zip(built_one, built_two):
        assert a.user_attrs["arch"] == b.user_attrs["arch"]  # the same proposals
        losses_a = [row[2] for row in a.user_attrs["kd_curve"]]
        losses_b = [row[2] for row in b.user_attrs["kd_curve"]]
        assert losses_b[0] == pytest.approx(losses_a[0], rel=1e-4)  # the same first step
        if losses_b != pytest.approx(losses_a, rel=1e-4):
            curves_differ.append((a.number, losses_a, losses_b))
    saved = [t.user_attrs["candidate_dir"] for t in built_two if "candidate_dir" in t.user_attrs]
    assert saved and all((Path(d) / "model.safetensors").exists() for d in saved)
    # The search scores each freshly built, sharded candidate (held-out KL, no_grad) before
    # its KD: that forward leaves FSDP2's root group gathered, and KD must reshard it or the
    # root's parameters train on each rank's own gradient (about 2% off by step 2).
    assert not curves_differ, f"2-rank KD curve differs from 1 rank: {curves_differ[0]}"
