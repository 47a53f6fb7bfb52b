"""Scoring: lm-eval on in-memory models, and held-out perplexity.

    scores = evaluate(model, tokenizer, ["plsearch_skills", "plsearch_text"], limit=100)
    scores["plsearch_recall"]["acc"]

The model is wrapped in lm-eval's HFLM as it is (never written to disk) and scored by
lm_eval.evaluator.evaluate with every seed set explicitly. plsearch's
offline tasks (plsearch/tasks/, documented in configs/tasks/README.md) are read from a
task index of that one folder, built once per process; lm-eval's own index of ~15k
tasks (about 20 s to build) is built only when a requested name is not a plsearch task,
so standard tasks such as hellaswag pass through when their data is available offline.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import logging
import math
from collections.abc import Iterable
from pathlib import Path

import torch

from plsearch import distributed
from plsearch.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_TASKS", "TASK_DIR", "Z95", "evaluate", "interval95", "local_task_names",
           "perplexity"]

TASK_DIR = Path(__file__).parent / "tasks"  # package data: YAML tasks + utils.py
DEFAULT_TASKS = ("plsearch_skills", "plsearch_text")
STDERR_BOOTSTRAP_ITERS = 100  # lm-eval's bootstrap draws for metrics with no closed form
Z95 = 1.959964  # two-sided 95% normal quantile: interval = value +- Z95 * stderr


def evaluate(model, tokenizer, tasks: Iterable[str] = DEFAULT_TASKS, limit: int | None = None,
             seed: int = 0, batch_size: int = 32,
             heldout_dir: str | Path | None = None,
             progress: bool = True) -> dict[str, dict[str, float]]:
    """{task or group: {metric: value}} for `model` on lm-eval `tasks`.

    Metric names drop lm-eval's filter suffix (",none"). Each metric with a standard
    error comes with "<metric>_stderr" (lm-eval's: sd / sqrt(n) for accuracy, pooled over
    a group's tasks); `interval95` turns it into a 95% interval. Every entry also has "samples",
    the number of documents scored (so a `limit` is recorded next to the score).
    `seed` seeds python, numpy and torch (globally, as lm-eval does) and the few-shot
    sampler. The model runs in eval mode and is given back in its former mode.
    `heldout_dir` replaces the built-in parent's held-out files for plsearch's tasks.
    `progress=False` hides lm-eval's progress bars (a search scores many candidates).
    """
    tasks = list(tasks)
    if not tasks:
        raise ConfigError("no tasks to evaluate; pass task names such as plsearch_skills")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be a positive number of documents (got {limit})")
    local = local_task_names()
    for name in tasks:  # a misspelt plsearch task: answer without lm-eval's big index
        if name not in local and (hint := difflib.get_close_matches(name, local, n=3)):
            raise ConfigError(f"unknown task {name!r}; did you mean {', '.join(hint)}?")
    manager = _task_manager(any(name not in local for name in tasks),
                            str(heldout_dir) if heldout_dir else None)
    _check_names(tasks, manager)
    was_training = model.training
    model.eval()
    try:
        with _quiet_logger("lm_eval", enabled=not progress):
            output = _run_lm_eval(model, tokenizer, tasks, manager, limit, seed, batch_size,
                                  progress)
    except OSError as exc:  # ConnectionError, FileNotFoundError: a dataset not cached
        if all(name in local for name in tasks):
            raise
        raise ConfigError(f"cannot load the data of {', '.join(tasks)} "
                          f"({str(exc).splitlines()[0][:160]}); standard lm-eval tasks need "
                          "their dataset in the local Hugging Face cache (plsearch is "
                          "offline)") from None
    finally:
        model.train(was_training)
    return _flatten(output)


@contextlib.contextmanager
def _quiet_logger(name: str, enabled: bool):
    """Only errors from logger ``name`` inside the block (lm-eval warns once per call about
    the in-memory model, which a search makes hundreds of)."""
    log = logging.getLogger(name)
    saved = log.level
    if enabled:
        log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(saved)


def _run_lm_eval(model, tokenizer, tasks, manager, limit, seed, batch_size, progress) -> dict:
    """What lm_eval.simple_evaluate does for an in-memory model, minus its environment
    report (torch's collect_env runs subprocesses: ~5 s per call, every candidate)."""
    import random

    import numpy as np
    from lm_eval.evaluator import evaluate as lm_eval_evaluate

    random.seed(seed)  # simple_evaluate's random_seed, numpy_random_seed, torch_random_seed
    np.random.seed(seed)
    torch.manual_seed(seed)
    lm = _hflm(model, tokenizer, batch_size, quiet=not progress)
    try:
        loaded = manager.load(tasks)
    except ValueError as exc:  # e.g. a group and one of its own tasks asked for together
        if "Duplicate task" not in str(exc):
            raise
        raise ConfigError(f"{str(exc).splitlines()[0]}; ask for the group or its tasks, "
                          "not both") from None
    for task in loaded["tasks"].values():
        if task.get_config("num_fewshot") is None:
            task.set_config(key="num_fewshot", value=0)
        task.set_fewshot_seed(seed=seed)  # simple_evaluate's fewshot_random_seed
    # bootstrap_iters > 0 turns lm-eval's standard errors on: mean metrics (acc) get the
    # closed form sd / sqrt(n) at no cost; only metrics without one are bootstrapped.
    return lm_eval_evaluate(lm=lm, task_dict=loaded, limit=limit,
                            bootstrap_iters=STDERR_BOOTSTRAP_ITERS, log_samples=False)


def _hflm(model, tokenizer, batch_size: int, quiet: bool = False):
    """lm-eval's HFLM around the in-memory model; perplexity requests get smaller batches.

    Rolling (perplexity) rows are whole documents of very uneven length, up to the model's
    max_length; in big batches they are mostly padding (on the built-in parent's held-out
    text, batch 32 costs 5x the CPU time of batch 2). Multiple-choice rows are short and
    like big batches. So rolling requests run with batch_size // 16. ``quiet`` turns
    lm-eval's progress bars off.
    """
    from lm_eval.models.huggingface import HFLM

    class _HFLM(HFLM):
        def loglikelihood(self, requests, disable_tqdm: bool = False):
            return super().loglikelihood(requests, disable_tqdm or quiet)

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
            saved = self.batch_size_per_gpu
            self.batch_size_per_gpu = max(1, saved // 16)
            try:
                return super().loglikelihood_rolling(requests, disable_tqdm or quiet)
            finally:
                self.batch_size_per_gpu = saved

    return _HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)


def local_task_names() -> list[str]:
    """Tasks, groups and tags defined by plsearch (no lm-eval default index)."""
    return list(_task_manager(False, None).all_tasks)


@functools.lru_cache(maxsize=4)
def _task_manager(include_defaults: bool, heldout_dir: str | None):
    """A TaskManager over plsearch's task folder (plus lm-eval's tasks if asked), cached."""
    from lm_eval.tasks import TaskManager

    metadata = {"plsearch_heldout_dir": heldout_dir} if heldout_dir else None
    if include_defaults:
        logger.info("building lm-eval's default task index (a standard task was asked for)")
    return TaskManager(include_defaults=include_defaults, include_path=str(TASK_DIR),
                       metadata=metadata)


def _check_names(tasks: list[str], manager) -> None:
    known = manager.all_tasks
    for name in tasks:
        if name not in known:
            hint = difflib.get_close_matches(name, known, n=3)
            did_you_mean = f"did you mean {', '.join(hint)}? " if hint else ""
            raise ConfigError(f"unknown task {name!r}; {did_you_mean}plsearch's offline tasks "
                              f"are {', '.join(local_task_names())}")


def _flatten(output: dict) -> dict[str, dict[str, float]]:
    """lm-eval's results -> {name: {metric: value, metric_stderr: se, "samples": n}}.

    A stderr lm-eval could not compute ("N/A", e.g. one document) is left out, never 0.
    """
    samples = {name: n["effective"] for name, n in output.get("n-samples", {}).items()}
    groups = output.get("group_subtasks", {})
    scores: dict[str, dict[str, float]] = {}
    for name, row in output["results"].items():
        metrics = {}
        for key, value in row.items():
            metric, _, _filter = key.partition(",")
            if not _filter or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            metrics[metric] = float(value)
        if name in groups:
            metrics["samples"] = sum(samples.get(t, 0) for t in groups[name])
        else:
            metrics["samples"] = samples.get(name, 0)
        scores[name] = metrics
    return scores


def interval95(value: float, stderr: float) -> tuple[float, float]:
    """The normal-approximation 95% interval value +- 1.96 stderr."""
    return value - Z95 * stderr, value + Z95 * stderr


# ---------------------------------------------------------------- perplexity


@torch.inference_mode()
def perplexity(model, tokenizer, texts: Iterable[str], seq_len: int = 256,
               batch_size: int = 8) -> float:
    """Token-level perplexity of `texts` (each prefixed by EOS), in non-overlapping windows.

    Every text is cut into windows of seq_len + 1 tokens that overlap by one token, so
    each token after the first is predicted exactly once, with at most seq_len of context.
    Under torchrun the windows are shared out over the ranks and the sums added up.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    windows: list[list[int]] = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids = [tokenizer.eos_token_id] + ids if tokenizer.eos_token_id is not None else ids
        windows += [ids[s : s + seq_len + 1] for s in range(0, len(ids) - 1, seq_len)]
    windows = [w for w in windows if len(w) >= 2]
    windows.sort(key=len)  # similar lengths batch with little padding
    # Under torchrun each rank scores every world-th chunk; the sums are added up.
    chunks = [windows[s : s + batch_size] for s in range(0, len(windows), batch_size)]
    rank, world = distributed.rank(), distributed.world_size()
    mine = chunks[rank::world]
    if distributed.is_sharded(model) and chunks:  # every rank runs as many forwards (FSDP)
        mine += [None] * (-(-len(chunks) // world) - len(mine))
    nll, count = 0.0, 0
    try:
        for chunk in mine:
            ids, mask = _padded(chunk or chunks[0], device)  # (B, W) each
            logits = model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1]).logits
            if chunk is None:  # a padding forward: not counted
                continue
            targets = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)  # (B, W-1)
            nll += float(torch.nn.functional.cross_entropy(
                logits.float().flatten(0, 1), targets.flatten(), ignore_index=-100,
                reduction="sum"))
            count += int(mask[:, 1:].sum())
    finally:
        model.train(was_training)
    if world > 1:
        nll, count = distributed.all_reduce_sum(torch.tensor([nll, count], dtype=torch.float64,
                                                             device=device)).tolist()
    if count == 0:
        raise ConfigError("perplexity needs at least one text of two or more tokens")
    return math.exp(nll / count)


def _padded(chunk: list[list[int]], device) -> tuple[torch.Tensor, torch.Tensor]:
    """Token windows right-padded with 0 to the longest: (ids, mask), both (B, W)."""
    width = max(map(len, chunk))
    ids = torch.zeros(len(chunk), width, dtype=torch.long)
    mask = torch.zeros(len(chunk), width, dtype=torch.long)
    for row, w in enumerate(chunk):
        ids[row, : len(w)] = torch.tensor(w)
        mask[row, : len(w)] = 1
    return ids.to(device), mask.to(device)
