"""Which latency table describes a device profile here, and the fitted predictor from it.

    latency = load_latency(profile)                       # checked table -> Latency
    latency = load_latency(profile, "analytic")           # the analytic table, explicitly
    latency.tokens_per_s(arch, profile)                   # predicted (refined if corrected)
    latency = latency.with_correction(fit_correction(pairs))

The table, in order of preference:

1. ``latency_db`` when given (a CSV path, or ``analytic``);
2. the profile's device is on this machine: its own table,
   latency_db/<profile>-<device slug>.csv, which must match this device's fingerprint;
3. the device is not here: the profile's one measured table in latency_db/;
4. the device is not here and nothing was measured: the ``analytic`` table computed from
   the profile's published peaks (plsearch.latency.analytic), written to
   latency_db/<profile>-analytic.csv so it can be read; its rows have clock ``analytic``
   and the predictor says ``analytic``. Once `plsearch profile-npu` has measured the device,
   its table is preferred (2 or 3).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plsearch.arch import ArchConfig
from plsearch.config import DeviceProfile
from plsearch.errors import LatencyTableError
from plsearch.latency.refine import IDENTITY, Correction
from plsearch.latency.timers import device_threads, profile_timer

__all__ = ["ANALYTIC", "Latency", "default_table_path", "load_latency", "measured_tables"]

logger = logging.getLogger(__name__)

ANALYTIC = "analytic"  # --latency-db value that asks for the analytic table


@dataclass(frozen=True)
class Latency:
    """The fitted predictor of one device, how it was checked, and its refinement."""

    predictor: Any  # plsearch.latency.predictor.LatencyPredictor
    table_path: Path
    fingerprint: dict[str, Any]  # the table's (latest run)
    local: bool  # the profiled device is this machine's: candidates can be measured here
    validation: dict[str, float]  # predictor error on the table's whole-model rows
    analytic: bool = False  # the table is computed from published peaks, not measured
    engine: str = "hf-generate"  # what defines the tokens/s it predicts
    correction: Correction = IDENTITY  # residual correction from whole-model measurements
    absorbed: bool = False  # archs are built as the family's post-norm-absorbed type (pangu)

    def predicted_tokens_per_s(self, arch: ArchConfig, profile: DeviceProfile) -> float:
        """The predictor's tokens/s of ``arch`` on the profile's workload (no correction)."""
        from plsearch.latency.predictor import predict_tokens_per_s

        return float(predict_tokens_per_s(arch, profile, self.predictor,
                                          absorbed=self.absorbed))

    def tokens_per_s(self, arch: ArchConfig, profile: DeviceProfile) -> float:
        """Predicted tokens/s of ``arch``, refined by the correction when there is one."""
        return self.correction.apply(self.predicted_tokens_per_s(arch, profile))

    def with_correction(self, correction: Correction) -> Latency:
        return dataclasses.replace(self, correction=correction)

    def for_recipe(self, recipe: str) -> Latency:
        """The latency of candidates built by ``recipe`` (pangu exports absorbed models)."""
        return dataclasses.replace(self, absorbed=recipe == "pangu")

    def to_dict(self) -> dict[str, Any]:
        return {"table": str(self.table_path), "fingerprint": self.fingerprint,
                "local": self.local, "validation": self.validation, "analytic": self.analytic,
                "engine": self.engine, "correction": self.correction.to_dict(),
                "absorbed": self.absorbed}


def db_folder() -> Path:
    from plsearch.latency.table import default_db_dir

    return default_db_dir()


def table_dirs() -> list[Path]:
    """Where tables are looked for, in order: the user's folder (where profile-npu writes),
    then the tables shipped with plsearch."""
    from plsearch.config import data_dir

    folders = [db_folder(), data_dir("latency_db")]
    return [f for i, f in enumerate(folders)
            if f.resolve() not in [g.resolve() for g in folders[:i]]]


def measured_tables(profile_name: str, folder: Path | None = None) -> list[Path]:
    """The profile's measured tables (analytic ones left out): in ``folder``, or in
    ``table_dirs()``, where a user's table hides a shipped one of the same name."""
    found: dict[str, Path] = {}
    for where in [folder] if folder else table_dirs():
        for p in sorted(where.glob(f"{profile_name}-*.csv")):
            if not p.stem.endswith(f"-{ANALYTIC}"):
                found.setdefault(p.name, p)
    return sorted(found.values())


def default_table_path(profile: DeviceProfile, timer) -> Path | None:
    """This device's table (timer given), else the profile's one measured table, else None.

    With a timer the path is returned even when the file does not exist yet (that is where
    `plsearch profile-npu` writes).
    """
    from plsearch.latency.table import device_tag

    if timer is not None:
        name = f"{device_tag(profile.name, timer.device_name())}.csv"
        for where in table_dirs():
            if (where / name).exists():
                return where / name
        return db_folder() / name
    found = measured_tables(profile.name)
    if len(found) > 1:
        raise LatencyTableError(
            f"profile {profile.name} has several measured tables ({', '.join(map(str, found))}) "
            "and its device is not here to choose; pass --latency-db")
    return found[0] if found else None


def load_latency(profile: DeviceProfile, latency_db: str | Path | None = None,
                 profile_name: str = "", space: str | Path | None = None,
                 parent_config=None) -> Latency:
    """Read the device's latency table, check it describes this device, fit the predictor.

    LatencyTableError (pointing to `plsearch profile-npu`) when the table is missing, was
    measured on another device or setup, or has the wrong dtype or engine.
    ``parent_config``: the parent whose grid an analytic table covers (default: built-in).
    """
    from plsearch.latency.predictor import fit_predictor, validate_predictor
    from plsearch.latency.table import (
        fingerprint_mismatches,
        is_analytic,
        latest_fingerprint,
        read_table,
    )

    timer = profile_timer(profile)
    space_arg = f" --space {space}" if space else ""
    hint = (f"`plsearch profile-npu --device {profile.kind} --device-profile "
            f"{profile_name or profile.name}{space_arg}` (add --quick for a few minutes' grid)")
    if str(latency_db) == ANALYTIC or (latency_db is None and timer is None
                                       and default_table_path(profile, None) is None):
        path, table = _analytic(profile, parent_config, space, hint)
    else:
        path = Path(latency_db) if latency_db else default_table_path(profile, timer)
        if not path.exists():
            raise LatencyTableError(f"no latency table for this device at {path}; measure it "
                                    f"with {hint}, or pass --latency-db (a CSV or analytic)")
        table = read_table(path)
    recorded = latest_fingerprint(table)
    if str(recorded["backend"]) != profile.kind or str(recorded["dtype"]) != profile.dtype:
        raise LatencyTableError(
            f"{path} was measured on {recorded['backend']} in {recorded['dtype']}, but the "
            f"device profile targets {profile.kind} in {profile.dtype}; measure this device "
            f"with {hint}")
    if str(recorded["engine"]) != profile.engine:
        raise LatencyTableError(
            f"{path} was measured with the {recorded['engine']} engine, but the device "
            f"profile's tokens/s come from {profile.engine}; measure this device with {hint}")
    analytic = is_analytic(table)
    if timer is not None and not analytic:
        with device_threads(profile):
            current = {**timer.fingerprint(profile.dtype), "engine": profile.engine}
        mismatches = fingerprint_mismatches(table, current)
        if mismatches:
            raise LatencyTableError(
                f"{path} does not describe this device ({'; '.join(mismatches)}); its speeds "
                f"would mislead the search: measure this device with {hint}")
    elif analytic:
        logger.warning("no measured latency table for profile %s: predictions come from the "
                       "analytic table %s (roofline of published peaks; measure the device "
                       "with %s)", profile.name, path, hint)
    else:
        logger.warning("the %s device of profile %s is not on this machine: predictions come "
                       "from %s, and front candidates cannot be measured here",
                       profile.kind, profile.name, path)
    predictor = fit_predictor(table)
    try:
        report = validate_predictor(predictor, table)
        validation = {"median_ape": report.median_ape(), "within_10pct": report.share_within(0.10),
                      "models": report.count()}
    except LatencyTableError:
        validation = {}
    fingerprint = {k: (v.item() if hasattr(v, "item") else v) for k, v in recorded.items()}
    return Latency(predictor=predictor, table_path=path, fingerprint=fingerprint,
                   local=timer is not None and not analytic, validation=validation,
                   analytic=analytic, engine=predictor.engine)


def _analytic(profile: DeviceProfile, parent_config, space, hint: str):
    """The analytic table of the profile for the parent (and space), written to latency_db/."""
    from plsearch.latency.analytic import analytic_rows
    from plsearch.latency.table import device_tag, write_table

    if profile.peak is None:
        raise LatencyTableError(
            f"no latency table for profile {profile.name} and no peak figures for an "
            f"analytic one; measure the device with {hint}, or add peak: to its YAML")
    if parent_config is None:
        from plsearch.models import read_config, resolve_model_dir

        parent_config = read_config(resolve_model_dir(None))
    axes = None
    if space and Path(space).exists():  # the space's shapes; else the parent's aligned grid
        from plsearch.families import get_family
        from plsearch.latency.profiler import load_space_axes

        parent = get_family(parent_config.model_type).arch_from_config(parent_config)
        axes = load_space_axes(space, parent)
    path = db_folder() / f"{device_tag(profile.name, ANALYTIC)}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)  # ./latency_db outside a source tree
    # Derived data: rewritten (atomically) for this parent and space.
    table = write_table(path, analytic_rows(parent_config, profile, axes))
    return path, table
