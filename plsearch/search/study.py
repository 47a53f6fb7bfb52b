"""Optuna storage, resume and samplers: what makes a search restartable and shareable.

- Default storage: ``sqlite:///<run dir>/study.db``. One process owns a run folder at a
  time (an exclusive lock file), so a trial found RUNNING when the lock is taken was left
  by a killed process: it is marked FAIL ("worker died") and its arch is queued again.
- ``postgresql://...`` (or any other RDB URL): several workers share the study. Each trial
  sends a heartbeat; a trial whose worker stops beating for ``GRACE_PERIOD`` seconds is
  failed by Optuna when another worker starts a trial, and ``requeue_trial`` queues its
  arch again. Workers may start on different machines with the same command.
- Samplers: gp (default: a Gaussian process, Optuna's GPSampler), tpe (multivariate),
  nsga2 or random, each seeded; the budget reaches all but random through
  ``constraints_func`` (the trial's ``constraint`` user attribute, <= 0 when feasible),
  so they learn where fast shapes are. gp is the default because searches see a dozen or
  so candidates: bench/search_efficiency.py on the built-in parent (8 full evaluations,
  seeds 0-2) measured hypervolume gp/random 1.05 and tpe/random 0.71.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from plsearch.errors import ConfigError

__all__ = [
    "DIRECTIONS",
    "GRACE_PERIOD",
    "HEARTBEAT_INTERVAL",
    "MEASURED_PREFIX",
    "METRIC_NAMES",
    "SAMPLERS",
    "constraints",
    "dead_trials",
    "driver_url",
    "local_locks",
    "make_sampler",
    "measured_tokens_per_s",
    "open_storage",
    "open_study",
    "record_measurement",
    "recover_stale_trials",
    "redact_url",
    "requeue_trial",
    "run_lock",
    "sqlite_path",
    "storage_lock",
    "storage_url",
]

logger = logging.getLogger(__name__)

DIRECTIONS = ("maximize", "maximize")
METRIC_NAMES = ("accuracy", "tokens_per_s")
SAMPLERS = ("gp", "tpe", "nsga2", "random")
HEARTBEAT_INTERVAL = 30  # seconds between a running trial's heartbeats (shared storages)
GRACE_PERIOD = 120  # seconds without a heartbeat before a trial counts as dead
LOCK_FILE = ".plsearch.lock"


def storage_url(storage: str | None, run_dir: Path) -> str:
    """The storage URL: as given, or the SQLite file in the run folder."""
    if storage:
        if "://" not in storage:
            raise ConfigError(f"--storage {redact_url(storage)!r} is not a database URL; use "
                              "e.g. postgresql://user:password@host/db or "
                              "sqlite:///path/study.db")
        return storage
    return f"sqlite:///{(Path(run_dir) / 'study.db').resolve()}"


def driver_url(url: str) -> str:
    """``postgresql://`` with the driver that is installed.

    SQLAlchemy 2.1 reads a bare postgresql:// as psycopg (3); plsearch's ``postgres``
    extra installs psycopg2, so the bare scheme is pinned to whichever driver imports.
    """
    if not url.startswith("postgresql://"):
        return url
    import importlib.util

    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2"):
        return "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


def is_shared(url: str) -> bool:
    """True for storages that several workers may use at once (not the local SQLite file)."""
    return not url.startswith("sqlite")


def open_storage(url: str, heartbeat_interval: int = HEARTBEAT_INTERVAL,
                 grace_period: int = GRACE_PERIOD) -> optuna.storages.RDBStorage:
    """An RDBStorage; shared ones get heartbeats and requeue dead workers' trials."""
    kwargs: dict[str, Any] = {}
    if is_shared(url):
        kwargs.update(heartbeat_interval=heartbeat_interval, grace_period=grace_period)
        callback_arg = ("heartbeat_stale_trial_callback"
                        if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback")
                        else "failed_trial_callback")  # optuna < 4.9
        kwargs[callback_arg] = _requeue_stale
    try:
        return _rdb_storage(url, kwargs)
    except ImportError as exc:
        raise ConfigError(f"storage {url.split('://')[0]}:// needs a database driver ({exc}); "
                          f"{_driver_hint(url)}") from None
    except Exception as exc:  # noqa: BLE001  sqlalchemy.exc.OperationalError and friends
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot open the study storage {_redact(url)} ({first}); check "
                          "the URL, that the server runs and that the database exists") from None


def _rdb_storage(url: str, kwargs: dict[str, Any], attempts: int = 6):
    """RDBStorage, retried when workers started together race to create the schema."""
    import random
    import time

    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(attempts):
        try:
            with warnings_silenced():
                return optuna.storages.RDBStorage(driver_url(url),
                                                  engine_kwargs=_engine_kwargs(url), **kwargs)
        except (IntegrityError, ProgrammingError):  # another worker created the tables first
            if attempt == attempts - 1:
                raise
            logger.info("another worker is creating the study tables; retrying")
            time.sleep(0.5 + random.random())
    raise AssertionError("unreachable")


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}
    return {"pool_pre_ping": True}


def _driver_hint(url: str) -> str:
    scheme = url.split("://", 1)[0].lower()
    if scheme.startswith("postgres"):
        return "install it with `pip install plsearch[postgres]`"
    if scheme.startswith("mysql"):
        return ("install a MySQL driver, e.g. `pip install pymysql`, and name it in the URL: "
                "mysql+pymysql://user:password@host/db")
    return "install the SQLAlchemy driver that the URL's scheme names"


_QUERY_SECRET = re.compile(r"([?&;](?:password|passwd|pwd|pass|secret|token)=)[^&;#]*",
                           re.IGNORECASE)


def redact_url(url: str) -> str:
    """The URL without its password: user:***@host, and ***  for a password given as a
    query parameter (?password=...). A URL without a scheme (user:pw@host/db) is
    redacted the same way."""
    text = _QUERY_SECRET.sub(r"\1***", str(url))
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    base, question, query = rest.partition("?")
    if "@" not in base:
        return text
    creds, host = base.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    hidden = f"{user}:***" if ":" in creds else user
    return f"{scheme}{sep}{hidden}@{host}{question}{query}"


_redact = redact_url  # the name run.py and the CLI use


@contextlib.contextmanager
def warnings_silenced() -> Iterator[None]:
    """Optuna's ExperimentalWarning for heartbeats says nothing a user can act on."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


def constraints(trial: FrozenTrial) -> list[float]:
    """constraints_func: budget - predicted tokens/s (<= 0 when the arch meets the budget)."""
    value = trial.user_attrs.get("constraint")
    return [float(value) if value is not None else float("inf")]


def make_sampler(name: str, seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    """A seeded sampler; all but random see the budget through ``constraints``."""
    startup = max(4, min(10, n_trials // 3))  # random trials before a model of the space
    with warnings_silenced():
        if name == "tpe":
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=False,
                                              n_startup_trials=startup,
                                              constraints_func=constraints)
        if name == "nsga2":
            population = max(4, min(50, n_trials // 3))
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=population,
                                                 constraints_func=constraints)
        if name == "gp":
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup,
                                             constraints_func=constraints,
                                             warn_independent_sampling=False)
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
    raise ConfigError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")


def open_study(url: str, name: str, sampler: optuna.samplers.BaseSampler,
               heartbeat_interval: int = HEARTBEAT_INTERVAL,
               grace_period: int = GRACE_PERIOD) -> optuna.Study:
    """Create the study or load it (resume); both objectives are maximized."""
    storage = open_storage(url, heartbeat_interval, grace_period)
    try:
        study = optuna.create_study(storage=storage, study_name=name, sampler=sampler,
                                    directions=list(DIRECTIONS), load_if_exists=True)
    except ValueError as exc:  # an existing study with other directions
        raise ConfigError(f"study {name!r} in {_redact(url)} cannot be resumed ({exc}); "
                          "choose another --study name") from None
    if list(study.metric_names or []) != list(METRIC_NAMES):
        with warnings_silenced():
            study.set_metric_names(list(METRIC_NAMES))
    return study


def load_existing_study(url: str, name: str | None) -> optuna.Study:
    """An existing study (export, report); the only one in the storage when ``name`` is None."""
    storage = open_storage(url)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    if name is None:
        if len(names) != 1:
            listed = ", ".join(names) or "none"
            raise ConfigError(f"{_redact(url)} holds {len(names)} studies ({listed}); "
                              "name one with --study")
        name = names[0]
    elif name not in names:
        raise ConfigError(f"no study {name!r} in {_redact(url)}; it holds: "
                          f"{', '.join(names) or 'none'}; check --study and --storage")
    return optuna.load_study(study_name=name, storage=storage)


# ---------------------------------------------------------------- resume


@contextlib.contextmanager
def local_locks(run_dir: Path, url: str, study_name: str) -> Iterator[None]:
    """The locks a search on a local (SQLite) storage holds: its run folder, and its study
    in the database file itself, wherever that file lives. Holding both is what lets
    ``recover_stale_trials`` declare the study's RUNNING trials dead."""
    with run_lock(run_dir), storage_lock(url, study_name):
        yield


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the run folder; ConfigError if another search holds it."""
    with _exclusive(Path(run_dir) / LOCK_FILE,
                    f"another plsearch search is running in {run_dir}; wait for it, choose "
                    "another --run, or share one study between workers with "
                    "--storage postgresql://..."):
        yield


@contextlib.contextmanager
def storage_lock(url: str, study_name: str) -> Iterator[None]:
    """Hold an exclusive lock on study ``study_name`` of a SQLite file: a lock file next to
    the database, so two searches with different run folders but the same --storage
    sqlite:///FILE cannot both run the study (the second one would take the first's live
    trials for dead). Studies of other names in the same file are not blocked."""
    db = sqlite_path(url)
    if db is None:
        yield
        return
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", study_name)
    with _exclusive(db.parent / f".{db.name}.{slug}.lock",
                    f"another plsearch search is running study {study_name!r} in {db}; "
                    "wait for it, or share one study between workers with "
                    "--storage postgresql://..."):
        yield


def sqlite_path(url: str) -> Path | None:
    """The database file of a sqlite:/// URL (None for other storages or :memory:)."""
    if not url.startswith("sqlite:///"):
        return None
    rest = url[len("sqlite:///"):].split("?", 1)[0]
    return None if rest in ("", ":memory:") else Path(rest).expanduser()


@contextlib.contextmanager
def _exclusive(path: Path, busy: str) -> Iterator[None]:
    """An exclusive flock on ``path`` (created with its folder); ConfigError(busy) if taken."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = path.open("a+")
    except OSError as exc:  # a read-only folder, a file where the folder should be
        raise ConfigError(f"cannot write in {path.parent} ({exc.strerror or exc}); choose a "
                          "writable folder") from None
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(busy) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        yield
    finally:
        fh.close()  # closing releases the lock


def recover_stale_trials(study: optuna.Study) -> list[int]:
    """Fail every RUNNING trial (call only while holding ``local_locks``: only the study's
    lock proves that no live process runs them) and requeue its arch.

    Returns the numbers of the trials that were recovered. The requeued trial names the
    dead one in its ``retry_history`` system attribute, which is how ``dead_trials`` (and
    the report) tell a killed trial from one that failed on its own.
    """
    recovered = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)
        requeue_trial(study, trial)
        recovered.append(trial.number)
    if recovered:
        logger.warning("trials %s were left running by a killed search; marked failed and "
                       "their arches queued again", recovered)
    return recovered


def requeue_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    """Queue ``trial``'s params again as a WAITING trial (its attributes are not copied)."""
    if not trial.params:
        return
    history = list(trial.system_attrs.get("retry_history", [])) + [trial.number]
    study.add_trial(optuna.create_trial(
        state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
        system_attrs={"failed_trial": history[0], "retry_history": history}))


def _requeue_stale(study: optuna.Study, trial: FrozenTrial) -> None:
    """Heartbeat callback: a dead worker's trial -> its arch queued again (at most twice)."""
    if len(trial.system_attrs.get("retry_history", [])) >= 2:
        logger.warning("trial %d failed with a dead worker three times; not retried", trial.number)
        return
    requeue_trial(study, trial)


def dead_trials(trials) -> dict[int, int]:
    """{number of a trial whose worker died: number of the trial that retried its arch}."""
    dead = {}
    for t in trials:
        for number in t.system_attrs.get("retry_history", []):
            dead.setdefault(int(number), t.number)
    return dead


# ---------------------------------------------------------------- attributes

MEASURED_PREFIX = "measured_tokens_per_s/"
SPEEDUP_LOW_PREFIX = "measured_speedup_low/"  # the measured speed-up's 95% lower end


def record_measurement(study: optuna.Study, number: int, tokens_per_s: float,
                       speedup_low: float | None = None) -> None:
    """Store a finished trial's measured tokens/s, and the lower end of its measured
    speed-up's 95% interval (Optuna freezes a finished trial's own attributes, so they go
    into the study's, one key per trial: workers never collide)."""
    study.set_user_attr(f"{MEASURED_PREFIX}{number}", float(tokens_per_s))
    if speedup_low is not None:
        study.set_user_attr(f"{SPEEDUP_LOW_PREFIX}{number}", float(speedup_low))


def measured_tokens_per_s(study_attrs: dict[str, Any], trial: FrozenTrial) -> float | None:
    """The trial's measured tokens/s, or None when it was not measured."""
    value = study_attrs.get(f"{MEASURED_PREFIX}{trial.number}")
    return trial.user_attrs.get("measured_tokens_per_s") if value is None else value
