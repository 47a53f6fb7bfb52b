"""KD loop: loss function, convergence toward the teacher, determinism, NaN guard, resume."""

from __future__ import annotations

import copy
import csv

import pytest
import torch

from plsearch.distill import (
    KDConfig,
    kd_eval,
    kd_loss,
    kd_retrain,
    lr_at,
    write_loss_curve,
)
from plsearch.errors import ConfigError, TrainingDivergedError
from plsearch.families.testing import tiny_model

VOCAB = 256


def _batches(seed: int, batch: int = 4, seq: int = 32):
    """A function of the micro-batch index: random token windows, fixed per (seed, index)."""
    def batch_at(i: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed * 100_003 + i)
        return torch.randint(0, VOCAB, (batch, seq), generator=g)
    return batch_at


def _pair():
    teacher = tiny_model("llama", seed=0)
    student = tiny_model("llama", seed=1, num_hidden_layers=2)
    return student, teacher


def test_kd_loss_is_zero_against_itself_and_matches_definition():
    logits = torch.randn(2, 5, 11)
    assert float(kd_loss(logits, logits)) == pytest.approx(0.0, abs=1e-6)
    assert float(kd_loss(logits, logits.clone(), tau=2.0)) == pytest.approx(0.0, abs=1e-6)
    student, teacher = torch.randn(2, 5, 11), torch.randn(2, 5, 11)
    tau = 2.0
    p_t = torch.softmax(teacher / tau, -1)
    expected = (p_t * (p_t.log() - torch.log_softmax(student / tau, -1))).sum(-1).mean() * tau**2
    assert float(kd_loss(student, teacher, tau)) == pytest.approx(float(expected), rel=1e-5)
    assert float(kd_loss(student, teacher)) > 0


def test_kl_of_a_model_against_itself_is_zero():
    model = tiny_model("llama", seed=0)
    batches = [_batches(0)(i) for i in range(2)]
    assert kd_eval(model, copy.deepcopy(model), batches) == pytest.approx(0.0, abs=1e-6)


def test_kd_loss_falls_and_student_moves_toward_teacher():
    student, teacher = _pair()
    held_out = [_batches(seed=99)(i) for i in range(2)]
    before = kd_eval(student, teacher, held_out)
    result = kd_retrain(student, teacher, _batches(0), KDConfig(steps=25, lr=3e-3), seed=0)
    assert result.steps == 25 and len(result.curve) == 25
    assert result.tokens == 25 * 4 * 32
    first, last = result.curve[0], result.curve[-1]
    assert last["kd_loss"] < 0.7 * first["kd_loss"]
    assert kd_eval(student, teacher, held_out) < 0.7 * before
    assert set(first) == {"step", "tokens", "kd_loss", "ce_loss", "lr"}
    assert not student.training and result.seconds > 0


def test_loop_is_deterministic_for_a_seed():
    runs = []
    for _ in range(2):
        student, teacher = _pair()
        config = KDConfig(steps=4, grad_accum=2, ce_weight=0.3)
        result = kd_retrain(student, teacher, _batches(0), config, seed=7)
        runs.append((result.curve, [p.detach().clone() for p in student.parameters()]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))


def test_nan_guard_names_the_step():
    student, teacher = _pair()
    with torch.no_grad():
        teacher.model.embed_tokens.weight[:, 0] = float("inf")
    with pytest.raises(TrainingDivergedError, match="step 0"):
        kd_retrain(student, teacher, _batches(0), KDConfig(steps=3), seed=0)


def test_token_budget_and_lr_schedule():
    student, teacher = _pair()
    config = KDConfig(tokens=3 * 4 * 32 + 1, lr=1e-3, warmup_fraction=0.25)
    result = kd_retrain(student, teacher, [_batches(0)(i) for i in range(8)], config, seed=0)
    assert result.steps == 4
    lrs = [lr_at(s, 100, config) for s in range(100)]
    assert lrs[0] < lrs[24] == pytest.approx(1e-3) and lrs[-1] < 0.2e-3
    with pytest.raises(ConfigError, match="exactly one budget"):
        KDConfig()
    with pytest.raises(ConfigError, match="ran out at step 2"):
        kd_retrain(student, teacher, [_batches(0)(i) for i in range(2)], KDConfig(steps=3),
                   seed=0)


def test_checkpoint_resume_matches_an_uninterrupted_run(tmp_path):
    config = KDConfig(steps=6, checkpoint_every=2)
    student, teacher = _pair()
    straight = kd_retrain(student, teacher, _batches(0), config, seed=0)
    expected = [p.detach().clone() for p in student.parameters()]

    def stop_after_3(row):
        if row["step"] == 3:
            raise KeyboardInterrupt

    student, teacher = _pair()
    with pytest.raises(KeyboardInterrupt):
        kd_retrain(student, teacher, _batches(0), config, seed=0,
                   checkpoint_dir=tmp_path / "ckpt", on_step=stop_after_3)
    student, teacher = _pair()  # fresh process: weights come from the checkpoint
    resumed = kd_retrain(student, teacher, _batches(0), config, seed=0,
                         checkpoint_dir=tmp_path / "ckpt")
    assert resumed.curve == straight.curve
    assert all(torch.equal(a, b) for a, b in zip(expected, student.parameters()))
    with pytest.raises(ConfigError, match="another config"):
        kd_retrain(student, teacher, _batches(0), KDConfig(steps=7), seed=0,
                   checkpoint_dir=tmp_path / "ckpt")

    write_loss_curve(resumed, tmp_path / "curve.csv")
    rows = list(csv.DictReader((tmp_path / "curve.csv").open()))
    assert [int(r["step"]) for r in rows] == list(range(1, 7))
