"""A whole search in one file (`plsearch search --config FILE`), and replays of run.json.

A run file holds the search's options and its space::

    budget: 1.5x
    device_profile: cpu          # a shipped name or a profile YAML
    trials: 12
    sampler: gp                  # gp, tpe, nsga2, random
    seed: 0
    storage: postgresql://plsearch@db-host/plsearch   # optional; default: sqlite in the run
    run: reports/my-search       # optional run folder
    space: default               # a shipped name, a space YAML, or the space itself:
    # space:
    #   name: mine
    #   axes: {num_hidden_layers: {min: 4, max: 8}, ...}
    #   ladder: {...}
    #   objective: {...}

The keys are those of `plsearch search`'s flags (``run`` for ``--run``, ``device_profile``
for ``--device-profile``, ``verify``/``screen`` for ``--no-verify``/``--no-screen``); a flag
given on the command line wins over the file. Relative paths (space, model, device_profile,
latency_db) are read next to the run file where such a file exists there. Every search writes run.json into its run
folder: its options and the whole space as it ran. ``--config RUN/run.json --run NEW``
replays that search (same parent, budget, device profile, sampler, seed, trials and space)
as a new study in NEW; its storage, study name and artifacts folder are not carried over
(the storage URL is stored without its password).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from plsearch.config import read_yaml
from plsearch.errors import ConfigError

__all__ = ["FILE_KEYS", "read_run_file"]

# key in the file -> SearchOptions field, with the type the value must have
FILE_KEYS: dict[str, tuple[str, tuple[type, ...]]] = {
    "budget": ("budget", (str,)),
    "model": ("model", (str,)),
    "space": ("space", (str, dict)),
    "device_profile": ("device_profile", (str,)),
    "latency_db": ("latency_db", (str,)),
    "trials": ("trials", (int,)),
    "timeout": ("timeout", (int, float)),
    "storage": ("storage", (str,)),
    "study": ("study", (str,)),
    "run": ("out", (str,)),
    "artifacts": ("artifacts", (str,)),
    "sampler": ("sampler", (str,)),
    "seed": ("seed", (int,)),
    "verify": ("verify", (bool,)),
    "screen": ("screen", (bool,)),
    "headroom": ("headroom", (int, float)),
}
# Not carried from a run.json into its replay: they name where the original lives.
_NOT_REPLAYED = ("out", "storage", "study", "artifacts")


def is_replay(data: Any) -> bool:
    """A run.json written by a search (rather than a run file written by hand)."""
    return isinstance(data, dict) and {"options", "space", "versions"} <= set(data)


def read_run_file(path: str | Path) -> tuple[dict[str, Any], bool]:
    """(SearchOptions fields, whether it replays a run.json); ConfigError names every problem."""
    path = Path(path)
    data = read_yaml(path)  # a run.json is YAML too
    if is_replay(data):
        options = data["options"]
        if not isinstance(options, dict) or not isinstance(data["space"], dict):
            raise ConfigError(f"{path}: options and space must be mappings; is it a "
                              "run.json written by plsearch search?")
        fields = {name for name, _ in FILE_KEYS.values()}
        values = {k: v for k, v in options.items()
                  if k in fields and k not in _NOT_REPLAYED and v is not None}
        values["space"] = data["space"]
        return values, True
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a run file must be a mapping of {', '.join(FILE_KEYS)}; "
                          "fix the file")
    problems = []
    unknown = sorted(set(data) - set(FILE_KEYS))
    if unknown:
        problems.append(f"unknown key(s) {unknown} (expected: {', '.join(FILE_KEYS)})")
    values = {}
    for key, value in data.items():
        if key not in FILE_KEYS or value is None:
            continue
        field, types = FILE_KEYS[key]
        wrong_bool = isinstance(value, bool) and bool not in types
        if wrong_bool or not isinstance(value, types):
            want = " or ".join("a mapping" if t is dict else t.__name__ for t in types)
            hint = " (quote it: budget: \"1.5x\")" if key == "budget" else ""
            problems.append(f"{key} must be {want}, got {value!r}{hint}")
            continue
        values[field] = value
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems) + "; fix the file")
    for key in ("space", "model", "device_profile", "latency_db"):  # files next to the run file
        value = values.get(key)
        if isinstance(value, str) and not Path(value).is_absolute():
            beside = path.parent / value
            if beside.exists():
                values[key] = str(beside)
    return values, False
