"""`plsearch distill` (KD recovery of a pruned student) and `plsearch eval` (lm-eval scores)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

from plsearch import atomic
from plsearch.cli.common import add_json_arg, add_model_args, torch_device, torch_dtype
from plsearch.errors import ConfigError, ModelLoadError

BUILTIN = "builtin"
logger = logging.getLogger(__name__)


def register(sub) -> None:
    d = sub.add_parser("distill", help="retrain a pruned student by KD from its parent")
    d.add_argument("--student", required=True, help="the student's HF folder")
    d.add_argument("--teacher", help="teacher model folder or 'builtin' (default: the "
                   "parent recorded in the student's plsearch.json, else the built-in parent)")
    d.add_argument("--out", required=True, help="folder for the retrained model (must not exist)")
    budget = d.add_mutually_exclusive_group(required=True)
    budget.add_argument("--steps", type=int, help="optimizer steps")
    budget.add_argument("--tokens", type=int, help="student input tokens")
    d.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate")
    d.add_argument("--batch-size", type=int, default=8, help="sequences per micro-batch")
    d.add_argument("--seq-len", type=int, default=128,
                   help="tokens per sequence (at most the model's max_position_embeddings)")
    d.add_argument("--grad-accum", type=int, default=1,
                   help="micro-batches per optimizer step")
    d.add_argument("--temperature", type=float, default=1.0, help="KD softmax temperature")
    d.add_argument("--ce-weight", type=float, default=0.0,
                   help="share of plain cross-entropy in the loss (0 = pure KD)")
    d.add_argument("--data", help="training text: .txt/.jsonl file or offline HF dataset "
                   "(default: the built-in parent's training mix)")
    d.add_argument("--seed", type=int, default=0, help="data order and initialisation")
    add_model_args(d)
    d.add_argument("--checkpoint-every", type=int, default=0,
                   help="save a resumable checkpoint in OUT.ckpt every N steps (0: never)")
    add_json_arg(d)
    d.add_argument("--activation-checkpointing", action="store_true",
                   help="recompute the student's activations in the backward pass "
                   "(less memory, about a third more compute)")
    d.set_defaults(func=cmd_distill)

    e = sub.add_parser("eval", help="score a model on lm-eval tasks (offline suite by default)")
    e.add_argument("--model", help="HF folder (default: the built-in parent)")
    e.add_argument("--tasks", default="plsearch_skills,plsearch_text",
                   help="comma-separated lm-eval tasks/groups (default: %(default)s)")
    e.add_argument("--limit", type=int, help="score at most N documents per task")
    e.add_argument("--seed", type=int, default=0, help="lm-eval's sampling seed")
    e.add_argument("--batch-size", type=int, default=32, help="sequences per forward")
    add_model_args(e)
    e.add_argument("--json", action="store_true",
                   help="print only {task: {metric: value}} as JSON on stdout")
    e.set_defaults(func=cmd_eval)


# ---------------------------------------------------------------- distill


def cmd_distill(args) -> int:
    import numpy as np
    import torch
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from plsearch import distributed  # torch: imported when the command runs
    from plsearch.data import sample_windows, token_stream
    from plsearch.distill import KDConfig, kd_retrain, write_loss_curve
    from plsearch.models import read_config, resolve_model_dir, weights_hash

    out = Path(args.out)
    if out.exists():
        raise ConfigError(f"--out {out} already exists; remove it or choose another folder")
    for name in ("batch_size", "seq_len"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1")
    say = functools.partial(print, file=sys.stderr if args.json else sys.stdout)
    # Checked before the KD run: a killed run's temporary goes, the output must be writable.
    atomic.remove_stale_temps(out)
    atomic.check_writable(out.parent, "the folder of --out")
    config = KDConfig(steps=args.steps, tokens=args.tokens, lr=args.lr,
                      grad_accum=args.grad_accum, temperature=args.temperature,
                      ce_weight=args.ce_weight, checkpoint_every=args.checkpoint_every)
    device = distributed.setup(torch_device(args.device))
    # --dtype bfloat16: bf16 compute (autocast; under torchrun FSDP2 mixed precision over
    # float32 master weights) and a bf16 teacher; float32: float32 throughout.
    bf16 = args.dtype == "bfloat16"
    config = dataclasses.replace(config, bf16=bf16)
    student_dir = resolve_model_dir(args.student)
    limit = getattr(read_config(student_dir), "max_position_embeddings", None)
    if limit and args.seq_len > limit:
        raise ConfigError(f"--seq-len {args.seq_len} exceeds the student's "
                          f"max_position_embeddings ({limit}); use a shorter length")
    record = _read_record(student_dir)
    teacher_ref = args.teacher or _recorded_parent(record, student_dir)
    if args.batch_size % distributed.world_size():
        raise ConfigError(f"--batch-size {args.batch_size} must be a multiple of the "
                          f"{distributed.world_size()} ranks (each takes an equal share)")
    # Under torchrun both are sharded (FSDP2), each rank reading only its shard.
    param_dtype = torch.bfloat16 if bf16 and distributed.is_distributed() else None
    student, tokenizer, _ = _load_for_kd(student_dir, device, None, param_dtype,
                                         args.activation_checkpointing,
                                         args.trust_remote_code)
    teacher, teacher_tokenizer, teacher_dir = _load_for_kd(
        teacher_ref, device, torch.bfloat16 if bf16 and device.type != "cpu" else None,
        param_dtype, False, args.trust_remote_code)
    if not args.teacher:
        _check_parent_hash(record, teacher_dir)
    tokenizer = tokenizer or teacher_tokenizer
    if tokenizer is None:
        raise ModelLoadError(f"neither {student_dir} nor {teacher_dir} has a tokenizer; "
                             "save one with tokenizer.save_pretrained")
    if student.config.vocab_size != teacher.config.vocab_size:
        raise ConfigError(f"student vocab {student.config.vocab_size} != teacher vocab "
                          f"{teacher.config.vocab_size}; distill from the student's own parent")
    stream = token_stream(tokenizer, args.data, seed=args.seed)

    def batch_at(i: int):
        seed = int(np.random.SeedSequence([args.seed, i]).generate_state(1)[0])
        return sample_windows(stream, args.batch_size, args.seq_len, seed)

    main = distributed.is_main()
    ranks = f" x {distributed.world_size()} ranks" if distributed.is_distributed() else ""
    if main:
        say(f"distilling {teacher_dir} -> {student_dir} on {device}{ranks} "
            f"({'builtin mix' if args.data is None else args.data})")
    columns = (TextColumn("KD"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("kd {task.fields[kd]:.4f}"), TextColumn("{task.fields[tps]:.0f} tok/s"),
               TimeRemainingColumn())
    per_step = args.batch_size * args.seq_len * args.grad_accum
    total = args.steps or -(-args.tokens // per_step)
    checkpoint_dir = out.with_name(out.name + ".ckpt")
    if args.checkpoint_every and (checkpoint_dir / "state.json").exists():
        say(f"resuming from the checkpoint in {checkpoint_dir}")
    t0 = time.perf_counter()
    with Progress(*columns, console=Console(stderr=args.json), disable=not main) as bar:
        task = bar.add_task("kd", total=total, kd=float("nan"), tps=0.0)
        done_here = []  # steps run by this process (a resumed run starts past 0)

        def on_step(row):
            done_here.append(row["step"])
            tps = len(done_here) * per_step / max(time.perf_counter() - t0, 1e-9)
            bar.update(task, completed=row["step"], kd=row["kd_loss"], tps=tps)

        with distributed.collective("KD training"):
            result = kd_retrain(student, teacher, batch_at, config, seed=args.seed,
                                checkpoint_dir=checkpoint_dir if args.checkpoint_every else None,
                                on_step=on_step)
    record["kd"] = {
        "teacher": str(teacher_ref), "teacher_weights_hash": weights_hash(teacher_dir),
        "student": str(student_dir), "seed": args.seed,
        "data": args.data or BUILTIN, "batch_size": args.batch_size, "seq_len": args.seq_len,
        "config": json.loads(json.dumps(asdict(config))), "steps": result.steps,
        "tokens": result.tokens, "seconds": round(result.seconds, 2),
        "kd_loss_first": result.curve[0]["kd_loss"], "kd_loss_final": result.final_kd_loss,
    }
    record.setdefault("parent", str(teacher_ref))
    if distributed.is_distributed():
        record["kd"]["ranks"] = distributed.world_size()
    if distributed.is_sharded(student):
        state = distributed.full_state_dict(student)  # a collective: every rank takes part
        student = distributed.unsharded_copy(student, state) if main else None
    if main:  # only rank 0 writes; the others wait for it at the barrier
        _write_model_folder(out, student, tokenizer, record, result, write_loss_curve)
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    distributed.barrier()
    distributed.shutdown()
    if not main:
        return 0
    if args.json:
        print(json.dumps({"out": str(out), **record["kd"]}))
        return 0
    say(f"{result.steps} steps, {result.tokens:,} tokens in {result.seconds:.1f} s; "
        f"KD loss {result.curve[0]['kd_loss']:.4f} -> {result.final_kd_loss:.4f}")
    say(f"wrote {out} (loss curve: {out / 'loss_curve.csv'})")
    return 0


def _load_for_kd(ref, device, dtype, param_dtype, activation_checkpointing: bool,
                 trust_remote_code: bool = False):
    """(model on ``device``, tokenizer or None, folder); sharded under torchrun."""
    import torch

    from plsearch import distributed
    from plsearch.models import load_model, resolve_model_dir

    if not distributed.is_distributed():
        model, tokenizer, model_dir = load_model(ref, dtype=dtype,
                                                 trust_remote_code=trust_remote_code)
        model = distributed.shard_model(model, device,
                                        activation_checkpointing=activation_checkpointing)
        return model, tokenizer, model_dir
    from transformers import AutoTokenizer

    model_dir = resolve_model_dir(ref)
    model = distributed.load_sharded(model_dir, device, dtype=dtype or torch.float32,
                                     param_dtype=param_dtype,
                                     activation_checkpointing=activation_checkpointing)
    tokenizer = None
    if (model_dir / "tokenizer.json").exists() or (model_dir / "tokenizer_config.json").exists():
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    return model, tokenizer, model_dir


def _read_record(model_dir: Path) -> dict:
    path = model_dir / "plsearch.json"
    if not path.exists():
        return {}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path} is not valid JSON ({exc}); fix or delete it") from None
    if not isinstance(record, dict):
        raise ModelLoadError(f"{path} must hold a JSON object; fix or delete it")
    return record


def _recorded_parent(record: dict, student_dir: Path) -> str:
    """The parent recorded by pruning ("parent": a path, "builtin", or {"path": ...}).

    A relative path is read relative to the student's folder; no record means the
    built-in parent.
    """
    parent = record.get("parent") or BUILTIN
    if isinstance(parent, dict):
        parent = parent.get("path") or BUILTIN
    if not isinstance(parent, str):
        raise ModelLoadError(f"{student_dir / 'plsearch.json'} has an unreadable \"parent\" "
                             "entry; pass the teacher with --teacher")
    if parent == BUILTIN or Path(parent).expanduser().is_absolute():
        return parent
    return str(student_dir / parent)


def _check_parent_hash(record: dict, teacher_dir: Path) -> None:
    """Warn when the teacher's weights are not those the student was pruned from."""
    from plsearch.models import weights_hash

    parent = record.get("parent")
    expected = parent.get("weights_hash") if isinstance(parent, dict) else None
    if expected and expected != (actual := weights_hash(teacher_dir)):
        logger.warning("teacher %s has weights %s but the student was pruned from %s; the "
                       "parent changed since pruning", teacher_dir, actual, expected)


def _write_model_folder(out: Path, student, tokenizer, record, result, write_loss_curve) -> None:
    """HF folder + plsearch.json + loss_curve.csv, renamed into place when complete."""
    with atomic.new_dir(out) as tmp:
        student.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        (tmp / "plsearch.json").write_text(json.dumps(record, indent=2) + "\n",
                                           encoding="utf-8")
        write_loss_curve(result, tmp / "loss_curve.csv")


# ---------------------------------------------------------------- eval


def cmd_eval(args) -> int:
    from plsearch import distributed  # torch: imported when the command runs
    from plsearch.evaluate import evaluate
    from plsearch.models import load_model

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not args.verbose:
        for name in ("lm_eval", "lm-eval"):
            logging.getLogger(name).setLevel(logging.ERROR)
    t0 = time.perf_counter()
    # lm-eval and transformers print to stdout in places; keep stdout for our output.
    with contextlib.redirect_stdout(sys.stderr):
        model, tokenizer, model_dir = load_model(args.model, dtype=torch_dtype(args.dtype),
                                                 trust_remote_code=args.trust_remote_code)
        if tokenizer is None:
            raise ModelLoadError(f"{model_dir} has no tokenizer; save one with "
                                 "tokenizer.save_pretrained")
        # Under torchrun the model is sharded (FSDP2) and every rank scores every document.
        model = distributed.shard_model(model, distributed.setup(torch_device(args.device)))
        scores = evaluate(model, tokenizer, tasks, limit=args.limit, seed=args.seed,
                          batch_size=args.batch_size)
    seconds = time.perf_counter() - t0
    distributed.shutdown()
    if not distributed.is_main():
        return 0
    if args.json:
        print(json.dumps(scores))
        return 0
    print(f"{model_dir}  (seed {args.seed}, limit {args.limit}, {seconds:.1f} s)")
    for task, metrics in scores.items():
        values = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k != "samples")
        print(f"  {task:20s} {values}  (n={metrics.get('samples', 0):.0f})")
    return 0
