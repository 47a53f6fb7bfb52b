"""plsearch.config: device profiles, the generic YAML checker, shipped names and folders."""

from __future__ import annotations

import pytest

from plsearch.config import (
    Alignment,
    DeviceProfile,
    Workload,
    configs_dir,
    load_dataclass,
    load_device_profile,
    read_yaml,
    shipped_yaml,
)
from plsearch.errors import ConfigError


def test_shipped_name_and_path_give_the_same_profile():
    by_name = load_device_profile("cpu")
    by_path = load_device_profile(configs_dir() / "devices" / "cpu.yaml")
    assert by_name == by_path and by_name.kind == "cpu"
    assert by_name.align_kwargs() == {"hidden_multiple": 32, "ffn_multiple": 64,
                                      "kv_heads_multiple": 1}


def test_unknown_profile_name_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match="neither a YAML file nor a shipped profile.*"
                       "ascend-910b, cpu, h200"):
        load_device_profile("h100")


def test_every_problem_of_a_file_is_reported_at_once(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nkind: tpu\ndtype: float8\nthreads: 0\ncolour: red\n"
                    "alignment: {hidden_multiple: 1.5}\nworkload: 3\n")
    with pytest.raises(ConfigError) as info:
        load_device_profile(path)
    message = str(info.value)
    for needle in ("unknown key(s) ['colour']", "kind must be one of", "dtype must be one of",
                   "threads must be a positive integer, got 0",
                   "alignment.hidden_multiple must be a positive integer, got 1.5",
                   "workload must be a mapping", "; fix the file"):
        assert needle in message
    assert "\n" not in message


def test_missing_key_and_defaults():
    with pytest.raises(ConfigError, match="missing key kind"):
        load_dataclass(DeviceProfile, {"name": "x"}, source="s")
    profile = load_dataclass(DeviceProfile, {"name": "x", "kind": "cuda"}, source="s")
    assert profile.dtype == "float32" and profile.alignment == Alignment()
    assert profile.workload == Workload()


def test_booleans_are_not_integers():
    with pytest.raises(ConfigError, match="batch_size must be a positive integer, got True"):
        load_dataclass(Workload, {"batch_size": True}, source="s")


def test_thread_clock_needs_one_thread(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("name: x\nkind: cpu\ncpu_clock: thread\nthreads: 4\n")
    with pytest.raises(ConfigError, match="cpu_clock: thread only times one thread"):
        load_device_profile(path)


@pytest.mark.parametrize(("text", "message"), [
    (None, "does not exist"),
    ("a: [1, 2\n", "is not valid YAML"),
    (b"\xff\xfe", "cannot be read"),
])
def test_read_yaml_errors_are_one_line(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    elif text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        read_yaml(path)
    assert "\n" not in str(info.value)


def test_shipped_yaml_takes_paths_as_given(tmp_path):
    mine = tmp_path / "space.yaml"
    assert shipped_yaml(mine, "search", "space", "space") == mine  # not checked here
    assert shipped_yaml("default", "search", "space", "space") == \
        configs_dir() / "search" / "default.yaml"
