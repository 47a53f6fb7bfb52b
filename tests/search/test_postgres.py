"""Two workers on one PostgreSQL study (a throwaway server on 127.0.0.1), and a dead worker.

The server is Debian's postgresql (.ci/run installs it): initdb + pg_ctl in a temporary
folder, run as the ``postgres`` user when the tests run as root (initdb refuses root).
Workers run the fake objective (plsearch.search.testing): every part of the search but
the models, so storage behaviour is tested in seconds.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from plsearch.search import testing
from plsearch.search.run import built_count
from plsearch.search.study import dead_trials, driver_url

BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
pytestmark = [
    pytest.mark.ci_required,
    pytest.mark.skipif(not BIN, reason="PostgreSQL server binaries are absent (apt-get "
                       "install postgresql; .ci/run installs it)"),
]


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    pytest.importorskip("psycopg2", reason="psycopg2 is absent (pip install plsearch[postgres])")
    bindir = Path(BIN[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="plsearch-pg-"))
    data, sockets = root / "data", root / "run"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    port = _free_port()
    run = {"capture_output": True, "text": True, "timeout": 120}
    subprocess.run(_as_server_user([str(bindir / "initdb"), "-D", str(data), "-U", "plsearch",
                                    "--auth=trust", "-E", "UTF8", "--no-sync"]), check=True, **run)
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(_as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-o", options,
                                    "-l", str(root / "server.log"), "-w", "start"]), check=True, **run)
    try:
        subprocess.run(_as_server_user([str(bindir / "createdb"), "-h", "127.0.0.1", "-p",
                                        str(port), "-U", "plsearch", "plsearch_test"]), check=True,
                       **run)
        yield f"postgresql://plsearch@127.0.0.1:{port}/plsearch_test"  # as a user writes it
    finally:
        subprocess.run(_as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-m",
                                        "immediate", "stop"]), check=False, capture_output=True,
                       timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def _worker(tiny_dir, out: Path, study: str, storage: str | None, log: Path, trials: int,
            *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "plsearch.search.testing", "--model", str(tiny_dir["model"]),
           "--space", str(tiny_dir["space"]), "--device-profile", str(tiny_dir["profile"]),
           "--study", study, "--out", str(out), "--trials", str(trials), "--log", str(log),
           *extra]
    if storage:
        cmd += ["--storage", storage]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return out


def _logged(log: Path) -> list[dict]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def _structure(study: optuna.Study) -> dict:
    """What must not depend on the storage: attributes, states, params, directions.

    A surplus trial (a worker lost the race for the last candidate: PRUNED unbuilt) can
    only happen with several workers, so it is left out."""
    trials = [t for t in study.get_trials() if not t.user_attrs.get("surplus")]
    built = [t for t in trials if t.user_attrs.get("feasible")]
    return {
        "directions": study.directions,
        "metric_names": study.metric_names,
        "study_attrs": sorted(set(study.user_attrs) - {"run_dir", "artifacts"}),
        "states": sorted({t.state.name for t in trials}),
        "params": sorted({name for t in trials for name in t.params}),
        "built_attrs": sorted(set.intersection(*(set(t.user_attrs) for t in built))),
        "constraints": all("constraints" in t.system_attrs for t in trials),
    }


def test_two_workers_share_one_study(postgres_url, tiny_dir, tmp_path):
    logs = [tmp_path / "w0.jsonl", tmp_path / "w1.jsonl"]
    workers = [_worker(tiny_dir, tmp_path / f"out{i}", "pg-two", postgres_url, logs[i], 8,
                       "--sleep", "0.2", "--seed", str(i)) for i in range(2)]
    for proc in workers:
        _finish(proc)
    study = optuna.load_study(study_name="pg-two", storage=driver_url(postgres_url))
    trials = study.get_trials()
    numbers = [t.number for t in trials]
    assert numbers == list(range(len(trials)))  # one record per trial, no gap
    ran = [row["number"] for log in logs for row in _logged(log)]
    assert sorted(ran) == numbers, "every trial ran in exactly one worker"
    assert all(_logged(log) for log in logs), "both workers ran trials"
    # A worker that lost the race for the last candidate prunes its trial unbuilt.
    assert all(t.state == TrialState.COMPLETE or t.state == TrialState.PRUNED
               and t.user_attrs.get("surplus") for t in trials)
    assert built_count(trials) == 8  # exactly --trials, however the workers raced

    # Export finds the study through the same URL (candidates here are fakes: no weights).
    from plsearch.search.export import choose_trial, open_for_export

    chosen = choose_trial(open_for_export(storage=postgres_url, study="pg-two"),
                          best_for="1.2x")
    assert chosen.candidate_dir

    # The same search on the default SQLite storage has the same structure.
    sqlite_out = tmp_path / "sqlite"
    testing.main(["--model", str(tiny_dir["model"]), "--space", str(tiny_dir["space"]),
                  "--device-profile", str(tiny_dir["profile"]), "--study", "pg-two",
                  "--out", str(sqlite_out), "--trials", "8"])
    local = optuna.load_study(study_name="pg-two", storage=f"sqlite:///{sqlite_out}/study.db")
    assert _structure(local) == _structure(study)


def test_a_dead_workers_trial_is_failed_and_retried(postgres_url, tiny_dir, tmp_path):
    slow = _worker(tiny_dir, tmp_path / "slow", "pg-dead", postgres_url, tmp_path / "a.jsonl",
                   2, "--sleep", "30")
    storage = optuna.storages.RDBStorage(driver_url(postgres_url))
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:  # wait until it is inside a built trial
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        if "pg-dead" in names:
            running = optuna.load_study(study_name="pg-dead", storage=storage).get_trials(
                states=(TrialState.RUNNING,))
            if running and running[0].user_attrs.get("feasible"):
                break
        time.sleep(0.5)
    else:
        slow.kill()
        pytest.fail("the first worker never started a trial")
    slow.kill()  # SIGKILL: no chance to mark its trial failed
    slow.wait()
    dead = running[0]
    time.sleep(3)  # longer than the grace period below
    _finish(_worker(tiny_dir, tmp_path / "fresh", "pg-dead", postgres_url,
                    tmp_path / "b.jsonl", 2, "--grace-period", "2"))
    trials = optuna.load_study(study_name="pg-dead", storage=storage).get_trials()
    stale = trials[dead.number]
    assert stale.state == TrialState.FAIL
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == dead.number]
    assert dead_trials(trials) == {dead.number: retried[0].number}
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
    assert retried[0].params == stale.params
    assert built_count(trials) == 2


def test_workers_adding_screen_measurements_at_once_lose_none(postgres_url, add_at_once):
    """What workers of one PostgreSQL study do at each screen (screening.add_shared), by
    three processes at the same time: every measurement is kept."""
    from plsearch.search.screening import shared_values

    study = add_at_once(driver_url(postgres_url), workers=3, each=30)
    assert sorted(shared_values(study, "latency_pairs")) == sorted(
        (float(w), float(i)) for w in range(3) for i in range(30))
