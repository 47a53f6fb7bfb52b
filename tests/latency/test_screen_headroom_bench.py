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
    assert bench.main(["--archs", "2", "--device-profile", str(profile),
                       "--headrooms", "0,0.5"]) == 0
    printed = capsys.readouterr().out
    assert len(re.findall(r"^  screened L", printed, re.MULTILINE)) == 2
    assert len(re.findall(r"^  verified L", printed, re.MULTILINE)) == 2
    keeps = int(re.search(r"verification keeps (\d) of 2", printed).group(1))
    rows = {float(h) / 100: tuple(map(int, rest)) for h, *rest in
            re.findall(r"^\s+(\d+)% +(\d+) +(\d+) +(\d+) +(\d+)$", printed, re.MULTILINE)}
    assert set(rows) == {0.0, 0.5}
    for built, kept, missed, lost in rows.values():
        assert built == kept + missed and kept + lost == keeps
    assert rows[0.5][0] <= rows[0.0][0]  # more headroom never builds more
