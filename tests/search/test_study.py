"""plsearch.search.study: storages, locks, redaction, driver hints, and the reliability
fixes of issue 15 (shared SQLite file, passwords, report next to an outside SQLite file,
a failed start that may be restarted)."""

from __future__ import annotations

import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from plsearch.errors import ConfigError
from plsearch.search.run import SearchOptions, built_count, run_search
from plsearch.search.study import (
    open_storage,
    recover_stale_trials,
    redact_url,
    run_lock,
    sqlite_path,
    storage_lock,
    storage_url,
)
from plsearch.search.testing import FakeLatency, fake_pipeline


def _opts(tiny_dir, out, **changes):
    base = {"budget": "1.3x", "model": str(tiny_dir["model"]), "space": str(tiny_dir["space"]),
            "device_profile": str(tiny_dir["profile"]), "trials": 2, "out": str(out),
            "study": "s", "verify": False, "command": "test"}
    return SearchOptions(**{**base, **changes})


# ---- passwords ----------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://u:pw@h/db", "postgresql://u:***@h/db"),
    ("postgresql://u@h:5432/db?password=pw&sslmode=require",
     "postgresql://u@h:5432/db?password=***&sslmode=require"),
    ("postgresql://h/db?sslmode=require&PASSWORD=pw", "postgresql://h/db?sslmode=require&PASSWORD=***"),
    ("u:pw@host/db", "u:***@host/db"),  # no scheme
    ("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db"),  # '@' inside the password
    ("mysql+pymysql://root:pw@localhost/x", "mysql+pymysql://root:***@localhost/x"),
    ("postgresql://u@h/db", "postgresql://u@h/db"),
    ("sqlite:////tmp/a.db", "sqlite:////tmp/a.db"),
])
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_a_url_without_scheme_is_refused_without_echoing_its_password():
    with pytest.raises(ConfigError) as info:
        storage_url("alice:s3cret@db.example/plsearch", run_dir=None)
    assert "s3cret" not in str(info.value) and "alice:***@db.example" in str(info.value)


def test_report_data_hides_a_query_password():
    from plsearch.report import data
    from plsearch.search import study

    assert data.redact_url is study.redact_url  # one redaction for run.json, stdout, report
    assert data.redact_url("postgresql://u@h/db?password=s3cret") == \
        "postgresql://u@h/db?password=***"


def test_mysql_driver_error_names_a_mysql_driver():
    with pytest.raises(ConfigError) as info:
        open_storage("mysql://root:s3cret@127.0.0.1/plsearch")
    message = str(info.value)
    assert "pymysql" in message and "plsearch[postgres]" not in message
    assert "s3cret" not in message


# ---- locks --------------------------------------------------------------------------------

def test_storage_lock_is_per_database_file_and_study(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared' / 'x.db'}"
    assert sqlite_path(url) == tmp_path / "shared" / "x.db"
    assert sqlite_path("postgresql://h/db") is None and sqlite_path("sqlite:///:memory:") is None
    busy = pytest.raises(ConfigError, match="another plsearch search is running study 'a'")
    with storage_lock(url, "a"):
        with busy, storage_lock(url, "a"):
            pass
        with storage_lock(url, "b"):  # another study of the same file is not blocked
            pass
    with storage_lock(url, "a"):  # released
        pass
    with storage_lock("postgresql://h/db", "a"), storage_lock("postgresql://h/db", "a"):
        pass  # shared storages rely on heartbeats, not locks


def test_run_lock_names_the_run_flag(tmp_path):
    busy = pytest.raises(ConfigError, match="choose another --run")
    with run_lock(tmp_path), busy, run_lock(tmp_path):
        pass


def test_second_search_on_a_shared_sqlite_file_leaves_the_first_alone(tiny_dir, tmp_path):
    """Issue 15: two searches with different run folders and the same sqlite:///FILE. The
    second used to mark the first's live trial FAIL and queue it again; the first then
    crashed (`Cannot tell a FAIL trial`). Now the second is refused in one line."""
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    first = subprocess.Popen(
        [sys.executable, "-m", "plsearch.search.testing", "--model", str(tiny_dir["model"]),
         "--space", str(tiny_dir["space"]), "--device-profile", str(tiny_dir["profile"]),
         "--study", "shared", "--out", str(tmp_path / "first"), "--storage", storage,
         "--trials", "1", "--sleep", "4"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # until the first is inside its trial
            try:
                running = optuna.load_study(study_name="shared", storage=storage).get_trials(
                    states=(TrialState.RUNNING,))
            except KeyError:  # the study is not created yet
                running = []
            if running and running[0].user_attrs.get("feasible"):
                break
            time.sleep(0.2)
        else:
            pytest.fail("the first search never started a trial")
        with pytest.raises(ConfigError, match="another plsearch search is running study "
                           "'shared'"):
            run_search(_opts(tiny_dir, tmp_path / "second", storage=storage, study="shared"),
                       latency=FakeLatency(), pipeline_factory=fake_pipeline)
        _, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, err[-2000:]
    trials = optuna.load_study(study_name="shared", storage=storage).get_trials()
    assert {t.state for t in trials} == {TrialState.COMPLETE}  # none failed or requeued
    assert built_count(trials) == 1
    assert not (tmp_path / "second" / "study.db").exists()


def test_recover_stale_trials_fails_and_requeues(tiny_dir, tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", study_name="r",
                                directions=["maximize", "maximize"])
    trial = study.ask({"x": optuna.distributions.IntDistribution(1, 4)})
    assert recover_stale_trials(study) == [trial.number]
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.FAIL, TrialState.WAITING]


# ---- outside SQLite file, failed starts ---------------------------------------------------

def test_report_of_a_search_whose_sqlite_file_lives_outside_the_run_folder(tiny_dir, tmp_path):
    """Issue 15: a successful search with --storage sqlite:///elsewhere used to exit 2 with
    '... has no study.db' and write no report."""
    from plsearch.cli.search import _write_report

    storage = f"sqlite:///{tmp_path / 'elsewhere' / 'studies.db'}"
    summary = run_search(_opts(tiny_dir, tmp_path / "run", storage=storage),
                         latency=FakeLatency(), pipeline_factory=fake_pipeline)
    assert not (tmp_path / "run" / "study.db").exists()
    _write_report(summary)
    assert "plsearch" in (tmp_path / "run" / "report.html").read_text()


def test_a_failed_report_write_is_one_error_line(tiny_dir, tmp_path, monkeypatch):
    import errno

    from plsearch import atomic
    from plsearch.cli.search import _write_report

    summary = run_search(_opts(tiny_dir, tmp_path / "run"), latency=FakeLatency(),
                         pipeline_factory=fake_pipeline)

    def disk_full(path, text, encoding="utf-8"):  # fault injection: ENOSPC
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic, "write_text", disk_full)
    with pytest.raises(ConfigError, match="the search finished but report.html could not be "
                       "written \\(No space left on device\\).*plsearch report --run"):
        _write_report(summary)


def test_a_failed_start_may_be_restarted_with_other_settings(tiny_dir, tmp_path):
    """Issue 15: a search that failed after opening its study (a typo in the space,
    truncated weights) left a study that refused the corrected command."""
    out = tmp_path / "run"

    def broken(*args, **kwargs):
        raise ConfigError("parent weights truncated")

    with pytest.raises(ConfigError, match="truncated"):
        run_search(_opts(tiny_dir, out, budget="1.2x"), latency=FakeLatency(),
                   pipeline_factory=broken)
    stages = []
    summary = run_search(_opts(tiny_dir, out), latency=FakeLatency(),
                         pipeline_factory=fake_pipeline, on_stage=stages.append)
    assert summary.built == 2
    assert any("never completed a trial; starting it again" in s for s in stages)
    # With a completed trial, other settings are still refused.
    with pytest.raises(ConfigError, match="was started with another budget spec"):
        run_search(_opts(tiny_dir, out, budget="1.2x"), latency=FakeLatency(),
                   pipeline_factory=fake_pipeline)
