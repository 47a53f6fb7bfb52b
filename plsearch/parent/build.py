"""`plsearch parent build`: the recipe that makes the built-in parent model.

Three linear steps, each resumable from what is already in the work folder:
1. prepare:  corpus split, held-out skill sets, tokenizer, token streams (numpy).
2. train:    next-token cross-entropy on a seeded mix of text and skills, AdamW with
             warm-up and cosine decay; a checkpoint every `checkpoint_every` steps
             (safetensors only), so a killed run continues where it stopped.
3. finalize: held-out perplexity and skill accuracy, model card, package folder.

Batches depend only on (seed, step), so a resumed run sees exactly the batches an
uninterrupted one would have.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from plsearch import atomic
from plsearch.parent import corpus, skills
from plsearch.parent.tokenizer import EOS, train_tokenizer

logger = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).parent
MODEL_DIR = PACKAGE_DIR / "model"  # the shipped parent (HF folder)
DATA_DIR = PACKAGE_DIR / "data"  # held-out text and skills for offline evaluation


@dataclass(frozen=True)
class ParentRecipe:
    seed: int = 0
    # Tokenizer: 8192 byte-level BPE tokens; the tied embedding is then ~2 M parameters.
    vocab_size: int = 8192
    # Shape: a glm4 (sandwich-norm) decoder so every Pangu Light step applies.
    num_hidden_layers: int = 8
    hidden_size: int = 256
    num_attention_heads: int = 8
    num_key_value_heads: int = 2  # GQA with 4 query heads per group
    head_dim: int = 32
    intermediate_size: int = 768
    # Training.
    seq_len: int = 128  # skills are short; 128 keeps a CPU step cheap
    batch_size: int = 8
    max_steps: int = 1600
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    # Share of training rows drawn from the synthetic skills (the rest is text).
    skill_fraction: float = 0.6
    skill_stream_tokens: int = 6_000_000
    heldout_per_skill: int = 400
    checkpoint_every: int = 100


# ---------------------------------------------------------------- prepare


def prepare(work: Path, recipe: ParentRecipe) -> None:
    """Corpus split, held-out skills, tokenizer and token streams (skipped when present)."""
    if (work / "streams.npz").exists():
        return
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    train_docs, heldout_docs = corpus.split_documents(corpus.documents())
    _write_jsonl(data / "heldout_text.jsonl", [{"text": d} for d in heldout_docs])

    heldout_prompts: set[str] = set()
    for i, skill in enumerate(skills.SKILLS):
        examples = skills.heldout_examples(skill, recipe.heldout_per_skill,
                                           seed=recipe.seed + 10_000 + i)
        heldout_prompts.update(e.prompt for e in examples)
        _write_jsonl(data / f"heldout_{skill}.jsonl", [e.to_dict() for e in examples])

    stream = skills.skill_stream(recipe.seed, exclude=heldout_prompts)
    tok_sample = [next(stream).text for _ in range(20_000)]
    tokenizer = train_tokenizer(train_docs + tok_sample, recipe.vocab_size, work / "tokenizer")
    eos = tokenizer.convert_tokens_to_ids(EOS)

    text_ids = _encode_joined(tokenizer, train_docs, sep=[eos])
    newline = tokenizer.encode("\n")
    skill_ids: list[int] = []
    while len(skill_ids) < recipe.skill_stream_tokens:
        lines = [next(stream).text for _ in range(5000)]
        skill_ids.extend(_encode_joined(tokenizer, lines, sep=newline))

    def write_streams(tmp: Path) -> None:
        with tmp.open("wb") as fh:  # np.savez would add .npz to a name
            np.savez(fh, text=np.asarray(text_ids, dtype=np.int32),
                     skills=np.asarray(skill_ids, dtype=np.int32))

    atomic.write_file(work / "streams.npz", write_streams)
    logger.info("streams: %d text tokens, %d skill tokens", len(text_ids), len(skill_ids))


def _encode_joined(tokenizer, texts: list[str], sep: list[int]) -> list[int]:
    out: list[int] = []
    for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        out.extend(ids)
        out.extend(sep)
    return out


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    atomic.write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


# ---------------------------------------------------------------- model


def parent_config(recipe: ParentRecipe, eos_id: int):
    from transformers import Glm4Config

    return Glm4Config(
        vocab_size=recipe.vocab_size,
        hidden_size=recipe.hidden_size,
        intermediate_size=recipe.intermediate_size,
        num_hidden_layers=recipe.num_hidden_layers,
        num_attention_heads=recipe.num_attention_heads,
        num_key_value_heads=recipe.num_key_value_heads,
        head_dim=recipe.head_dim,
        max_position_embeddings=1024,
        partial_rotary_factor=0.5,
        attention_bias=True,
        tie_word_embeddings=True,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=None,  # a padding_idx would freeze the EOS embedding (EOS = pad)
    )


def batch_for_step(streams, recipe: ParentRecipe, step: int) -> np.ndarray:
    """(batch, seq_len + 1) token windows; a pure function of (seed, step)."""
    rng = np.random.default_rng([recipe.seed, step])
    rows = []
    for _ in range(recipe.batch_size):
        source = streams["skills"] if rng.random() < recipe.skill_fraction else streams["text"]
        start = int(rng.integers(0, len(source) - recipe.seq_len - 1))
        rows.append(source[start : start + recipe.seq_len + 1])
    return np.stack(rows)


def lr_at(step: int, recipe: ParentRecipe) -> float:
    if step < recipe.warmup_steps:
        return recipe.lr * (step + 1) / recipe.warmup_steps
    progress = (step - recipe.warmup_steps) / max(1, recipe.max_steps - recipe.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return recipe.lr * (recipe.min_lr_ratio + (1 - recipe.min_lr_ratio) * cosine)


# ---------------------------------------------------------------- train


def train(work: Path, recipe: ParentRecipe, progress=None) -> dict:
    """Train (or resume) to recipe.max_steps; returns the training state dict."""
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer, Glm4ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(work / "tokenizer"))
    eos = tokenizer.convert_tokens_to_ids(EOS)
    streams = dict(np.load(work / "streams.npz"))
    torch.manual_seed(recipe.seed)
    model = Glm4ForCausalLM(parent_config(recipe, eos))
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": recipe.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=recipe.lr, betas=(0.9, 0.95), eps=1e-8,
    )
    ckpt = work / "checkpoint"
    state = {"step": 0, "tokens": 0, "seconds": 0.0, "losses": []}
    if (ckpt / "state.json").exists():
        state = json.loads((ckpt / "state.json").read_text())
        model.load_state_dict(load_file(str(ckpt / "model.safetensors")), strict=False)
        model.tie_weights()
        _load_optimizer(optimizer, model, load_file(str(ckpt / "optimizer.safetensors")),
                        state["step"])
        logger.info("resumed at step %d", state["step"])

    model.train()
    start_step, t0, seconds0 = state["step"], time.perf_counter(), state["seconds"]
    if start_step < recipe.max_steps:  # a resumed run may stretch the schedule: record it
        state.setdefault("segments", []).append(
            {"from_step": start_step, "max_steps": recipe.max_steps})
    for step in range(start_step, recipe.max_steps):
        batch = torch.from_numpy(batch_for_step(streams, recipe, step)).long()
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, recipe)
        logits = model(input_ids=batch[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), batch[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        optimizer.step()
        state["step"] = step + 1
        state["tokens"] += batch[:, :-1].numel()
        state["seconds"] = seconds0 + time.perf_counter() - t0
        state["losses"].append([step, round(loss.item(), 4)])
        if progress is not None:
            progress(state, loss.item())
        if state["step"] % recipe.checkpoint_every == 0 or state["step"] == recipe.max_steps:
            _save_checkpoint(ckpt, model, optimizer, state, save_file)
    return state


def _save_checkpoint(ckpt: Path, model, optimizer, state: dict, save_file) -> None:
    """Weights and AdamW moments as safetensors (no pickle), then state.json last."""
    tmp = ckpt.with_name(ckpt.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = {k: v.detach().contiguous() for k, v in model.state_dict().items()
               if k != "lm_head.weight"}
    save_file(weights, str(tmp / "model.safetensors"))
    moments = {}
    for name, p in model.named_parameters():
        s = optimizer.state.get(p)
        if s:
            moments[f"exp_avg.{name}"] = s["exp_avg"].contiguous()
            moments[f"exp_avg_sq.{name}"] = s["exp_avg_sq"].contiguous()
    save_file(moments, str(tmp / "optimizer.safetensors"))
    (tmp / "state.json").write_text(json.dumps(state))
    shutil.rmtree(ckpt, ignore_errors=True)
    os.replace(tmp, ckpt)


def _load_optimizer(optimizer, model, moments: dict, step: int) -> None:
    import torch

    for name, p in model.named_parameters():
        if f"exp_avg.{name}" in moments:
            optimizer.state[p] = {
                "step": torch.tensor(float(step)),
                "exp_avg": moments[f"exp_avg.{name}"].clone(),
                "exp_avg_sq": moments[f"exp_avg_sq.{name}"].clone(),
            }


# ---------------------------------------------------------------- finalize


def load_trained(work: Path, recipe: ParentRecipe):
    """(model, tokenizer) from the latest checkpoint in the work folder, in eval mode."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, Glm4ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(work / "tokenizer"))
    eos = tokenizer.convert_tokens_to_ids(EOS)
    model = Glm4ForCausalLM(parent_config(recipe, eos))
    model.load_state_dict(load_file(str(work / "checkpoint" / "model.safetensors")),
                          strict=False)
    model.tie_weights()
    return model.eval(), tokenizer


def finalize(work: Path, recipe: ParentRecipe, state: dict, install: bool) -> dict:
    """Evaluate the trained weights, write the HF folder and model card."""
    import torch

    from plsearch.evaluate import perplexity
    from plsearch.parent.heldout import skill_accuracy, unigram_perplexity

    model, tokenizer = load_trained(work, recipe)
    streams = dict(np.load(work / "streams.npz"))
    heldout_text = [json.loads(line)["text"] for line in
                    (work / "data" / "heldout_text.jsonl").read_text().splitlines()]
    with torch.inference_mode():
        ppl = perplexity(model, tokenizer, heldout_text)
        acc = {s: skill_accuracy(model, tokenizer, _read_jsonl(work / "data" /
                                                             f"heldout_{s}.jsonl"))
               for s in skills.SKILLS}
    card = {
        "recipe": asdict(recipe),
        "params": sum(p.numel() for p in model.parameters()),
        "train_steps": state["step"],
        "train_tokens": state["tokens"],
        "train_seconds": round(state["seconds"], 1),
        "tokens_per_second": round(state["tokens"] / max(state["seconds"], 1e-9), 1),
        "heldout_text_perplexity": round(ppl, 3),
        "unigram_perplexity": round(unigram_perplexity(streams["text"], tokenizer,
                                                       heldout_text), 3),
        "skill_accuracy": {s: round(a, 4) for s, a in acc.items()},
        "skill_chance": {s: round(1.0 / len(_read_jsonl(work / "data" /
                                                        f"heldout_{s}.jsonl")[0]["choices"]), 4)
                         for s in skills.SKILLS},
        "heldout_sizes": {s: recipe.heldout_per_skill for s in skills.SKILLS},
        "final_train_loss": state["losses"][-1][1] if state["losses"] else None,
        # Each (re)start of training: the cosine schedule spans max_steps of its segment.
        "segments": state.get("segments", []),
    }
    out = work / "model"
    tmp = work / "model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    (tmp / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    (tmp / "README.md").write_text(model_card_markdown(card))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    if install:
        _install(work)
    return card


def _install(work: Path) -> None:
    """Copy the built model and held-out data into the package (the shipped parent)."""
    for src, dst in ((work / "model", MODEL_DIR), (work / "data", DATA_DIR)):
        tmp = dst.with_name(dst.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp)
        shutil.rmtree(dst, ignore_errors=True)
        os.replace(tmp, dst)


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def model_card_markdown(card: dict) -> str:
    r = card["recipe"]
    lines = [
        "# plsearch built-in parent",
        "",
        "A small glm4-family (sandwich-norm) causal LM that ships with plsearch so the whole",
        "pipeline runs with no download. Rebuild it with `plsearch parent build`.",
        "",
        (f"- Shape: {r['num_hidden_layers']} layers, hidden {r['hidden_size']}, "
         f"{r['num_attention_heads']} query heads / {r['num_key_value_heads']} KV groups, "
         f"head_dim {r['head_dim']}, FFN {r['intermediate_size']}, vocab {r['vocab_size']} "
         f"(tied), {card['params']:,} parameters."),
        ("- Training data: pydoc topics and standard-library docstrings (read with `ast`) "
         f"mixed with synthetic skills ({r['skill_fraction']:.0%} of rows): associative "
         "recall, copy, addition, balanced brackets. Held-out documents and skill prompts "
         "were excluded from training."),
        (f"- Training: {card['train_steps']} steps, {card['train_tokens']:,} tokens, "
         f"{card['train_seconds'] / 60:.1f} min on CPU "
         f"({card['tokens_per_second']:.0f} tokens/s), seed {r['seed']}."),
        "- Schedule segments (a resumed build with more --steps re-stretches the cosine "
        "decay from where it stopped): "
        + (", ".join(f"from step {s['from_step']} to {s['max_steps']}"
                     for s in card["segments"]) or "one run"),
        "",
        "## Held-out results",
        "",
        (f"- Text perplexity: {card['heldout_text_perplexity']:.2f} "
         f"(unigram baseline {card['unigram_perplexity']:.2f})"),
        "",
        "| skill | accuracy | chance |",
        "|---|---|---|",
    ]
    for s, a in card["skill_accuracy"].items():
        lines.append(f"| {s} | {a:.3f} | {card['skill_chance'][s]:.3f} |")
    return "\n".join(lines) + "\n"
