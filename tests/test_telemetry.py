"""GPU telemetry without a GPU: the no-GPU path, and the sampler against a fake NVML module."""

from __future__ import annotations

import sys
import time
import types

import pytest

from tui_lab import telemetry
from tui_lab.telemetry import GpuSample, GpuSampler, gpu_available, summarize_samples


class NVMLError(Exception):
    pass


def _fake_nvml(fail_init: bool = False, count: int = 1, fail_power: bool = False) -> types.ModuleType:
    m = types.ModuleType("pynvml")
    m.NVML_CLOCK_SM = 1
    m.state = {"inits": 0, "shutdowns": 0, "reads": 0}

    def init():
        if fail_init:
            raise NVMLError("Driver Not Loaded")
        m.state["inits"] += 1

    def shutdown():
        m.state["shutdowns"] += 1

    def util(handle):
        m.state["reads"] += 1
        return types.SimpleNamespace(gpu=40 + m.state["reads"] % 50, memory=10)

    def power(handle):
        if fail_power:
            raise NVMLError("Not Supported")
        return 123_456  # milliwatts

    m.nvmlInit = init
    m.nvmlShutdown = shutdown
    m.nvmlDeviceGetCount = lambda: count
    m.nvmlDeviceGetHandleByIndex = lambda i: ("handle", i)
    m.nvmlDeviceGetName = lambda h: b"NVIDIA Fake 80GB"
    m.nvmlDeviceGetUtilizationRates = util
    m.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=2 * 2**30, total=80 * 2**30, free=78 * 2**30)
    m.nvmlDeviceGetPowerUsage = power
    m.nvmlDeviceGetClockInfo = lambda h, kind: 1980
    return m


@pytest.fixture
def fake(monkeypatch):
    def install(**kw):
        mod = _fake_nvml(**kw)
        monkeypatch.setattr(telemetry, "_nvml", lambda: mod)
        return mod

    return install


def test_no_nvml_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    ok, reason = gpu_available()
    assert not ok and "nvidia-ml-py" in reason
    s = GpuSampler()
    assert s.start() is False
    assert "nvidia-ml-py" in s.reason
    assert s.latest() is None and not s.running
    s.stop()  # harmless


def test_no_driver(fake):
    fake(fail_init=True)
    ok, reason = gpu_available()
    assert not ok and "driver" in reason and "Driver Not Loaded" in reason
    s = GpuSampler()
    assert not s.start() and "driver" in s.reason


def test_no_device(fake):
    mod = fake(count=0)
    ok, reason = gpu_available()
    assert not ok and "no NVIDIA GPU visible" in reason
    assert mod.state["shutdowns"] == mod.state["inits"] == 1


def test_available_names_the_gpu(fake):
    fake()
    assert gpu_available() == (True, "NVIDIA Fake 80GB")


def test_sampler_collects_and_stops(fake):
    mod = fake()
    s = GpuSampler(interval=0.01, maxlen=5)
    assert s.start() and s.running and s.name == "NVIDIA Fake 80GB"
    deadline = time.monotonic() + 5
    while len(s.samples) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    s.stop()
    assert not s.running
    n = len(s.samples)
    assert n == 5  # bounded
    last = s.latest()
    assert isinstance(last, GpuSample)
    assert last.mem_total_bytes == 80 * 2**30 and last.power_w == pytest.approx(123.456)
    assert last.sm_clock_mhz == 1980 and 40 <= last.util_pct < 90
    time.sleep(0.05)
    assert len(s.samples) == n  # nothing after stop
    assert mod.state["shutdowns"] == 1
    ts = [x.t for x in s.snapshot()]
    assert ts == sorted(ts)
    assert s.snapshot(since=ts[-1]) == [s.samples[-1]]


def test_unsupported_field_is_none_not_an_error(fake):
    fake(fail_power=True)
    with GpuSampler(interval=0.01) as s:
        deadline = time.monotonic() + 5
        while s.latest() is None and time.monotonic() < deadline:
            time.sleep(0.01)
    sample = s.latest()
    assert sample.power_w is None and sample.util_pct is not None


def test_summarize_samples():
    xs = [GpuSample(0.0, 50.0, 10, 100, 200.0, 1000.0), GpuSample(0.25, 100.0, 30, 100, None, 2000.0)]
    summary = summarize_samples(xs)
    assert summary["util_pct_mean"] == 75.0 and summary["util_pct_max"] == 100.0
    assert summary["power_w_mean"] == 200.0 and summary["mem_used_bytes_max"] == 30
    assert summarize_samples([])["util_pct_mean"] is None


def _card(mod: types.ModuleType, clock_mhz: int = 2619, bus_bits: int = 5120) -> types.ModuleType:
    """The fake NVML as an H100 SXM answers: 80 GiB, memory clock 2619 MHz on a 5120-bit bus."""
    mod.NVML_CLOCK_MEM = 2
    mod.nvmlDeviceGetMaxClockInfo = lambda h, kind: clock_mhz if kind == mod.NVML_CLOCK_MEM else 1980
    mod.nvmlDeviceGetMemoryBusWidth = lambda h: bus_bits
    mod.nvmlDeviceGetName = lambda h: f"NVIDIA GPU {h[1]}".encode()
    mod.nvmlDeviceGetHandleByUUID = lambda uuid: ("handle", 7)
    mod.nvmlDeviceGetIndex = lambda h: h[1]
    return mod


def test_card_specs_read_memory_and_peak_bandwidth(fake, monkeypatch):
    from tui_lab.telemetry import card_specs

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    mod = _card(fake(count=4))
    specs = card_specs(1)
    assert specs.name == "NVIDIA GPU 1" and specs.memory_bytes == 80 * 2**30
    assert specs.bandwidth_gbs == pytest.approx(3352.32)  # 2 × 2619 MHz × 5120 bits / 8
    assert mod.state["shutdowns"] == mod.state["inits"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,2")  # CUDA's device 1 is NVML's 2
    assert card_specs(1).name == "NVIDIA GPU 2"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-5a1b2c3d")
    assert card_specs(0).nvml_index == 7
    assert card_specs(1) is None  # not visible to CUDA


def test_card_specs_without_bus_width_or_driver(fake, monkeypatch):
    from tui_lab.telemetry import card_specs

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    _card(fake(), bus_bits=0)
    assert card_specs(0).bandwidth_gbs is None and card_specs(0).memory_bytes == 80 * 2**30
    fake(fail_init=True)
    assert card_specs(0) is None
