"""Speed budgets: "1.5x" (relative to the parent) or "2500tok/s" (absolute).

    budget = parse_budget("1.5x")
    need = budget.tokens_per_s(parent_tokens_per_s)     # what a candidate must reach
    check_reachable(budget, need, best_tokens_per_s, best_arch, parent_tokens_per_s)

A budget is a lower bound on predicted tokens/s on the device profile's workload.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from plsearch.errors import ConfigError

__all__ = ["Budget", "check_reachable", "parse_budget"]

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*[xX]\s*$")
_ABSOLUTE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:tok|tokens)\s*/\s*s\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Budget:
    """A lower bound on tokens/s, relative to the parent or absolute."""

    spec: str  # normalized: "<number>x" or "<number>tok/s", the number as written
    kind: Literal["relative", "absolute"]
    value: float  # the factor (relative) or tokens/s (absolute)

    def tokens_per_s(self, parent_tokens_per_s: float) -> float:
        """The tokens/s a candidate must reach."""
        if self.kind == "relative":
            return self.value * parent_tokens_per_s
        return self.value

    def to_dict(self, parent_tokens_per_s: float) -> dict:
        """The study attribute: {"spec": "1.5x", "tokens_per_s": ...}."""
        return {"spec": self.spec, "tokens_per_s": self.tokens_per_s(parent_tokens_per_s)}


def parse_budget(spec: str) -> Budget:
    """"1.5x" -> relative 1.5; "2500tok/s" (or "2500 tokens/s") -> absolute 2500."""
    text = str(spec)
    for pattern, kind in ((_RELATIVE, "relative"), (_ABSOLUTE, "absolute")):
        match = pattern.match(text)
        if match:
            value = float(match.group(1))
            if value <= 0:
                break
            # One spelling per budget (1.5X = 1.5x, 2500 Tokens/s = 2500tok/s): the spec
            # names the study.
            spec = f"{match.group(1)}x" if kind == "relative" else f"{match.group(1)}tok/s"
            return Budget(spec=spec, kind=kind, value=value)
    raise ConfigError(f"budget {text!r} is not understood; write a speed-up over the parent "
                      "such as 1.5x, or an absolute speed such as 2500tok/s (both > 0)")


def check_reachable(budget: Budget, need: float, best: float, best_arch,
                    parent_tokens_per_s: float) -> None:
    """ConfigError when even the fastest arch of the space misses the budget."""
    if best >= need:
        return
    raise ConfigError(
        f"budget {budget.spec} ({need:,.0f} tokens/s predicted) is unreachable in this "
        f"search space: the fastest arch ({best_arch}) reaches {best:,.0f} tokens/s, "
        f"{best / parent_tokens_per_s:.2f}x the parent; lower the budget to at most "
        f"{best / parent_tokens_per_s:.2f}x or {best:,.0f}tok/s, or widen the space's axes")
