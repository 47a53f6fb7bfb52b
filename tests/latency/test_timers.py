"""Timers: every backend has the same interface; cpu is real, cuda/npu build or say why."""

from __future__ import annotations

import builtins
import time

import pytest
import torch

from plsearch.errors import DeviceError
from plsearch.latency.timers import (
    CpuTimer,
    CudaTimer,
    NpuTimer,
    Timer,
    Timing,
    get_timer,
    resolve_device,
)


@pytest.mark.parametrize("clock", ["wall", "thread"])
def test_cpu_timer_times_a_call(clock):
    timer = CpuTimer(clock)
    timing = timer.time(lambda: sum(range(20000)), warmup=1, repeats=5)
    assert isinstance(timing, Timing) and timing.repeats == 5
    assert 0 < timing.p10_ms <= timing.median_ms <= timing.p90_ms
    fp = timer.fingerprint("float32")
    assert fp["backend"] == "cpu" and fp["clock"] == clock and fp["threads"] == 1
    assert fp["device_name"] and fp["torch_version"] == torch.__version__


def test_wall_clock_sees_sleep_and_thread_clock_does_not():
    wall = CpuTimer("wall").time(lambda: time.sleep(0.01), warmup=0, repeats=3)
    cpu = CpuTimer("thread").time(lambda: time.sleep(0.01), warmup=0, repeats=3)
    assert wall.median_ms >= 9.0
    assert cpu.median_ms < 5.0


def test_time_runs_reset_between_repeats_and_in_inference_mode():
    calls, resets, modes = [], [], []
    timer = CpuTimer()
    timer.time(lambda: (calls.append(1), modes.append(torch.is_inference_mode_enabled())),
               warmup=2, repeats=3, reset=lambda: resets.append(1), flush=True)
    assert len(calls) == 5 and len(resets) == 5 and all(modes)


def test_timing_quantiles():
    timing = Timing.from_samples([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (timing.median_ms, timing.p10_ms, timing.p90_ms) == (3.0, 1.4, 4.6)


def test_thread_clock_needs_one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(DeviceError, match="one torch thread"):
            CpuTimer("thread")
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("cls", [CpuTimer, CudaTimer, NpuTimer])
def test_backends_share_the_interface(cls):
    assert issubclass(cls, Timer)
    for method in ("synchronize", "time", "device_name", "fingerprint", "flush_cache"):
        assert callable(getattr(cls, method))
    assert cls.name in ("cpu", "cuda", "npu")


@pytest.mark.parametrize("kind", ["cuda", "npu"])
def test_accelerator_timers_build_or_raise_device_error(kind):
    try:
        timer = get_timer(kind)
    except DeviceError as exc:
        assert "\n" not in str(exc) and ("install" in str(exc) or "--device" in str(exc))
        return
    timing = timer.time(lambda: torch.ones(64, device=timer.device).sum(), repeats=3)
    assert timing.median_ms > 0 and timer.fingerprint("bfloat16")["backend"] == kind


def test_npu_without_torch_npu_says_how_to_install(monkeypatch):
    real_import = builtins.__import__

    def no_torch_npu(name, *args, **kwargs):
        if name == "torch_npu":
            raise ImportError("No module named 'torch_npu'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch_npu)
    with pytest.raises(DeviceError, match=r"pip install plsearch\[npu\].*CANN toolkit"):
        get_timer("npu")
    assert resolve_device("auto") in ("cuda", "cpu")  # auto skips the missing npu


def test_auto_falls_back_to_cpu_without_accelerators(monkeypatch):
    monkeypatch.setattr("plsearch.latency.timers._npu_usable", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert isinstance(get_timer("auto"), CpuTimer)
    with pytest.raises(DeviceError, match="unknown device"):
        get_timer("tpu")
