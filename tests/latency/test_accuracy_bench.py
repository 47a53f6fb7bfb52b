"""bench/latency_accuracy.py runs end to end on the shipped table (its numbers mean nothing
with a tiny workload and one thread beside other tests)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from bench_module import load_bench as _load

ROOT = Path(__file__).resolve().parents[2]


def test_accuracy_bench_times_each_arch_beside_the_parent(tmp_path, capsys):
    bench = _load("latency_accuracy")
    profile = tmp_path / "small.yaml"
    profile.write_text("name: small\nkind: cpu\nthreads: 1\n"
                       "workload: {batch_size: 1, prompt_len: 16, generated_len: 4}\n")
    table = next((ROOT / "latency_db").glob("cpu-*.csv"))
    out = tmp_path / "accuracy.json"
    assert bench.main(["--table", str(table), "--device-profile", str(profile),
                       "--inside", "1", "--outside", "1", "--absorbed", "1",
                       "--rounds", "2", "--repeats", "1", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "(the reference)" in printed and "speed-ups over the parent" in printed
    data = json.loads(out.read_text())
    assert [a["kind"] for a in data["archs"]] == ["inside", "outside", "absorbed"]
    for arch in data["archs"]:
        assert len(arch["samples_ms"]) == 2  # one per round
        assert arch["measured_speedup"] > 0 and arch["predicted_speedup"] > 0
    summary = data["summary"]
    for key in ("median_abs_pct_error", "speedup_median_abs_pct_error",
                "speedup_median_signed_pct_error"):
        assert math.isfinite(summary[key])
    assert 0.0 <= summary["speedup_share_within_10pct"] <= 1.0
    # one arch per kind: each kind's figure is that arch's own error
    for arch in data["archs"]:
        assert summary["by_kind"][arch["kind"]]["median_signed_pct_error"] == \
            pytest.approx(100 * (arch["ratio"] - 1.0))
    assert "by kind: inside" in printed
