"""A private plsearch cache per test (tiny_dir, the tiny search's inputs: tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture()
def cache_dir(tmp_path, monkeypatch):
    """A private plsearch cache (importance, token streams) per test."""
    monkeypatch.setenv("PLSEARCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


ADDER = """
import sys, time, optuna
from pathlib import Path
from plsearch.search.screening import add_shared
optuna.logging.set_verbosity(optuna.logging.WARNING)
storage, name, worker, each, go = sys.argv[1:]
study = optuna.load_study(study_name=name, storage=storage)
while not Path(go).exists():  # all workers start adding at once
    time.sleep(0.01)
for i in range(int(each)):
    add_shared(study, "latency_pairs", (float(worker), float(i)))
"""


@pytest.fixture()
def add_at_once(tmp_path):
    """``add_at_once(storage_url, workers, each)``: that many processes add ``each`` screen
    measurements at the same time to one new study on that storage (screening.add_shared,
    as workers sharing a study do); returns the study."""
    import subprocess
    import sys

    import optuna

    def run(storage: str, workers: int = 2, each: int = 40) -> optuna.Study:
        optuna.create_study(study_name="shared", storage=storage,
                            directions=["maximize", "maximize"])
        go = tmp_path / "go"
        procs = [subprocess.Popen([sys.executable, "-c", ADDER, storage, "shared", str(w),
                                   str(each), str(go)], stderr=subprocess.PIPE, text=True)
                 for w in range(workers)]
        go.touch()
        for proc in procs:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err[-3000:]
        return optuna.load_study(study_name="shared", storage=storage)

    return run
