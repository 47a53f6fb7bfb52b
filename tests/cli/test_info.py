"""`plsearch info` and the CLI's bad-input contract: exit 2, one line, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from plsearch.cli import main
from plsearch.families.testing import tiny_model


def test_info_json_describes_builtin_parent(capsys):
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["family"] == "glm4"
    assert info["arch"]["num_hidden_layers"] == 8
    from plsearch.models import load_model

    model = load_model(None)[0]
    assert info["params"] == sum(p.numel() for p in model.parameters())


def test_info_on_a_saved_folder(tmp_path, capsys):
    model = tiny_model("qwen3")
    model.save_pretrained(tmp_path / "m")
    assert main(["info", "--model", str(tmp_path / "m"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["family"] == "qwen3"
    assert info["params"] == sum(p.numel() for p in model.parameters())


def _bad_config(tmp_path, text):
    folder = tmp_path / "m"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(text)
    return str(folder)


@pytest.mark.parametrize(
    "make_model, expected",
    [
        (lambda tmp: str(tmp / "nope"), "does not exist"),
        (lambda tmp: _bad_config(tmp, "{not json"), "not valid JSON"),
        (lambda tmp: _bad_config(tmp, '{"model_type": "lama"}'), "did you mean 'llama'"),
        (lambda tmp: _bad_config(tmp, '{"hidden_size": 3}'), "no model_type"),
    ],
)
def test_bad_model_gives_exit_2_and_one_line(tmp_path, make_model, expected):
    proc = subprocess.run(
        [sys.executable, "-m", "plsearch", "info", "--model", make_model(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
