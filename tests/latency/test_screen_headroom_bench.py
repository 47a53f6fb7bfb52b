"""bench/screen_headroom.py runs end to end (its numbers mean nothing with a tiny workload
beside other tests)."""

from __future__ import annotations

import re

from bench_module import load_bench as _load


def test_screen_headroom_bench_counts_each_arch_once_per_headroom(tmp_path, capsys):
    bench = _load("screen_headroom")
    profile = tmp_path / "small.yaml"
    profile.write_text("name: small\nkind: cpu\nthreads: 1\n"
                       "workload: {batch_size: 1, prompt_len: 16, generated_len: 4}\n")
    assert bench.main(["--archs", "2", "--calibrate", "1", "--device-profile", str(profile),
                       "--headrooms", "0,0.5"]) == 0
    printed = capsys.readouterr().out
    n = int(re.search(r"^(\d) of the \d+ archs", printed, re.MULTILINE).group(1))
    assert 1 <= n <= 2
    assert len(re.findall(r"^  screened L", printed, re.MULTILINE)) == 1 + 2 * n  # 2 ways
    assert len(re.findall(r"^  verified L", printed, re.MULTILINE)) == n
    keeps = int(re.search(rf"verification keeps (\d) of {n}", printed).group(1))
    rows = re.findall(r"^\s+(\d+)% +(\d+) +(\d+) +(\d+) +(\d+)$", printed, re.MULTILINE)
    assert [h for h, *_ in rows] == ["0", "50", "0", "50"]  # beside the loaded, the random parent
    for i in (0, 2):
        (built, kept, missed, lost), more = ([int(x) for x in rows[j][1:]] for j in (i, i + 1))
        assert built == kept + missed and kept + lost == keeps
        assert more[0] <= built  # more headroom never builds more
    assert printed.count("verified / screened speed-up - 1: median") == 2
