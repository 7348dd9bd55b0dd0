"""GPU telemetry through NVML: utilization, memory, power and SM clock, sampled in a thread.

Lesson 03 shows "GPU busy %" with CUDA graphs off and on; experiments save the samples with their
results. Nothing here raises for a missing GPU or driver: ``gpu_available()`` says why in one line
and the sampler simply records nothing. ``pynvml`` (package ``nvidia-ml-py``) is imported lazily.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

MAX_SAMPLES = 4096
"""Samples kept (at 4 Hz: about 17 minutes); older ones are dropped."""


@dataclass(frozen=True, slots=True)
class GpuSample:
    """One reading. ``t`` is ``time.perf_counter()`` (the engines' clock); ``None`` where NVML can't say."""

    t: float
    util_pct: float | None
    mem_used_bytes: int | None
    mem_total_bytes: int | None
    power_w: float | None
    sm_clock_mhz: float | None

    def to_dict(self) -> dict:
        """Plain-JSON form (saved with experiment results)."""
        return asdict(self)


def _nvml() -> Any:
    import pynvml  # nvidia-ml-py

    return pynvml


def gpu_available(device_index: int = 0) -> tuple[bool, str]:
    """``(True, "NVIDIA H100 80GB HBM3")`` or ``(False, why)``; never raises."""
    try:
        nvml = _nvml()
    except Exception:
        return False, "GPU telemetry needs the nvidia-ml-py package (pip install nvidia-ml-py)"
    try:
        nvml.nvmlInit()
    except Exception as exc:
        return False, f"no NVIDIA GPU driver found (NVML: {_short(exc)})"
    try:
        count = nvml.nvmlDeviceGetCount()
        if count <= device_index:
            return False, "no NVIDIA GPU visible" if count == 0 else f"GPU {device_index} not found ({count} visible)"
        name = nvml.nvmlDeviceGetName(nvml.nvmlDeviceGetHandleByIndex(device_index))
        return True, name.decode() if isinstance(name, bytes) else str(name)
    except Exception as exc:
        return False, f"NVML could not read the GPU ({_short(exc)})"
    finally:
        _shutdown(nvml)


@dataclass(frozen=True)
class CardSpecs:
    """What NVML says of one GPU's memory: its name, size and peak bandwidth."""

    name: str
    memory_bytes: int
    bandwidth_gbs: float | None
    """Peak: 2 transfers per clock × the maximum memory clock × the bus width (None if NVML can't say)."""
    nvml_index: int


def _nvml_handle(nvml: Any, cuda_index: int) -> tuple[Any, int]:
    """NVML's handle for CUDA device ``cuda_index``, through ``CUDA_VISIBLE_DEVICES`` when it is set."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        return nvml.nvmlDeviceGetHandleByIndex(cuda_index), cuda_index
    entry = [v.strip() for v in listed.split(",") if v.strip()][cuda_index]  # IndexError: not visible
    if entry.isdigit():
        return nvml.nvmlDeviceGetHandleByIndex(int(entry)), int(entry)
    handle = nvml.nvmlDeviceGetHandleByUUID(entry)
    return handle, int(nvml.nvmlDeviceGetIndex(handle))


def card_specs(cuda_index: int = 0) -> CardSpecs | None:
    """Memory size and peak memory bandwidth of CUDA device ``cuda_index``, from NVML; None without NVML,
    a driver or that GPU (never raises). The bandwidth is the datasheet's own arithmetic: HBM and GDDR
    move data twice per memory clock, so 2 × max memory clock × bus width (an H100 SXM: 2 × 2619 MHz ×
    5120 bits = 3.35 TB/s)."""
    try:
        nvml = _nvml()
        nvml.nvmlInit()
    except Exception:
        return None
    try:
        handle, index = _nvml_handle(nvml, cuda_index)
        name = nvml.nvmlDeviceGetName(handle)
        name = name.decode() if isinstance(name, bytes) else str(name)
        memory = int(nvml.nvmlDeviceGetMemoryInfo(handle).total)
        bandwidth = None
        try:
            clock_mhz = float(nvml.nvmlDeviceGetMaxClockInfo(handle, nvml.NVML_CLOCK_MEM))
            bus_bits = float(nvml.nvmlDeviceGetMemoryBusWidth(handle))
            if clock_mhz > 0 and bus_bits > 0:
                bandwidth = 2 * clock_mhz * 1e6 * bus_bits / 8 / 1e9
        except Exception:
            bandwidth = None
        return CardSpecs(name, memory, bandwidth, index)
    except Exception:
        return None
    finally:
        _shutdown(nvml)


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:120]


def _shutdown(nvml: Any) -> None:
    try:
        nvml.nvmlShutdown()
    except Exception:
        pass


def _read(nvml: Any, handle: Any) -> GpuSample:
    """One sample; each field on its own so one unsupported query doesn't blank the others."""
    t = time.perf_counter()
    util = mem_used = mem_total = power = clock = None
    try:
        util = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
    except Exception:
        pass
    try:
        mem = nvml.nvmlDeviceGetMemoryInfo(handle)
        mem_used, mem_total = int(mem.used), int(mem.total)
    except Exception:
        pass
    try:
        power = nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0  # milliwatts
    except Exception:
        pass
    try:
        clock = float(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM))
    except Exception:
        pass
    return GpuSample(t, util, mem_used, mem_total, power, clock)


class GpuSampler:
    """Samples one GPU every ``interval`` seconds in a daemon thread.

    ``start()`` returns False (and ``reason`` says why) when there is no GPU; ``latest()`` is then None.
    ``samples`` is a bounded deque of ``GpuSample``; use ``snapshot()`` for a stable copy.
    """

    def __init__(self, interval: float = 0.25, device_index: int = 0, maxlen: int = MAX_SAMPLES) -> None:
        self.interval = interval
        self.device_index = device_index
        self.samples: deque[GpuSample] = deque(maxlen=maxlen)
        self.reason: str = "not started"
        self.name: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        """True while the sampling thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> bool:
        """Begin sampling; False (with ``reason``) when NVML or the GPU is missing. Never raises."""
        if self.running:
            return True
        try:
            nvml = _nvml()
            nvml.nvmlInit()
        except Exception as exc:
            self.reason = ("GPU telemetry needs the nvidia-ml-py package" if isinstance(exc, ImportError)
                           else f"no NVIDIA GPU driver found (NVML: {_short(exc)})")
            return False
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(self.device_index)
            name = nvml.nvmlDeviceGetName(handle)
            self.name = name.decode() if isinstance(name, bytes) else str(name)
        except Exception as exc:
            self.reason = f"GPU {self.device_index} not available ({_short(exc)})"
            _shutdown(nvml)
            return False
        self.reason = "sampling"
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, args=(nvml, handle), name="gpu-sampler", daemon=True)
        self._thread.start()
        return True

    def _loop(self, nvml: Any, handle: Any) -> None:
        try:
            while not self._stop.is_set():
                sample = _read(nvml, handle)
                with self._lock:
                    self.samples.append(sample)
                self._stop.wait(self.interval)
        finally:
            _shutdown(nvml)

    def stop(self) -> None:
        """Stop sampling (the samples are kept). Safe to call twice or without ``start``."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(1.0, 4 * self.interval))
            self._thread = None
        if self.reason == "sampling":
            self.reason = "stopped"

    def latest(self) -> GpuSample | None:
        """The newest sample, or None."""
        with self._lock:
            return self.samples[-1] if self.samples else None

    def snapshot(self, since: float | None = None) -> list[GpuSample]:
        """A copy of the samples (those at or after ``since`` when given)."""
        with self._lock:
            items = list(self.samples)
        return [s for s in items if since is None or s.t >= since]

    def __enter__(self) -> GpuSampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def summarize_samples(samples: list[GpuSample]) -> dict[str, float | int | None]:
    """Mean utilization/power/clock and peak memory of some samples (for result files)."""

    def mean(values: list[float]) -> float | None:
        return sum(values) / len(values) if values else None

    utils = [s.util_pct for s in samples if s.util_pct is not None]
    powers = [s.power_w for s in samples if s.power_w is not None]
    clocks = [s.sm_clock_mhz for s in samples if s.sm_clock_mhz is not None]
    mems = [s.mem_used_bytes for s in samples if s.mem_used_bytes is not None]
    return {
        "n": len(samples),
        "util_pct_mean": mean(utils),
        "util_pct_max": max(utils) if utils else None,
        "power_w_mean": mean(powers),
        "sm_clock_mhz_mean": mean(clocks),
        "mem_used_bytes_max": max(mems) if mems else None,
    }
