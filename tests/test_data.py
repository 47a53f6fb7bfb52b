"""Token streams and windows: local files, seeded windows, clear errors."""

from __future__ import annotations

import json
import os

import pytest

from plsearch.data import sample_windows, split_stream, token_stream
from plsearch.errors import ConfigError
from plsearch.models import load_model


@pytest.fixture(scope="module")
def tokenizer():
    return load_model(None)[1]


def test_txt_and_jsonl_sources(tmp_path, tokenizer):
    txt = tmp_path / "a.txt"
    txt.write_text("hello world. " * 200)
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text("\n".join(json.dumps({"text": "hello world. " * 20}) for _ in range(10)))
    s1 = token_stream(tokenizer, txt)
    s2 = token_stream(tokenizer, jsonl)
    assert len(s1) > 200 and len(s2) > 200
    assert s2.dtype.kind == "i"
    assert (s2 == tokenizer.eos_token_id).sum() == 10  # one EOS per document


def test_windows_are_seeded(tmp_path, tokenizer):
    txt = tmp_path / "a.txt"
    txt.write_text(" ".join(str(i) for i in range(3000)))
    stream = token_stream(tokenizer, txt)
    a = sample_windows(stream, 4, 32, seed=1)
    b = sample_windows(stream, 4, 32, seed=1)
    c = sample_windows(stream, 4, 32, seed=2)
    assert a.shape == (4, 32)
    assert (a == b).all() and not (a == c).all()
    train, held = split_stream(stream, 0.1)
    assert len(train) + len(held) == len(stream)


def test_bad_sources_are_clear(tmp_path, tokenizer):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(ConfigError, match="bad.jsonl:2"):
        token_stream(tokenizer, bad)
    with pytest.raises(ConfigError, match="does not exist"):
        token_stream(tokenizer, tmp_path / "missing.txt")
    short = tmp_path / "short.txt"
    short.write_text("hi")
    with pytest.raises(ConfigError, match="fewer than one window"):
        sample_windows(token_stream(tokenizer, short), 1, 64, seed=0)


def test_data_id_follows_a_files_content_not_its_name(tmp_path):
    from plsearch.data import data_id

    path = tmp_path / "calib.txt"
    path.write_text("first version of the calibration text\n")
    first = data_id(path)
    assert data_id(str(path)) == first  # a str or a Path: the same key
    stat = path.stat()
    path.write_text("other version of the calibration text\n")  # same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the same mtime
    assert data_id(path) != first
    copy = tmp_path / "sub" / "calib.txt"
    copy.parent.mkdir()
    copy.write_bytes(path.read_bytes())
    assert data_id(copy) == data_id(path)  # moving a file keeps its cache
    assert data_id(None) == data_id("builtin") == "builtin"
    assert data_id("wikitext:wikitext-2-raw-v1:train") == "wikitext:wikitext-2-raw-v1:train"
