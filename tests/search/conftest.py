"""A private plsearch cache per test (tiny_dir, the tiny search's inputs: tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture()
def cache_dir(tmp_path, monkeypatch):
    """A private plsearch cache (importance, token streams) per test."""
    monkeypatch.setenv("PLSEARCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"
