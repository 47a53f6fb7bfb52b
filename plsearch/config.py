"""YAML config files -> frozen dataclasses; every error of a file is reported together.

    profile = load_device_profile("configs/devices/cpu.yaml")   # or just "cpu"
    profile.workload.batch_size, profile.alignment.hidden_multiple

Defaults live in the dataclasses below, never in ``cfg.get(key, default)`` calls.
``load_dataclass`` is the generic checker: unknown keys, missing keys, wrong types and
out-of-range values of a whole file become one ConfigError listing them all.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from plsearch.errors import ConfigError

__all__ = [
    "Alignment",
    "DeviceProfile",
    "Peak",
    "Workload",
    "configs_dir",
    "data_dir",
    "device_profile_path",
    "latency_db_dirs",
    "load_dataclass",
    "load_device_profile",
    "read_yaml",
    "shipped_yaml",
    "user_latency_dir",
]

DeviceKind = Literal["cpu", "cuda", "npu"]
DtypeName = Literal["float32", "float16", "bfloat16"]


@dataclass(frozen=True)
class Alignment:
    """Multiples the device wants; the names match ``ArchConfig.aligned`` keywords."""

    hidden_multiple: int = 1  # residual width: matmul tile / vector width of the device
    ffn_multiple: int = 1  # FFN width: same reason, the largest matmuls of a block
    kv_heads_multiple: int = 1  # KV groups: e.g. tensor-parallel degree of the server


@dataclass(frozen=True)
class Workload:
    """The serving job that defines tokens/s = batch * generated / (prefill + decode)."""

    batch_size: int = 1  # sequences served together
    prompt_len: int = 128  # tokens of each prompt (prefill)
    generated_len: int = 64  # tokens generated per sequence (1 from prefill + decode steps)


@dataclass(frozen=True)
class Peak:
    """Published peak figures of the device, for the ``analytic`` latency table only."""

    compute_tflops: float  # dense matmul peak in the profile's dtype (no sparsity)
    memory_bandwidth_gbs: float  # device memory bandwidth, GB/s (1e9 bytes/s)
    source: str  # where the figures come from (datasheet, report), written on every row


Engine = Literal["hf-generate", "loop"]


@dataclass(frozen=True)
class DeviceProfile:
    """A device kind, its dtype and alignment, and the workload tokens/s is measured on."""

    name: str  # short tag, also the latency_db/<name>-*.csv prefix
    kind: DeviceKind  # timer backend: cpu, cuda or npu
    dtype: DtypeName = "float32"
    # torch intra-op threads for the cpu backend; None = torch's default. Ignored elsewhere.
    threads: int | None = None
    # cpu backend clock: wall (perf_counter) or thread (this thread's CPU time, which a
    # shared machine's other processes do not inflate; needs threads: 1).
    cpu_clock: Literal["wall", "thread"] = "wall"
    description: str = ""
    # What defines tokens/s: transformers generate() (greedy, KV cache, exactly
    # generated_len new tokens) or a bare forward loop; profiling, prediction and every
    # measurement of a candidate use it.
    engine: Engine = "hf-generate"
    attn_implementation: str = "sdpa"  # HF attention implementation of every timed model
    peak: Peak | None = None  # published peaks: the analytic table when no rows are measured
    alignment: Alignment = dataclasses.field(default_factory=Alignment)
    workload: Workload = dataclasses.field(default_factory=Workload)

    def align_kwargs(self) -> dict[str, int]:
        """Keyword arguments for ``ArchConfig.aligned``."""
        return dataclasses.asdict(self.alignment)


_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """A data folder shipped with plsearch (``configs``, ``latency_db``): plsearch/<name>
    in an installed wheel (pyproject.toml maps it in as package data), else the source
    checkout's top-level <name>/."""
    installed = _PACKAGE / name
    return installed if installed.is_dir() else _PACKAGE.parent / name


def configs_dir() -> Path:
    """The shipped configs/ folder (spaces, device profiles); see ``data_dir``."""
    return data_dir("configs")


def user_latency_dir() -> Path:
    """Where `plsearch profile-npu` writes the tables it measures: the checkout's
    latency_db/ when plsearch runs from a source tree, else
    $XDG_DATA_HOME/plsearch/latency_db (~/.local/share/plsearch/latency_db)."""
    checkout = _PACKAGE.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "latency_db").is_dir():
        return checkout / "latency_db"
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "plsearch" / "latency_db"


def latency_db_dirs() -> list[Path]:
    """Folders searched for a device's table, in order: the user's, then the shipped."""
    folders = [user_latency_dir(), data_dir("latency_db")]
    return [f for i, f in enumerate(folders) if f.resolve() not in
            [g.resolve() for g in folders[:i]]]


def shipped_yaml(name_or_path: str | Path, folder: str, what: str, noun: str) -> Path:
    """A YAML path as given, or configs/<folder>/<name>.yaml; ConfigError listing the
    shipped names when it is neither (``what``/``noun`` word the message)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    shipped = configs_dir() / folder / f"{name_or_path}.yaml"
    if shipped.exists():
        return shipped
    names = sorted(p.stem for p in (configs_dir() / folder).glob("*.yaml"))
    raise ConfigError(f"{what} {str(name_or_path)!r} is neither a YAML file nor a shipped "
                      f"{noun}; pass a path or one of: {', '.join(names) or '(none found)'}")


def device_profile_path(name_or_path: str | Path) -> Path:
    """A YAML path as given, or a shipped profile name (``cpu``, ``h200``, ...)."""
    return shipped_yaml(name_or_path, "devices", "device profile", "profile")


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file; a missing or unparsable file is a ConfigError."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc}); fix the file") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        reason = " ".join(str(exc).split())
        raise ConfigError(f"{path} is not valid YAML ({reason}); fix the file") from None


def load_device_profile(path: str | Path) -> DeviceProfile:
    """Read and validate a device profile (a path or a shipped name like ``cpu``)."""
    path = device_profile_path(path)
    profile = load_dataclass(DeviceProfile, read_yaml(path), source=str(path))
    if profile.kind == "cpu" and profile.cpu_clock == "thread" and profile.threads != 1:
        raise ConfigError(
            f"{path}: cpu_clock: thread only times one thread, but threads is "
            f"{profile.threads}; set threads: 1 or cpu_clock: wall; fix the file"
        )
    peak = profile.peak
    if peak is not None:
        bad = [f"peak.{k} must be a positive number, got {v!r}"
               for k, v in (("compute_tflops", peak.compute_tflops),
                            ("memory_bandwidth_gbs", peak.memory_bandwidth_gbs))
               if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0]
        if bad:
            raise ConfigError(f"{path}: " + "; ".join(bad) + "; fix the file")
    return profile


def load_dataclass(cls: type, data: Any, source: str) -> Any:
    """Build ``cls`` from a mapping, or raise one ConfigError listing every problem."""
    problems: list[str] = []
    value = _convert(cls, data, "", problems)
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems) + "; fix the file")
    return value


def _convert(cls: type, data: Any, where: str, problems: list[str]) -> Any:
    label = where or "the file"
    if not isinstance(data, dict):
        problems.append(f"{label} must be a mapping, got {type(data).__name__}")
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        problems.append(f"unknown key(s) {unknown} in {label} (expected: {', '.join(fields)})")
    values = {}
    for name, field in fields.items():
        key = f"{where}.{name}" if where else name
        if name not in data:
            no_default = field.default is dataclasses.MISSING
            if no_default and field.default_factory is dataclasses.MISSING:
                problems.append(f"missing key {key}")
            continue
        values[name] = _check_value(hints[name], data[name], key, problems)
    if problems:
        return None
    return cls(**values)


def _check_value(hint: Any, value: Any, key: str, problems: list[str]) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _convert(hint, value, key, problems)
    if origin is Literal:
        if value not in args:
            problems.append(f"{key} must be one of {list(args)}, got {value!r}")
        return value
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check_value(inner[0], value, key, problems)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            problems.append(f"{key} must be a positive integer, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            problems.append(f"{key} must be a string, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            problems.append(f"{key} must be true or false, got {value!r}")
        return value
    return value
