"""save_candidate: one HF folder per candidate, written atomically."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from plsearch import atomic
from plsearch.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = ["save_candidate"]

META_FILE = "plsearch.json"


def save_candidate(model, tokenizer, out_dir: str | Path, meta: dict[str, Any]) -> Path:
    """Write config.json, model.safetensors, the tokenizer and plsearch.json to ``out_dir``.

    Everything is written into a temporary sibling folder that is renamed into place at
    the end, so a failure leaves no partial ``out_dir``. An existing non-empty ``out_dir``
    is refused (ConfigError); an empty one is replaced.
    """
    out_dir = Path(out_dir).expanduser()
    check_out_dir(out_dir)
    with atomic.new_dir(out_dir) as tmp:  # replaces an empty out_dir (checked above)
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n",
                                     encoding="utf-8")
    logger.info("candidate saved to %s", out_dir)
    return out_dir


def check_out_dir(out_dir: str | Path) -> None:
    """Raise ConfigError unless ``out_dir`` is absent or an empty folder."""
    out_dir = Path(out_dir).expanduser()
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ConfigError(f"output folder {out_dir} already exists and is not empty; "
                          "choose a new --out or remove it")
