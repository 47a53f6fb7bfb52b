"""Cost of pruning, as ratios measured side by side in one run (issue 3, item 6).

    .venv/bin/python bench/prune_cost.py            # Qwen3-0.6B shape (heavy: minutes, ~8 GB)
    .venv/bin/python bench/prune_cost.py --quick    # a small shape, to check the script

Prints, for a Qwen3-0.6B-shaped random model built from config (28 layers, hidden 1024,
16 query heads, 8 KV groups, head_dim 128, FFN 3072, vocab 151936, tied embeddings):
  (a) candidate build time / one forward pass of 1x512 tokens        target <= 5
  (b) peak RSS / parent weight bytes (open the parent's folder +
      importance + build + save, a fresh process; streamed parent
      next to the whole parent in memory)                             target <= 1.2
  (c) importance-pass time / plain forward time over the same batches target <= 1.3
and, on the built-in parent, the speed effect of post-norm absorption: forward time of
the parent (glm4, with post-norms) and of its absorbed twin (glm, same shape), prefill and
decode, interleaved. Timings: one warm-up, then the median (and p10-p90) of repeats run in
inference mode, alternating the two sides of each ratio so load changes hit both.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

QWEN3_06B = {"num_hidden_layers": 28, "hidden_size": 1024, "num_attention_heads": 16,
             "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 3072,
             "vocab_size": 151936, "tie_word_embeddings": True, "max_position_embeddings": 4096}
QUICK = {**QWEN3_06B, "num_hidden_layers": 6, "hidden_size": 256, "intermediate_size": 768,
         "vocab_size": 16384, "head_dim": 32}
# Candidates: about half and about a third of the parent's parameters.
CANDIDATES = {
    "half": {"num_hidden_layers": 20, "hidden_size": 768, "num_attention_heads": 12,
             "num_key_value_heads": 6, "intermediate_size": 2304},
    "third": {"num_hidden_layers": 16, "hidden_size": 512, "num_attention_heads": 8,
              "num_key_value_heads": 4, "intermediate_size": 1536},
}


def _parent(shape: dict, seed: int = 0):
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model("qwen3", **shape, bos_token_id=1, eos_token_id=2,
                                  pad_token_id=0)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config).eval()


def _candidate_arch(arch, name: str, quick: bool):
    if quick:
        return arch.replace(num_hidden_layers=4, hidden_size=192, num_attention_heads=12,
                            num_key_value_heads=6, intermediate_size=512)
    return arch.replace(**CANDIDATES[name])


def _calibration(vocab: int, n: int, seq: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(3, vocab, (n, seq), generator=torch.Generator().manual_seed(seed))


def _stats(times: list[float]) -> str:
    q = statistics.quantiles(times, n=10) if len(times) > 1 else [times[0]] * 9
    return f"median {statistics.median(times):.3f}s (p10 {q[0]:.3f}, p90 {q[-1]:.3f}, n={len(times)})"


def _alternate(a, b, repeats: int) -> tuple[list[float], list[float]]:
    """Time a() and b() alternately after one warm-up each; lists of seconds."""
    a(), b()
    ta, tb = [], []
    for _ in range(repeats):
        for fn, out in ((a, ta), (b, tb)):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return ta, tb


def _status_mb(field: str) -> float:
    """VmRSS (current) or VmHWM (peak since start or the last reset) of this process, MB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _memory_child(folder: str, candidate: str, quick: bool, n: int, seq: int, threads: int,
                  streamed: bool, queue) -> None:
    """Fresh process: open the saved parent, importance pass, candidate build and save.

    streamed: open_streamed (layer matrices read from the safetensors file on demand);
    otherwise load_model (the whole parent in memory, as before streaming). The peak is
    the whole process's (VmHWM), imports included.
    """
    import tempfile

    import transformers.models.qwen3.modeling_qwen3  # noqa: F401 - count imports in the baseline

    from plsearch.families import get_family
    from plsearch.importance import compute_importance
    from plsearch.models import load_model
    from plsearch.prune import Recipe, build_candidate, save_candidate
    from plsearch.prune.stream import open_streamed

    torch.set_num_threads(threads)
    baseline = _status_mb("VmRSS")
    parent = open_streamed(folder) if streamed else load_model(folder)[0]
    opened = _status_mb("VmHWM")
    vocab = parent.config.vocab_size
    imp = compute_importance(parent, _calibration(vocab, n, seq))
    importance_peak = _status_mb("VmHWM")
    arch = _candidate_arch(get_family(parent).arch_from_config(parent.config), candidate, quick)
    with torch.no_grad():
        model, _ = build_candidate(parent, imp, arch, Recipe.preset("pangu"))
    build_peak = _status_mb("VmHWM")
    with tempfile.TemporaryDirectory() as tmp:
        save_candidate(model, None, Path(tmp) / "candidate", {"arch": arch.to_dict()})
    cand_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    queue.put({"baseline": baseline, "opened": opened, "importance_peak": importance_peak,
               "build_peak": build_peak, "process_peak": _status_mb("VmHWM"),
               "candidate_mb": cand_bytes / 2**20})


def memory(folder, candidate, quick, n, seq, streamed: bool) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_memory_child, args=(folder, candidate, quick, n, seq,
                                                   torch.get_num_threads(), streamed, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def memory_ratios(shape: dict, args) -> None:
    """(b) for both candidates, streamed and resident parent, side by side."""
    import tempfile

    print("\n(b) peak RSS / parent weight bytes, fresh process per row: open the saved "
          f"parent, importance ({args.calib_samples}x{args.calib_seq_len}), pangu build, "
          "save (target <= 1.2)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        parent = _parent(shape)
        parent_mb = sum(p.numel() * p.element_size() for p in parent.parameters()) / 2**20
        parent.save_pretrained(tmp)
        del parent
        for name in ("half", "third"):
            for streamed in (True, False):
                m = memory(tmp, name, args.quick, args.calib_samples, args.calib_seq_len,
                           streamed)
                label = "streamed" if streamed else "resident"
                print(f"    {name:5s} {label:8s} ratio {m['process_peak'] / parent_mb:.2f}  "
                      f"(after open {m['opened'] / parent_mb:.2f}, importance "
                      f"{m['importance_peak'] / parent_mb:.2f}, build "
                      f"{m['build_peak'] / parent_mb:.2f}); MB: parent {parent_mb:.0f}, "
                      f"candidate {m['candidate_mb']:.0f}, process before the parent "
                      f"{m['baseline']:.0f}", flush=True)
    print("    (streamed: open_streamed reads each layer's matrices when needed; resident: "
          "load_model holds the whole parent)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small shape (checks the script)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--calib-samples", type=int, default=2)
    ap.add_argument("--calib-seq-len", type=int, default=512)
    ap.add_argument("--skip-timing", action="store_true", help="skip (a) and (c)")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-absorb", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    shape = QUICK if args.quick else QWEN3_06B
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; parent qwen3 {shape}")
    if not args.skip_timing:
        build_and_importance_time(shape, args)
    if not args.skip_memory:
        memory_ratios(shape, args)
    if not args.skip_absorb:
        absorb_speed(args.repeats * 3)


def build_and_importance_time(shape: dict, args) -> None:
    """Ratios (a) and (c), printed as soon as each is measured."""
    from plsearch.families import get_family
    from plsearch.importance import compute_importance
    from plsearch.prune import Recipe, build_candidate

    parent = _parent(shape)
    family = get_family(parent)
    parent_bytes = sum(p.numel() * p.element_size() for p in parent.parameters())
    print(f"parent: {sum(p.numel() for p in parent.parameters()) / 1e6:.1f} M params, "
          f"{parent_bytes / 2**30:.2f} GiB", flush=True)
    calib = _calibration(shape["vocab_size"], args.calib_samples, args.calib_seq_len)
    x512 = _calibration(shape["vocab_size"], 1, 512, seed=1)

    # (c) importance pass vs plain forward over the same batches (8 rows per forward).
    decoder = family.decoder(parent)

    def plain_decoder():
        with torch.inference_mode():
            for batch in calib.split(8):
                decoder(input_ids=batch, use_cache=False)

    def importance_pass():
        return compute_importance(parent, calib, family)

    t_imp, t_dec = _alternate(importance_pass, plain_decoder, args.repeats)
    print(f"\n(c) importance pass / plain forward, same batches "
          f"({args.calib_samples}x{args.calib_seq_len}) (target <= 1.3)")
    print(f"    ratio {statistics.median(t_imp) / statistics.median(t_dec):.3f}  "
          f"importance {_stats(t_imp)}; plain decoder forward {_stats(t_dec)}", flush=True)
    print("    (both run the decoder only: the pass needs no logits, so it skips lm_head)")
    imp = importance_pass()

    # (a) candidate build vs one forward of 1x512 tokens: one warm-up each, then per
    # repeat one forward followed by every build.
    def forward512():
        with torch.inference_mode():
            parent(input_ids=x512, use_cache=False)

    half = _candidate_arch(family.arch_from_config(parent.config), "half", args.quick)
    builds = {
        f"half  {name}": (half, Recipe.preset(name)) for name in ("pangu", "minitron")}
    builds["third pangu"] = (_candidate_arch(family.arch_from_config(parent.config), "third", args.quick), Recipe.preset("pangu"))
    builds["half  pangu+act"] = (half, Recipe.preset("pangu", slnp="act"))
    times: dict[str, list[float]] = {"forward": []}
    for repeat in range(args.repeats + 1):  # the first round is the warm-up
        for label, fn in [("forward", forward512)] + [
                (label, lambda a=arch, r=recipe: build_candidate(
                    parent, imp, a, r, calib_batches=calib[:1]))
                for label, (arch, recipe) in builds.items()]:
            start = time.perf_counter()
            fn()
            if repeat:
                times.setdefault(label, []).append(time.perf_counter() - start)
    fwd = statistics.median(times["forward"])
    print("\n(a) candidate build time / one forward of 1x512 tokens (target <= 5)")
    print(f"    forward 1x512 {_stats(times['forward'])}")
    for label in builds:
        print(f"    {label:16s} ratio {statistics.median(times[label]) / fwd:.2f}  "
              f"build {_stats(times[label])}")
    print(f"    (pangu+act includes its calibration pass over 1x{args.calib_seq_len} tokens)",
          flush=True)


def absorb_speed(repeats: int) -> None:
    """Forward time of the built-in parent with post-norms vs its absorbed twin."""
    from plsearch.errors import PlsearchError
    from plsearch.families import get_family
    from plsearch.importance import compute_importance
    from plsearch.models import load_model
    from plsearch.prune import Recipe, build_candidate

    try:
        parent, _, _ = load_model(None)
    except PlsearchError as exc:
        print(f"\nabsorption speed: skipped ({exc})")
        return
    family = get_family(parent)
    vocab = parent.config.vocab_size
    calib = _calibration(vocab, 16, 128)
    imp = compute_importance(parent, calib, family)
    arch = family.arch_from_config(parent.config)
    absorbed, report = build_candidate(parent, imp, arch, Recipe.preset("pangu"),
                                       calib_batches=calib)
    print(f"\nabsorption on the built-in parent ({parent.config.model_type} -> "
          f"{absorbed.config.model_type}, {arch}); decoder output rel. error "
          f"{report.absorbed_output_rel_error:.3g}, worst post-norm rel. error "
          f"{max(e['rel_error'] for e in report.absorbed):.3g}")
    for label, batch, seq, steps in (("prefill 1x512", 1, 512, 0), ("prefill 8x128", 8, 128, 0),
                                     ("decode 64 tokens after 64", 1, 64, 64)):
        x = _calibration(vocab, batch, seq, seed=2)

        def run(model, x=x, steps=steps):
            with torch.inference_mode():
                if not steps:
                    model(input_ids=x, use_cache=False)
                    return
                out = model(input_ids=x, use_cache=True)
                for _ in range(steps):
                    token = out.logits[:, -1:].argmax(-1)
                    out = model(input_ids=token, cache=out.cache, use_cache=True)

        t_with, t_without = _alternate(lambda: run(parent), lambda: run(absorbed), repeats)
        speedup = statistics.median(t_with) / statistics.median(t_without)
        print(f"    {label:26s} with post-norms {_stats(t_with)}")
        print(f"    {'':26s} absorbed        {_stats(t_without)}  -> speed-up x{speedup:.3f}")


if __name__ == "__main__":
    main()
