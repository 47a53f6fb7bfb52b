"""plsearch.models: bad model folders are one ModelLoadError line, before any weight is
read (issue 15, item 8)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from plsearch.cli import main
from plsearch.errors import ModelLoadError
from plsearch.families.testing import tiny_model
from plsearch.models import check_fits_in_memory, check_weights, load_model, read_config

DROP = object()  # a field value that removes the key


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models") / "ok"
    tiny_model("qwen3").save_pretrained(folder)
    return folder


def _variant(saved, tmp_path, **fields):
    folder = tmp_path / "m"
    shutil.copytree(saved, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(fields)
    config = {k: v for k, v in config.items() if v is not DROP}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize(("fields", "message"), [
    ({"hidden_size": "64"}, "hidden_size must be a positive integer, got '64'"),
    ({"hidden_size": 64.5}, "hidden_size must be a positive integer, got 64.5"),
    ({"num_hidden_layers": None}, "num_hidden_layers must be a positive integer, got None"),
    ({"num_hidden_layers": True}, "num_hidden_layers must be a positive integer, got True"),
    ({"head_dim": None}, "head_dim must be a positive integer, got None"),
    ({"head_dim": DROP, "hidden_size": 66},
     "hidden_size 66 is not divisible by num_attention_heads 4"),
    ({"num_hidden_layers": 10**12}, "cannot be read by transformers"),
])
def test_bad_config_fields_are_one_line(saved, tmp_path, capsys, fields, message):
    folder = _variant(saved, tmp_path, **fields)
    with pytest.raises(ModelLoadError, match=message):
        read_config(folder)
    assert main(["info", "--model", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message.split(",")[0] in err


def test_a_config_the_machine_cannot_hold_is_refused(saved):
    config = read_config(saved)
    config.num_hidden_layers = 10**9
    with pytest.raises(ModelLoadError, match="GiB for its weights alone; this machine has"):
        check_fits_in_memory(config)
    config.num_hidden_layers = 2
    check_fits_in_memory(config)


@pytest.mark.parametrize("keep", [0, 5, 1000, -8])
def test_truncated_or_empty_weights_are_one_line(saved, tmp_path, keep):
    folder = _variant(saved, tmp_path)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:keep])  # -8: all but the last tensor bytes
    with pytest.raises(ModelLoadError, match="is truncated or not a safetensors file"):
        check_weights(folder)
    with pytest.raises(ModelLoadError, match="truncated"):
        load_model(folder)
    check_weights(saved)  # the intact folder passes


def test_weights_of_another_shape_are_one_line_without_the_load_report(saved, tmp_path,
                                                                      capfd):
    folder = _variant(saved, tmp_path, intermediate_size=96)
    assert main(["eval", "--model", str(folder), "--limit", "1", "--tasks",
                 "plsearch_add"]) == 2
    err = capfd.readouterr().err
    assert "do not have the shapes its config.json describes" in err
    assert "LOAD REPORT" not in err and "MISMATCH" not in err


def test_load_model_takes_a_dtype(saved):
    model, _, _ = load_model(saved, dtype=torch.bfloat16)
    assert next(model.parameters()).dtype == torch.bfloat16
