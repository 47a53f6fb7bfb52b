"""plsearch.atomic: content, umask modes, cleanup on failure, temp names, empty-folder replace."""

from __future__ import annotations

import json
import os
import stat

import pytest

from plsearch import atomic

# (umask, file mode, folder mode) as an ordinary open() / mkdir would give them.
MODES = [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)]


@pytest.fixture(params=MODES, ids=lambda m: f"umask{m[0]:03o}")
def umask(request):
    mask, file_mode, dir_mode = request.param
    old = os.umask(mask)
    try:
        yield file_mode, dir_mode
        assert os.umask(mask) == mask  # atomic left the umask as it found it
    finally:
        os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_text_content_mode_and_parent(tmp_path, umask):
    file_mode, dir_mode = umask
    out = tmp_path / "new" / "run.json"
    assert atomic.write_text(out, '{"a": "ü"}\n') == out
    assert out.read_text(encoding="utf-8") == '{"a": "ü"}\n'
    assert _mode(out) == file_mode
    assert _mode(out.parent) == dir_mode  # the parent is an ordinary mkdir too
    assert os.listdir(out.parent) == ["run.json"]


def test_write_text_replaces_existing_file(tmp_path):
    out = tmp_path / "a.txt"
    out.write_text("old")
    atomic.write_text(str(out), "new")
    assert out.read_text() == "new"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_write_file_writer_gets_temp_sibling(tmp_path, umask):
    file_mode, _ = umask
    out = tmp_path / "table.csv"
    seen = []

    def writer(tmp):
        seen.append(tmp)
        assert tmp.parent == tmp_path and tmp.exists() and not out.exists()
        assert tmp.name.startswith(".table.csv.") and tmp.name.endswith(".tmp")
        tmp.write_text("x,y\n1,2\n")

    assert atomic.write_file(out, writer) == out
    assert out.read_text() == "x,y\n1,2\n"
    assert _mode(out) == file_mode
    assert not seen[0].exists()
    assert os.listdir(tmp_path) == ["table.csv"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_write_file_failure_leaves_nothing(tmp_path, error):
    out = tmp_path / "imp.safetensors"

    def writer(tmp):
        tmp.write_bytes(b"partial")
        raise error("boom")

    with pytest.raises(error):
        atomic.write_file(out, writer)
    assert not out.exists()
    assert os.listdir(tmp_path) == []


def test_write_file_failure_keeps_old_content(tmp_path):
    out = tmp_path / "pred.json"
    out.write_text(json.dumps({"v": 1}))

    def writer(tmp):
        tmp.write_text("{")
        raise ValueError("bad")

    with pytest.raises(ValueError):
        atomic.write_file(out, writer)
    assert json.loads(out.read_text()) == {"v": 1}
    assert os.listdir(tmp_path) == ["pred.json"]


def test_new_dir_renames_into_place(tmp_path, umask):
    file_mode, dir_mode = umask
    out = tmp_path / "runs" / "cand"
    with atomic.new_dir(out) as tmp:
        assert tmp.parent == out.parent and not out.exists()
        assert _mode(tmp) == 0o700  # private while it is being written
        (tmp / "config.json").write_text("{}")
    assert (out / "config.json").read_text() == "{}"
    assert _mode(out) == dir_mode
    assert _mode(out / "config.json") == file_mode
    assert not tmp.exists()
    assert os.listdir(out.parent) == ["cand"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_new_dir_failure_leaves_nothing(tmp_path, error):
    out = tmp_path / "cand"
    with pytest.raises(error), atomic.new_dir(out) as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "model.safetensors").write_bytes(b"partial")
        raise error("boom")
    assert not out.exists()
    assert os.listdir(tmp_path) == []


def test_new_dir_replaces_empty_folder(tmp_path):
    out = tmp_path / "cand"
    out.mkdir()
    with atomic.new_dir(out) as tmp:
        (tmp / "a").write_text("1")
    assert os.listdir(out) == ["a"]
    assert os.listdir(tmp_path) == ["cand"]


@pytest.mark.parametrize(("existing", "replace_empty", "error"), [
    (["keep"], True, OSError),  # a non-empty folder is never replaced
    ([], False, FileExistsError),  # nor an empty one without replace_empty
])
def test_new_dir_refuses_existing_folder(tmp_path, existing, replace_empty, error):
    out = tmp_path / "cand"
    out.mkdir()
    for name in existing:
        (out / name).write_text("mine")
    with pytest.raises(error), atomic.new_dir(out, replace_empty=replace_empty) as tmp:
        (tmp / "a").write_text("1")
    assert os.listdir(out) == existing
    assert os.listdir(tmp_path) == ["cand"]


def test_new_dir_temp_matches_partial_candidate_glob(tmp_path):
    """search.run removes `.trial-*.tmp` folders a killed process left behind."""
    with atomic.new_dir(tmp_path / "trial-0007") as tmp:
        assert [p.name for p in tmp_path.glob(".trial-*.tmp")] == [tmp.name]


def test_new_dir_gives_written_files_umask_modes(tmp_path, umask):
    """save_pretrained writes model.safetensors 0600; the saved folder is group-readable
    under umask 022 like any other output (issue 15)."""
    from plsearch.families.testing import tiny_model

    file_mode, dir_mode = umask
    with atomic.new_dir(tmp_path / "m") as tmp:
        tiny_model("qwen3").save_pretrained(tmp)
        (tmp / "sub").mkdir(mode=0o700)
        (tmp / "sub" / "run.sh").write_text("#!/bin/sh\n")
        os.chmod(tmp / "sub" / "run.sh", 0o700)
    out = tmp_path / "m"
    assert _mode(out / "model.safetensors") == file_mode
    assert _mode(out / "config.json") == file_mode
    assert _mode(out / "sub") == dir_mode
    assert _mode(out / "sub" / "run.sh") == file_mode | 0o100  # its execute bit is kept
