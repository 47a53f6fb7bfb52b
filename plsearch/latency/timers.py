"""Device timers: one interface, three backends (cpu, cuda, npu).

    timer = get_timer("auto")            # npu if torch_npu works, else cuda, else cpu
    timing = timer.time(fn, warmup=2, repeats=10, reset=None)
    timing.median_ms, timing.p10_ms, timing.p90_ms

Every timed call runs under ``torch.inference_mode()``; the device is synchronized before
the clock is read. ``reset`` (optional) runs between repeats, outside the timed region:
the profiler uses it to drop the token a decode step appended to its KV cache.
``flush=True`` also overwrites a buffer larger than the device's last-level cache before
every call (as triton's do_bench does), so a block timed alone reads its weights from
memory the way it does inside a model, where the other layers and the lm_head evict them
between its calls.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import platform
import socket
import statistics
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from plsearch.errors import DeviceError

__all__ = [
    "CpuTimer", "CudaTimer", "NpuTimer", "Timer", "Timing", "device_threads", "get_timer",
    "load_average", "profile_timer", "resolve_device", "torch_device",
]

logger = logging.getLogger(__name__)

NPU_INSTALL_HINT = (
    "install it with `pip install plsearch[npu]` on a machine with the CANN toolkit"
)


@dataclass(frozen=True)
class Timing:
    """Milliseconds per call over ``repeats`` timed calls."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    repeats: int

    @classmethod
    def from_samples(cls, samples_ms: list[float]) -> Timing:
        ordered = sorted(samples_ms)
        return cls(
            median_ms=statistics.median(ordered),
            p10_ms=_quantile(ordered, 0.10),
            p90_ms=_quantile(ordered, 0.90),
            repeats=len(ordered),
        )


def _quantile(ordered: list[float], q: float) -> float:
    """Linear-interpolated quantile of an already sorted list."""
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class Timer(ABC):
    """Times a zero-argument callable on one device."""

    name: str  # backend: "cpu", "cuda" or "npu"
    device: torch.device
    clock: str = "events"  # what is read: device events, or the cpu timer's wall/thread

    @abstractmethod
    def synchronize(self) -> None:
        """Wait until every queued kernel on the device has finished."""

    @abstractmethod
    def device_name(self) -> str: ...

    @abstractmethod
    def _time_once(self, fn: Callable[[], object]) -> float:
        """Milliseconds of one call of ``fn`` (device synchronized around it)."""

    flush_bytes: int = 256 * 2**20  # larger than any accelerator's L2 we target

    def flush_cache(self) -> None:
        """Evict the last-level cache by overwriting a large buffer (untimed)."""
        buffer = getattr(self, "_flush_buffer", None)
        if buffer is None:
            buffer = torch.empty(self.flush_bytes // 4, dtype=torch.float32, device=self.device)
            self._flush_buffer = buffer
        buffer.fill_(1.0)
        self.synchronize()

    def software_versions(self) -> dict[str, str]:
        """torch / CUDA / CANN versions ("" where not applicable)."""
        return {"torch_version": torch.__version__, "cuda_version": "", "cann_version": ""}

    def threads(self) -> int:
        return torch.get_num_threads()

    def fingerprint(self, dtype: str) -> dict[str, object]:
        """What identifies the measuring setup; written on every latency-table row."""
        return {
            "backend": self.name,
            "clock": self.clock,
            "device_name": self.device_name(),
            **self.software_versions(),
            "dtype": dtype,
            "threads": self.threads(),
            "host": socket.gethostname(),
        }

    def time(
        self,
        fn: Callable[[], object],
        warmup: int = 2,
        repeats: int = 10,
        reset: Callable[[], object] | None = None,
        flush: bool = False,
    ) -> Timing:
        """Median / p10 / p90 milliseconds of ``fn`` after ``warmup`` untimed calls."""
        return Timing.from_samples(self.samples(fn, warmup, repeats, reset, flush))

    def samples(
        self,
        fn: Callable[[], object],
        warmup: int = 2,
        repeats: int = 10,
        reset: Callable[[], object] | None = None,
        flush: bool = False,
    ) -> list[float]:
        """Milliseconds of each of ``repeats`` timed calls after ``warmup`` untimed ones."""
        if repeats < 1 or warmup < 0:
            raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
        samples = []
        with torch.inference_mode():
            for i in range(warmup + repeats):
                if flush:
                    self.flush_cache()
                elapsed = self._time_once(fn)
                if i >= warmup:
                    samples.append(elapsed)
                if reset is not None:
                    reset()
        return samples

    def time_once(self, fn: Callable[[], object]) -> float:
        """Milliseconds of one call (in inference mode)."""
        with torch.inference_mode():
            return self._time_once(fn)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.device_name()!r})"


class CpuTimer(Timer):
    """CPU timer; the torch thread count goes into the fingerprint.

    ``clock="wall"`` reads perf_counter. ``clock="thread"`` reads the calling thread's CPU
    time (time.thread_time): on a shared machine it leaves out the slices the OS gives to
    other processes, which wall time of a long call (a whole generation) picks up and a
    short one (a block) mostly dodges. It equals wall time on an idle machine, and it is
    only right when torch runs on this one thread (``torch.set_num_threads(1)``).
    """

    name = "cpu"
    device = torch.device("cpu")

    def __init__(self, clock: str = "wall") -> None:
        clocks = {"wall": time.perf_counter, "thread": time.thread_time}
        if clock not in clocks:
            raise DeviceError(f"unknown cpu clock {clock!r}; use 'wall' or 'thread'")
        if clock == "thread" and torch.get_num_threads() != 1:
            raise DeviceError(
                f"the thread clock needs one torch thread, torch uses "
                f"{torch.get_num_threads()}; set threads: 1 in the device profile or use "
                "the wall clock"
            )
        self.clock = clock
        self._now = clocks[clock]
        self.flush_bytes = 2 * _cpu_last_level_cache_bytes()

    def synchronize(self) -> None:
        return None  # CPU ops run synchronously

    def device_name(self) -> str:
        return _cpu_model_name()

    def _time_once(self, fn: Callable[[], object]) -> float:
        start = self._now()
        fn()
        return (self._now() - start) * 1e3


class CudaTimer(Timer):
    """CUDA events around the call, then a device synchronize before reading them."""

    name = "cuda"

    def __init__(self, index: int = 0) -> None:
        if not torch.cuda.is_available():
            raise DeviceError(
                "--device cuda: no CUDA device is visible to torch "
                f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}); "
                "install a CUDA build of torch or use --device cpu"
            )
        self.device = torch.device("cuda", index)

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.device)

    def device_name(self) -> str:
        return torch.cuda.get_device_name(self.device)

    def software_versions(self) -> dict[str, str]:
        return {**super().software_versions(), "cuda_version": torch.version.cuda or ""}

    def _time_once(self, fn: Callable[[], object]) -> float:
        return _event_ms(torch.cuda.Event, self.synchronize, fn)


class NpuTimer(Timer):
    """Ascend NPU through torch_npu: torch.npu.Event(enable_timing=True) + synchronize."""

    name = "npu"

    def __init__(self, index: int = 0) -> None:
        _import_torch_npu()
        if not torch.npu.is_available():
            raise DeviceError(
                "--device npu: torch_npu imports but sees no NPU; check the driver and "
                "ASCEND_RT_VISIBLE_DEVICES, or use --device cpu"
            )
        self.device = torch.device("npu", index)
        torch.npu.set_device(self.device)

    def synchronize(self) -> None:
        torch.npu.synchronize()

    def device_name(self) -> str:
        return torch.npu.get_device_name(self.device.index or 0)

    def software_versions(self) -> dict[str, str]:
        import torch_npu

        cann = ""
        get_cann_version = getattr(getattr(torch_npu.npu, "utils", None), "get_cann_version", None)
        if get_cann_version is not None:
            try:
                cann = str(get_cann_version(module="CANN"))
            except (RuntimeError, OSError, ValueError) as exc:  # record the gap, keep going
                logger.warning("cannot read the CANN version: %s", exc)
        return {**super().software_versions(), "cann_version": cann or "unknown"}

    def _time_once(self, fn: Callable[[], object]) -> float:
        return _event_ms(torch.npu.Event, self.synchronize, fn)


def _event_ms(event_cls, synchronize: Callable[[], None], fn: Callable[[], object]) -> float:
    """Milliseconds of fn() between two device events (CUDA and NPU share this API)."""
    start = event_cls(enable_timing=True)
    end = event_cls(enable_timing=True)
    synchronize()
    start.record()
    fn()
    end.record()
    synchronize()
    return float(start.elapsed_time(end))


def _import_torch_npu() -> None:
    try:
        import torch_npu  # noqa: F401  (registers torch.npu)
    except ImportError as exc:
        raise DeviceError(
            f"--device npu needs torch_npu, which cannot be imported ({exc}); "
            f"{NPU_INSTALL_HINT}"
        ) from None


def _npu_usable() -> bool:
    try:
        _import_torch_npu()
        return bool(torch.npu.is_available())
    except (DeviceError, AttributeError, RuntimeError):
        return False


def resolve_device(kind: str = "auto") -> str:
    """The backend ``kind`` stands for: auto picks npu, then cuda, then cpu."""
    if kind == "auto":
        if _npu_usable():
            return "npu"
        return "cuda" if torch.cuda.is_available() else "cpu"
    if kind not in ("cpu", "cuda", "npu"):
        raise DeviceError(f"unknown device {kind!r}; use one of: auto, npu, cuda, cpu")
    return kind


def torch_device(kind: str = "auto") -> torch.device:
    """The torch device for ``kind`` (auto: npu, then cuda, then cpu); DeviceError if absent.

    The one place a device is chosen: training, evaluation and timing all ask here.
    """
    kind = resolve_device(kind)
    if kind == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda but no CUDA device is visible to torch; use --device "
                          "cpu or install a CUDA build of torch")
    if kind == "npu":
        _import_torch_npu()
    return torch.device(kind)


@contextlib.contextmanager
def device_threads(profile):
    """torch intra-op threads as the device profile says (cpu only), restored afterwards."""
    before = torch.get_num_threads()
    if profile.kind == "cpu" and profile.threads:
        torch.set_num_threads(profile.threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def profile_timer(profile) -> Timer | None:
    """The device profile's timer on this machine, or None when its device is not here."""
    try:
        with device_threads(profile):
            return get_timer(profile.kind, cpu_clock=profile.cpu_clock)
    except DeviceError:
        return None


def load_average() -> float:
    """The 1-minute load average of the host (-1 where the OS does not report one)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return -1.0


def get_timer(kind: str = "auto", *, cpu_clock: str = "wall") -> Timer:
    """A timer for ``kind``: auto (npu, then cuda, then cpu), npu, cuda or cpu.

    ``cpu_clock`` ("wall" or "thread") only applies to the cpu backend.
    """
    kind = resolve_device(kind)
    if kind == "cpu":
        return CpuTimer(cpu_clock)
    return CudaTimer() if kind == "cuda" else NpuTimer()


def _cpu_model_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def _cpu_last_level_cache_bytes(default: int = 32 * 2**20) -> int:
    """Size of the largest CPU cache that sysfs reports (Linux), else ``default``."""
    sizes = []
    for path in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*/size"):
        try:
            text = Path(path).read_text(encoding="utf-8").strip().upper()
        except OSError:
            continue
        units = {"K": 2**10, "M": 2**20, "G": 2**30}
        if text and text[-1] in units and text[:-1].isdigit():
            sizes.append(int(text[:-1]) * units[text[-1]])
        elif text.isdigit():
            sizes.append(int(text))
    return max(sizes, default=default)
