"""Errors that say what to do.

Every error raised at a boundary (CLI arguments, config files, model folders) is a
PlsearchError whose message is one line that names the fix. cli.main() turns them into
exit code 2 with no traceback.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DeviceError",
    "InvalidArchError",
    "LatencyTableError",
    "ModelLoadError",
    "PlsearchError",
    "TrainingDivergedError",
    "UnsupportedModelError",
]


class PlsearchError(Exception):
    """Base class: a user-facing problem with a one-line message naming the fix."""


class UnsupportedModelError(PlsearchError):
    """The model's HF model_type has no family adapter."""


class InvalidArchError(PlsearchError):
    """An architecture violates a rule (divisibility, positivity, larger than parent)."""


class ConfigError(PlsearchError):
    """A YAML/JSON config file is malformed; the message lists every problem in it."""


class ModelLoadError(PlsearchError):
    """A model folder is missing or unreadable."""


class DeviceError(PlsearchError):
    """The requested device backend is not available on this machine."""


class TrainingDivergedError(PlsearchError):
    """A training loss became NaN or infinite."""


class LatencyTableError(PlsearchError):
    """A latency table is missing, corrupt, or describes another device."""
