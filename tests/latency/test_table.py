"""The latency CSV: atomic appends, schema validated on read, clear errors."""

from __future__ import annotations

import pytest
from latency_synthetic import FINGERPRINT, synthetic_rows

from plsearch.errors import LatencyTableError
from plsearch.latency.table import (
    COLUMNS,
    append_rows,
    device_tag,
    fingerprint_matches,
    fingerprint_mismatches,
    read_table,
    rows_for_fingerprint,
)


def test_append_then_read_round_trips(tmp_path):
    path = tmp_path / "db" / "cpu-test.csv"
    rows = synthetic_rows()
    append_rows(path, rows[:10])
    table = append_rows(path, rows[10:20])
    assert len(table) == 20
    back = read_table(path)
    assert list(back.columns) == list(COLUMNS)
    assert back["median_ms"].tolist() == pytest.approx([r["median_ms"] for r in rows[:20]],
                                                       rel=1e-5)
    assert back["threads"].dtype.kind == "i" and back["cuda_version"].eq("").all()
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_corrupt_table_is_never_extended(tmp_path):
    path = tmp_path / "t.csv"
    append_rows(path, synthetic_rows()[:3])
    text = path.read_text().replace(",block,", ",blok,", 1)
    path.write_text(text)
    with pytest.raises(LatencyTableError, match=r"corrupt: part must be one of .*line\(s\) \[2\]"):
        append_rows(path, synthetic_rows()[:1])
    assert path.read_text() == text


@pytest.mark.parametrize(
    "content, message",
    [
        ("a,b,c\n1,2,3\n", "not a plsearch latency table .*missing column"),
        ("", "not a readable CSV"),
        ("\x00\x01\x02garbage\n\"unterminated", "not a (readable CSV|plsearch latency table)"),
    ],
)
def test_foreign_or_garbage_files_give_one_clear_line(tmp_path, content, message):
    path = tmp_path / "t.csv"
    path.write_text(content)
    with pytest.raises(LatencyTableError, match=message) as info:
        read_table(path)
    assert "\n" not in str(info.value)


def test_bad_values_are_reported_with_their_lines(tmp_path):
    path = tmp_path / "t.csv"
    append_rows(path, synthetic_rows()[:4])
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[2].split(",")
    cells[header.index("median_ms")] = "fast"
    cells[header.index("hidden_size")] = "-3"
    lines[2] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(LatencyTableError) as info:
        read_table(path)
    message = str(info.value)
    assert "hidden_size must be a non-negative integer (line(s) [3]" in message
    assert "median_ms must be a positive number" in message


def test_missing_table_names_the_command(tmp_path):
    with pytest.raises(LatencyTableError, match="plsearch profile-npu"):
        read_table(tmp_path / "none.csv")


def test_fingerprints(tmp_path):
    path = tmp_path / "t.csv"
    table = append_rows(path, synthetic_rows()[:5])
    assert fingerprint_matches(table, FINGERPRINT)
    assert fingerprint_matches(table, {**FINGERPRINT, "host": "elsewhere"})
    other = {**FINGERPRINT, "device_name": "Other CPU", "threads": 4}
    assert not fingerprint_matches(table, other)
    assert len(fingerprint_mismatches(table, other)) == 2
    newer = [{**r, "run_id": "2027", "device_name": "Other CPU"} for r in synthetic_rows()[:2]]
    table = append_rows(path, newer)
    assert len(rows_for_fingerprint(table)) == 2  # the latest run's fingerprint


def test_device_tag():
    assert device_tag("cpu", "AMD EPYC 7763 64-Core") == "cpu-amd-epyc-7763-64-core"
    assert device_tag("h200", "NVIDIA H200") == "h200-nvidia-h200"


@pytest.mark.parametrize("value", ["1e300", "inf", "nan"])
def test_absurd_times_are_refused(tmp_path, value):
    """median_ms=1e300 used to overflow the predictor into a traceback (issue 15)."""
    path = tmp_path / "t.csv"
    append_rows(path, synthetic_rows()[:4])
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[1].split(",")
    cells[header.index("median_ms")] = value
    lines[1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(LatencyTableError, match=r"median_ms must be a positive number of "
                       r"milliseconds \(at most 1e\+08\) \(line\(s\) \[2\]"):
        read_table(path)
