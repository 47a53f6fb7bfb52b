"""Fast stand-ins for tests and benches: a fake pipeline and latency, tiny parents and files.

    python -m plsearch.search.testing --storage URL --study NAME --out DIR --trials 6

runs `run_search` with the fake objective below: every piece of the search (space, budget,
ladder, storage, resume, attributes) is real except the models, so storage behaviour
(two workers on one PostgreSQL study) is tested in seconds. The fake is labeled as such
in every trial (``recipe`` "fake").
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plsearch.arch import ArchConfig, ArchTraits
from plsearch.search.objective import RetrainResult, RungScore
from plsearch.search.space import Rung, SearchSpace

__all__ = [
    "TINY_PROFILE",
    "TINY_SPACE",
    "FakeLatency",
    "FakePipeline",
    "fake_pipeline",
    "write_tiny_files",
    "write_tiny_parent",
]

# A device profile for tiny models: cheap workload, small alignment.
TINY_PROFILE = """\
name: tiny-cpu
kind: cpu
dtype: float32
threads: 1
alignment: {hidden_multiple: 16, ffn_multiple: 32, kv_heads_multiple: 1}
workload: {batch_size: 1, prompt_len: 16, generated_len: 4}
"""

# A space for write_tiny_parent's model (4 layers, hidden 64, 4 heads / 2 KV, FFN 128).
TINY_SPACE = """\
name: tiny
axes:
  num_hidden_layers: {min: 2, max: 4}
  hidden_size: {min: 32, max: 64, step: 16}
  num_key_value_heads: [1, 2]
  num_attention_heads: [2, 4]
  intermediate_size: {min: 64, max: 128, step: 32}
recipe: pangu
kd: {batch_size: 2, seq_len: 32, lr: 1.0e-3, data: DATA}
ladder:
  promotion_rate: 0.5
  rungs:
    - {kd_steps: 1, limit: 2}
    - {kd_steps: 2, limit: 3}
objective:
  tasks: {plsearch_recall: 1.0, plsearch_add: 1.0}
  perplexity_windows: 2
calibration_samples: 4
"""


@dataclass(frozen=True)
class FakeLatency:
    """tokens/s = scale / parameter count: monotone in every axis, like a real device."""

    scale: float = 1e9
    table_path: Path = Path("fake-latency.csv")
    fingerprint: dict = None  # type: ignore[assignment]
    local: bool = False
    validation: dict = None  # type: ignore[assignment]

    def tokens_per_s(self, arch: ArchConfig, profile=None) -> float:
        return self.scale / arch.num_params(ArchTraits())

    def for_recipe(self, recipe: str) -> FakeLatency:
        return self  # every recipe's candidates cost the same here

    def to_dict(self) -> dict[str, Any]:
        return {"table": "fake", "fingerprint": {}, "local": False, "validation": {}}

    def __post_init__(self):
        object.__setattr__(self, "fingerprint", self.fingerprint or {"backend": "fake"})
        object.__setattr__(self, "validation", self.validation or {})


class FakePipeline:
    """Accuracy grows with size and KD steps; nothing is trained. ``fail_when`` fails archs."""

    recipe = "fake"

    def __init__(self, space: SearchSpace, latency: FakeLatency, profile=None,
                 fail_when=None, sleep: float = 0.0):
        self.space = space
        self.latency = latency
        self.profile = profile
        self.fail_when = fail_when
        self.sleep = sleep

    def predict(self, arch: ArchConfig) -> float:
        return self.latency.tokens_per_s(arch, self.profile)

    def num_params(self, arch: ArchConfig) -> int:
        return arch.num_params(ArchTraits())

    def build(self, arch: ArchConfig) -> dict:
        if self.fail_when is not None and self.fail_when(arch):
            raise RuntimeError(f"fake build failure for {arch}")
        return {"arch": arch, "steps": 0}

    def heldout_kl(self, model: dict) -> tuple[float, float]:
        """Falls with size and KD steps, like a real candidate's."""
        size = math.log(self.num_params(model["arch"]))
        return 40.0 / size / (1 + model["steps"]), 0.01

    def retrain(self, model: dict, start_step: int, end_step: int,
                on_step=None) -> RetrainResult:
        time.sleep(self.sleep)
        model["steps"] = end_step
        curve = [[i + 1, (i + 1) * 64, 1.0 / (start_step + i + 1), 2.0, 1e-3]
                 for i in range(end_step - start_step)]
        for i in range(end_step - start_step):
            if on_step:
                on_step(i + 1)
        return RetrainResult(curve=curve, tokens=64 * (end_step - start_step), seconds=0.0)

    def score(self, model: dict, rung: Rung, on_task=None) -> RungScore:
        arch: ArchConfig = model["arch"]
        size = math.log(self.num_params(arch))
        accuracy = min(1.0, size / 20.0) * model["steps"] / (model["steps"] + 2)
        metric = self.space.objective.metric
        scores = {}
        for task in self.space.objective.tasks:
            if on_task:
                on_task(task)
            scores[task] = {metric: accuracy, f"{metric}_stderr": 0.02,
                            "samples": rung.limit or 0}
        kl, kl_se = self.heldout_kl(model)
        return RungScore(scores=scores, accuracy=accuracy, perplexity=math.exp(5 - 2 * accuracy),
                         accuracy_stderr=0.02 / math.sqrt(len(scores) or 1), kl=kl,
                         kl_stderr=kl_se)

    def save(self, model: dict, out_dir: Path, meta: dict) -> Path:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True)
        (out_dir / "plsearch.json").write_text(json.dumps(meta, default=str), encoding="utf-8")
        return out_dir

    def release(self, model: dict) -> None:
        return None

    def parent_score(self) -> RungScore:
        return RungScore(scores={}, accuracy=0.9, perplexity=3.0, accuracy_stderr=0.01, kl=0.0,
                         kl_stderr=0.0)


def fake_pipeline(model_dir, space, profile, latency, *, seed=0, **_):
    """A pipeline_factory for run_search."""
    return FakePipeline(space, latency, profile)


def write_tiny_parent(folder: Path, seed: int = 0) -> Path:
    """A tiny glm4 parent (4 layers, hidden 64) with the built-in tokenizer (vocab 8192)."""
    from transformers import AutoTokenizer

    from plsearch.families.testing import tiny_model
    from plsearch.models import builtin_parent_dir

    model = tiny_model("glm4", seed=seed, vocab_size=8192, tie_word_embeddings=True,
                       max_position_embeddings=256, pad_token_id=0, bos_token_id=0,
                       eos_token_id=0)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    AutoTokenizer.from_pretrained(str(builtin_parent_dir())).save_pretrained(folder)
    return folder


def write_tiny_files(folder: Path, data_text: str | None = None) -> dict[str, Path]:
    """profile.yaml, space.yaml and data.txt for a tiny search under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "data.txt"
    if data_text is None:
        from plsearch.data import heldout_dir

        rows = (heldout_dir() / "heldout_text.jsonl").read_text(encoding="utf-8").splitlines()
        data_text = "\n\n".join(json.loads(r)["text"] for r in rows if r.strip())
    data.write_text(data_text, encoding="utf-8")
    profile = folder / "profile.yaml"
    profile.write_text(TINY_PROFILE, encoding="utf-8")
    space = folder / "space.yaml"
    space.write_text(TINY_SPACE.replace("DATA", json.dumps(str(data))), encoding="utf-8")
    return {"profile": profile, "space": space, "data": data}


def main(argv: list[str] | None = None) -> int:
    """One fake-objective worker (storage tests)."""
    from plsearch.search.run import SearchOptions, run_search

    p = argparse.ArgumentParser(prog="python -m plsearch.search.testing")
    p.add_argument("--model", required=True)
    p.add_argument("--space", required=True)
    p.add_argument("--device-profile", required=True)
    p.add_argument("--storage")
    p.add_argument("--study", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--trials", type=int, default=6)
    p.add_argument("--budget", default="1.2x")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sleep", type=float, default=0.0, help="seconds per KD rung")
    p.add_argument("--log", help="append one JSON line per trial this worker ran")
    p.add_argument("--grace-period", type=int, default=120)
    args = p.parse_args(argv)

    def factory(model_dir, space, profile, latency, *, seed=0):
        return FakePipeline(space, latency, profile, sleep=args.sleep)

    def on_trial(trial) -> None:
        if args.log:
            with open(args.log, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"number": trial.number, "params": trial.params,
                                     "state": trial.state.name}) + "\n")

    opts = SearchOptions(budget=args.budget, model=args.model, space=args.space,
                         device_profile=args.device_profile, trials=args.trials,
                         storage=args.storage, study=args.study, out=args.out,
                         seed=args.seed, verify=False, command="fake worker",
                         heartbeat_interval=1, grace_period=args.grace_period)
    summary = run_search(opts, on_trial=on_trial, latency=FakeLatency(),
                         pipeline_factory=factory)
    print(json.dumps({"built": summary.built, "front": summary.front}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
