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
    # 4,800 steps x 8 x 128 = 4.9 M tokens: what the shipped parent saw in all (two runs of
    # the previous recipe, then a warm-started run of this one; see its model card), about
    # 2.5 hours on two CPU cores. A GPU (--device cuda) affords more: raise --steps.
    max_steps: int = 4800
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    # Share of training rows drawn from the synthetic skills (the rest is text). Skill rows
    # are generated afresh for every step (a pure function of seed and step), so the
    # model never sees the same random example twice and cannot memorize its way out.
    skill_fraction: float = 0.7
    skills: tuple[str, ...] = skills.SKILLS
    heldout_per_skill: int = 400
    checkpoint_every: int = 100


# ---------------------------------------------------------------- prepare


def prepare(work: Path, recipe: ParentRecipe, init_from: Path | None = None) -> None:
    """Corpus split, held-out skills, tokenizer and the text stream (skipped when present).

    With `init_from` (an HF folder), its tokenizer is used instead of training one.
    """
    if (work / "streams.npz").exists():
        return
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    train_docs, heldout_docs = corpus.split_documents(corpus.documents())
    _write_jsonl(data / "heldout_text.jsonl", [{"text": d} for d in heldout_docs])

    heldout_prompts: set[str] = set()
    for skill in recipe.skills:
        seed = recipe.seed + 10_000 + skills.SKILLS.index(skill)
        examples = skills.heldout_examples(skill, recipe.heldout_per_skill, seed=seed)
        heldout_prompts.update(e.prompt for e in examples)
        _write_jsonl(data / f"heldout_{skill}.jsonl", [e.to_dict() for e in examples])

    stream = skills.skill_stream(recipe.seed, exclude=heldout_prompts, skills=recipe.skills)
    if init_from is not None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(init_from))
        tokenizer.save_pretrained(str(work / "tokenizer"))
    else:
        tok_sample = [next(stream).text for _ in range(20_000)]
        tokenizer = train_tokenizer(train_docs + tok_sample, recipe.vocab_size,
                                    work / "tokenizer")
    eos = tokenizer.convert_tokens_to_ids(EOS)
    text_ids = _encode_joined(tokenizer, train_docs, sep=[eos])

    def write_streams(tmp: Path) -> None:
        with tmp.open("wb") as fh:  # np.savez would add .npz to a name
            np.savez(fh, text=np.asarray(text_ids, dtype=np.int32))

    atomic.write_file(work / "streams.npz", write_streams)
    logger.info("text stream: %d tokens", len(text_ids))


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


class BatchMaker:
    """(batch, seq_len + 1) token windows for a step; a pure function of (seed, step).

    A text row is a random window of the text stream; a skill row is a run of fresh skill
    examples, one per line, starting at an example's first token (as an evaluation prompt
    does). Held-out prompts are never generated into training rows. Picklable, so a pool of
    processes can make the batches of later steps while the model trains.
    """

    def __init__(self, work: Path, recipe: ParentRecipe):
        self.work, self.recipe = work, recipe
        self._state = None

    def _load(self):
        if self._state is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(self.work / "tokenizer"))
            text = np.load(self.work / "streams.npz")["text"]
            exclude = {row["prompt"] for s in self.recipe.skills
                       for row in _read_jsonl(self.work / "data" / f"heldout_{s}.jsonl")}
            self._state = (tokenizer, text, exclude, tokenizer.encode("\n"))
        return self._state

    def __getstate__(self):
        return {"work": self.work, "recipe": self.recipe, "_state": None}

    def __call__(self, step: int) -> np.ndarray:
        tokenizer, text, exclude, newline = self._load()
        r = self.recipe
        rng = np.random.default_rng([r.seed, step])
        rows = []
        for _ in range(r.batch_size):
            if rng.random() < r.skill_fraction:
                rows.append(self._skill_row(rng, tokenizer, exclude, newline))
            else:
                start = int(rng.integers(0, len(text) - r.seq_len - 1))
                rows.append(text[start : start + r.seq_len + 1])
        return np.stack(rows).astype(np.int64)

    def _skill_row(self, rng, tokenizer, exclude, newline) -> np.ndarray:
        r = self.recipe
        ids: list[int] = []
        while len(ids) < r.seq_len + 1:
            lines = []
            while len(lines) < 16:
                skill = r.skills[int(rng.integers(0, len(r.skills)))]
                example = skills.GENERATORS[skill](rng)
                if example.prompt not in exclude:
                    lines.append(example.text)
            for line_ids in tokenizer(lines, add_special_tokens=False)["input_ids"]:
                ids.extend(line_ids)
                ids.extend(newline)
        return np.asarray(ids[: r.seq_len + 1], dtype=np.int64)


def batches(maker: BatchMaker, steps: range, workers: int):
    """The batches of `steps` in order, made by `workers` processes (0: in this one)."""
    if workers <= 0:
        yield from map(maker, steps)
        return
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap(maker, steps, chunksize=4)


def lr_at(step: int, recipe: ParentRecipe) -> float:
    if step < recipe.warmup_steps:
        return recipe.lr * (step + 1) / recipe.warmup_steps
    progress = (step - recipe.warmup_steps) / max(1, recipe.max_steps - recipe.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return recipe.lr * (recipe.min_lr_ratio + (1 - recipe.min_lr_ratio) * cosine)


# ---------------------------------------------------------------- train


def train(work: Path, recipe: ParentRecipe, progress=None, device: str = "cpu",
          workers: int = 0, init_from: Path | None = None) -> dict:
    """Train (or resume) to recipe.max_steps on `device`; returns the training state dict.

    `workers` processes make the batches ahead of the model (they are a pure function of
    seed and step, so the result does not depend on it). Training is float32 everywhere.
    `init_from` (an HF folder of the same shape) gives the starting weights of a fresh run.
    """
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer, Glm4ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(work / "tokenizer"))
    eos = tokenizer.convert_tokens_to_ids(EOS)
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
    elif init_from is not None:
        model.load_state_dict(load_file(str(Path(init_from) / "model.safetensors")),
                              strict=False)
        model.tie_weights()
        state["init_from"] = str(init_from)
    model.to(device)
    _move_optimizer_state(optimizer, device)

    model.train()
    start_step, t0, seconds0 = state["step"], time.perf_counter(), state["seconds"]
    if start_step < recipe.max_steps:  # a resumed run may stretch the schedule: record it
        state.setdefault("segments", []).append(
            {"from_step": start_step, "max_steps": recipe.max_steps})
    state["device"] = str(device)
    steps = range(start_step, recipe.max_steps)
    for step, rows in zip(steps, batches(BatchMaker(work, recipe), steps, workers)):
        batch = torch.from_numpy(rows).to(device)
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
        if step % 10 == 0 or step + 1 == recipe.max_steps:  # .item() waits for the device
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
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()
               if k != "lm_head.weight"}
    save_file(weights, str(tmp / "model.safetensors"))
    moments = {}
    for name, p in model.named_parameters():
        s = optimizer.state.get(p)
        if s:
            moments[f"exp_avg.{name}"] = s["exp_avg"].cpu().contiguous()
            moments[f"exp_avg_sq.{name}"] = s["exp_avg_sq"].cpu().contiguous()
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


def _move_optimizer_state(optimizer, device) -> None:
    for state in optimizer.state.values():
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key] = state[key].to(device)


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


def finalize(work: Path, recipe: ParentRecipe, state: dict, install: bool,
             command: str | None = None) -> dict:
    """Evaluate the trained weights (on the CPU), write the HF folder and model card.

    `command` is the command line that trained the model, recorded in the card.
    """
    import torch

    from plsearch.evaluate import perplexity
    from plsearch.parent.heldout import skill_scores, unigram_perplexity

    model, tokenizer = load_trained(work, recipe)
    streams = dict(np.load(work / "streams.npz"))
    heldout_text = [json.loads(line)["text"] for line in
                    (work / "data" / "heldout_text.jsonl").read_text().splitlines()]
    with torch.inference_mode():
        ppl = perplexity(model, tokenizer, heldout_text)
        scores = {s: skill_scores(model, tokenizer, _read_jsonl(work / "data" /
                                                                f"heldout_{s}.jsonl"))
                  for s in recipe.skills}
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
        "skill_accuracy": {s: round(v.acc, 4) for s, v in scores.items()},
        "skill_stderr": {s: round(v.stderr, 4) for s, v in scores.items()},
        # The best constant answer (always the same position / label) on the held-out set.
        "skill_constant_baseline": {s: round(v.constant, 4) for s, v in scores.items()},
        "skill_chance": {s: round(1.0 / skills.n_choices(s), 4) for s in recipe.skills},
        "heldout_sizes": {s: v.n for s, v in scores.items()},
        "device": state.get("device", "cpu"),
        "command": command,
        # A warm start: the card of the model whose weights training started from.
        "initialized_from": _init_card(state.get("init_from")),
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


def _init_card(init_from: str | None) -> dict | None:
    if init_from is None:
        return None
    card_file = Path(init_from) / "card.json"
    card = json.loads(card_file.read_text()) if card_file.exists() else {}
    keep = ("recipe", "train_steps", "train_tokens", "train_seconds", "segments", "rebuild",
            "skill_accuracy", "heldout_text_perplexity")
    return {"path": init_from, **{k: card[k] for k in keep if k in card}}


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
         f"mixed with synthetic skills ({r['skill_fraction']:.0%} of rows, generated afresh "
         f"for every step): {', '.join(r['skills'])}. Held-out documents and skill prompts "
         "were excluded from training."),
        (f"- Training: {card['train_steps']:,} steps of {r['batch_size']} x {r['seq_len']} "
         f"tokens, {card['train_tokens']:,} tokens, {card['train_seconds'] / 60:.1f} min on "
         f"{card.get('device', 'cpu')} ({card['tokens_per_second']:,.0f} tokens/s), "
         f"seed {r['seed']}."),
        ("- Schedule segments (a resumed build with more --steps re-stretches the cosine "
         "decay from where it stopped): "
         + (", ".join(f"from step {s['from_step']} to {s['max_steps']}"
                      for s in card["segments"]) or "one run")),
    ]
    if card.get("command"):
        lines += ["", "Built with:", "", f"    {card['command']}"]
    init = card.get("initialized_from")
    if init:
        lines += ["", (f"Warm start: training began from the weights and tokenizer of "
                       f"{init['path']} ({init.get('train_steps', '?'):,} steps, "
                       f"{init.get('train_tokens', 0):,} tokens"
                       + (f"; built with `{init['rebuild']}`" if init.get("rebuild") else "")
                       + "), so the model has seen "
                       f"{init.get('train_tokens', 0) + card['train_tokens']:,} tokens in all.")]
    if card.get("rebuild"):
        lines += ["", "Rebuild from scratch:", "", f"    {card['rebuild']}"]
    if card.get("device", "cpu") != "cpu":
        lines += ["", (f"The same command with `--device cpu` trains the same recipe on a CPU "
                       f"(at about 600 tokens/s on one core it needs "
                       f"{card['train_tokens'] / 600 / 3600:.0f} hours; it checkpoints every "
                       f"{r['checkpoint_every']} steps and resumes). CPU and GPU arithmetic "
                       "differ, so the weights would not be bit-identical.")]
    lines += [
        "",
        "## Held-out results",
        "",
        (f"- Text perplexity: {card['heldout_text_perplexity']:.2f} "
         f"(unigram baseline {card['unigram_perplexity']:.2f})"),
        "",
        ("Skills: accuracy on the whole held-out set (answer positions and labels balanced), "
        "its standard error, the best constant answer, and the margin over it in "
        "standard errors."),
        "",
        "| skill | items | accuracy | stderr | constant | margin (SE) |",
        "|---|---|---|---|---|---|",
    ]
    for s, a in card["skill_accuracy"].items():
        se = card.get("skill_stderr", {}).get(s)
        const = card.get("skill_constant_baseline", {}).get(s, card["skill_chance"][s])
        margin = f"{(a - const) / se:.1f}" if se else "all correct (stderr 0)"
        se_text = f"{se:.3f}" if se is not None else "n/a"
        lines.append(f"| {s} | {card['heldout_sizes'][s]} | {a:.3f} | {se_text} | "
                     f"{const:.3f} | {margin} |")
    return "\n".join(lines) + "\n"
