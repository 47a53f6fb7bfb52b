"""`plsearch parent build`: rebuild the built-in parent model with plsearch's recipe."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("parent", help="the built-in parent model")
    psub = p.add_subparsers(dest="parent_command", metavar="ACTION", required=True)
    b = psub.add_parser("build", help="train the built-in parent (seeded, resumable)")
    b.add_argument("--work", default=".plsearch_cache/parent-build",
                   help="work folder; rerunning with the same folder resumes training")
    b.add_argument("--steps", type=int, help="training steps (default: the recipe's)")
    b.add_argument("--batch-size", type=int, help="rows per step (default: the recipe's)")
    b.add_argument("--lr", type=float, help="peak learning rate (default: the recipe's)")
    b.add_argument("--warmup-steps", type=int, help="default: the recipe's")
    b.add_argument("--skill-fraction", type=float,
                   help="share of rows drawn from the skills (default: the recipe's)")
    b.add_argument("--init-from", metavar="DIR",
                   help="start from this HF folder's weights and tokenizer (same shape) "
                        "instead of random weights and a newly trained tokenizer")
    b.add_argument("--device", default="cpu",
                   help="where to train: cpu (default), cuda or npu; float32 either way")
    b.add_argument("--workers", type=int, default=0,
                   help="processes that make batches ahead of the model (default 0: none)")
    b.add_argument("--seed", type=int, default=0, help="data, initialisation and order")
    b.add_argument("--threads", type=int, default=0,
                   help="torch threads (0 = torch's default)")
    b.add_argument("--install", action="store_true",
                   help="copy the result into the package as the new built-in parent")
    b.set_defaults(func=cmd_parent_build)


def cmd_parent_build(args) -> int:
    import torch
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from plsearch.parent.build import ParentRecipe, finalize, prepare, train

    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = ParentRecipe(seed=args.seed)
    if args.steps:
        recipe = dataclasses.replace(recipe, max_steps=args.steps)
    overrides = {"batch_size": args.batch_size, "lr": args.lr,
                 "warmup_steps": args.warmup_steps, "skill_fraction": args.skill_fraction}
    recipe = dataclasses.replace(recipe, **{k: v for k, v in overrides.items()
                                            if v is not None})
    init_from = Path(args.init_from) if args.init_from else None
    work = Path(args.work)
    from plsearch import atomic

    atomic.check_writable(work, "--work")
    print(f"preparing corpus, skills and tokenizer in {work} ...")
    prepare(work, recipe, init_from)
    columns = (TextColumn("training"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("loss {task.fields[loss]:.3f}"),
               TextColumn("{task.fields[tps]:.0f} tokens/s"), TimeRemainingColumn())
    with Progress(*columns) as bar:
        task = bar.add_task("train", total=recipe.max_steps, loss=float("nan"), tps=0.0)

        def progress(state, loss):
            tps = state["tokens"] / max(state["seconds"], 1e-9)
            bar.update(task, completed=state["step"], loss=loss, tps=tps)

        state = train(work, recipe, progress, device=args.device, workers=args.workers,
                      init_from=init_from)
    command = "plsearch " + " ".join(sys.argv[1:])
    card = finalize(work, recipe, state, install=args.install, command=command)
    print(f"model written to {work / 'model'}" + (" and installed" if args.install else ""))
    print(f"held-out text perplexity {card['heldout_text_perplexity']:.2f} "
          f"(unigram {card['unigram_perplexity']:.2f})")
    for skill, acc in card["skill_accuracy"].items():
        print(f"  {skill:9s} accuracy {acc:.3f} (chance {card['skill_chance'][skill]:.3f})")
    return 0
