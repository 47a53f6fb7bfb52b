"""Shipped device profiles load; a bad profile reports all its problems at once."""

from __future__ import annotations

import pytest

from plsearch.config import configs_dir, load_device_profile
from plsearch.errors import ConfigError

SHIPPED = sorted(p.stem for p in (configs_dir() / "devices").glob("*.yaml"))


def test_the_three_profiles_ship():
    assert {"cpu", "ascend-910b", "h200"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profiles_validate(name):
    profile = load_device_profile(name)
    assert profile.name == name and profile.kind in ("cpu", "cuda", "npu")
    assert profile.workload.batch_size >= 1 and profile.workload.generated_len >= 1
    assert set(profile.align_kwargs()) == {"hidden_multiple", "ffn_multiple",
                                           "kv_heads_multiple"}


def test_every_error_of_a_file_is_reported_together(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("kind: tpu\ndtype: float8\nalignment: {hidden_multiple: 0}\n"
                    "workload: {batch_size: 2, prompt: 5}\nspeed: 9000\n")
    with pytest.raises(ConfigError) as info:
        load_device_profile(path)
    message = str(info.value)
    for part in ("missing key name", "kind must be one of", "dtype must be one of",
                 "alignment.hidden_multiple must be a positive integer",
                 "unknown key(s) ['prompt'] in workload", "unknown key(s) ['speed']"):
        assert part in message
    assert "\n" not in message


def test_thread_clock_needs_one_thread(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("name: x\nkind: cpu\nthreads: 2\ncpu_clock: thread\n")
    with pytest.raises(ConfigError, match="threads: 1"):
        load_device_profile(path)


def test_unknown_profile_name_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match="cpu"):
        load_device_profile("no-such-device")
