"""Architecture shapes: ArchConfig and its exact parameter, FLOP and KV-cache counts.

An arch is the handful of Hugging Face config fields that pruning changes, uniform across
layers. Written as JSON it is exactly ``ArchConfig.to_dict()``: the HF field names, nothing
else. What a family adds on top (biases, QK-norm, sandwich norms) lives in ``ArchTraits``,
which the family adapter derives from the model's config; counts need both.

This module is pure Python on purpose (no torch): the search samples, validates and prices
thousands of arches without building one.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from plsearch.errors import InvalidArchError

__all__ = ["ArchConfig", "ArchTraits", "align", "align_capped"]

AlignMode = Literal["nearest", "down", "up"]
Phase = Literal["prefill", "decode"]

# Axes that must be positive integers; pruning may shrink each of them except head_dim and
# vocab_size, which stay equal to the parent's.
_INT_FIELDS = (
    "num_hidden_layers",
    "hidden_size",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "intermediate_size",
    "vocab_size",
)
_PRUNABLE_AXES = (
    "num_hidden_layers",
    "hidden_size",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
)


@dataclass(frozen=True)
class ArchTraits:
    """Per-family facts that change parameter counts but are not searched over.

    Families derive them from a config (``Family.traits(config)``); they never change when
    a model is pruned, so a parent's traits price every candidate built from it.
    """

    qkv_bias: bool = False  # q_proj/k_proj/v_proj carry a bias (Qwen2, GLM-4)
    o_bias: bool = False  # o_proj carries a bias (Llama with attention_bias=True)
    mlp_bias: bool = False  # gate/up/down carry a bias (Llama with mlp_bias=True)
    qk_norm: bool = False  # per-head RMSNorm of size head_dim on q and k (Qwen3, Gemma-3)
    norms_per_layer: int = 2  # hidden-size norms per layer: 2 pre-norm, 4 sandwich


def align(value: int, multiple: int, mode: AlignMode = "nearest") -> int:
    """Snap a positive ``value`` to a multiple of ``multiple``; never returns 0.

    ``nearest`` rounds half up; ``down`` floors but returns ``multiple`` when the value is
    below it; ``up`` ceils.
    """
    if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
        raise InvalidArchError(f"alignment multiple must be a positive integer, got {multiple!r}")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArchError(f"value to align must be a positive integer, got {value!r}")
    if mode == "down":
        snapped = value // multiple * multiple
    elif mode == "up":
        snapped = -(-value // multiple) * multiple
    elif mode == "nearest":
        snapped = (value + multiple // 2) // multiple * multiple
    else:
        raise InvalidArchError(f"alignment mode must be 'nearest', 'down' or 'up', got {mode!r}")
    return max(snapped, multiple)



def align_capped(value: int, multiple: int, cap: int | None, mode: AlignMode = "nearest") -> int:
    """``align(value, multiple, mode)``, never above ``cap`` (a parent's own value): snapped
    down instead, and ``cap`` itself when even that is impossible."""
    snapped = align(value, multiple, mode)
    if cap is not None and snapped > cap:
        snapped = min(align(cap, multiple, "down"), cap)
    return snapped


@dataclass(frozen=True)
class ArchConfig:
    """One uniform decoder shape, named with Hugging Face config fields.

    An ArchConfig that exists is valid: construction runs ``validate()``.
    """

    num_hidden_layers: int
    hidden_size: int  # width of the residual stream
    num_attention_heads: int  # query heads
    num_key_value_heads: int  # KV groups (GQA); divides num_attention_heads
    head_dim: int  # explicit, since pruning heads or hidden never changes it
    intermediate_size: int  # FFN width
    vocab_size: int
    tie_word_embeddings: bool  # lm_head shares the embedding matrix (counted once)

    def __post_init__(self) -> None:
        self.validate()

    # ---- validation -------------------------------------------------------------------

    def validate(self) -> None:
        """Raise InvalidArchError naming every violated rule, on one line."""
        problems = []
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                problems.append(f"{name} must be an integer, got {value!r}")
            elif value < 1:
                problems.append(f"{name} must be positive, got {value}")
        if not isinstance(self.tie_word_embeddings, bool):
            problems.append(
                f"tie_word_embeddings must be true or false, got {self.tie_word_embeddings!r}"
            )
        if not problems and self.num_attention_heads % self.num_key_value_heads:
            problems.append(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        if problems:
            raise InvalidArchError("invalid arch: " + "; ".join(problems))

    def validate_against(self, parent: ArchConfig) -> None:
        """Raise InvalidArchError unless this arch can be pruned out of ``parent``."""
        problems = []
        for name in _PRUNABLE_AXES:
            mine, theirs = getattr(self, name), getattr(parent, name)
            if mine > theirs:
                problems.append(f"{name} ({mine}) must not exceed the parent's ({theirs})")
        for name in ("head_dim", "vocab_size", "tie_word_embeddings"):
            mine, theirs = getattr(self, name), getattr(parent, name)
            if mine != theirs:
                problems.append(f"{name} ({mine}) must equal the parent's ({theirs})")
        # Query heads belong to KV groups: pruning keeps whole groups and may drop query
        # heads inside a group, so a group can shrink but never grow.
        if self.queries_per_group > parent.queries_per_group:
            problems.append(
                f"query heads per KV group ({self.queries_per_group}) must not exceed the "
                f"parent's ({parent.queries_per_group})"
            )
        if problems:
            raise InvalidArchError("arch does not fit its parent: " + "; ".join(problems))

    @property
    def queries_per_group(self) -> int:
        return self.num_attention_heads // self.num_key_value_heads

    # ---- counts -----------------------------------------------------------------------

    def num_params(self, traits: ArchTraits) -> int:
        """Exact parameter count of the HF model: tied embeddings once, final norm included."""
        d, h, f = self.hidden_size, self.head_dim, self.intermediate_size
        q_out, kv_out = self.num_attention_heads * h, self.num_key_value_heads * h
        attn = d * q_out + 2 * d * kv_out + q_out * d
        if traits.qkv_bias:
            attn += q_out + 2 * kv_out
        if traits.o_bias:
            attn += d
        if traits.qk_norm:
            attn += 2 * h
        mlp = 3 * d * f + (2 * f + d if traits.mlp_bias else 0)
        norms = traits.norms_per_layer * d
        per_layer = attn + mlp + norms
        embeddings = self.vocab_size * d * (1 if self.tie_word_embeddings else 2)
        return self.num_hidden_layers * per_layer + embeddings + d  # + final norm

    def flops_per_token(self, phase: Phase = "prefill", context: int = 1) -> float:
        """Forward FLOPs per token, counting 2 FLOPs per multiply-accumulate.

        Counted: every projection (q, k, v, o, gate, up, down), the lm_head, and the two
        attention matmuls (scores q.k and the weighted sum of v) over the attended keys;
        biases and norms cost nothing at this precision, nor do softmax, RoPE, activations,
        the embedding lookup or sliding windows. ``decode``: one new token attending to
        ``context`` keys (the cache plus itself). ``prefill``: the mean over a causal prompt
        of ``context`` tokens, where token i attends to i + 1 keys, i.e. (context + 1) / 2.
        """
        if isinstance(context, bool) or not isinstance(context, int) or context < 1:
            raise InvalidArchError(f"context must be a positive integer, got {context!r}")
        if phase == "decode":
            keys = float(context)
        elif phase == "prefill":
            keys = (context + 1) / 2
        else:
            raise InvalidArchError(f"phase must be 'prefill' or 'decode', got {phase!r}")
        d, h, f = self.hidden_size, self.head_dim, self.intermediate_size
        q_out, kv_out = self.num_attention_heads * h, self.num_key_value_heads * h
        projection_macs = d * q_out + 2 * d * kv_out + q_out * d + 3 * d * f
        attention_macs = 2 * q_out * keys  # scores + values, per query head over head_dim
        per_layer = 2 * (projection_macs + attention_macs)
        return self.num_hidden_layers * per_layer + 2 * self.vocab_size * d

    def kv_cache_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        """Bytes of K and V cached per token over all layers."""
        return 2 * self.num_hidden_layers * self.num_key_value_heads * self.head_dim * dtype_bytes

    # ---- alignment --------------------------------------------------------------------

    def aligned(
        self,
        *,
        hidden_multiple: int = 1,
        ffn_multiple: int = 1,
        kv_heads_multiple: int = 1,
        mode: AlignMode = "nearest",
        parent: ArchConfig | None = None,
    ) -> ArchConfig:
        """Snap hidden, FFN and KV-group counts to device multiples.

        Query heads are then snapped to a multiple of the (new) KV-group count. With a
        ``parent``, an axis that would exceed the parent's is snapped down instead, and
        falls back to the parent's own value when even that is impossible (the parent's
        shape is buildable by definition).
        """

        def snap(name: str, multiple: int) -> int:
            cap = getattr(parent, name) if parent is not None else None
            return align_capped(getattr(self, name), multiple, cap, mode)

        kv = snap("num_key_value_heads", kv_heads_multiple)
        queries = align(self.num_attention_heads, kv, mode)
        if parent is not None and queries > parent.num_attention_heads:
            queries = align(parent.num_attention_heads, kv, "down")
        return self.replace(
            hidden_size=snap("hidden_size", hidden_multiple),
            intermediate_size=snap("intermediate_size", ffn_multiple),
            num_key_value_heads=kv,
            num_attention_heads=queries,
        )

    # ---- conversion -------------------------------------------------------------------

    def replace(self, **changes: Any) -> ArchConfig:
        unknown = sorted(set(changes) - set(_field_names()))
        if unknown:
            raise InvalidArchError(
                f"unknown arch key(s) {unknown}; expected keys: {', '.join(_field_names())}"
            )
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any, source: str | None = None) -> ArchConfig:
        """Build from a mapping with exactly the HF field names; ``source`` names it in errors."""
        expected = _field_names()
        where = source or "arch"
        if not isinstance(data, dict):
            raise InvalidArchError(
                f"{where} must be a JSON object with keys {', '.join(expected)}, "
                f"got {type(data).__name__}"
            )
        unknown = sorted(set(data) - set(expected))
        missing = [name for name in expected if name not in data]
        problems = []
        if unknown:
            problems.append(f"unknown key(s) {unknown}")
        if missing:
            problems.append(f"missing key(s) {missing}")
        if problems:
            raise InvalidArchError(
                f"{where}: {'; '.join(problems)}; expected keys: {', '.join(expected)}"
            )
        try:
            return cls(**data)
        except InvalidArchError as exc:
            if source is None:
                raise
            raise InvalidArchError(f"{source}: {exc}") from None

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def from_json(cls, path: str | Path) -> ArchConfig:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InvalidArchError(f"arch file {path} does not exist; check the path") from None
        except OSError as exc:
            raise InvalidArchError(f"arch file {path} cannot be read: {exc}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidArchError(f"{path} is not valid JSON: {exc}; fix the file") from None
        return cls.from_dict(data, source=str(path))

    def __str__(self) -> str:
        return (
            f"L{self.num_hidden_layers} d{self.hidden_size} "
            f"q{self.num_attention_heads}/kv{self.num_key_value_heads}x{self.head_dim} "
            f"ffn{self.intermediate_size}"
        )


def _field_names() -> tuple[str, ...]:
    return tuple(field.name for field in dataclasses.fields(ArchConfig))
