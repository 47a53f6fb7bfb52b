"""`plsearch prune`: one end-to-end run on a tiny folder, and bad input -> one line, exit 2."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from plsearch.cli import main
from plsearch.families import supported_model_types
from plsearch.families.testing import tiny_model


def _char_tokenizer():
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<bos>", "<eos>", "<unk>"]  # ids 0-2 match the tiny configs
    vocab = {tok: i for i, tok in enumerate(specials)}
    for code in range(32, 127):
        vocab[chr(code)] = len(vocab)
    vocab["\n"] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>",
                                   eos_token="<eos>", unk_token="<unk>")


@pytest.fixture(scope="module")
def parent_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("parent")
    folder = root / "glm4"
    tiny_model("glm4", seed=7).save_pretrained(folder)
    _char_tokenizer().save_pretrained(folder)
    text = root / "calib.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. 0123456789\n" * 80,
                    encoding="utf-8")
    gemma = root / "gemma"
    tiny_model("gemma3_text").save_pretrained(gemma)
    return folder, text, gemma


def _run(capsys, *argv):
    """(exit code, stdout, stderr) of `plsearch *argv`; argparse errors exit via SystemExit."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_prune_end_to_end_and_cache(parent_dir, tmp_path, capsys):
    folder, text, _ = parent_dir
    common = ["prune", "--model", str(folder), "--calib-data", str(text),
              "--calib-samples", "8", "--calib-seq-len", "32", "--cache-dir",
              str(tmp_path / "cache"), "--num-hidden-layers", "3", "--hidden-size", "48"]
    code, out, err = _run(capsys, *common, "--out", str(tmp_path / "a"))
    assert code == 0, err
    assert "glm" in out and "absorption" in out
    meta = json.loads((tmp_path / "a" / "plsearch.json").read_text())
    assert meta["arch"]["num_hidden_layers"] == 3 and meta["arch"]["hidden_size"] == 48
    assert meta["recipe"]["name"] == "pangu" and meta["recipe"]["absorb_post_norm"] is True
    assert meta["importance_key"]["num_samples"] == 8 and meta["seed"] == 0
    assert len(meta["parent"]["weights_hash"]) == 16
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "a")
    assert model.config.model_type == "glm" and model.config.hidden_size == 48
    assert (tmp_path / "a" / "tokenizer.json").exists()
    assert len(list((tmp_path / "cache").iterdir())) == 1

    code, out, err = _run(capsys, *common, "--out", str(tmp_path / "b"), "--recipe", "minitron",
                          "--slnp", "act", "--no-absorb-post-norm")
    assert code == 0, err
    meta = json.loads((tmp_path / "b" / "plsearch.json").read_text())
    assert meta["recipe"]["slnp"] == "act" and meta["recipe"]["clap"] is False
    assert json.loads((tmp_path / "b" / "config.json").read_text())["model_type"] == "glm4"
    assert len(list((tmp_path / "cache").iterdir())) == 1  # same key: cache hit
    with torch.no_grad():
        assert torch.isfinite(AutoModelForCausalLM.from_pretrained(tmp_path / "b")(
            torch.tensor([[5, 6, 7]])).logits).all()


@pytest.mark.parametrize("model_type", supported_model_types())
def test_prune_a_folder_of_every_family(model_type, parent_dir, tmp_path, capsys):
    _, text, _ = parent_dir
    folder = tmp_path / "parent"
    tiny_model(model_type, seed=8).save_pretrained(folder)
    _char_tokenizer().save_pretrained(folder)
    code, _, err = _run(capsys, "prune", "--model", str(folder), "--out", str(tmp_path / "c"),
                        "--calib-data", str(text), "--calib-samples", "4", "--calib-seq-len",
                        "16", "--cache-dir", str(tmp_path / "cache"), "--num-hidden-layers", "3",
                        "--num-key-value-heads", "1", "--num-attention-heads", "2")
    assert code == 0, err
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "c")
    expected = "glm" if model_type == "glm4" else model_type
    assert model.config.model_type == expected and model.config.num_hidden_layers == 3
    with torch.no_grad():
        assert torch.isfinite(model(torch.tensor([[5, 6, 7]])).logits).all()


@pytest.mark.parametrize("extra, message", [
    (["--num-attention-heads", "3"], "multiple of num_key_value_heads"),
    (["--intermediate-size", "4096"], "must not exceed"),
    (["--num-hidden-layers", "0"], "must be positive"),
    (["--recipe", "shortgpt", "--hidden-size", "32"], "depth only"),
    (["--calib-seq-len", "100000"], "max_position_embeddings"),
    (["--calib-data", "missing.txt"], "does not exist"),
    (["--arch", "missing.json"], "does not exist"),
    (["--arch", "ARCH", "--hidden-size", "32"], "either --arch or the axis flags"),
    (["--arch", "ARCH_HEAD_DIM"], "head_dim"),
    (["--slnp", "l1"], "invalid choice"),
])
def test_bad_input_exits_2_with_one_line(parent_dir, tmp_path, capsys, extra, message):
    folder, _, _ = parent_dir
    arch = json.loads((folder / "config.json").read_text())
    fields = ("num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads",
              "head_dim", "intermediate_size", "vocab_size", "tie_word_embeddings")
    arch = {k: arch[k] for k in fields}
    (tmp_path / "arch.json").write_text(json.dumps(arch))
    (tmp_path / "arch_hd.json").write_text(json.dumps({**arch, "head_dim": 8}))
    extra = [{"ARCH": str(tmp_path / "arch.json"),
              "ARCH_HEAD_DIM": str(tmp_path / "arch_hd.json")}.get(a, a) for a in extra]
    out_dir = tmp_path / "out"
    code, _, err = _run(capsys, "prune", "--model", str(folder), "--out", str(out_dir), *extra)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out_dir.exists()


def test_absorption_on_a_family_without_it_and_existing_output(parent_dir, tmp_path, capsys):
    _, _, gemma = parent_dir
    code, _, err = _run(capsys, "prune", "--model", str(gemma), "--out", str(tmp_path / "g"),
                        "--absorb-post-norm")
    assert code == 2 and "absorption is not available" in err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    code, _, err = _run(capsys, "prune", "--model", str(gemma), "--out", str(tmp_path / "full"))
    assert code == 2 and "not empty" in err
    assert (tmp_path / "full" / "x").read_text() == "keep me"
    code, _, err = _run(capsys, "prune", "--model", str(gemma), "--out", str(tmp_path / "t"))
    assert code == 2 and "no tokenizer" in err and not (tmp_path / "t").exists()



def test_prune_warns_off_alignment_and_prints_json(parent_dir, tmp_path, capsys):
    """The cpu profile wants hidden sizes in multiples of 32: 48 is warned about (issue 15),
    32 is not; --json prints one object with the report."""
    folder, text, _ = parent_dir
    common = ["prune", "--model", str(folder), "--calib-data", str(text), "--calib-samples",
              "4", "--calib-seq-len", "16", "--cache-dir", str(tmp_path / "cache"),
              "--device", "cpu", "--json", "--num-hidden-layers", "3"]
    code, out, err = _run(capsys, *common, "--hidden-size", "48", "--out", str(tmp_path / "a"))
    assert code == 0, err
    assert "warning: hidden_size 48 (aligned: 64) off the alignment of device profile cpu" in err
    result = json.loads(out)
    assert result["arch"]["hidden_size"] == 48 and result["alignment_warning"]
    code, out, err = _run(capsys, *common, "--hidden-size", "32", "--out", str(tmp_path / "b"))
    assert code == 0, err
    assert "warning" not in err and json.loads(out)["alignment_warning"] is None


def test_prune_cleans_a_killed_runs_temporary_and_checks_writability_first(parent_dir, tmp_path,
                                                                           capsys):
    """A killed prune leaves .OUT.XXXX.tmp: the rerun removes it (issue 15). An output
    folder that cannot be written is one line, before the model is read."""
    folder, text, _ = parent_dir
    stale = tmp_path / ".c.k1ll3d.tmp"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"partial")
    common = ["prune", "--model", str(folder), "--calib-data", str(text), "--calib-samples",
              "4", "--calib-seq-len", "16", "--cache-dir", str(tmp_path / "cache"),
              "--num-hidden-layers", "3"]
    code, _, err = _run(capsys, *common, "--out", str(tmp_path / "c"))
    assert code == 0, err
    assert not stale.exists() and (tmp_path / "c" / "model.safetensors").is_file()
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, _, err = _run(capsys, *common, "--out", str(blocker / "sub" / "d"))
    assert code == 2 and err.count("\n") == 1 and "is not writable" in err
    code, _, err = _run(capsys, *common, "--cache-dir", str(blocker), "--out",
                        str(tmp_path / "e"))
    assert code == 2 and "importance cache" in err and "is not writable" in err
