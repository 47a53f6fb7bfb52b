"""What the 2-rank tests run under torchrun, and in one process for the reference values.

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/distributed/worker.py OUT.json

On tiny models, with fixed seeds: KD (student and teacher sharded with FSDP2, batches
split over the ranks), importance on the sharded teacher (micro-batches shared out, one
rank padded), perplexity and lm-eval scores of the sharded teacher. Rank 0 writes OUT.json.
The same `run_checks` called in a plain process (no torchrun) gives the 1-rank values.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from plsearch import distributed
from plsearch.families.testing import tiny_model

VOCAB = 8192  # the built-in parent's tokenizer, so perplexity and lm-eval can run
KD_STEPS = 6
GLOBAL_BATCH = 4
TEXTS = ["The quick brown fox jumps over the lazy dog. " * 4,
         "def add(a, b):\n    return a + b\n" * 3, "Brackets ( [ ] ) are balanced. " * 5]


def _batch_at(i: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1000 + i)
    return torch.randint(0, VOCAB, (GLOBAL_BATCH, 16), generator=g)


def _models():
    teacher = tiny_model("qwen3", seed=0, vocab_size=VOCAB)
    student = tiny_model("qwen3", seed=1, vocab_size=VOCAB, num_hidden_layers=2,
                         tie_word_embeddings=True)  # tied: one FSDP group; untied teacher: three
    device = torch.device("cpu")
    return (distributed.shard_model(student, device), distributed.shard_model(teacher, device))


def run_checks(with_lm_eval: bool = True) -> dict:
    from transformers import AutoTokenizer

    from plsearch.distill import KDConfig, kd_eval, kd_retrain
    from plsearch.evaluate import evaluate, perplexity
    from plsearch.importance import compute_importance
    from plsearch.models import builtin_parent_dir

    torch.set_num_threads(1)
    student, teacher = _models()
    held_out = [_batch_at(10_000 + i) for i in range(2)]
    # As a search does: score the fresh student (a forward with no backward, which leaves
    # FSDP2's root group gathered) before its KD.
    before = kd_eval(student, teacher, held_out)
    result = kd_retrain(student, teacher, _batch_at, KDConfig(steps=KD_STEPS, lr=3e-3), seed=0)
    out = {"world": distributed.world_size(), "kd_eval_before": before,
           "curve": [row["kd_loss"] for row in result.curve],
           "tokens": result.tokens,
           "kd_eval": kd_eval(student, teacher, held_out)}
    calib = torch.randint(0, VOCAB, (6, 16), generator=torch.Generator().manual_seed(7))
    imp = compute_importance(teacher, calib, batch_size=2)  # 3 micro-batches over 2 ranks
    out["importance"] = {name: getattr(imp, name).tolist()
                         for name in ("channel", "head", "neuron", "block_influence")}
    out["importance_tokens"] = imp.num_tokens
    tokenizer = AutoTokenizer.from_pretrained(str(builtin_parent_dir()))
    out["perplexity"] = perplexity(teacher, tokenizer, TEXTS, seq_len=16, batch_size=2)
    if with_lm_eval:
        out["scores"] = evaluate(teacher, tokenizer, ["plsearch_text"], limit=2,
                                 batch_size=4, progress=False)
    state = distributed.full_state_dict(student)
    out["student_sum"] = float(sum(t.double().abs().sum() for t in state.values()))
    return out


def main() -> int:
    out_path = Path(sys.argv[1])
    distributed.setup("cpu")
    out = run_checks()
    if distributed.is_main():
        out_path.write_text(json.dumps(out), encoding="utf-8")
    distributed.barrier()
    distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
