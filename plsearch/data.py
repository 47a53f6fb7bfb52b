"""Text -> token streams -> batches of token windows.

Sources:
- None / "builtin": the built-in parent's training mix (standard-library docstring
  text and the synthetic skills, held-out documents and prompts excluded), rebuilt
  deterministically from the seed and cached on disk per tokenizer;
- a local .txt file (whole text) or .jsonl file (a "text" field per line);
- otherwise the name of a Hugging Face dataset available offline, as
  "name[:config][:split]" (text column "text").

Windows are drawn at random offsets by a seeded generator, so the same seed gives the
same batches.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

from plsearch import atomic
from plsearch.errors import ConfigError

logger = logging.getLogger(__name__)

BUILTIN = "builtin"
BUILTIN_SKILL_TOKENS = 600_000  # skill tokens in the built-in stream (~ text tokens)


def cache_dir() -> Path:
    return Path(os.environ.get("PLSEARCH_CACHE", Path.home() / ".cache" / "plsearch"))


def heldout_dir() -> Path:
    """Held-out text and skill files of the built-in parent (never trained on)."""
    from plsearch.parent.build import DATA_DIR

    return DATA_DIR


def token_stream(tokenizer, source: str | Path | None = None, seed: int = 0) -> np.ndarray:
    """One long int32 token stream; documents are separated by the EOS token."""
    if source is None or str(source) == BUILTIN:
        return _builtin_stream(tokenizer, seed)
    path = Path(source).expanduser()
    if path.suffix in (".txt", ".jsonl", ".json") or path.exists():
        return _encode(tokenizer, _read_local(path))
    return _encode(tokenizer, _read_hf_dataset(str(source)))


def data_id(source: str | Path | None) -> str:
    """What identifies the data of ``source`` in cache keys: ``builtin``, a local file's
    content hash (an edited file never reuses a stale cache), or the dataset spec."""
    if source is None or str(source) == BUILTIN:
        return BUILTIN
    path = Path(source).expanduser()
    if path.is_file():
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        return f"{path.name}|sha256:{digest.hexdigest()[:16]}"
    return str(source)


def sample_windows(stream: np.ndarray, n: int, seq_len: int, seed: int):
    """(n, seq_len) LongTensor of windows at seeded random offsets."""
    import torch

    if len(stream) <= seq_len:
        raise ConfigError(f"the data has {len(stream)} tokens, fewer than one window of "
                          f"{seq_len}; use a larger file or a smaller --seq-len")
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(stream) - seq_len, size=n)
    return torch.from_numpy(np.stack([stream[s : s + seq_len] for s in starts])).long()


def split_stream(stream: np.ndarray, heldout_fraction: float = 0.05):
    """Train / held-out split of a stream at a fixed cut (tail held out)."""
    cut = int(len(stream) * (1 - heldout_fraction))
    return stream[:cut], stream[cut:]


def _encode(tokenizer, texts: list[str]) -> np.ndarray:
    eos = tokenizer.eos_token_id
    out: list[int] = []
    for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        out.extend(ids)
        if eos is not None:
            out.append(eos)
    return np.asarray(out, dtype=np.int32)


def _read_local(path: Path) -> list[str]:
    if not path.exists():
        raise ConfigError(f"data file {path} does not exist; pass a .txt or .jsonl file")
    if path.suffix == ".jsonl":
        texts = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise ConfigError(f"{path}:{n} is not valid JSON; each line of a .jsonl "
                                  "file must be an object with a \"text\" field") from None
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise ConfigError(f"{path}:{n} has no \"text\" string field; each line "
                                  "must look like {\"text\": \"...\"}")
            texts.append(row["text"])
        return texts
    return [path.read_text(encoding="utf-8")]


def _read_hf_dataset(spec: str) -> list[str]:
    name, _, rest = spec.partition(":")
    config, _, split = rest.partition(":")
    try:
        import datasets

        ds = datasets.load_dataset(name, config or None, split=split or "train")
    except Exception as exc:  # noqa: BLE001 - datasets raises many types when offline
        raise ConfigError(f"cannot load data {spec!r} ({str(exc).splitlines()[0][:120]}); "
                          "pass a local .txt/.jsonl file or a dataset cached offline") from None
    if "text" not in ds.column_names:
        raise ConfigError(f"dataset {spec!r} has no 'text' column (columns: "
                          f"{', '.join(ds.column_names)}); export it to .jsonl with a text field")
    return [t for t in ds["text"] if t]


def _builtin_stream(tokenizer, seed: int) -> np.ndarray:
    """Training-distribution text + skills, cached per (tokenizer, seed)."""
    vocab = json.dumps(sorted(tokenizer.get_vocab().items()))
    from plsearch.parent import skills

    # The skills' generators are part of the key: a changed skill set is a new stream.
    key = hashlib.sha256(f"{vocab}|{seed}|{BUILTIN_SKILL_TOKENS}|{skills.SKILLS}|"
                         f"{skills.GENERATORS_VERSION}".encode()).hexdigest()[:16]
    path = cache_dir() / "streams" / f"builtin-{key}.npy"
    if path.exists():
        return np.load(path)
    from plsearch.parent import corpus

    train_docs, _ = corpus.split_documents(corpus.documents())
    heldout = set()
    for skill in skills.SKILLS:
        file = heldout_dir() / f"heldout_{skill}.jsonl"
        if file.exists():
            heldout.update(json.loads(line)["prompt"] for line in
                           file.read_text(encoding="utf-8").splitlines())
    text_ids = _encode(tokenizer, train_docs)
    stream = skills.skill_stream(seed, exclude=heldout)
    lines, n_tokens = [], 0
    while n_tokens < BUILTIN_SKILL_TOKENS:
        batch = [next(stream).text for _ in range(2000)]
        lines.extend(batch)
        n_tokens += sum(len(t) for t in batch) // 3  # rough bytes per token
    skill_ids = _encode(tokenizer, ["\n".join(lines[i : i + 8])
                                    for i in range(0, len(lines), 8)])
    # Interleave fixed-size chunks of both sources so any window mixes text and skills.
    chunk = 512
    parts = []
    for i in range(0, max(len(text_ids), len(skill_ids)), chunk):
        parts.append(text_ids[i : i + chunk])
        parts.append(skill_ids[i : i + chunk])
    out = np.concatenate(parts).astype(np.int32)

    def write(tmp: Path) -> None:
        with tmp.open("wb") as fh:  # np.save would add .npy to a name
            np.save(fh, out)

    atomic.write_file(path, write)
    return out
