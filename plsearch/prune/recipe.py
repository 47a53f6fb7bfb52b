"""Recipe: which Pangu Light steps a candidate build uses (each one can be switched)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from plsearch.errors import ConfigError, UnsupportedModelError

__all__ = ["RECIPE_NAMES", "Recipe"]

SlnpVariant = Literal["l2", "act", "none"]
_SLNP = ("l2", "act", "none")
_ABSORB_RMS = ("mean", "harmonic")


@dataclass(frozen=True)
class Recipe:
    """How to turn parent weights into a candidate's weights (docs/method.md sections 2-4).

    The presets are the variants the ablation compares; any field can be overridden:
    ``Recipe.preset("minitron", slnp="l2")`` is minitron + SLNP.
    """

    name: str = "pangu"
    # Depth: removed layers hand their best KV groups to a kept receiver (sec. 2).
    clap: bool = True
    # Width: rescale every sliced hidden-size norm (sec. 3); "none" is plain slicing.
    slnp: SlnpVariant = "l2"
    # Fold post-norms into o_proj/down_proj (sec. 4). None: wherever the family can be
    # saved without them (sandwich families with an absorbed model_type).
    absorb_post_norm: bool | None = None
    # False: depth only, the arch must keep the parent's width (ShortGPT).
    width: bool = True
    # CLAP gamma fold: a channel whose ratio |gamma_r / gamma_l| exceeds this is not folded
    # (a near-zero receiver scale would blow a moved group's columns up); PruneReport
    # counts those channels in fold_fallbacks.
    fold_cap: float = 10.0
    # Absorption constant r: "mean" = mean over tokens of rms(z) (docs/method.md default);
    # "harmonic" = 1 / mean(1 / rms(z)), the value that keeps the mean scale 1/rms exact.
    absorb_rms: Literal["mean", "harmonic"] = "mean"

    def __post_init__(self) -> None:
        problems = []
        if self.slnp not in _SLNP:
            problems.append(f"slnp must be one of {', '.join(_SLNP)}, got {self.slnp!r}")
        if self.absorb_rms not in _ABSORB_RMS:
            problems.append(f"absorb_rms must be one of {', '.join(_ABSORB_RMS)}, "
                            f"got {self.absorb_rms!r}")
        if not self.fold_cap >= 1:
            problems.append(f"fold_cap must be at least 1, got {self.fold_cap}")
        if problems:
            raise ConfigError("invalid recipe: " + "; ".join(problems))

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> Recipe:
        """A named preset (pangu, minitron, shortgpt) with optional field overrides."""
        if name not in _PRESETS:
            raise ConfigError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPE_NAMES)}")
        fields = {**_PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}}
        return cls(name=name, **fields)

    def resolved(self, family) -> Recipe:
        """This recipe with ``absorb_post_norm`` decided for ``family``.

        Raises UnsupportedModelError when absorption is asked for explicitly on a family
        that cannot be saved without its post-norms.
        """
        can_absorb = family.sandwich and family.absorbed_model_type is not None
        if self.absorb_post_norm is None:
            return dataclasses.replace(self, absorb_post_norm=can_absorb)
        if self.absorb_post_norm and not can_absorb:
            why = ("stock transformers has no matching layer without post-norms"
                   if family.sandwich else "it has no post-norms")
            raise UnsupportedModelError(
                f"post-norm absorption is not available for model_type "
                f"'{family.model_type}': {why}; switch it off (--no-absorb-post-norm)")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_PRESETS: dict[str, dict[str, Any]] = {
    # Pangu Light: CLAP + SLNP l2 + absorption where the family allows it.
    "pangu": {"clap": True, "slnp": "l2", "absorb_post_norm": None, "width": True},
    # Minitron: the same importance, plain slicing, no re-initialization.
    "minitron": {"clap": False, "slnp": "none", "absorb_post_norm": False, "width": True},
    # ShortGPT: drop the lowest-BI layers, nothing else.
    "shortgpt": {"clap": False, "slnp": "none", "absorb_post_norm": False, "width": False},
}
RECIPE_NAMES = tuple(_PRESETS)
