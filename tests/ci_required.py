"""A pytest plugin (loaded by tests/conftest.py): under CI=true, a test marked
``ci_required`` that skips (its PostgreSQL server, Chromium or driver is missing) fails
instead, so CI cannot pass with the multi-worker or browser tests quietly left out."""

from __future__ import annotations

import os

import pytest


def ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "ci_required: needs a system service that CI installs; under CI=true a "
        "skip of this test is a failure")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and ci() and item.get_closest_marker("ci_required"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"CI=true but this test would skip: {reason}"
