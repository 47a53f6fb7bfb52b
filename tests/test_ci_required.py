"""Under CI=true a ci_required test that skips fails (tests/ci_required.py, issue 15)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

SAMPLE = '''
import pytest

@pytest.mark.ci_required
def test_needs_a_service():
    pytest.skip("the service is absent")

def test_optional():
    pytest.skip("optional")
'''


@pytest.mark.parametrize(("ci", "code", "needle"), [
    ("true", 1, "CI=true but this test would skip: Skipped: the service is absent"),
    ("", 0, "SKIPPED [1] test_sample.py:6: the service is absent"),
])
def test_a_required_skip_fails_only_under_ci(tmp_path, ci, code, needle):
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    env = {**os.environ, "CI": ci, "PYTHONPATH": str(TESTS)}
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "ci_required", "-rs", "-q",
                           "-c", os.devnull, "-p", "no:cacheprovider", "test_sample.py"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, check=False)
    assert done.returncode == code, done.stdout
    assert needle in done.stdout
    assert "optional" in done.stdout  # a plain skip stays a skip, with its reason printed
