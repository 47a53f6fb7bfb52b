"""ArchConfig: validation, counts, alignment and the JSON format."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from plsearch.arch import ArchConfig, ArchTraits, align
from plsearch.errors import InvalidArchError

BASE = {
    "num_hidden_layers": 4,
    "hidden_size": 64,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "intermediate_size": 128,
    "vocab_size": 256,
    "tie_word_embeddings": False,
}


def make(**changes) -> ArchConfig:
    return ArchConfig(**{**BASE, **changes})


def test_arch_module_does_not_import_torch():
    code = "import sys, plsearch.arch; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "rule"),
    [
        ({"num_hidden_layers": 0}, "num_hidden_layers must be positive"),
        ({"hidden_size": -8}, "hidden_size must be positive"),
        ({"head_dim": 16.0}, "head_dim must be an integer"),
        ({"vocab_size": True}, "vocab_size must be an integer"),
        ({"tie_word_embeddings": "yes"}, "tie_word_embeddings must be true or false"),
        (
            {"num_attention_heads": 6, "num_key_value_heads": 4},
            r"num_attention_heads \(6\) must be a multiple of num_key_value_heads \(4\)",
        ),
    ],
)
def test_validation_names_the_rule(changes, rule):
    with pytest.raises(InvalidArchError, match=rule) as info:
        make(**changes)
    assert "\n" not in str(info.value)


def test_validation_reports_every_problem_on_one_line():
    with pytest.raises(InvalidArchError) as info:
        make(num_hidden_layers=0, intermediate_size=0)
    message = str(info.value)
    assert "num_hidden_layers must be positive" in message
    assert "intermediate_size must be positive" in message
    assert "\n" not in message


def test_validate_against_parent():
    parent = make()
    make(
        num_hidden_layers=2,
        hidden_size=32,
        num_key_value_heads=1,
        num_attention_heads=2,
        intermediate_size=64,
    ).validate_against(parent)
    parent.validate_against(parent)
    cases = [
        ({"hidden_size": 128}, r"hidden_size \(128\) must not exceed the parent's \(64\)"),
        ({"num_hidden_layers": 5}, "num_hidden_layers"),
        ({"intermediate_size": 256}, "intermediate_size"),
        ({"head_dim": 8}, r"head_dim \(8\) must equal the parent's \(16\)"),
        ({"vocab_size": 128}, "vocab_size"),
        ({"tie_word_embeddings": True}, "tie_word_embeddings"),
        (
            {"num_attention_heads": 3, "num_key_value_heads": 1},
            r"query heads per KV group \(3\) must not exceed the parent's \(2\)",
        ),
    ]
    for changes, rule in cases:
        with pytest.raises(InvalidArchError, match=rule):
            make(**changes).validate_against(parent)


# ---- counts -------------------------------------------------------------------------


def test_num_params_by_hand():
    arch = ArchConfig(
        num_hidden_layers=2,
        hidden_size=8,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=4,
        intermediate_size=16,
        vocab_size=10,
        tie_word_embeddings=False,
    )
    # q 8x8, k 8x4, v 8x4, o 8x8 = 192; MLP 3*8*16 = 384; 2 norms of 8 = 16.
    per_layer = 192 + 384 + 16
    embeddings = 2 * 10 * 8
    assert arch.num_params(ArchTraits()) == 2 * per_layer + embeddings + 8
    tied = arch.replace(tie_word_embeddings=True)
    assert tied.num_params(ArchTraits()) == arch.num_params(ArchTraits()) - 80
    extras = ArchTraits(qkv_bias=True, o_bias=True, mlp_bias=True, qk_norm=True, norms_per_layer=4)
    # biases: q 8 + k 4 + v 4, o 8, gate 16 + up 16 + down 8; qk-norm 2*4; two more norms 16.
    added = 16 + 8 + 40 + 8 + 16
    assert arch.num_params(extras) == arch.num_params(ArchTraits()) + 2 * added


def test_flops_convention():
    arch = make()
    d, f, q_out, kv_out = 64, 128, 64, 32
    weights = d * q_out + 2 * d * kv_out + q_out * d + 3 * d * f
    lm_head = 256 * 64
    expected_decode = 4 * (2 * weights + 2 * 2 * q_out * 100) + 2 * lm_head
    assert arch.flops_per_token("decode", context=100) == expected_decode
    # prefill of 99 tokens: on average each token attends to (99 + 1) / 2 = 50 keys.
    expected_prefill = 4 * (2 * weights + 2 * 2 * q_out * 50) + 2 * lm_head
    assert arch.flops_per_token("prefill", context=99) == expected_prefill
    assert arch.flops_per_token("prefill", 1) == arch.flops_per_token("decode", 1)


def test_flops_positive_and_decode_grows_with_context():
    arch = make()
    values = [arch.flops_per_token("decode", context=n) for n in (1, 16, 256, 4096)]
    assert values[0] > 0
    assert values == sorted(values) and len(set(values)) == len(values)
    smaller = arch.replace(num_hidden_layers=2)
    assert smaller.flops_per_token("prefill", 64) < arch.flops_per_token(
        "prefill", 64
    )
    with pytest.raises(InvalidArchError, match="phase"):
        arch.flops_per_token("train", 8)
    with pytest.raises(InvalidArchError, match="context"):
        arch.flops_per_token("decode", 0)


def test_kv_cache_bytes_per_token():
    arch = make()
    assert arch.kv_cache_bytes_per_token() == 2 * 4 * 2 * 16 * 2
    assert arch.kv_cache_bytes_per_token(dtype_bytes=4) == 2 * 4 * 2 * 16 * 4
    assert arch.replace(num_attention_heads=2).kv_cache_bytes_per_token() == 512  # query heads: no


# ---- alignment ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "multiple", "mode", "expected"),
    [
        (100, 64, "nearest", 128),
        (95, 64, "nearest", 64),
        (96, 64, "nearest", 128),  # half rounds up
        (100, 64, "down", 64),
        (100, 64, "up", 128),
        (128, 64, "down", 128),
        (128, 64, "up", 128),
        (10, 64, "nearest", 64),  # never 0
        (10, 64, "down", 64),  # never 0
        (7, 1, "nearest", 7),
    ],
)
def test_align(value, multiple, mode, expected):
    assert align(value, multiple, mode) == expected


@pytest.mark.parametrize(
    ("value", "multiple", "mode"), [(0, 8, "up"), (8, 0, "up"), (8, 8, "sideways")]
)
def test_align_rejects_bad_input(value, multiple, mode):
    with pytest.raises(InvalidArchError):
        align(value, multiple, mode)


def test_aligned_snaps_to_device_multiples():
    arch = make(
        hidden_size=1000,
        intermediate_size=3000,
        num_attention_heads=12,
        num_key_value_heads=3,
        head_dim=128,
    )
    snapped = arch.aligned(hidden_multiple=128, ffn_multiple=256, kv_heads_multiple=2)
    assert snapped.hidden_size == 1024
    assert snapped.intermediate_size == 3072
    assert snapped.num_key_value_heads == 4
    assert snapped.num_attention_heads == 12  # a multiple of the new KV count
    assert snapped.num_hidden_layers == arch.num_hidden_layers


def test_aligned_never_exceeds_the_parent():
    parent = make(hidden_size=1000, intermediate_size=3000)
    snapped = parent.replace(hidden_size=990).aligned(hidden_multiple=128, parent=parent)
    assert snapped.hidden_size == 896  # nearest is 1024 > 1000, so snapped down
    tiny_parent = make(hidden_size=100, intermediate_size=100)
    kept = tiny_parent.aligned(hidden_multiple=128, ffn_multiple=256, parent=tiny_parent)
    assert (kept.hidden_size, kept.intermediate_size) == (100, 100)  # parent's own shape
    kept.validate_against(tiny_parent)


# ---- conversion ---------------------------------------------------------------------


def test_json_round_trip(tmp_path):
    arch = make(tie_word_embeddings=True)
    path = tmp_path / "arch.json"
    arch.to_json(path)
    assert json.loads(path.read_text()) == BASE | {"tie_word_embeddings": True}
    assert ArchConfig.from_json(path) == arch
    assert ArchConfig.from_dict(arch.to_dict()) == arch


def test_bad_json_says_fix_the_file(tmp_path):
    path = tmp_path / "arch.json"
    path.write_text('{"hidden_size": 64,')
    with pytest.raises(InvalidArchError, match=r"arch.json is not valid JSON: .*; fix the file"):
        ArchConfig.from_json(path)
    with pytest.raises(InvalidArchError, match="does not exist"):
        ArchConfig.from_json(tmp_path / "missing.json")
    path.write_text("[1, 2]")
    with pytest.raises(InvalidArchError, match="must be a JSON object"):
        ArchConfig.from_json(path)


def test_unknown_and_missing_keys_are_named():
    data = dict(BASE)
    data["hidden_sise"] = data.pop("hidden_size")
    with pytest.raises(InvalidArchError) as info:
        ArchConfig.from_dict(data)
    message = str(info.value)
    assert "unknown key(s) ['hidden_sise']" in message
    assert "missing key(s) ['hidden_size']" in message
    assert "expected keys: num_hidden_layers, hidden_size" in message


def test_invalid_values_in_a_file_name_the_file(tmp_path):
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(BASE | {"num_key_value_heads": 3}))
    with pytest.raises(InvalidArchError, match=r"arch.json: invalid arch: num_attention_heads"):
        ArchConfig.from_json(path)


def test_replace():
    arch = make()
    assert arch.replace(hidden_size=32).hidden_size == 32
    assert arch.hidden_size == 64  # frozen original untouched
    with pytest.raises(InvalidArchError, match="unknown arch key"):
        arch.replace(hidden=32)
    with pytest.raises(InvalidArchError, match="multiple of num_key_value_heads"):
        arch.replace(num_key_value_heads=3)
    assert str(arch) == "L4 d64 q4/kv2x16 ffn128"
