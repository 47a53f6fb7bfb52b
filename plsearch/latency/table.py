"""The latency table: an append-only CSV per device, schema checked on every read.

    table = read_table("latency_db/cpu-amd-epyc.csv")     # DataFrame, validated
    append_rows(path, rows)                                 # atomic read-append-rename

latency_db/README.md documents every column and its unit; ``COLUMNS`` below is the same
list in the same order. A file whose header or values do not fit the schema raises
LatencyTableError naming the first problems and the fix; nothing is silently coerced.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from plsearch import atomic
from plsearch.errors import LatencyTableError

__all__ = [
    "COLUMNS",
    "FINGERPRINT_COLUMNS",
    "append_rows",
    "default_db_dir",
    "device_tag",
    "fingerprint_matches",
    "fingerprint_mismatches",
    "is_analytic",
    "latest_fingerprint",
    "read_table",
    "rows_for_fingerprint",
    "write_table",
]

logger = logging.getLogger(__name__)

# Identify the measuring setup; equal on every row of one profiling run.
FINGERPRINT_COLUMNS = (
    "backend",  # timer backend: cpu | cuda | npu
    "clock",  # events (cuda/npu) | wall | thread (cpu)
    "device_name",
    "torch_version",
    "cuda_version",  # "" unless cuda
    "cann_version",  # "" unless npu
    "dtype",
    "threads",  # torch intra-op threads
    "engine",  # what defines tokens/s: hf-generate | loop
    "host",
    "load_avg",  # 1-minute load average of the host while the row was measured
)
# Compared by fingerprint_matches (the host may differ: same device kind elsewhere is fine;
# the load is a condition of the measurement, recorded to judge it, not a setup).
_MATCH_COLUMNS = tuple(c for c in FINGERPRINT_COLUMNS if c not in ("host", "load_avg"))
ANALYTIC_CLOCK = "analytic"  # the clock of rows computed from published peaks, not measured

_SHAPE_COLUMNS = (
    "num_hidden_layers",  # 1 for block rows, 0 for head rows, L for model rows
    "hidden_size",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "intermediate_size",
    "vocab_size",
)
_TIMING_COLUMNS = ("median_ms", "p10_ms", "p90_ms")

COLUMNS = (
    "run_id",  # start time of the profiling run that wrote the row
    "timestamp",  # ISO-8601 UTC time of the measurement
    "device_tag",
    *FINGERPRINT_COLUMNS,
    "plsearch_version",
    "model_type",
    "part",  # block | head | model
    "phase",  # prefill | decode | workload
    *_SHAPE_COLUMNS,
    "batch_size",
    "seq_len",  # new tokens per sequence in the timed call
    "context",  # keys the last new token attends to
    "generated_len",  # workload rows: tokens generated per sequence; 0 otherwise
    *_TIMING_COLUMNS,
    "repeats",
    "seed",
)
_INT_COLUMNS = (
    "threads", *_SHAPE_COLUMNS, "batch_size", "seq_len", "context", "generated_len",
    "repeats", "seed",
)
_STR_COLUMNS = tuple(c for c in COLUMNS if c not in _INT_COLUMNS + _TIMING_COLUMNS
                     + ("load_avg",))
PARTS = ("block", "head", "model")
ENGINES = ("hf-generate", "loop")  # plsearch.latency.engine.ENGINES (no torch import here)
PHASES = ("prefill", "decode", "workload")
_MAX_LISTED = 3


# One timed call of more than a day is no measurement; larger values make the predictor's
# sums overflow to inf.
MAX_MS = 1e8


def device_tag(profile_name: str, device_name: str) -> str:
    """File stem for a table: the profile name and a slug of the device name."""
    slug = re.sub(r"[^a-z0-9]+", "-", device_name.lower()).strip("-") or "device"
    return f"{profile_name}-{slug}"


def default_db_dir() -> Path:
    """Where measured tables are written: the checkout's latency_db/, or a user folder
    for an installed plsearch (``plsearch.config.user_latency_dir``)."""
    from plsearch.config import user_latency_dir

    return user_latency_dir()


def read_table(path: str | Path) -> pd.DataFrame:
    """Read and validate a latency CSV; LatencyTableError for anything off-schema."""
    path = Path(path)
    if not path.exists():
        raise LatencyTableError(
            f"latency table {path} does not exist; create it with `plsearch profile-npu` "
            "or pass --latency-db with an existing table"
        )
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        reason = " ".join(str(exc).split())
        raise LatencyTableError(
            f"{path} is not a readable CSV ({reason}); delete it or re-run `plsearch profile-npu`"
        ) from None
    return _validated(table, str(path))


def _validated(table: pd.DataFrame, where: str) -> pd.DataFrame:
    missing = [c for c in COLUMNS if c not in table.columns]
    extra = [c for c in table.columns if c not in COLUMNS]
    if missing or extra:
        what = []
        if missing:
            what.append(f"missing column(s) {_short(missing)}")
        if extra:
            what.append(f"unexpected column(s) {_short(extra)}")
        raise LatencyTableError(
            f"{where} is not a plsearch latency table ({'; '.join(what)}); "
            "see latency_db/README.md for the schema, or write a new table with "
            "`plsearch profile-npu --latency-db NEW.csv`"
        )
    if table.empty:
        raise LatencyTableError(f"{where} has a header but no rows; run `plsearch profile-npu`")
    problems = []
    out = table[list(COLUMNS)].copy()
    for column in _INT_COLUMNS:
        values = pd.to_numeric(out[column], errors="coerce")
        bad = values.isna() | (values != values.round()) | (values < 0)
        if bad.any():
            problems.append(_bad_rows(column, "a non-negative integer", bad, table))
        out[column] = values.fillna(-1).astype("int64")
    for column in _TIMING_COLUMNS:
        values = pd.to_numeric(out[column], errors="coerce")
        bad = values.isna() | ~(values > 0) | ~(values <= MAX_MS)  # 1e300 would overflow
        if bad.any():
            problems.append(_bad_rows(column, "a positive number of milliseconds (at most "
                                      f"{MAX_MS:.0e})", bad, table))
        out[column] = values.astype("float64")
    load = pd.to_numeric(out["load_avg"], errors="coerce")
    bad = load.isna() | (load < -1)
    if bad.any():
        problems.append(_bad_rows("load_avg", "a load average (-1 if unknown)", bad, table))
    out["load_avg"] = load.astype("float64")
    for column, allowed in (("part", PARTS), ("phase", PHASES), ("engine", ENGINES)):
        bad = ~out[column].isin(allowed)
        if bad.any():
            problems.append(_bad_rows(column, f"one of {list(allowed)}", bad, table))
    if problems:
        raise LatencyTableError(
            f"{where} is corrupt: {'; '.join(problems)}; fix or delete those rows, or "
            "re-run `plsearch profile-npu`"
        )
    return out


def _bad_rows(column: str, expected: str, bad: pd.Series, table: pd.DataFrame) -> str:
    lines = [int(i) + 2 for i in bad[bad].index[:_MAX_LISTED]]  # header is line 1
    sample = table.loc[bad[bad].index[0], column]
    more = f" and {int(bad.sum()) - len(lines)} more" if bad.sum() > len(lines) else ""
    return f"{column} must be {expected} (line(s) {lines}{more}, e.g. {sample!r})"


def _short(names: list[str]) -> str:
    shown = names[:6]
    return str(shown) + (f" (+{len(names) - 6} more)" if len(names) > 6 else "")


def append_rows(path: str | Path, rows: Iterable[Mapping[str, object]]) -> pd.DataFrame:
    """Append rows to the table at ``path`` atomically; returns the whole new table.

    The existing file is read and validated first (a corrupt file is never extended),
    the result is written to a temporary file in the same folder and renamed over it.
    """
    path = Path(path)
    new = _rows_table(rows)
    table = pd.concat([read_table(path), new], ignore_index=True) if path.exists() else new
    _write(path, table)
    logger.info("wrote %d new rows to %s (%d in all)", len(new), path, len(table))
    return table


def write_table(path: str | Path, rows: Iterable[Mapping[str, object]]) -> pd.DataFrame:
    """Write a new table of ``rows`` at ``path`` (atomically replacing any file there)."""
    table = _rows_table(rows)
    _write(Path(path), table)
    return table


def _rows_table(rows: Iterable[Mapping[str, object]]) -> pd.DataFrame:
    new = pd.DataFrame(list(rows))
    missing = [c for c in COLUMNS if c not in new.columns]
    if missing:
        raise ValueError(f"rows lack column(s) {missing}")  # internal: profiler bug
    return _validated(new[list(COLUMNS)].astype(str), "the new rows")


def _write(path: Path, table: pd.DataFrame) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8", newline="") as fh:
            table.to_csv(fh, index=False, float_format="%.6g")

    atomic.write_file(path, write)


def latest_fingerprint(table: pd.DataFrame) -> dict[str, object]:
    """The fingerprint of the most recent run in the table."""
    last = table.sort_values(["run_id", "timestamp"]).iloc[-1]
    return {c: last[c] for c in FINGERPRINT_COLUMNS}


def fingerprint_mismatches(
    table: pd.DataFrame, current_device: Mapping[str, object]
) -> list[str]:
    """'column: table has X, this device has Y' for each fingerprint field that differs.

    ``current_device`` is ``Timer.fingerprint(dtype)``; the table's latest run is compared.
    """
    recorded = latest_fingerprint(table)
    out = []
    for column in _MATCH_COLUMNS:
        theirs, ours = str(recorded[column]), str(current_device.get(column, ""))
        if theirs != ours:
            out.append(f"{column}: table has {theirs!r}, this device has {ours!r}")
    return out


def fingerprint_matches(table: pd.DataFrame, current_device: Mapping[str, object]) -> bool:
    """True when the table's latest run was measured on this device setup (host aside)."""
    return not fingerprint_mismatches(table, current_device)


def is_analytic(table: pd.DataFrame) -> bool:
    """True when the table's latest run was computed from published peaks, not measured."""
    return str(latest_fingerprint(table)["clock"]) == ANALYTIC_CLOCK


def rows_for_fingerprint(
    table: pd.DataFrame, fingerprint: Mapping[str, object] | None = None
) -> pd.DataFrame:
    """Rows measured with ``fingerprint`` (default: the latest run's), host aside."""
    fingerprint = fingerprint or latest_fingerprint(table)
    keep = pd.Series(True, index=table.index)
    for column in _MATCH_COLUMNS:
        keep &= table[column].astype(str) == str(fingerprint[column])
    dropped = int((~keep).sum())
    if dropped:
        logger.warning("ignoring %d rows measured with another device fingerprint", dropped)
    return table[keep].reset_index(drop=True)
