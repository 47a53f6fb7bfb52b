"""Datasets for plsearch's offline lm-eval tasks, read from the held-out files.

lm-eval calls these through `custom_dataset: !function utils.<name>` with the task's
metadata and dataset_kwargs as keyword arguments. The held-out files live in the
installed package (plsearch.data.heldout_dir()); a caller may point at another folder
with the metadata key `plsearch_heldout_dir` (TaskManager(metadata=...)).
"""

from __future__ import annotations

import json
from pathlib import Path


def heldout_skill(skill: str, plsearch_heldout_dir: str | None = None, **_) -> dict:
    """{"test": Dataset} of heldout_<skill>.jsonl rows {"skill", "prompt", "choices", "answer"}."""
    return {"test": _dataset(_heldout_file(f"heldout_{skill}.jsonl", plsearch_heldout_dir))}


def heldout_text(plsearch_heldout_dir: str | None = None, **_) -> dict:
    """{"test": Dataset} of heldout_text.jsonl rows {"text"}."""
    return {"test": _dataset(_heldout_file("heldout_text.jsonl", plsearch_heldout_dir))}


def _heldout_file(name: str, folder: str | None) -> Path:
    from plsearch.errors import ModelLoadError

    if folder is None:
        from plsearch.data import heldout_dir

        folder = heldout_dir()
    path = Path(folder) / name
    if not path.exists():
        raise ModelLoadError(f"held-out file {path} is missing; rebuild the parent's "
                             "held-out data with `plsearch parent build --install`")
    return path


def _dataset(path: Path):
    import datasets

    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]
    return datasets.Dataset.from_list(rows, split=datasets.Split.TEST)
