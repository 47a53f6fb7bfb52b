"""Loading parents and candidates: local HF folders or the built-in parent.

Weights are read from safetensors only (never unpickled), remote code is never run
unless the user asks, and every problem with a folder is a ModelLoadError that says
what to fix. Hub names are not fetched: plsearch works offline.
"""

from __future__ import annotations

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
    try:
        return AutoConfig.from_pretrained(str(model_dir), trust_remote_code=False)
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise ModelLoadError(f"{cfg_path} cannot be read by transformers "
                             f"({str(exc).splitlines()[0]}); fix the file") from None


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
    try:
        hf_model = AutoModelForCausalLM.from_pretrained(
            str(model_dir), config=config, dtype=dtype or torch.float32,
            use_safetensors=True, trust_remote_code=trust_remote_code,
            local_files_only=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"cannot load weights from {model_dir} "
                             f"({str(exc).splitlines()[0]}); check that the folder is "
                             "complete") from None
    hf_model.eval()
    tokenizer = None
    if (model_dir / "tokenizer.json").exists() or (model_dir / "tokenizer_config.json").exists():
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True,
                                                  trust_remote_code=trust_remote_code)
    return hf_model, tokenizer, model_dir


def weights_hash(model_dir: Path) -> str:
    """sha256 over the folder's safetensors files (names and bytes), first 16 hex digits."""
    digest = hashlib.sha256()
    for path in sorted(model_dir.glob("*.safetensors")):
        digest.update(path.name.encode())
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]
