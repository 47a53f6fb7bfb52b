"""save_candidate: complete folder or nothing."""

from __future__ import annotations

import json

import pytest

from plsearch.errors import ConfigError
from plsearch.families.testing import tiny_model
from plsearch.prune import save_candidate


class _BrokenTokenizer:
    def save_pretrained(self, path):
        raise OSError("disk full")


def test_failure_leaves_no_partial_folder(tmp_path):
    with pytest.raises(OSError, match="disk full"):
        save_candidate(tiny_model("llama"), _BrokenTokenizer(), tmp_path / "c", {"seed": 0})
    assert list(tmp_path.iterdir()) == []


def test_writes_meta_and_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "c").mkdir()  # an empty folder is replaced
    out = save_candidate(tiny_model("llama"), None, tmp_path / "c", {"seed": 3})
    assert json.loads((out / "plsearch.json").read_text()) == {"seed": 3}
    with pytest.raises(ConfigError, match="not empty"):
        save_candidate(tiny_model("llama"), None, tmp_path / "c", {"seed": 4})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]
