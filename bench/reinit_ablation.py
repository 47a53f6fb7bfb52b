"""Does the Pangu Light re-initialization beat plain slicing here? (docs/method.md section 6)

On the built-in parent, for two target shapes (depth-heavy and joint), every recipe
variant is built from the same importance scores, then KD-retrained with the same data
and budget for several seeds. We report, at step 0 and after the budget: the KD training
loss (forward KL on the training batch, first and last step), the held-out KL to the
parent (on held-out windows), and the lm-eval accuracy on the default objective's tasks
with its standard error; mean and spread over seeds, and each recipe's ratio to minitron.
No recipe is tuned.

    python bench/reinit_ablation.py                # writes reports/ablation.{md,csv}
    python bench/reinit_ablation.py --steps 10 --seeds 0 --limit 20   # a smoke run

Shapes run in parallel worker processes (one torch thread each).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

RECIPES = {  # name -> Recipe.preset("minitron", **overrides)
    "minitron": {},
    "+clap": {"clap": True},
    "+slnp_l2": {"slnp": "l2"},
    "+slnp_act": {"slnp": "act"},
    "pangu": {"clap": True, "slnp": "l2"},
    "pangu+absorb": {"clap": True, "slnp": "l2", "absorb_post_norm": True},
}
SHAPES = {
    # about 40% of the layers removed, width kept
    "depth": {"num_hidden_layers": 5},
    # depth and width both cut: about 2x fewer parameters
    "joint": {"num_hidden_layers": 6, "hidden_size": 192, "num_attention_heads": 6,
              "intermediate_size": 512},
}
SEQ_LEN = 128
BATCH = 8


METRICS = ("kd_train_loss_first", "kd_train_loss_final", "kd_loss_step0", "kd_loss_final",
           "skills_acc_step0", "skills_acc_final", "skills_acc_final_stderr")


def objective_tasks() -> list[str]:
    """The tasks of the default search objective (configs/search/default.yaml)."""
    from plsearch.search.space import load_space

    return list(load_space("default").objective.tasks)


def run_shape(shape: str, args) -> list[dict]:
    import torch

    torch.set_num_threads(1)
    from plsearch.data import sample_windows, split_stream, token_stream
    from plsearch.distill import KDConfig, kd_eval, kd_retrain
    from plsearch.evaluate import evaluate
    from plsearch.families import get_family
    from plsearch.importance import compute_importance
    from plsearch.models import load_model
    from plsearch.prune import Recipe, build_candidate

    parent, tokenizer, _ = load_model(None)
    family = get_family(parent)
    arch = family.arch_from_config(parent.config).replace(**SHAPES[shape])
    train_stream, heldout_stream = split_stream(token_stream(tokenizer, None, seed=0), 0.05)
    calib = sample_windows(train_stream, 64, SEQ_LEN, seed=1234)
    heldout = sample_windows(heldout_stream, 32, SEQ_LEN, seed=4321)
    heldout_batches = list(heldout.split(BATCH))
    importance = compute_importance(parent, calib, family)
    tasks = objective_tasks()
    rows = []
    for name, overrides in RECIPES.items():
        recipe = Recipe.preset("minitron", **overrides)
        t0 = time.perf_counter()
        candidate, report = build_candidate(parent, importance, arch, recipe, calib)
        build_s = time.perf_counter() - t0
        state = {k: v.clone() for k, v in candidate.state_dict().items()}
        kd0 = kd_eval(candidate, parent, heldout_batches)
        acc0, se0 = _skill_acc(evaluate(candidate, tokenizer, tasks, limit=args.limit,
                                        seed=0))
        for seed in args.seeds:
            candidate.load_state_dict(state)
            batches = sample_windows(train_stream, args.steps * BATCH, SEQ_LEN,
                                     seed=10_000 + seed).split(BATCH)
            t0 = time.perf_counter()
            result = kd_retrain(candidate, parent, batches,
                                KDConfig(steps=args.steps, lr=args.lr), seed=seed)
            kd_s = time.perf_counter() - t0
            kd1 = kd_eval(candidate, parent, heldout_batches)
            acc1, se1 = _skill_acc(evaluate(candidate, tokenizer, tasks, limit=args.limit,
                                            seed=seed))
            rows.append({
                "shape": shape, "arch": str(arch), "params": report.num_params,
                "recipe": name, "seed": seed, "kd_loss_step0": kd0, "kd_loss_final": kd1,
                "kd_train_loss_first": result.curve[0]["kd_loss"],
                "kd_train_loss_final": result.final_kd_loss,
                "skills_acc_step0": acc0, "skills_acc_final": acc1,
                "skills_acc_step0_stderr": se0, "skills_acc_final_stderr": se1,
                "moved_kv_groups": report.moved_groups,
                "absorb_rel_error": report.absorbed_output_rel_error,
                "build_s": round(build_s, 2), "kd_s": round(kd_s, 1),
                "kd_steps": result.steps, "kd_tokens": result.tokens,
            })
            print(f"[{shape}] {name:13s} seed {seed}: held-out KL {kd0:.3f} -> {kd1:.3f}, "
                  f"train KD loss {result.curve[0]['kd_loss']:.3f} -> "
                  f"{result.final_kd_loss:.3f}, skills {acc0:.3f} -> {acc1:.3f} +- {se1:.3f} "
                  f"({kd_s:.0f}s)", flush=True)
    rows.append({"shape": shape, "recipe": "_block_influence",
                 "values": [round(float(x), 4) for x in importance.block_influence]})
    return rows


def _skill_acc(scores: dict) -> tuple[float, float]:
    """Mean accuracy over the objective's tasks (equal weights, equal item counts) and its
    standard error (the tasks' errors combined as independent)."""
    tasks = [t for t in scores if t.startswith("plsearch_")]
    acc = sum(scores[t]["acc"] for t in tasks) / len(tasks)
    se = math.sqrt(sum(scores[t]["acc_stderr"] ** 2 for t in tasks)) / len(tasks)
    return float(acc), float(se)


def summarize(rows: list[dict]) -> tuple[list[dict], dict]:
    """Mean +- sd per (shape, recipe) and ratios to minitron, as the report's ablation panel
    computes them (plsearch.report.ablation_summary); the parent's block influence."""
    import pandas as pd

    from plsearch.report import ablation_summary

    influence = {r["shape"]: r["values"] for r in rows if r["recipe"] == "_block_influence"}
    runs = [r for r in rows if r["recipe"] != "_block_influence"]
    order = {(shape, name): i for i, (shape, name) in
             enumerate((shape, name) for shape in SHAPES for name in RECIPES)}
    runs.sort(key=lambda r: order.get((r["shape"], r["recipe"]), len(order)))
    summary = ablation_summary(pd.DataFrame(runs), metrics=METRICS)
    table = [] if summary is None else [
        {k: (math.nan if v is None else v) for k, v in row.items()}
        for row in summary.to_dict("records")]
    return table, influence


def write_report(rows, table, influence, args, seconds: float, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks = objective_tasks()
    fields = sorted({k for r in rows if r["recipe"] != "_block_influence" for k in r})
    tmp = out_dir / "ablation.csv.tmp"
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(r for r in rows if r["recipe"] != "_block_influence")
    os.replace(tmp, out_dir / "ablation.csv")

    lines = [
        "# Re-initialization ablation on the built-in parent",
        "",
        (f"Command: `python bench/reinit_ablation.py --steps {args.steps} --seeds "
         f"{' '.join(map(str, args.seeds))} --limit {args.limit} --lr {args.lr}` "
         f"({seconds / 60:.1f} min wall on this 2-core CPU, shared with other work)."),
        "",
        (f"Every recipe starts from the same importance scores (64 x {SEQ_LEN} calibration "
         f"tokens) and gets the same KD budget ({args.steps} steps x {BATCH} x {SEQ_LEN} "
         "tokens, same windows per seed). Train KD loss = forward KL on the training batch "
         "at the first and the last step; held-out KL = KL(parent || candidate) on 32 "
         "held-out windows (nats/token), before KD (step 0) and after it; skills = mean "
         f"lm-eval accuracy over the default objective's tasks ({', '.join(tasks)}; first "
         f"{args.limit} items of each). Mean +- sd over seeds; [se] = the skills' mean "
         "lm-eval standard error of one run; ratio = recipe / minitron (lower is better "
         "for losses, higher for skills)."),
        "",
        ("| shape | recipe | params | train KD loss first -> final | held-out KL step 0 | "
         "held-out KL final | ratio | skills step 0 | skills final | ratio |"),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in table:
        lines.append(
            f"| {e['shape']} | {e['recipe']} | {e['params']:,} | "
            f"{e['kd_train_loss_first']:.3f} -> {e['kd_train_loss_final']:.3f} | "
            f"{e['kd_loss_step0']:.3f} | {e['kd_loss_final']:.3f} +- "
            f"{e['kd_loss_final_sd']:.3f} | {e['kd_loss_final_ratio']:.3f} | "
            f"{e['skills_acc_step0']:.3f} | {e['skills_acc_final']:.3f} +- "
            f"{e['skills_acc_final_sd']:.3f} [se {e['skills_acc_final_stderr']:.3f}] | "
            f"{e['skills_acc_final_ratio']:.3f} |")
    lines += ["", "## Parent block influence (1 - cos(x_in, x_out) per layer)", ""]
    for values in influence.values():
        lines.append(f"- {', '.join(f'L{i}: {v:.3f}' for i, v in enumerate(values))}")
        break  # the same parent and calibration data for every shape
    lines += ["", "## Verdict", "", *verdict(table)]
    (out_dir / "ablation.md.tmp").write_text("\n".join(lines) + "\n")
    os.replace(out_dir / "ablation.md.tmp", out_dir / "ablation.md")


def verdict(table: list[dict]) -> list[str]:
    """Plain statements derived from the numbers (no claim the numbers do not carry)."""
    out = []
    for shape in SHAPES:
        entries = {e["recipe"]: e for e in table if e["shape"] == shape}
        base, pangu = entries.get("minitron"), entries.get("pangu")
        if not base or not pangu:
            continue
        spread = max(base["kd_loss_final_sd"], pangu["kd_loss_final_sd"])
        diff = base["kd_loss_final"] - pangu["kd_loss_final"]
        start = base["kd_loss_step0"] - pangu["kd_loss_step0"]
        word = ("beats" if diff > 2 * spread else "loses to" if -diff > 2 * spread
                else "is within the seed spread of")
        noise = max(base["skills_acc_final_sd"] or 0.0, pangu["skills_acc_final_sd"] or 0.0,
                    base["skills_acc_final_stderr"], pangu["skills_acc_final_stderr"])
        gap = pangu["skills_acc_final"] - base["skills_acc_final"]
        skills = ("higher than" if gap > 2 * noise else "lower than" if -gap > 2 * noise
                  else "within the noise of")
        out.append(f"- {shape}: pangu {word} minitron after KD (final held-out KL "
                   f"{pangu['kd_loss_final']:.3f} vs {base['kd_loss_final']:.3f}, seed sd "
                   f"{spread:.3f}); at step 0 pangu is {'better' if start > 0 else 'worse'}"
                   f" ({pangu['kd_loss_step0']:.3f} vs {base['kd_loss_step0']:.3f}); its "
                   f"final skills ({pangu['skills_acc_final']:.3f} vs "
                   f"{base['skills_acc_final']:.3f}) are {skills} minitron's (the larger of "
                   f"seed sd and stderr: {noise:.3f}).")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--limit", type=int, default=60, help="lm-eval documents per skill task")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--out", default="reports")
    args = p.parse_args()
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=len(args.shapes)) as pool:
        results = list(pool.map(run_shape, args.shapes, [args] * len(args.shapes)))
    rows = [r for shape_rows in results for r in shape_rows]
    table, influence = summarize(rows)
    seconds = time.perf_counter() - start
    write_report(rows, table, influence, args, seconds, Path(args.out))
    print((Path(args.out) / "ablation.md").read_text())
    print(json.dumps({"seconds": round(seconds, 1)}))


if __name__ == "__main__":
    main()
