"""`plsearch prune`: build one pruned candidate from a parent and save it as an HF folder."""

from __future__ import annotations

import argparse
import functools
import json
import sys
from dataclasses import asdict
from pathlib import Path

from plsearch.cli.common import add_json_arg, add_model_args, torch_dtype
from plsearch.errors import ConfigError, InvalidArchError, ModelLoadError

_AXES = ("num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads",
         "intermediate_size")


def register(sub) -> None:
    from plsearch.prune.recipe import RECIPE_NAMES

    p = sub.add_parser("prune", help="build one pruned candidate (Pangu Light) from a parent")
    p.add_argument("--model", help="parent HF folder (default: the built-in parent)")
    p.add_argument("--out", required=True, help="new folder for the candidate")
    add_model_args(p)
    p.add_argument("--device-profile", metavar="YAML", help="device profile whose alignment "
                   "the shape is checked against (default: the shipped one of --device)")
    add_json_arg(p)
    shape = p.add_argument_group("target shape (omitted axes keep the parent's size)")
    shape.add_argument("--arch", metavar="ARCH.json", help="arch JSON (HF field names)")
    for axis in _AXES:
        shape.add_argument(f"--{axis.replace('_', '-')}", type=int, metavar="N", dest=axis,
                           help=f"target {axis} (default: the parent's)")
    steps = p.add_argument_group("recipe")
    steps.add_argument("--recipe", choices=RECIPE_NAMES, default="pangu",
                       help="preset (default pangu); the flags below override its pieces")
    steps.add_argument("--clap", action=argparse.BooleanOptionalAction, default=None,
                       help="move removed layers' best KV groups into their receiver")
    steps.add_argument("--slnp", choices=("l2", "act", "none"), default=None,
                       help="rescale sliced hidden-size norms")
    steps.add_argument("--absorb-post-norm", action=argparse.BooleanOptionalAction,
                       default=None, help="fold post-norms into o_proj/down_proj")
    calib = p.add_argument_group("calibration")
    calib.add_argument("--calib-data", help=".txt/.jsonl file or offline HF dataset "
                       "(default: the built-in parent's training mix)")
    calib.add_argument("--calib-samples", type=int, default=64, metavar="N",
                       help="calibration windows")
    calib.add_argument("--calib-seq-len", type=int, default=256, metavar="T",
                       help="tokens per calibration window")
    calib.add_argument("--seed", type=int, default=0, help="which windows are drawn")
    calib.add_argument("--batch-size", type=int, default=8, help="sequences per forward")
    calib.add_argument("--cache-dir", help="importance cache (default "
                       "$PLSEARCH_CACHE/importance or ~/.cache/plsearch/importance)")
    p.set_defaults(func=cmd_prune)


def cmd_prune(args) -> int:
    import torch
    from transformers import AutoTokenizer

    from plsearch.data import data_id
    from plsearch.families import get_family
    from plsearch.importance import ImportanceKey, compute_importance
    from plsearch.models import read_config, resolve_model_dir, weights_hash
    from plsearch.prune import (
        Recipe,
        build_candidate,
        check_candidate,
        check_out_dir,
        save_candidate,
    )
    from plsearch.prune.stream import open_streamed

    # Everything that can be wrong is checked before any weight is read.
    check_out_dir(args.out)
    model_dir = resolve_model_dir(args.model)
    config = read_config(model_dir)
    family = get_family(config)
    parent_arch = family.arch_from_config(config)
    arch = _target_arch(args, parent_arch)
    recipe = Recipe.preset(args.recipe, clap=args.clap, slnp=args.slnp,
                           absorb_post_norm=args.absorb_post_norm)
    recipe = check_candidate(config, arch, recipe)
    _check_calibration(args, config, model_dir)
    off = _off_alignment(arch, args)
    if off:
        print(f"plsearch: warning: {off}", file=sys.stderr)
    # Writable outputs, checked before the model is read; a killed run's temporary goes.
    from plsearch import atomic
    from plsearch.importance import default_cache_dir

    atomic.remove_stale_temps(Path(args.out).expanduser())
    atomic.check_writable(Path(args.out).expanduser().parent, "the folder of --out")
    atomic.check_writable(args.cache_dir or default_cache_dir(), "importance cache")

    # The parent streams: its layer matrices are read from the safetensors files when a
    # pass or the build needs them, so pruning never holds the whole parent.
    model = open_streamed(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    key = ImportanceKey(parent_hash=weights_hash(model_dir), data=data_id(args.calib_data),
                        num_samples=args.calib_samples, seq_len=args.calib_seq_len,
                        seed=args.seed)
    windows = functools.cache(functools.partial(_windows, tokenizer, args))
    importance = compute_importance(model, windows, family, key=key, cache_dir=args.cache_dir,
                                    batch_size=args.batch_size,
                                    progress=sys.stderr.isatty())
    needs_data = recipe.slnp == "act" or recipe.absorb_post_norm
    with torch.no_grad():
        candidate, report = build_candidate(model, importance, arch, recipe,
                                            calib_batches=windows() if needs_data else None,
                                            batch_size=args.batch_size)
    meta = {
        "parent": {"path": str(model_dir), "weights_hash": key.parent_hash,
                   "model_type": family.model_type},
        "arch": arch.to_dict(),
        "recipe": recipe.to_dict(),
        "importance_key": {**asdict(key), "digest": key.digest()},
        "seed": args.seed,
        "report": report.to_dict(),
    }
    candidate = candidate.to(dtype=torch_dtype(args.dtype))  # pruning itself runs on the CPU
    out = save_candidate(candidate, tokenizer, args.out, meta)
    parent_params = sum(p.numel() for p in model.parameters())
    if args.json:
        print(json.dumps({"out": str(out), "parent_params": parent_params,
                          "alignment_warning": off, **report.to_dict()}, default=str))
        return 0
    _print_summary(out, report, parent_arch, parent_params)
    return 0


def _off_alignment(arch, args) -> str | None:
    """A sentence naming the axes of ``arch`` that are not multiples of the device
    profile's alignment (such shapes run slower than the aligned neighbours), or None."""
    from plsearch.cli.latency import DEFAULT_PROFILES
    from plsearch.config import load_device_profile

    if args.device_profile:
        profile = load_device_profile(args.device_profile)
    else:
        from plsearch.latency.timers import resolve_device

        profile = load_device_profile(DEFAULT_PROFILES[resolve_device(args.device)])
    snapped = arch.aligned(**profile.align_kwargs())
    off = [f"{name} {getattr(arch, name)} (aligned: {getattr(snapped, name)})"
           for name in ("hidden_size", "intermediate_size", "num_key_value_heads",
                        "num_attention_heads")
           if getattr(arch, name) != getattr(snapped, name)]
    if not off:
        return None
    return (f"{', '.join(off)} off the alignment of device profile {profile.name}; such "
            "shapes run slower than aligned ones on that device")


def _target_arch(args, parent_arch):
    from plsearch.arch import ArchConfig

    axes = {axis: getattr(args, axis) for axis in _AXES if getattr(args, axis) is not None}
    if args.arch and axes:
        flags = ", ".join(f"--{a.replace('_', '-')}" for a in axes)
        raise InvalidArchError(f"pass either --arch or the axis flags, not both ({flags})")
    if args.arch:
        return ArchConfig.from_json(args.arch)
    return ArchConfig(**{**parent_arch.to_dict(), **axes})


def _check_calibration(args, config, model_dir: Path) -> None:
    if args.calib_samples < 1:
        raise ConfigError(f"--calib-samples must be at least 1, got {args.calib_samples}")
    if args.calib_seq_len < 2:
        raise ConfigError(f"--calib-seq-len must be at least 2, got {args.calib_seq_len}")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    limit = getattr(config, "max_position_embeddings", None)
    if limit and args.calib_seq_len > limit:
        raise ConfigError(f"--calib-seq-len {args.calib_seq_len} exceeds the model's "
                          f"max_position_embeddings ({limit}); use a shorter length")
    if args.calib_data:
        path = Path(args.calib_data).expanduser()
        if path.suffix in (".txt", ".jsonl", ".json") and not path.is_file():
            raise ConfigError(f"calibration file {path} does not exist; pass a .txt or "
                              ".jsonl file, or omit --calib-data for the built-in mix")
    if not any((model_dir / name).exists() for name in ("tokenizer.json", "tokenizer_config.json")):
        raise ModelLoadError(f"{model_dir} has no tokenizer; calibration needs one: save the "
                             "tokenizer into the model folder")


def _windows(tokenizer, args):
    from plsearch.data import sample_windows, token_stream

    stream = token_stream(tokenizer, args.calib_data, seed=args.seed)
    return sample_windows(stream, args.calib_samples, args.calib_seq_len, args.seed)


def _print_summary(out: Path, report, parent_arch, parent_params: int) -> None:
    from plsearch.arch import ArchConfig

    arch = ArchConfig.from_dict(report.arch)
    recipe = report.recipe
    pieces = [f"clap {'on' if recipe['clap'] else 'off'}", f"slnp {recipe['slnp']}",
              f"absorb {'on' if recipe['absorb_post_norm'] else 'off'}"]
    share = report.num_params / parent_params
    print(f"candidate  {out}  ({report.model_type}, {report.num_params:,} params, "
          f"{share:.0%} of the parent)")
    print(f"arch       {arch}  (parent {parent_arch})")
    print(f"recipe     {recipe['name']}: {', '.join(pieces)}")
    removed = ", ".join(f"{r}->{k}" for r, k in sorted(report.receiver_of.items()))
    print(f"layers     kept {report.kept_layers}" + (f"; removed->receiver {removed}"
                                                       if removed else ""))
    if recipe["clap"] and report.receiver_of:
        print(f"clap       {report.moved_groups} KV group(s) moved from removed layers")
    if report.absorbed:
        worst = max(report.absorbed, key=lambda n: n["rel_error"])
        print(f"absorption {len(report.absorbed)} post-norms folded; worst rel. error "
              f"{worst['rel_error']:.3g} (layer {worst['layer']} {worst['slot']}); decoder "
              f"output rel. error {report.absorbed_output_rel_error:.3g}")
    print(f"built in   {report.build_seconds:.1f} s")
