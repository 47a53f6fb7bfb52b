"""Two CPU ranks (gloo) under torchrun: FSDP2 KD, importance and scores equal one
process's; `plsearch distill` writes only on rank 0, and a dying rank leaves no output.

Tolerances (measured differences are about 1e-6 relative: float32 sums in another order):
KD losses per step and the held-out KD loss within 1e-4 relative; importance within 1e-5;
perplexity and lm-eval scores within 1e-6; the trained student's weights within 1e-5.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).parent
ROOT = HERE.parents[1]


def _torchrun(script: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), os.environ.get("PYTHONPATH", "")]), "TQDM_DISABLE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc-per-node", "2", str(script), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


@pytest.fixture(scope="module")
def one_rank():
    sys.path.insert(0, str(HERE))
    try:
        import worker
    finally:
        sys.path.remove(str(HERE))
    return worker.run_checks()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("two") / "out.json"
    proc = _torchrun(HERE / "worker.py", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_kd_follows_the_one_rank_curve_at_the_same_global_batch(one_rank, two_ranks):
    assert (one_rank["world"], two_ranks["world"]) == (1, 2)
    assert two_ranks["tokens"] == one_rank["tokens"]
    assert len(two_ranks["curve"]) == len(one_rank["curve"]) == 6
    # Tolerance 1e-4 relative: float32 sums in another order over 2 ranks (measured 3e-6).
    # The worker scores the student before KD, as a search does (that once cost 2% here).
    assert two_ranks["kd_eval_before"] == pytest.approx(one_rank["kd_eval_before"], rel=1e-4)
    assert two_ranks["curve"] == pytest.approx(one_rank["curve"], rel=1e-4)
    assert one_rank["curve"][-1] < one_rank["curve"][0]  # it trains
    assert two_ranks["kd_eval"] == pytest.approx(one_rank["kd_eval"], rel=1e-4)
    assert two_ranks["student_sum"] == pytest.approx(one_rank["student_sum"], rel=1e-5)


def test_importance_and_scores_equal_one_rank_values(one_rank, two_ranks):
    assert two_ranks["importance_tokens"] == one_rank["importance_tokens"] == 6 * 16
    for name, values in one_rank["importance"].items():
        torch.testing.assert_close(torch.tensor(two_ranks["importance"][name]),
                                   torch.tensor(values), rtol=1e-5, atol=1e-7, msg=name)
    assert two_ranks["perplexity"] == pytest.approx(one_rank["perplexity"], rel=1e-6)
    assert two_ranks["scores"].keys() == one_rank["scores"].keys()
    for task, metrics in one_rank["scores"].items():
        assert two_ranks["scores"][task] == pytest.approx(metrics, rel=1e-6)


def _tiny_pair(tmp_path: Path) -> tuple[Path, Path]:
    from transformers import AutoTokenizer

    from plsearch.families.testing import tiny_model
    from plsearch.models import builtin_parent_dir

    tokenizer = AutoTokenizer.from_pretrained(str(builtin_parent_dir()))
    folders = []
    for name, seed, layers in (("teacher", 0, 3), ("student", 1, 2)):
        model = tiny_model("qwen3", seed=seed, vocab_size=len(tokenizer),
                           num_hidden_layers=layers, tie_word_embeddings=name == "teacher")
        model.save_pretrained(tmp_path / name)
        tokenizer.save_pretrained(tmp_path / name)
        folders.append(tmp_path / name)
    return folders[0], folders[1]


def _distill_args(teacher: Path, student: Path, out: Path) -> list[str]:
    return ["distill", "--student", str(student), "--teacher", str(teacher), "--out", str(out),
            "--steps", "4", "--batch-size", "4", "--seq-len", "16", "--device", "cpu"]


def test_distill_cli_writes_once_and_a_dying_rank_leaves_no_output(tmp_path):
    from plsearch.models import load_model

    teacher, student = _tiny_pair(tmp_path)
    out = tmp_path / "retrained"
    proc = _torchrun(ROOT / "plsearch" / "__main__.py", *_distill_args(teacher, student, out),
                     "--dtype", "bfloat16", "--activation-checkpointing")  # FSDP2 mixed precision
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("wrote ") == 1  # rank 0 only
    record = json.loads((out / "plsearch.json").read_text())
    assert record["kd"]["ranks"] == 2 and record["kd"]["steps"] == 4
    model, _, _ = load_model(out)  # an ordinary HF folder, no FSDP class
    assert type(model).__name__ == "Qwen3ForCausalLM"

    dead = tmp_path / "dead"
    proc = _torchrun(HERE / "dying_rank.py", *_distill_args(teacher, student, dead))
    assert proc.returncode != 0
    assert "rank 1: simulated crash" in proc.stderr
    assert "exitcode  : 3" in proc.stderr or "exit code 3" in proc.stderr, proc.stderr[-3000:]
    assert not dead.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".dead")]
