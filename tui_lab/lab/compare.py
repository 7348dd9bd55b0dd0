"""Side-by-side comparisons: the same prompt on CPU and GPU, and decoding with and without a KV cache.

Both take engine factories (or ready engines), so they work with any engine that
follows the contract — the transformers engine for the lessons, the scripted one
in tests. Each variant is loaded, timed and unloaded by ``tui_lab.lab.measure``; every figure
comes from the per-token timestamps of ``execute_run``.
"""

from __future__ import annotations

import statistics
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

from tui_lab.engines.base import Engine, ProgressCallback, Request, SamplingParams
from tui_lab.errors import InvalidInput
from tui_lab.lab.experiment import EventSink, Experiment, Params, RunContext
from tui_lab.lab.measure import Variant, measure
from tui_lab.lab.run import RunResult
from tui_lab.metrics import e2e, ttft
from tui_lab.params import DEFAULT_PROMPT, MAX_NEW_TOKENS_PARAM, PROMPT, RUNS, WARMUP, Param

DeviceFactory = Callable[[str], Engine]
"""device name ("cpu", "cuda") → an engine not yet loaded."""
KVFactory = Callable[[bool], Engine]
"""kv_cache on/off → an engine not yet loaded."""

DEVICES: tuple[str, ...] = ("cpu", "cuda")


def default_gpu_check() -> tuple[bool, str]:
    """Whether torch sees a CUDA GPU, and if not, why (torch imported only here)."""
    try:
        import torch
    except ImportError:
        return False, "torch is not installed"
    if not torch.cuda.is_available():
        return False, "no CUDA GPU is visible on this machine (torch.cuda.is_available() is False)"
    return True, torch.cuda.get_device_name(0)


def device_engine_factory(engine: str = "transformers", **options: object) -> DeviceFactory:
    """A factory making ``engine`` on a given device (other options passed through)."""
    from tui_lab.engines import create_engine

    return lambda device: create_engine(engine, device=device, **options)


def kv_engine_factory(**options: object) -> KVFactory:
    """A factory making the transformers engine with the KV cache on or off."""
    from tui_lab.engines import create_engine

    return lambda kv_cache: create_engine("transformers", kv_cache=kv_cache, **options)


@dataclass(frozen=True)
class TimedRun:
    """One timed generation of the prompt."""

    run_index: int
    e2e_s: float | None
    ttft_s: float | None
    output_tokens: int
    tokens_per_s: float | None
    """Output tokens / E2E: what one user sees for this request, prefill included."""
    text: str
    partial: bool = False

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        return dict(self.__dict__)


def _timed(index: int, res: RunResult) -> TimedRun:
    req = res.requests[0]
    total = e2e(req.trace)
    n = req.trace.output_tokens
    return TimedRun(
        run_index=index,
        e2e_s=total,
        ttft_s=ttft(req.trace),
        output_tokens=n,
        tokens_per_s=(n / total) if total else None,
        text=req.text,
        partial=res.partial,
    )


def _median(values: Sequence[float | None]) -> float | None:
    xs = [v for v in values if v is not None]
    return statistics.median(xs) if xs else None


@dataclass
class DeviceTiming:
    """The runs on one device, or why the device could not be used."""

    device: str
    available: bool
    reason: str | None = None
    runs: list[TimedRun] = field(default_factory=list)
    engine: dict | None = None

    @property
    def median_e2e_s(self) -> float | None:
        """Median end-to-end time over the measured runs."""
        return _median([r.e2e_s for r in self.runs])

    @property
    def median_tokens_per_s(self) -> float | None:
        """Median tokens/s over the measured runs."""
        return _median([r.tokens_per_s for r in self.runs])

    @property
    def e2e_range_s(self) -> tuple[float, float] | None:
        """(fastest, slowest) end-to-end time: the spread of the runs."""
        xs = [r.e2e_s for r in self.runs if r.e2e_s is not None]
        return (min(xs), max(xs)) if xs else None

    @property
    def spread_pct(self) -> float | None:
        """(slowest - fastest) / median, in percent."""
        rng, med = self.e2e_range_s, self.median_e2e_s
        if rng is None or not med:
            return None
        return (rng[1] - rng[0]) / med * 100.0

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        rng = self.e2e_range_s
        return {
            "device": self.device,
            "available": self.available,
            "reason": self.reason,
            "engine": self.engine,
            "runs": [r.to_dict() for r in self.runs],
            "median_e2e_s": self.median_e2e_s,
            "median_tokens_per_s": self.median_tokens_per_s,
            "min_e2e_s": rng[0] if rng else None,
            "max_e2e_s": rng[1] if rng else None,
            "spread_pct": self.spread_pct,
        }


@dataclass
class DeviceComparison:
    """The same prompt timed on each device."""

    prompt: str
    max_new_tokens: int
    devices: list[DeviceTiming] = field(default_factory=list)
    partial: bool = False

    def device(self, name: str) -> DeviceTiming | None:
        """The timing of one device, if it was tried."""
        return next((d for d in self.devices if d.device == name), None)

    @property
    def speedup(self) -> float | None:
        """Median CPU E2E / median GPU E2E (None unless both ran)."""
        cpu, gpu = self.device("cpu"), self.device("cuda")
        if cpu is None or gpu is None or not cpu.median_e2e_s or not gpu.median_e2e_s:
            return None
        return cpu.median_e2e_s / gpu.median_e2e_s

    @property
    def note(self) -> str:
        """One line: the speed-up, or why there is none."""
        gpu = self.device("cuda")
        if gpu is not None and not gpu.available:
            return f"no GPU: {gpu.reason} — only the CPU side was measured"
        if self.speedup is not None:
            return f"GPU is {self.speedup:.1f}x faster than CPU (median end-to-end time)"
        return "not enough runs to compare"

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        return {
            "experiment": "cpu_vs_gpu",
            "prompt": self.prompt,
            "max_new_tokens": self.max_new_tokens,
            "partial": self.partial,
            "devices": [d.to_dict() for d in self.devices],
            "speedup": self.speedup,
            "note": self.note,
        }


def cpu_vs_gpu(
    engine_factory: DeviceFactory,
    prompt: str,
    max_new_tokens: int = 32,
    runs: int = 5,
    warmup: int = 1,
    devices: Sequence[str] = DEVICES,
    gpu_check: Callable[[], tuple[bool, str]] | None = default_gpu_check,
    stop: threading.Event | None = None,
    on_run: Callable[[str, TimedRun], None] | None = None,
    progress: ProgressCallback | None = None,
    sink: EventSink | None = None,
) -> DeviceComparison:
    """Time the same greedy generation ``runs`` times on each device (after ``warmup`` runs).

    Each device gets a fresh engine from ``engine_factory(device)``, loaded, used
    and unloaded in turn. Without a GPU (``gpu_check`` says so, or loading raises
    a ``LabError`` such as ``DeviceUnavailable``) that device is recorded as
    unavailable with the reason, and the CPU side still runs. ``on_run(device,
    run)`` is called after each measured run, so a chart can fill in.
    """
    sampling = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0, ignore_eos=True)
    result = DeviceComparison(prompt=prompt, max_new_tokens=max_new_tokens)
    for device in devices:
        if stop is not None and stop.is_set():
            result.partial = True
            break
        timing = DeviceTiming(device=device, available=True)
        result.devices.append(timing)
        if device != "cpu" and gpu_check is not None:
            ok, reason = gpu_check()
            if not ok:
                timing.available, timing.reason = False, reason
                continue

        def keep(index: int, warm: bool, res: RunResult, timing: DeviceTiming = timing, device: str = device) -> None:
            if warm or res.error:
                return
            run = _timed(index - warmup, res)
            if res.partial and run.output_tokens == 0:
                return
            timing.runs.append(run)
            if on_run:
                on_run(device, run)

        m = measure(Variant(partial(engine_factory, device), progress), [Request("r0", prompt)], sampling,
                    warmup=warmup, runs=runs, stop=stop, sink=sink, on_result=keep)
        if m.ended == "unavailable":
            timing.available, timing.reason = False, m.error
            continue
        timing.engine = m.engine
        if m.raised:
            raise m.exception  # type: ignore[misc]
        if m.last is not None and m.last.error:
            timing.reason = m.last.error
        if m.cut_short:
            result.partial = True
            break
    return result


@dataclass
class ModeTiming:
    """One decoding mode's generation: per-step times and the text it produced."""

    mode: str
    kv_cache: bool
    step_times_s: list[float] = field(default_factory=list)
    """Step 0 is the prefill (TTFT); step i > 0 is the gap before token i + 1."""
    e2e_s: float | None = None
    output_tokens: int = 0
    text: str = ""
    error: str | None = None

    @property
    def tokens_per_s(self) -> float | None:
        """Output tokens / E2E."""
        return self.output_tokens / self.e2e_s if self.e2e_s else None

    def growth(self) -> float | None:
        """Mean of the last quarter of decode steps / mean of the first quarter (≈1 flat, >1 growing)."""
        steps = self.step_times_s[1:]
        if len(steps) < 4:
            return None
        q = len(steps) // 4
        first = sum(steps[:q]) / q
        last = sum(steps[-q:]) / q
        return last / first if first > 0 else None

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        return {
            "mode": self.mode,
            "kv_cache": self.kv_cache,
            "step_times_s": list(self.step_times_s),
            "e2e_s": self.e2e_s,
            "output_tokens": self.output_tokens,
            "tokens_per_s": self.tokens_per_s,
            "growth": self.growth(),
            "text": self.text,
            "error": self.error,
        }


@dataclass
class KVCacheComparison:
    """The naive recompute loop beside the KV-cache loop, on the same prompt."""

    prompt: str
    max_new_tokens: int
    modes: list[ModeTiming] = field(default_factory=list)
    partial: bool = False

    def mode(self, kv_cache: bool) -> ModeTiming | None:
        """The timing with the KV cache on or off."""
        return next((m for m in self.modes if m.kv_cache == kv_cache), None)

    @property
    def same_text(self) -> bool | None:
        """Whether both loops produced the same greedy text (they should)."""
        naive, cached = self.mode(False), self.mode(True)
        if naive is None or cached is None or naive.error or cached.error:
            return None
        return naive.text == cached.text

    @property
    def speedup(self) -> float | None:
        """Naive E2E / KV-cache E2E."""
        naive, cached = self.mode(False), self.mode(True)
        if naive is None or cached is None or not naive.e2e_s or not cached.e2e_s:
            return None
        return naive.e2e_s / cached.e2e_s

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        return {
            "experiment": "kv_cache_compare",
            "prompt": self.prompt,
            "max_new_tokens": self.max_new_tokens,
            "partial": self.partial,
            "modes": [m.to_dict() for m in self.modes],
            "same_text": self.same_text,
            "speedup": self.speedup,
        }


MODE_LABELS = {False: "no cache (recompute every step)", True: "KV cache"}


def kv_cache_compare(
    engine_factory: KVFactory | None = None,
    prompt: str = DEFAULT_PROMPT,
    max_new_tokens: int = 64,
    engines: Mapping[bool, Engine] | None = None,
    stop: threading.Event | None = None,
    progress: ProgressCallback | None = None,
    sink: EventSink | None = None,
    on_mode: Callable[[ModeTiming], None] | None = None,
) -> KVCacheComparison:
    """Generate the same greedy continuation without and then with the KV cache, timing every step.

    Give either ``engine_factory(kv_cache)`` (engines are created, loaded and
    unloaded here, one at a time) or ready, loaded ``engines`` keyed by
    ``kv_cache`` (False, True). Without a cache every step re-reads the whole
    sequence, so its step time grows with length; with the cache it stays flat.
    """
    if engine_factory is None and engines is None:
        raise InvalidInput("kv_cache_compare needs an engine factory or two engines")
    sampling = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0, ignore_eos=True)
    result = KVCacheComparison(prompt=prompt, max_new_tokens=max_new_tokens)
    for kv_cache in (False, True):
        if stop is not None and stop.is_set():
            result.partial = True
            break
        timing = ModeTiming(mode=MODE_LABELS[kv_cache], kv_cache=kv_cache)
        result.modes.append(timing)
        source = engines[kv_cache] if engines is not None else Variant(
            lambda kv=kv_cache: engine_factory(kv), progress)  # type: ignore[misc]
        m = measure(source, [Request("r0", prompt)], sampling, stop=stop, sink=sink)
        if m.ended == "unavailable" or m.raised:
            timing.error = m.error
            continue
        if not m.runs:  # stopped before the run began
            result.partial = True
            break
        res = m.runs[0][1]
        trace = res.requests[0].trace
        first = ttft(trace)
        if first is not None:
            times = trace.event_times
            timing.step_times_s = [first] + [b - a for a, b in zip(times, times[1:], strict=False)]
        timing.e2e_s = e2e(trace)
        timing.output_tokens = trace.output_tokens
        timing.text = res.requests[0].text
        timing.error = res.error
        if on_mode:
            on_mode(timing)
        if res.partial:
            result.partial = True
            break
    return result


# ------------------------------------------------------------------------------------------ the experiments

DEVICES_PARAM = Param("devices", "choice list", list(DEVICES), "devices to time, in order", choices=DEVICES,
                      max_items=2)


class CpuVsGpu(Experiment):
    """The same prompt timed on each device."""

    name = "cpu_vs_gpu"
    title = "CPU vs GPU"
    description = "The same prompt timed several times on each device: medians and spread side by side."
    kind = "compare"
    result_type = DeviceComparison
    params = (PROMPT, MAX_NEW_TOKENS_PARAM, RUNS.but(default=5), WARMUP, DEVICES_PARAM)

    def run(self, params: Params, ctx: RunContext) -> DeviceComparison:
        """One engine per device, loaded one at a time (a device without its hardware is named, not run)."""
        runs, devices = params["runs"], list(params["devices"])
        loading = [""]

        def make(device: str) -> Engine:
            loading[0] = device
            ctx.report(f"{device}: loading the engine")
            return ctx.make_engine(device=device)

        def on_run(device: str, run: TimedRun) -> None:
            done = devices.index(device) * runs + run.run_index + 1
            ctx.report(f"{device} · run {run.run_index + 1}/{runs} done", done / (runs * len(devices)))

        return cpu_vs_gpu(
            make, prompt=params["prompt"], max_new_tokens=params["max_new_tokens"], runs=runs,
            warmup=params["warmup"], devices=devices,
            gpu_check=None if ctx.engine_name == "scripted" else default_gpu_check, stop=ctx.stop, sink=ctx.sink,
            on_run=on_run, progress=lambda stage, fraction: ctx.report(f"{loading[0]}: {stage}", fraction),
        )


class KVCache(Experiment):
    """The naive loop beside the KV-cache loop (transformers only)."""

    name = "kv_cache_compare"
    title = "KV cache on/off"
    description = "The naive loop that recomputes the whole sequence each step beside the KV-cache loop."
    kind = "compare"
    result_type = KVCacheComparison
    params = (PROMPT, MAX_NEW_TOKENS_PARAM.but(default=64))

    def run(self, params: Params, ctx: RunContext) -> KVCacheComparison:
        """Both modes, each on its own engine (the scripted test engine stands in for both)."""

        def on_mode(mode: ModeTiming) -> None:
            ctx.report(f"{mode.mode} done")

        prompt, tokens = params["prompt"], params["max_new_tokens"]
        if ctx.engine_name == "scripted" and ctx.engine is not None:
            return kv_cache_compare(engines={False: ctx.engine, True: ctx.engine}, prompt=prompt,
                                    max_new_tokens=tokens, stop=ctx.stop, sink=ctx.sink, on_mode=on_mode)
        if ctx.engine_name != "transformers":
            raise InvalidInput("the KV-cache comparison needs the transformers engine", "set engine to transformers")
        return kv_cache_compare(lambda kv: ctx.make_engine("transformers", kv_cache=kv), prompt=prompt,
                                max_new_tokens=tokens, stop=ctx.stop, sink=ctx.sink, on_mode=on_mode,
                                progress=ctx.loading("KV cache"))
