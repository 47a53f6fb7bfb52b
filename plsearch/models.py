"""Loading parents and candidates: local HF folders or the built-in parent.

Weights are read from safetensors only (never unpickled), remote code is never run
unless the user asks, and every problem with a folder is a ModelLoadError that says
what to fix. Hub names are not fetched: plsearch works offline.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from pathlib import Path

from plsearch.errors import ModelLoadError

logger = logging.getLogger(__name__)

BUILTIN = "builtin"  # what --model means when omitted


def builtin_parent_dir() -> Path:
    from plsearch.parent.build import MODEL_DIR

    if not (MODEL_DIR / "config.json").exists():
        raise ModelLoadError(
            f"the built-in parent is missing from {MODEL_DIR}; reinstall plsearch or "
            "rebuild it with `plsearch parent build --install`")
    return MODEL_DIR


def resolve_model_dir(model: str | Path | None) -> Path:
    """The folder of `model` (None or 'builtin' -> the shipped parent), checked."""
    if model is None or str(model) == BUILTIN:
        return builtin_parent_dir()
    path = Path(model).expanduser()
    if not path.exists():
        raise ModelLoadError(
            f"model path {path} does not exist; pass a local Hugging Face folder "
            "(config.json + *.safetensors) or omit --model for the built-in parent")
    if not path.is_dir():
        raise ModelLoadError(f"model path {path} is a file; pass the folder that holds "
                             "config.json and the *.safetensors weights")
    return path


def read_config(model_dir: Path):
    """The HF config of a folder, with clear errors for missing or malformed files."""
    from transformers import AutoConfig

    cfg_path = model_dir / "config.json"
    if not cfg_path.exists():
        raise ModelLoadError(f"{model_dir} has no config.json; pass a Hugging Face model "
                             "folder saved with save_pretrained")
    try:
        raw = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{cfg_path} is not valid JSON ({exc}); fix or re-save "
                             "the config") from None
    if not isinstance(raw, dict) or "model_type" not in raw:
        raise ModelLoadError(f"{cfg_path} has no model_type; re-save the model with "
                             "save_pretrained so config.json names its family")
    from plsearch.families import get_family

    get_family(raw["model_type"])  # UnsupportedModelError with "did you mean" first
    _check_shape_fields(raw, cfg_path)
    from huggingface_hub.errors import StrictDataclassError

    try:
        return AutoConfig.from_pretrained(str(model_dir), trust_remote_code=False)
    except (ValueError, KeyError, TypeError, OSError, StrictDataclassError) as exc:
        reason = " ".join(str(exc).split())[:300]
        raise ModelLoadError(f"{cfg_path} cannot be read by transformers ({reason}); fix "
                             "the file") from None


# config.json fields that size the model: positive integers when present.
SHAPE_FIELDS = ("num_hidden_layers", "hidden_size", "num_attention_heads",
                "num_key_value_heads", "intermediate_size", "vocab_size", "head_dim",
                "max_position_embeddings")


def _check_shape_fields(raw: dict, cfg_path: Path) -> None:
    """Wrong types and impossible shapes in config.json, all at once, as one line."""
    problems = []
    for name in SHAPE_FIELDS:
        if name not in raw:
            continue
        value = raw[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            problems.append(f"{name} must be a positive integer, got {value!r}")
    heads, hidden = raw.get("num_attention_heads"), raw.get("hidden_size")
    if not problems and raw.get("head_dim") is None and heads and hidden and hidden % heads:
        problems.append(f"hidden_size {hidden} is not divisible by num_attention_heads "
                        f"{heads} (and no head_dim is given)")
    if problems:
        raise ModelLoadError(f"{cfg_path}: {'; '.join(problems)}; fix the file")


def check_weights(model_dir: Path) -> None:
    """Every *.safetensors file of ``model_dir`` is complete: its header parses and the
    file holds every byte the header names (a truncated or empty download otherwise fails
    deep inside transformers, or only when a tensor is first read)."""
    for path in sorted(model_dir.glob("*.safetensors")):
        size = path.stat().st_size
        problem = None
        with path.open("rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                problem = f"{size} bytes, no header"
            else:
                n = int.from_bytes(head, "little")
                try:
                    header = json.loads(fh.read(n)) if 0 < n <= size - 8 else None
                except (json.JSONDecodeError, UnicodeDecodeError):
                    header = None
                if not isinstance(header, dict):
                    problem = "its header is unreadable"
                else:
                    end = max((v["data_offsets"][1] for k, v in header.items()
                               if k != "__metadata__" and isinstance(v, dict)
                               and "data_offsets" in v), default=0)
                    if 8 + n + end > size:
                        problem = f"{size:,} of {8 + n + end:,} bytes"
        if problem:
            raise ModelLoadError(f"{path} is truncated or not a safetensors file ({problem}); "
                                 "copy or save the model again")


def check_fits_in_memory(config, dtype_bytes: int = 4) -> None:
    """Refuse a config whose weights alone would not fit in this machine's memory (a
    num_hidden_layers of 1e12 would otherwise grow memory until the machine swaps)."""
    import os

    from plsearch.families import get_family

    family = get_family(config)
    params = family.arch_from_config(config).num_params(family.traits(config))
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return
    need = params * dtype_bytes
    if need > memory:
        raise ModelLoadError(f"{config.model_type} config with {params:,} parameters needs "
                             f"{need / 2**30:,.1f} GiB for its weights alone; this machine "
                             f"has {memory / 2**30:,.1f} GiB; check config.json")


def load_model(model: str | Path | None = None, dtype=None, trust_remote_code: bool = False):
    """(model, tokenizer, model_dir) from a local folder or the built-in parent."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = resolve_model_dir(model)
    config = read_config(model_dir)
    if not any(model_dir.glob("*.safetensors")):
        raise ModelLoadError(
            f"{model_dir} has no *.safetensors weights; plsearch never unpickles .bin "
            "files: convert them with save_pretrained(..., safe_serialization=True)")
    check_weights(model_dir)
    dtype = dtype or torch.float32
    check_fits_in_memory(config, torch.tensor([], dtype=dtype).element_size())
    try:
        with _quiet_transformers():  # its load report is ~20 lines before the error
            hf_model = AutoModelForCausalLM.from_pretrained(
                str(model_dir), config=config, dtype=dtype, use_safetensors=True,
                trust_remote_code=trust_remote_code, local_files_only=True)
    except (OSError, ValueError, RuntimeError) as exc:
        if "mismatched" in str(exc):
            raise ModelLoadError(f"the weights in {model_dir} do not have the shapes its "
                                 "config.json describes; fix config.json or save the model "
                                 "again") from None
        raise ModelLoadError(f"cannot load weights from {model_dir} "
                             f"({str(exc).splitlines()[0]}); check that the folder is "
                             "complete") from None
    hf_model.eval()
    tokenizer = None
    if (model_dir / "tokenizer.json").exists() or (model_dir / "tokenizer_config.json").exists():
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True,
                                                  trust_remote_code=trust_remote_code)
    return hf_model, tokenizer, model_dir


@contextlib.contextmanager
def _quiet_transformers():
    """transformers' own warnings (its load report) off; errors still raise."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def weights_hash(model_dir: Path) -> str:
    """sha256 over the folder's safetensors files (names and bytes), first 16 hex digits."""
    digest = hashlib.sha256()
    for path in sorted(model_dir.glob("*.safetensors")):
        digest.update(path.name.encode())
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]
