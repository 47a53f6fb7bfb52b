"""KD throughput and memory per rank with 1 and 2 ranks (torchrun + FSDP2), as ratios.

    .venv/bin/python bench/scale.py                     # CPU, gloo: 1 and 2 ranks (minutes)
    .venv/bin/python bench/scale.py --quick             # a small shape, to check the script
    python bench/scale.py --device cuda --dtype bf16 --ranks 1      # one GPU, bf16
    python bench/scale.py --device cuda --dtype bf16 --ranks 1,8    # eight GPUs of a node

A Qwen3-0.6B-shaped random teacher (28 layers, hidden 1024, 16 query heads, 8 KV groups,
head_dim 128, FFN 3072, vocab 151936, tied embeddings) and a random student of about half
its parameters (20 layers, hidden 768, 12 heads, 6 KV groups, FFN 2304), built from
config and saved to a temporary folder (no download). For each rank count, one torchrun
run loading them as `plsearch distill` does (one process: load_model; several:
load_sharded, each rank reading its shard) and running plsearch's own KD loop
(kd_retrain: AdamW, bf16 mixed precision with --dtype bf16) at the same global batch: one
warm-up step, then the timed steps. Printed per run: global KD tokens/s and each rank's
peak memory while training (CPU: VmHWM of the rank's process, reset once the models are
loaded, so the interpreter, torch and the models count, loading transients do not;
CUDA/NPU: max_memory_allocated since the models were loaded); then the ratios against 1 rank. CPU runs share the cores
between the ranks (torch threads = cores / ranks), so tokens/s there shows the cost of
FSDP's collectives, not a speed-up. Imports neither optuna nor lm-eval.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TEACHER = {"num_hidden_layers": 28, "hidden_size": 1024, "num_attention_heads": 16,
           "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 3072,
           "vocab_size": 151936, "tie_word_embeddings": True, "max_position_embeddings": 4096}
STUDENT = {**TEACHER, "num_hidden_layers": 20, "hidden_size": 768, "num_attention_heads": 12,
           "num_key_value_heads": 6, "intermediate_size": 2304}
QUICK_TEACHER = {**TEACHER, "num_hidden_layers": 4, "hidden_size": 256, "intermediate_size": 768,
                 "vocab_size": 16384, "head_dim": 32}
QUICK_STUDENT = {**QUICK_TEACHER, "num_hidden_layers": 3, "hidden_size": 192,
                 "num_attention_heads": 12, "num_key_value_heads": 6, "intermediate_size": 512}


def _save_model(shape: dict, seed: int, folder: Path) -> None:
    """A random qwen3 model of ``shape`` saved as an HF folder (float32)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model("qwen3", **shape, bos_token_id=1, eos_token_id=2,
                                  pad_token_id=0)
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_host_peak() -> None:
    with open("/proc/self/clear_refs", "w") as fh:  # VmHWM := VmRSS (Linux)
        fh.write("5")


def worker(args) -> None:
    """One rank: build, shard, KD for warm-up + timed steps; rank 0 writes the JSON."""
    import gc

    import torch

    from plsearch import distributed
    from plsearch.distill import KDConfig, kd_retrain
    from plsearch.models import load_model

    device = distributed.setup(args.device)
    world = distributed.world_size()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world) if device.type == "cpu"
                          else torch.get_num_threads())
    bf16 = args.dtype == "bf16"
    teacher_dtype = torch.bfloat16 if bf16 and device.type != "cpu" else torch.float32
    param_dtype = torch.bfloat16 if bf16 and distributed.is_distributed() else None
    folder = Path(args.models)
    if distributed.is_distributed():  # what `plsearch distill` does under torchrun
        teacher = distributed.load_sharded(folder / "teacher", device, dtype=teacher_dtype,
                                           param_dtype=param_dtype)
        student = distributed.load_sharded(folder / "student", device, param_dtype=param_dtype,
                                           activation_checkpointing=args.activation_checkpointing)
    else:  # ... and in one process
        teacher = distributed.shard_model(load_model(folder / "teacher", dtype=teacher_dtype)[0],
                                          device)
        student = distributed.shard_model(
            load_model(folder / "student")[0], device,
            activation_checkpointing=args.activation_checkpointing)
    gc.collect()
    accel = getattr(torch, device.type) if device.type != "cpu" else None
    if accel is not None:
        accel.synchronize()
        accel.reset_peak_memory_stats()
    else:
        _reset_host_peak()
    vocab = teacher.config.vocab_size

    def batch_at(i: int):
        g = torch.Generator().manual_seed(i)
        return torch.randint(3, vocab, (args.batch, args.seq), generator=g)

    stamps = []

    def on_step(row):
        if accel is not None:
            accel.synchronize()
        stamps.append(time.perf_counter())

    config = KDConfig(steps=1 + args.steps, lr=1e-4, warmup_fraction=0.0, bf16=bf16)
    kd_retrain(student, teacher, batch_at, config, seed=0, on_step=on_step)
    seconds = stamps[-1] - stamps[0]
    peak = (accel.max_memory_allocated() / 2**20 if accel is not None
            else _status_mb("VmHWM"))
    peaks = [peak] * world
    if distributed.is_distributed():
        import torch.distributed as dist

        peaks = [None] * world
        dist.all_gather_object(peaks, peak)
    if distributed.is_main():
        Path(args.out).write_text(json.dumps({
            "ranks": world, "tokens_per_s": args.steps * args.batch * args.seq / seconds,
            "peak_mb": peaks, "device": str(device), "threads": torch.get_num_threads(),
            "teacher_params": sum(p.numel() for p in teacher.parameters()),
            "student_params": sum(p.numel() for p in student.parameters())}))
    distributed.barrier()
    distributed.shutdown()


def run(args, ranks: int, models: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", str(ranks), __file__, "--worker", "--out", str(out),
               "--models", models,
               "--device", args.device, "--dtype", args.dtype, "--steps", str(args.steps),
               "--batch", str(args.batch), "--seq", str(args.seq)]
        cmd += ["--activation-checkpointing"] * args.activation_checkpointing
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get(
            "PYTHONPATH", "")]), "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // ranks))}
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            sys.exit(f"{ranks}-rank run failed:\n{proc.stderr[-4000:]}")
        return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda", "npu"))
    ap.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--ranks", default="1,2", help="comma-separated rank counts (first = base)")
    ap.add_argument("--steps", type=int, default=2, help="timed KD steps (after 1 warm-up)")
    ap.add_argument("--batch", type=int, default=4, help="global batch (rows)")
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--quick", action="store_true", help="small shapes (checks the script)")
    ap.add_argument("--activation-checkpointing", action="store_true")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--models", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    os.environ.setdefault("TQDM_DISABLE", "1")  # save_pretrained's progress bars
    import torch

    counts = [int(n) for n in args.ranks.split(",")]
    print(f"torch {torch.__version__}; {args.device} {args.dtype}; global batch {args.batch}x"
          f"{args.seq}; {args.steps} timed KD steps after 1 warm-up; "
          f"{'quick shapes' if args.quick else 'Qwen3-0.6B-shaped teacher, half-size student'}"
          f"{'; activation checkpointing' if args.activation_checkpointing else ''}", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as models:
        teacher, student = (QUICK_TEACHER, QUICK_STUDENT) if args.quick else (TEACHER, STUDENT)
        _save_model(teacher, 0, Path(models) / "teacher")
        _save_model(student, 1, Path(models) / "student")
        for ranks in counts:
            results.append(run(args, ranks, models))
    for r in results:
        ranks = r["ranks"]
        print(f"  {ranks} rank(s): {r['tokens_per_s']:.1f} KD tokens/s (global); peak MB per "
              f"rank {', '.join(f'{p:.0f}' for p in r['peak_mb'])}  ({r['threads']} torch "
              f"threads per rank; teacher {r['teacher_params'] / 1e6:.0f} M, student "
              f"{r['student_params'] / 1e6:.0f} M params)", flush=True)
    base = results[0]
    for r in results[1:]:
        print(f"  {r['ranks']} ranks / {base['ranks']}: tokens/s x"
              f"{r['tokens_per_s'] / base['tokens_per_s']:.2f}, peak memory per rank x"
              f"{max(r['peak_mb']) / max(base['peak_mb']):.2f}")


if __name__ == "__main__":
    main()
