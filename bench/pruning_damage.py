"""What pruning damages on the built-in parent, task by task, with standard errors.

For every skill task (full held-out sets) and the held-out text, prints one table:
the parent, the best constant answer, a half-size slice of the parent before KD
(minitron: importance + slicing, no re-initialization), and the same slice after the
default search space's top-rung KD budget (96 steps x 4 x 128 tokens, lr 1e-3). Every
accuracy comes with lm-eval's standard error; the KL column is the held-out KL divergence
to the parent (plsearch.distill.kd_eval on held-out windows).

    python bench/pruning_damage.py                  # markdown table on stdout
    python bench/pruning_damage.py --recipe pangu   # the same with the Pangu Light recipe
"""

from __future__ import annotations

import argparse
import json
import time

SEQ_LEN = 128
HALF = {"num_hidden_layers": 6, "hidden_size": 192, "num_attention_heads": 6,
        "intermediate_size": 512}  # about half the parent's parameters (the ablation's joint)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default="minitron")
    p.add_argument("--steps", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="FILE", help="also write the numbers as JSON")
    args = p.parse_args()

    from plsearch.data import sample_windows, split_stream, token_stream
    from plsearch.distill import KDConfig, kd_eval, kd_retrain
    from plsearch.families import get_family
    from plsearch.importance import compute_importance
    from plsearch.models import load_model
    from plsearch.parent import skills
    from plsearch.prune import Recipe, build_candidate

    t0 = time.perf_counter()
    parent, tokenizer, _ = load_model(None)
    family = get_family(parent)
    arch = family.arch_from_config(parent.config).replace(**HALF)
    train_stream, heldout_stream = split_stream(token_stream(tokenizer, None, seed=0), 0.05)
    calib = sample_windows(train_stream, 32, SEQ_LEN, seed=1234)
    heldout = list(sample_windows(heldout_stream, 32, SEQ_LEN, seed=4321).split(8))
    importance = compute_importance(parent, calib, family)
    candidate, report = build_candidate(parent, importance, arch, Recipe.preset(args.recipe),
                                        calib)
    tasks = [f"plsearch_{s}" for s in skills.SKILLS]
    columns = {"parent": _scores(parent, tokenizer, tasks, args.seed)}
    columns["parent"]["kl"] = 0.0
    columns["slice"] = _scores(candidate, tokenizer, tasks, args.seed)
    columns["slice"]["kl"] = kd_eval(candidate, parent, heldout)
    batches = sample_windows(train_stream, args.steps * args.batch_size, SEQ_LEN,
                             seed=10_000 + args.seed).split(args.batch_size)
    kd_retrain(candidate, parent, batches,
               KDConfig(steps=args.steps, lr=args.lr, warmup_fraction=0.1), seed=args.seed)
    columns["slice+kd"] = _scores(candidate, tokenizer, tasks, args.seed)
    columns["slice+kd"]["kl"] = kd_eval(candidate, parent, heldout)

    print(f"Half-size slice: {arch} ({report.num_params:,} params; parent "
          f"{sum(p.numel() for p in parent.parameters()):,}), recipe {args.recipe}, KD "
          f"{args.steps} steps x {args.batch_size} x {SEQ_LEN} tokens at lr {args.lr}, "
          f"seed {args.seed}; full held-out sets; +- is one standard error.\n")
    print("| task | items | constant | parent | slice, no KD | slice + KD |")
    print("|---|---|---|---|---|---|")
    for task in tasks:
        n = columns["parent"][task]["samples"]
        const = 1 / skills.n_choices(task.removeprefix("plsearch_"))
        cells = [f"{c[task]['acc']:.3f} +- {c[task]['acc_stderr']:.3f}"
                 for c in columns.values()]
        print(f"| {task} | {n} | {const:.3f} | " + " | ".join(cells) + " |")
    print("| held-out KL to parent (nats/token) | 32 x 128 | | 0 | "
          f"{columns['slice']['kl']:.3f} | {columns['slice+kd']['kl']:.3f} |")
    print(f"\n{time.perf_counter() - t0:.0f} s wall")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"arch": str(arch), "params": report.num_params, "args": vars(args),
                       "columns": columns}, fh, indent=2)


def _scores(model, tokenizer, tasks, seed) -> dict:
    from plsearch.evaluate import evaluate

    return evaluate(model, tokenizer, tasks, seed=seed, progress=False)


if __name__ == "__main__":
    main()
