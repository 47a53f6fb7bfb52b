"""Test helper: a synthetic latency table that follows a known linear cost law."""

from __future__ import annotations

from plsearch.arch import ArchConfig
from plsearch.latency.predictor import block_features, head_features

FINGERPRINT = {
    "backend": "cpu", "clock": "thread", "device_name": "Test CPU", "torch_version": "2.x",
    "cuda_version": "", "cann_version": "", "dtype": "float32", "threads": 1,
    "engine": "hf-generate", "host": "h", "load_avg": 0.5,
}
# The known law (ms per call): a constant plus costs per FLOP and per byte.
LAW = {
    "block/prefill": {"const": 0.05, "proj_flops": 2e-8, "attn_flops": 4e-8, "kv_bytes": 1e-7},
    "block/decode": {"const": 0.08, "weight_bytes": 3e-7, "kv_bytes": 5e-7},
    "head/prefill": {"const": 0.2, "lm_flops": 1e-8, "embed_bytes": 1e-6},
    "head/decode": {"const": 0.3, "lm_bytes": 2e-7},
}
BASE = ArchConfig(num_hidden_layers=8, hidden_size=128, num_attention_heads=8,
                  num_key_value_heads=2, head_dim=16, intermediate_size=384, vocab_size=512,
                  tie_word_embeddings=True)


def law_ms(key: str, feats: dict) -> float:
    return float(sum(coef * float(feats[name]) for name, coef in LAW[key].items()))


def row(part, phase, arch, layers, batch, seq, context, ms, generated=0) -> dict:
    shape = arch.to_dict()
    del shape["tie_word_embeddings"]
    shape["num_hidden_layers"] = layers
    return {
        "run_id": "2026-01-01T00:00:00", "timestamp": "2026-01-01T00:00:01",
        "device_tag": "cpu-test-cpu", **FINGERPRINT, "plsearch_version": "0.1.0",
        "model_type": "glm4", "part": part, "phase": phase, **shape, "batch_size": batch,
        "seq_len": seq, "context": context, "generated_len": generated, "median_ms": ms,
        "p10_ms": ms * 0.95, "p90_ms": ms * 1.05, "repeats": 5, "seed": 0,
    }


def synthetic_rows(stack: int = 2) -> list[dict]:
    """Block and head rows of a grid of shapes, timed exactly by LAW."""
    rows = []
    for hidden in (64, 96, 128):
        for kv, heads in ((1, 2), (2, 4), (2, 8)):
            for ffn in (128, 256, 384):
                arch = BASE.replace(hidden_size=hidden, num_key_value_heads=kv,
                                    num_attention_heads=heads, intermediate_size=ffn)
                for batch, seq in ((2, 16), (2, 32), (3, 24)):
                    f = block_features(arch, batch, seq, seq, "prefill", 4)
                    ms = stack * law_ms("block/prefill", f)
                    rows.append(row("block", "prefill", arch, stack, batch, seq, seq, ms))
                for batch, context in ((2, 1), (2, 17), (2, 40), (3, 30)):
                    f = block_features(arch, batch, 1, context, "decode", 4)
                    ms = stack * law_ms("block/decode", f)
                    rows.append(row("block", "decode", arch, stack, batch, 1, context, ms))
        arch = BASE.replace(hidden_size=hidden)
        for batch, seq in ((2, 16), (2, 32), (3, 24)):
            rows.append(row("head", "prefill", arch, 0, batch, seq, seq,
                            law_ms("head/prefill", head_features(arch, batch, seq, 4))))
        for batch, context in ((2, 1), (2, 17), (3, 40)):
            rows.append(row("head", "decode", arch, 0, batch, 1, context,
                            law_ms("head/decode", head_features(arch, batch, 1, 4))))
    return rows
