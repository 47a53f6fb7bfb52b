"""The family registry: HF model_type -> Family (the only global mutable state in plsearch)."""

from __future__ import annotations

import difflib
from typing import Any

from plsearch.errors import UnsupportedModelError
from plsearch.families.base import Family

__all__ = ["family_for_model", "get_family", "register_family", "supported_model_types"]

_FAMILIES: dict[str, Family] = {}


def register_family(family: Family | type[Family], *, replace: bool = False):
    """Register a Family (instance or class); returns its argument, so it works as a decorator."""
    instance = family() if isinstance(family, type) else family
    if not isinstance(instance, Family):
        raise TypeError(f"register_family expects a Family, got {type(instance).__name__}")
    model_type = instance.model_type
    if model_type in _FAMILIES and not replace:
        raise ValueError(f"a family for model_type {model_type!r} is already registered")
    _FAMILIES[model_type] = instance
    return family


def supported_model_types() -> list[str]:
    return sorted(_FAMILIES)


def get_family(model_or_config_or_model_type: Any) -> Family:
    """The Family for a HF model, a HF config, or a model_type string."""
    model_type = _model_type_of(model_or_config_or_model_type)
    family = _FAMILIES.get(model_type)
    if family is None:
        supported = supported_model_types()
        close = difflib.get_close_matches(model_type, supported, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ";"
        raise UnsupportedModelError(
            f"model_type '{model_type}' is not supported{hint} Supported: {', '.join(supported)}"
        )
    return family


def family_for_model(model: Any) -> Family:
    """The Family of an in-memory HF model (reads ``model.config.model_type``)."""
    return get_family(model)


def _model_type_of(obj: Any) -> str:
    if isinstance(obj, str):
        return obj
    config = getattr(obj, "config", obj)
    model_type = getattr(config, "model_type", None)
    if not isinstance(model_type, str) or not model_type:
        raise UnsupportedModelError(
            f"cannot tell the model_type of a {type(obj).__name__}; pass a Hugging Face "
            "model, its config, or a model_type string"
        )
    return model_type
