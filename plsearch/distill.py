"""Recovery by online knowledge distillation (docs/method.md section 5).

The student (a pruned candidate) learns the teacher's (its parent's) next-token
distributions on the same batch: loss = tau^2 * KL(p_teacher || p_student) at temperature
tau, optionally mixed with plain next-token cross-entropy. AdamW with linear warm-up and
cosine decay, gradient clipping and accumulation, bf16 autocast on accelerators that
support it. `kd_retrain` is one linear loop: setup, loss step, explicit loop, result.

Under torchrun (plsearch.distributed) the same call trains data-parallel: every rank
takes its equal share of the rows of each batch, so the global batch, the loss curve and
the updates are those of one process (gradients are averaged by FSDP2); the curve's
losses are averaged over ranks.

    result = kd_retrain(student, teacher, batches, KDConfig(steps=200), seed=0)
    result.curve[-1]  # {"step": 200, "tokens": ..., "kd_loss": ..., "ce_loss": ..., "lr": ...}
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from plsearch import atomic, distributed
from plsearch.errors import ConfigError, TrainingDivergedError

logger = logging.getLogger(__name__)

__all__ = [
    "CURVE_COLUMNS",
    "KDConfig",
    "KDResult",
    "kd_eval",
    "kd_loss",
    "kd_retrain",
    "lr_at",
    "write_loss_curve",
]

# A batch source: an iterable of (batch, seq) LongTensors, or a function of the
# micro-batch index (0, 1, 2, ...) returning one; the latter resumes without replaying.
Batches = Iterable[torch.Tensor] | Callable[[int], torch.Tensor]

CURVE_COLUMNS = ("step", "tokens", "kd_loss", "ce_loss", "lr")


@dataclass(frozen=True)
class KDConfig:
    # Budget: exactly one of steps (optimizer steps) or tokens (student input tokens,
    # converted to steps from the first batch's shape, rounded up).
    steps: int | None = None
    tokens: int | None = None
    lr: float = 1e-3
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_fraction: float = 0.05  # share of steps with linear warm-up (at least 1 step)
    # Short recoveries start from trained weights: no decay pulling them toward zero.
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping
    grad_accum: int = 1  # micro-batches per optimizer step
    temperature: float = 1.0  # tau; the KD term is scaled by tau^2 (Hinton et al.)
    ce_weight: float = 0.0  # loss = (1 - w) * KD + w * CE
    # bf16 autocast: None = on where the device supports it (CUDA with bf16, NPU), off on CPU.
    bf16: bool | None = None
    checkpoint_every: int = 0  # optimizer steps between checkpoints (0 = never)

    def __post_init__(self):
        problems = []
        if (self.steps is None) == (self.tokens is None):
            problems.append("set exactly one budget: steps or tokens")
        for name in ("steps", "tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                problems.append(f"{name} must be >= 1 (got {value})")
        if not self.lr > 0:
            problems.append(f"lr must be > 0 (got {self.lr})")
        if not 0 <= self.min_lr_ratio <= 1:
            problems.append(f"min_lr_ratio must be in [0, 1] (got {self.min_lr_ratio})")
        if not 0 <= self.warmup_fraction < 1:
            problems.append(f"warmup_fraction must be in [0, 1) (got {self.warmup_fraction})")
        if self.grad_accum < 1:
            problems.append(f"grad_accum must be >= 1 (got {self.grad_accum})")
        if not self.temperature > 0:
            problems.append(f"temperature must be > 0 (got {self.temperature})")
        if not 0 <= self.ce_weight <= 1:
            problems.append(f"ce_weight must be in [0, 1] (got {self.ce_weight})")
        if self.grad_clip < 0 or self.weight_decay < 0 or self.checkpoint_every < 0:
            problems.append("grad_clip, weight_decay and checkpoint_every must be >= 0")
        if problems:
            raise ConfigError("invalid KD config: " + "; ".join(problems))


@dataclass(frozen=True)
class KDResult:
    curve: list[dict] = field(repr=False)  # one row per optimizer step, CURVE_COLUMNS
    steps: int
    tokens: int
    seconds: float  # wall time of the loop (summed over resumed segments)
    config: KDConfig

    @property
    def final_kd_loss(self) -> float:
        return self.curve[-1]["kd_loss"] if self.curve else float("nan")


# ---------------------------------------------------------------- loss


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
            tau: float = 1.0) -> torch.Tensor:
    """tau^2 * mean over positions of KL(p_teacher || p_student), both at temperature tau.

    student_logits, teacher_logits: (..., vocab) -> scalar, computed in float32.
    """
    log_p_s = F.log_softmax(student_logits.float() / tau, dim=-1)  # (..., V)
    log_p_t = F.log_softmax(teacher_logits.float() / tau, dim=-1)  # (..., V)
    kl = F.kl_div(log_p_s, log_p_t, log_target=True, reduction="none").sum(-1)  # (...)
    return kl.mean() * tau**2


def next_token_ce(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of positions 0..T-2 predicting tokens 1..T-1.

    logits: (B, T, V), input_ids: (B, T) -> scalar in float32.
    """
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), input_ids[:, 1:].flatten())


def lr_at(step: int, total_steps: int, config: KDConfig) -> float:
    """Linear warm-up to config.lr, then cosine decay to lr * min_lr_ratio at the end."""
    warmup = max(1, round(config.warmup_fraction * total_steps))
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine)


@torch.no_grad()
def kd_eval(student, teacher, batches: Iterable[torch.Tensor], tau: float = 1.0) -> float:
    """Mean KD loss of `student` against `teacher` over `batches`, no training."""
    device = _device_of(student)
    was_training = student.training
    student.eval()
    teacher.eval()
    total, n = 0.0, 0
    try:
        for batch in batches:
            batch = _rows_of_this_rank(batch).to(device)
            total += float(kd_loss(student(input_ids=batch).logits,
                                   teacher(input_ids=batch).logits, tau))
            n += 1
    finally:
        student.train(was_training)
    (total,) = _mean_over_ranks(total)
    return total / max(n, 1)


# ---------------------------------------------------------------- the loop


def kd_retrain(student, teacher, batches: Batches, config: KDConfig, seed: int,
               checkpoint_dir: Path | None = None,
               on_step: Callable[[dict], None] | None = None) -> KDResult:
    """Distill `teacher` into `student` in place; returns the loss curve and wall time.

    Both models must be on the same device. With `checkpoint_dir`, the student, AdamW
    moments and loop state are saved there every `config.checkpoint_every` steps
    (safetensors + JSON) and a later call with the same arguments resumes from them.
    `on_step(row)` is called after each optimizer step (progress bars).
    Raises TrainingDivergedError naming the step when a loss becomes NaN or infinite.
    """
    # --- setup
    torch.manual_seed(seed)
    if checkpoint_dir is not None and distributed.is_distributed():
        raise ConfigError("KD checkpoints are not written under torchrun yet; drop "
                          "--checkpoint-every or run one process")
    device = _device_of(student)
    autocast = _autocast(device, config.bf16)
    teacher.eval()  # its forward runs under no_grad: no graph, no gradients
    student.train()
    # A forward without backward (held-out KL, scoring) leaves FSDP2's root group gathered;
    # AdamW must hold the shards, whose gradients are reduced over the ranks.
    distributed.reshard(student)
    params = [p for p in student.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]  # norms and biases never decay
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr, betas=config.betas, eps=1e-8)
    state = {"step": 0, "tokens": 0, "seconds": 0.0, "total_steps": None, "curve": [],
             "seed": seed, "config": _config_json(config)}
    if checkpoint_dir is not None and (Path(checkpoint_dir) / "state.json").exists():
        state = _load_checkpoint(Path(checkpoint_dir), student, optimizer, state)
        logger.info("resumed KD at step %d from %s", state["step"], checkpoint_dir)
    next_batch = _batch_iterator(batches, start=state["step"] * config.grad_accum)
    first = _take(next_batch, state["step"])
    next_batch = itertools.chain([first], next_batch)
    if state["total_steps"] is None:
        per_step = config.grad_accum * first.numel()
        state["total_steps"] = config.steps or math.ceil(config.tokens / per_step)
    total_steps = state["total_steps"]
    w = config.ce_weight

    # --- loop
    t0, seconds0 = time.perf_counter(), state["seconds"]
    for step in range(state["step"], total_steps):
        lr = lr_at(step, total_steps, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        kd_sum, ce_sum, loss_sum, tokens = 0.0, 0.0, 0.0, 0
        for _ in range(config.grad_accum):
            batch = _take(next_batch, step)  # (B, T), the global batch
            tokens += batch.numel()
            batch = _rows_of_this_rank(batch).to(device)  # (B / world, T)
            with torch.no_grad(), autocast():
                teacher_logits = teacher(input_ids=batch).logits  # (b, T, V)
            with autocast():
                student_logits = student(input_ids=batch).logits  # (b, T, V)
            kd = kd_loss(student_logits, teacher_logits, config.temperature)
            if w > 0:
                ce = next_token_ce(student_logits, batch)
                loss = (1 - w) * kd + w * ce
            else:
                with torch.no_grad():
                    ce = next_token_ce(student_logits.detach(), batch)
                loss = kd
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value) and not distributed.is_distributed():
                _diverged(loss_value, step, lr)
            (loss / config.grad_accum).backward()
            kd_sum += float(kd.detach())
            ce_sum += float(ce.detach())
            loss_sum += loss_value
        kd_sum, ce_sum, loss_sum = _mean_over_ranks(kd_sum, ce_sum, loss_sum)
        if not math.isfinite(loss_sum):  # every rank sees the same mean: all stop together
            _diverged(loss_sum / config.grad_accum, step, lr)
        if config.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm
            if not torch.isfinite(norm):
                raise TrainingDivergedError(
                    f"gradient norm became {float(norm)} at step {step} (lr {lr:.3g}); "
                    "lower the learning rate")
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        state["step"] = step + 1
        state["tokens"] += tokens
        state["seconds"] = seconds0 + time.perf_counter() - t0
        row = {"step": step + 1, "tokens": state["tokens"],
               "kd_loss": kd_sum / config.grad_accum, "ce_loss": ce_sum / config.grad_accum,
               "lr": lr}
        state["curve"].append(row)
        if on_step is not None:
            on_step(row)
        if (checkpoint_dir is not None and config.checkpoint_every
                and state["step"] % config.checkpoint_every == 0
                and state["step"] < total_steps):
            _save_checkpoint(Path(checkpoint_dir), student, optimizer, state)

    # --- result
    student.eval()
    logger.info("KD: %d steps, %d tokens, %.1f s, final KD loss %.4f", state["step"],
                state["tokens"], state["seconds"],
                state["curve"][-1]["kd_loss"] if state["curve"] else float("nan"))
    return KDResult(curve=state["curve"], steps=state["step"], tokens=state["tokens"],
                    seconds=state["seconds"], config=config)


def _diverged(value: float, step: int, lr: float):
    raise TrainingDivergedError(
        f"KD loss became {value} at step {step} (lr {lr:.3g}); lower the learning rate or "
        "check the student and teacher weights for NaN/inf")


def _rows_of_this_rank(batch: torch.Tensor) -> torch.Tensor:
    """This rank's equal share of the batch rows (all of them in one process)."""
    world = distributed.world_size()
    if world == 1:
        return batch
    if batch.shape[0] % world:
        raise ConfigError(f"a batch of {batch.shape[0]} rows cannot be split evenly over "
                          f"{world} ranks; use a batch size that is a multiple of {world}")
    return batch.tensor_split(world)[distributed.rank()]


def _mean_over_ranks(*values: float) -> list[float]:
    """Each value averaged over ranks (unchanged in one process)."""
    world = distributed.world_size()
    if world == 1:
        return list(values)
    total = distributed.all_reduce_sum(torch.tensor(values, dtype=torch.float64))
    return [float(v) / world for v in total]


def write_loss_curve(result: KDResult, path: Path) -> None:
    """The loss curve as CSV (CURVE_COLUMNS), written atomically."""

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=CURVE_COLUMNS)
            writer.writeheader()
            writer.writerows(result.curve)

    atomic.write_file(path, write)


# ---------------------------------------------------------------- helpers


def _device_of(model) -> torch.device:
    return next(model.parameters()).device


def _autocast(device: torch.device, bf16: bool | None):
    """A factory of bf16 autocast contexts, or of null contexts where bf16 is off."""
    if bf16 is None:
        bf16 = device.type == "npu" or (device.type == "cuda" and torch.cuda.is_bf16_supported())
    if not bf16:
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _batch_iterator(batches: Batches, start: int):
    """An iterator of micro-batches from micro-batch index `start` on."""
    if callable(batches):
        return (batches(i) for i in itertools.count(start))
    return itertools.islice(iter(batches), start, None)


def _take(batch_iter, step: int) -> torch.Tensor:
    try:
        batch = next(batch_iter)
    except StopIteration:
        raise ConfigError(f"the batches ran out at step {step}; pass more batches (or a "
                          "function of the batch index) or a smaller budget") from None
    if batch.ndim != 2 or batch.dtype != torch.long:
        raise ConfigError(f"a KD batch must be a (batch, seq) LongTensor of token ids, got "
                          f"{tuple(batch.shape)} {batch.dtype}")
    return batch


def _config_json(config: KDConfig) -> dict:
    return json.loads(json.dumps(asdict(config)))  # tuples -> lists, as stored in JSON


def _save_checkpoint(ckpt: Path, student, optimizer, state: dict) -> None:
    """Student weights and AdamW moments as safetensors, then state.json; atomic swap."""
    from safetensors.torch import save_file, save_model

    tmp = ckpt.with_name(ckpt.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(student, str(tmp / "student.safetensors"))  # drops tied duplicates
    moments = {}
    for name, p in student.named_parameters():
        s = optimizer.state.get(p)
        if s:
            moments[f"exp_avg.{name}"] = s["exp_avg"].detach().cpu().contiguous()
            moments[f"exp_avg_sq.{name}"] = s["exp_avg_sq"].detach().cpu().contiguous()
    save_file(moments, str(tmp / "optimizer.safetensors"))
    (tmp / "state.json").write_text(json.dumps(state), encoding="utf-8")
    shutil.rmtree(ckpt, ignore_errors=True)
    os.replace(tmp, ckpt)


def _load_checkpoint(ckpt: Path, student, optimizer, fresh: dict) -> dict:
    from safetensors.torch import load_file, load_model

    state = json.loads((ckpt / "state.json").read_text(encoding="utf-8"))
    if state.get("config") != fresh["config"] or state.get("seed") != fresh["seed"]:
        raise ConfigError(f"the KD checkpoint in {ckpt} was written with another config or "
                          "seed; rerun with the same settings or delete that folder")
    device = _device_of(student)
    load_model(student, str(ckpt / "student.safetensors"), device=str(device))
    moments = load_file(str(ckpt / "optimizer.safetensors"), device=str(device))
    for name, p in student.named_parameters():
        if f"exp_avg.{name}" in moments:
            optimizer.state[p] = {
                "step": torch.tensor(float(state["step"])),
                "exp_avg": moments[f"exp_avg.{name}"],
                "exp_avg_sq": moments[f"exp_avg_sq.{name}"],
            }
    return state
