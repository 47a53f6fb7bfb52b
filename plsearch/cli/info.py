"""`plsearch info`: describe a model's family and architecture."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("info", help="family, arch, parameters, FLOPs/token, KV bytes/token")
    p.add_argument("--model", help="HF model folder (default: the built-in parent)")
    p.add_argument("--context", type=int, default=512,
                   help="context length for the FLOPs and decode figures (default 512)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_info)


def describe(model: str | None, context: int) -> dict:
    from plsearch.families import get_family
    from plsearch.models import read_config, resolve_model_dir

    model_dir = resolve_model_dir(model)
    config = read_config(model_dir)
    family = get_family(config)
    arch = family.arch_from_config(config)
    traits = family.traits(config)
    return {
        "model": str(model_dir),
        "family": family.model_type,
        "arch": arch.to_dict(),
        "params": arch.num_params(traits),
        "flops_per_token": {
            "prefill": arch.flops_per_token(phase="prefill", context=context),
            "decode": arch.flops_per_token(phase="decode", context=context),
            "context": context,
        },
        "kv_cache_bytes_per_token": {"bf16": arch.kv_cache_bytes_per_token(2),
                                     "fp32": arch.kv_cache_bytes_per_token(4)},
    }


def cmd_info(args) -> int:
    info = describe(args.model, args.context)
    if args.json:
        print(json.dumps(info))
        return 0
    arch = info["arch"]
    flops = info["flops_per_token"]
    print(f"model     {info['model']}")
    print(f"family    {info['family']}")
    print(f"arch      layers {arch['num_hidden_layers']}, hidden {arch['hidden_size']}, "
          f"heads {arch['num_attention_heads']}/{arch['num_key_value_heads']} KV x "
          f"{arch['head_dim']}, FFN {arch['intermediate_size']}, vocab {arch['vocab_size']}"
          f"{' (tied)' if arch['tie_word_embeddings'] else ''}")
    print(f"params    {info['params']:,}")
    print(f"FLOPs/tok prefill {flops['prefill'] / 1e6:.1f} M, decode {flops['decode'] / 1e6:.1f} M "
          f"(context {flops['context']})")
    print(f"KV cache  {info['kv_cache_bytes_per_token']['bf16']:,} bytes/token (bf16)")
    return 0
