"""The real pipeline behind a trial: the parent, its importance, KD data, scoring, speed.

    latency = load_latency(profile, latency_db=None)         # table -> predictor, checked
    pipeline = load_pipeline(model_dir, space, profile, latency, seed=0)
    model = pipeline.build(arch); pipeline.retrain(model, 0, 30); pipeline.score(model, rung)

Everything a trial needs is prepared once per process: the parent (the KD teacher), its
importance scores (cached on disk per parent + data), the calibration windows, the KD
windows (the same for every candidate, so candidates are compared on equal data), and the
held-out windows for perplexity.
"""

from __future__ import annotations

import gc
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch

from plsearch import distributed
from plsearch.arch import ArchConfig
from plsearch.config import DeviceProfile
from plsearch.errors import ConfigError, DeviceError

# One home per concept: the table lookup, the device's threads and timer and the one way to
# measure a whole model live in plsearch.latency; re-exported here for the search's callers.
from plsearch.latency.lookup import Latency, load_latency
from plsearch.latency.timers import device_threads, torch_device
from plsearch.search.objective import RetrainResult, RungScore
from plsearch.search.space import Rung, SearchSpace

__all__ = ["Latency", "RealPipeline", "device_threads", "load_latency", "load_pipeline",
           "training_device"]

logger = logging.getLogger(__name__)

TEACHER_CACHE_BYTES = 512 * 2**20  # the parent's held-out logits are kept up to this size


# ---------------------------------------------------------------- device


def training_device(profile: DeviceProfile) -> torch.device:
    """Where candidates are built and retrained: the profile's accelerator if here, else cpu."""
    try:
        return torch_device(profile.kind)  # the one device choice (plsearch.latency.timers)
    except DeviceError:
        return torch.device("cpu")


# ---------------------------------------------------------------- pipeline


class RealPipeline:
    """Build (prune), retrain (KD from the parent) and score candidates of one parent."""

    def __init__(self, *, parent, tokenizer, model_dir: Path, importance, space: SearchSpace,
                 profile: DeviceProfile, latency: Latency, calib: torch.Tensor,
                 kd_windows: torch.Tensor, ppl_windows: torch.Tensor, seed: int,
                 builder=None):
        from plsearch.families import get_family
        from plsearch.prune import Recipe

        self.parent = parent
        self.tokenizer = tokenizer
        self.model_dir = model_dir
        self.family = get_family(parent.config)
        self.traits = self.family.traits(parent.config)
        self.importance = importance
        self.space = space
        self.profile = profile
        self.latency = latency
        self.calib = calib
        self.kd_windows = kd_windows
        self.ppl_windows = ppl_windows
        self.seed = seed
        self.recipe = space.recipe
        self._recipe = Recipe.preset(space.recipe)
        self.device = next(parent.parameters()).device
        # What candidates are cut from: the parent itself, or under torchrun (where the
        # parent is sharded as the KD teacher) the parent streamed from its folder.
        self.builder = builder if builder is not None else parent
        self.builder_device = next(self.builder.parameters()).device
        # The parent's logits on the held-out windows, per batch of 8: the same for every
        # candidate, so computed once (over half of a held-out pass for the built-in
        # parent), unless they would take more than TEACHER_CACHE_BYTES.
        self._teacher: list[torch.Tensor] | None = None

    # -- the Pipeline protocol

    def predict(self, arch: ArchConfig) -> float:
        return self.latency.tokens_per_s(arch, self.profile)

    def num_params(self, arch: ArchConfig) -> int:
        return arch.num_params(self.traits)

    def build(self, arch: ArchConfig):
        from plsearch.prune import build_candidate

        with torch.no_grad():
            model, _report = build_candidate(self.builder, self.importance, arch, self._recipe,
                                             calib_batches=self.calib.to(self.builder_device))
        return distributed.shard_model(  # .to(device) in one process
            model, self.device, param_dtype=_gather_dtype(self.device),
            activation_checkpointing=self.space.kd.activation_checkpointing)

    def heldout_kl(self, model) -> tuple[float, float]:
        """(KL(parent || model), its stderr) over the held-out windows, nats per token."""
        kl, kl_se, _ = self.heldout_fit(model)
        return kl, kl_se

    def retrain(self, model, start_step: int, end_step: int,
                on_step: Callable[[int], None] | None = None) -> RetrainResult:
        from plsearch.distill import KDConfig, kd_retrain

        kd = self.space.kd
        config = KDConfig(steps=end_step - start_step, lr=kd.lr,
                          warmup_fraction=kd.warmup_fraction, temperature=kd.temperature,
                          ce_weight=kd.ce_weight, grad_clip=kd.grad_clip)
        batch = kd.batch_size
        windows = self.kd_windows

        def batch_at(i: int) -> torch.Tensor:  # the same windows for every candidate
            row = ((start_step + i) * batch) % len(windows)
            return windows[row : row + batch]

        step_hook = (lambda row: on_step(int(row["step"]))) if on_step else None
        result = kd_retrain(model, self.parent, batch_at, config, seed=self.seed + start_step,
                            on_step=step_hook)
        curve = [[r["step"], r["tokens"], r["kd_loss"], r["ce_loss"], r["lr"]]
                 for r in result.curve]
        return RetrainResult(curve=curve, tokens=result.tokens, seconds=result.seconds)

    def score(self, model, rung: Rung,
              on_task: Callable[[str], None] | None = None) -> RungScore:
        """The objective's tasks (one lm-eval call: a call per task costs three times as
        much on a small model), the weighted accuracy with its propagated stderr, and the
        held-out KL and perplexity."""
        from plsearch.evaluate import evaluate
        from plsearch.search.scoring import task_stderr, weighted_accuracy

        start = time.perf_counter()
        objective = self.space.objective
        if on_task:
            on_task(", ".join(objective.tasks))
        scores = evaluate(model, self.tokenizer, list(objective.tasks), limit=rung.limit,
                          seed=self.seed, progress=False)
        missing = [t for t in objective.tasks if objective.metric not in scores.get(t, {})]
        if missing:
            raise ConfigError(f"tasks {missing} report no {objective.metric!r} metric; set "
                              "objective.metric in the space file to one they report")
        stderr_key = f"{objective.metric}_stderr"
        for task in objective.tasks:  # lm-eval's stderr, else the binomial one, kept per task
            se = task_stderr(scores[task], objective.metric)
            if stderr_key not in scores[task] and se is not None:
                scores[task][stderr_key] = se
        accuracy, accuracy_se = weighted_accuracy(scores, objective.tasks, objective.metric)
        if on_task:
            on_task("held-out KL to the parent")
        kl, kl_se, ppl = self.heldout_fit(model)
        return RungScore(scores=scores, accuracy=float(accuracy), perplexity=ppl,
                         seconds=time.perf_counter() - start, accuracy_stderr=accuracy_se,
                         kl=kl, kl_stderr=kl_se)

    def save(self, model, out_dir: Path, meta: dict) -> Path:
        from plsearch.prune import save_candidate

        if distributed.is_sharded(model):  # gathered on rank 0, the only rank that writes
            state = distributed.full_state_dict(model)
            if not distributed.is_main():
                return out_dir
            model = distributed.unsharded_copy(model, state)
        return save_candidate(model, self.tokenizer, out_dir, meta)

    def release(self, model) -> None:
        """Free a candidate. Reference counting frees it (a built, distilled and scored
        candidate holds no reference cycle), so a full collection, 0.4 s a call on a CPU
        (the band ranking releases ~190 archs), runs only where the allocator's cache must
        be emptied too."""
        del model
        if self.device.type in ("cuda", "npu"):
            gc.collect()
            getattr(torch, self.device.type).empty_cache()  # torch.npu: from torch_npu

    # -- helpers

    @torch.no_grad()  # not inference_mode: FSDP2 would keep inference-mode unsharded
    def heldout_fit(self, model) -> tuple[float, float, float]:  # params that KD then trains
        """(KL(parent || model), its stderr over windows, perplexity) on held-out windows.

        One pass: the KL is distill.kd_loss (temperature 1) per window, the perplexity the
        model's own next-token cross-entropy on the same logits (nan without windows)."""
        from plsearch.distill import kd_loss

        if len(self.ppl_windows) == 0:
            return float("nan"), float("nan"), float("nan")
        was_training = model.training
        model.eval()
        per_window: list[float] = []
        nll, count = 0.0, 0
        try:
            for k, batch in enumerate(self.ppl_windows.split(8)):
                batch = batch.to(self.device)
                inputs = batch[:, :-1]
                logits = model(input_ids=inputs).logits.float()  # (B, T-1, V)
                teacher = logits if model is self.parent else self._teacher_logits(k, inputs)
                per_window += [float(kd_loss(logits[i], teacher[i])) for i in range(len(batch))]
                nll += float(torch.nn.functional.cross_entropy(
                    logits.flatten(0, 1), batch[:, 1:].flatten(), reduction="sum"))
                count += batch[:, 1:].numel()
        finally:
            model.train(was_training)
        n = len(per_window)
        mean = sum(per_window) / n
        sd = math.sqrt(sum((v - mean) ** 2 for v in per_window) / (n - 1)) if n > 1 else 0.0
        return mean, sd / math.sqrt(n), math.exp(nll / count)

    def _teacher_logits(self, k: int, inputs: torch.Tensor) -> torch.Tensor:
        """The parent's logits on held-out batch ``k`` (``inputs``), kept after the first
        pass when all batches' together fit in TEACHER_CACHE_BYTES. Under torchrun every
        rank makes the same calls, so every rank caches at the same pass."""
        if self._teacher is not None and k < len(self._teacher):
            return self._teacher[k]
        logits = self.parent(input_ids=inputs).logits.float()
        size = self.ppl_windows.shape[0] * logits[0].numel() * logits.element_size()
        if size <= TEACHER_CACHE_BYTES:
            if self._teacher is None:
                self._teacher = []
            if k == len(self._teacher):
                self._teacher.append(logits)
        return logits

    def parent_score(self) -> RungScore:
        """The parent's own scores at the last rung's settings (the report's reference)."""
        return self.score(self.parent, self.space.ladder.rungs[-1])


def _load_distributed(model_dir, space: SearchSpace, device):
    """Under torchrun: (teacher sharded over the ranks with FSDP2, tokenizer, folder, the
    parent streamed from its folder on the CPU, which candidates are cut from)."""
    from transformers import AutoTokenizer

    from plsearch.models import resolve_model_dir
    from plsearch.prune.stream import open_streamed

    if space.kd.batch_size % distributed.world_size():
        raise ConfigError(f"kd.batch_size {space.kd.batch_size} must be a multiple of the "
                          f"{distributed.world_size()} ranks; change the space file")
    model_dir = resolve_model_dir(model_dir)
    tokenizer = None
    if (model_dir / "tokenizer.json").exists() or (model_dir / "tokenizer_config.json").exists():
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    return (distributed.load_sharded(model_dir, device, param_dtype=_gather_dtype(device)),
            tokenizer, model_dir, open_streamed(model_dir))


def _gather_dtype(device: torch.device) -> torch.dtype | None:
    """FSDP2's compute dtype under torchrun: bf16 on accelerators (where KD runs under bf16
    autocast anyway), float32 on CPU; shards and AdamW state stay float32."""
    return torch.bfloat16 if device.type in ("cuda", "npu") else None


def load_pipeline(model_dir: Path, space: SearchSpace, profile: DeviceProfile, latency: Latency,
                  *, seed: int = 0, progress: bool = False) -> RealPipeline:
    """Load the parent and prepare everything trials share."""
    import numpy as np

    from plsearch.data import (
        data_id,
        heldout_dir,
        sample_windows,
        split_stream,
        token_stream,
    )
    from plsearch.families import get_family
    from plsearch.importance import ImportanceKey, compute_importance
    from plsearch.models import load_model, weights_hash

    device = distributed.setup(training_device(profile))  # under torchrun: this rank's
    if distributed.is_distributed():
        parent, tokenizer, model_dir, builder = _load_distributed(model_dir, space, device)
    else:
        parent, tokenizer, model_dir = load_model(model_dir)
        parent, builder = parent.to(device).eval(), None
    if tokenizer is None:
        raise ConfigError(f"{model_dir} has no tokenizer; the search needs one for KD data "
                          "and evaluation: save the tokenizer into the model folder")
    kd = space.kd
    stream = token_stream(tokenizer, kd.data, seed=seed)
    builtin = kd.data in (None, "", "builtin")
    if builtin:
        train = stream
        texts = [line for line in (heldout_dir() / "heldout_text.jsonl").read_text(
            encoding="utf-8").splitlines() if line.strip()]
        import json

        heldout = np.concatenate([np.asarray(
            [tokenizer.eos_token_id] + tokenizer(json.loads(t)["text"],
                                                 add_special_tokens=False)["input_ids"],
            dtype=np.int32) for t in texts])
    else:
        train, heldout = split_stream(stream, 0.05)
    calib = sample_windows(train, space.calibration_samples, kd.seq_len, seed)
    key = ImportanceKey(parent_hash=weights_hash(model_dir), data=data_id(kd.data),
                        num_samples=space.calibration_samples, seq_len=kd.seq_len, seed=seed)
    family = get_family(parent.config)
    importance = compute_importance(parent, calib.to(device), family, key=key,
                                    progress=progress)
    steps = space.ladder.rungs[-1].kd_steps
    kd_windows = sample_windows(train, steps * kd.batch_size, kd.seq_len, seed + 1)
    n_ppl = space.objective.perplexity_windows
    if n_ppl and len(heldout) > kd.seq_len + 1:
        ppl_windows = sample_windows(heldout, n_ppl, kd.seq_len + 1, seed + 2)
    else:
        ppl_windows = torch.zeros(0, kd.seq_len + 1, dtype=torch.long)
    return RealPipeline(parent=parent, tokenizer=tokenizer, model_dir=model_dir,
                        importance=importance, space=space, profile=profile,
                        latency=latency, calib=calib.to(device),
                        kd_windows=kd_windows.to(device), ppl_windows=ppl_windows,
                        seed=seed, builder=builder)
