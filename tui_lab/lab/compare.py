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
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial

from tui_lab.engines.base import Engine, ProgressCallback, Request, SamplingParams
from tui_lab.errors import InvalidInput
from tui_lab.lab.experiment import EventSink, Experiment, Params, RunContext
from tui_lab.lab.measure import Variant, loaded, measure
from tui_lab.lab.planned import PlannedRun, prompt_tokens
from tui_lab.lab.run import RunResult
from tui_lab.metrics import e2e, ttft
from tui_lab.metrics.spread import Ratio, Spread, paired_ratio, spread
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
        if self.partial or cpu is None or gpu is None or not cpu.median_e2e_s or not gpu.median_e2e_s:
            return None  # cut short: the devices did not run the same number of times, nothing is compared
        return cpu.median_e2e_s / gpu.median_e2e_s

    @property
    def note(self) -> str:
        """One line: the speed-up, or why there is none."""
        gpu = self.device("cuda")
        if gpu is not None and not gpu.available:
            return f"no GPU: {gpu.reason} — only the CPU side was measured"
        if self.speedup is not None:
            return f"GPU is {self.speedup:.1f}x faster than CPU (median end-to-end time)"
        if self.partial:
            return "stopped before both devices finished every run: nothing is compared"
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
    """One decoding mode (KV cache on or off): every run's end-to-end time, and the steps of its last run."""

    mode: str
    kv_cache: bool
    step_times_s: list[float] = field(default_factory=list)
    """Of the last complete run: step 0 is the prefill (TTFT); step i > 0 is the gap before token i + 1."""
    e2e_runs_s: list[float | None] = field(default_factory=list)
    """End-to-end time of each run, in order (None for a run cut short: it compares nothing)."""
    output_tokens: int = 0
    text: str = ""
    texts_agree: bool = True
    """Every complete run of this mode produced the same text (greedy decoding is deterministic)."""
    error: str | None = None

    @property
    def e2e_s(self) -> float | None:
        """Median end-to-end time over the complete runs."""
        found = spread(self.e2e_runs_s)
        return None if found is None else found.median

    @property
    def e2e_spread(self) -> Spread | None:
        """Median, fastest and slowest run."""
        return spread(self.e2e_runs_s)

    @property
    def complete_runs(self) -> int:
        """Runs that finished."""
        return sum(1 for t in self.e2e_runs_s if t is not None)

    @property
    def tokens_per_s(self) -> float | None:
        """Output tokens / median E2E."""
        e2e_s = self.e2e_s
        return self.output_tokens / e2e_s if e2e_s else None

    def growth(self) -> float | None:
        """Mean of the last quarter of decode steps / mean of the first quarter (≈1 flat, >1 growing)."""
        steps = self.step_times_s[1:]
        if len(steps) < 4:
            return None
        q = len(steps) // 4
        first = sum(steps[:q]) / q
        last = sum(steps[-q:]) / q
        return last / first if first > 0 else None

    def to_dict(self) -> dict[str, object]:
        """Plain-JSON form."""
        found = self.e2e_spread
        return {
            "mode": self.mode, "kv_cache": self.kv_cache, "step_times_s": list(self.step_times_s),
            "e2e_s": self.e2e_s, "e2e_runs_s": list(self.e2e_runs_s),
            "e2e_spread": None if found is None else found.to_dict(), "output_tokens": self.output_tokens,
            "tokens_per_s": self.tokens_per_s, "growth": self.growth(), "text": self.text,
            "texts_agree": self.texts_agree, "error": self.error,
        }


@dataclass
class KVCacheComparison:
    """The naive recompute loop beside the KV-cache loop, on the same prompt, repeated interleaved.

    The speed-up is a ratio over the pairs of runs that both finished (no cache ÷ cache, run by run): its
    median, and its range over the pairs. A comparison cut short (stopped, failed) compares nothing: it has
    no speed-up and no verdict on the texts.
    """

    prompt: str
    max_new_tokens: int
    runs: int = 1
    modes: list[ModeTiming] = field(default_factory=list)
    partial: bool = False

    def mode(self, kv_cache: bool) -> ModeTiming | None:
        """The timing with the KV cache on or off."""
        return next((m for m in self.modes if m.kv_cache == kv_cache), None)

    @property
    def complete(self) -> bool:
        """Both modes ran every planned run to the end."""
        naive, cached = self.mode(False), self.mode(True)
        return (not self.partial and naive is not None and cached is not None and not naive.error
                and not cached.error and naive.complete_runs == cached.complete_runs == self.runs)

    @property
    def ratio(self) -> Ratio | None:
        """No-cache E2E ÷ cache E2E over the finished pairs (None unless the comparison is complete)."""
        naive, cached = self.mode(False), self.mode(True)
        if not self.complete or naive is None or cached is None:
            return None
        return paired_ratio(naive.e2e_runs_s, cached.e2e_runs_s)

    @property
    def speedup(self) -> float | None:
        """The median speed-up of the KV cache (None when incomplete)."""
        ratio = self.ratio
        return None if ratio is None else ratio.median

    @property
    def same_text(self) -> bool | None:
        """Whether both loops produced the same greedy text (they should); None when incomplete."""
        naive, cached = self.mode(False), self.mode(True)
        if not self.complete or naive is None or cached is None:
            return None
        return naive.texts_agree and cached.texts_agree and naive.text == cached.text

    @property
    def note(self) -> str:
        """One line: the speed-up with its range, whether it is measurable, or why there is none."""
        ratio = self.ratio
        if ratio is not None:
            return ratio.verdict("speed-up of the KV cache (end to end)")
        if self.partial:
            return "stopped before both loops finished every run: nothing is compared"
        errors = [f"{m.mode}: {m.error}" for m in self.modes if m.error]
        return "; ".join(errors) if errors else "nothing to compare"

    def to_dict(self) -> dict[str, object]:
        """Plain-JSON form."""
        ratio = self.ratio
        return {
            "experiment": "kv_cache_compare", "prompt": self.prompt, "max_new_tokens": self.max_new_tokens,
            "runs": self.runs, "partial": self.partial, "complete": self.complete,
            "modes": [m.to_dict() for m in self.modes], "same_text": self.same_text, "speedup": self.speedup,
            "speedup_range": None if ratio is None else ratio.to_dict(), "note": self.note,
        }


MODE_LABELS = {False: "no cache (recompute every step)", True: "KV cache"}


def kv_cache_compare(
    engine_factory: KVFactory | None = None,
    prompt: str = DEFAULT_PROMPT,
    max_new_tokens: int = 64,
    engines: Mapping[bool, Engine] | None = None,
    runs: int = 3,
    stop: threading.Event | None = None,
    progress: ProgressCallback | None = None,
    sink: EventSink | None = None,
    on_mode: Callable[[ModeTiming], None] | None = None,
) -> KVCacheComparison:
    """Generate the same greedy continuation without and with the KV cache, ``runs`` times each, interleaved.

    Give either ``engine_factory(kv_cache)`` (both engines are loaded together for the interleaved runs, and
    unloaded at the end) or ready, loaded ``engines`` keyed by ``kv_cache`` (False, True). Runs alternate
    (no cache, cache, no cache, ...) so a busy machine slows both alike; the result keeps every run's time.
    Without a cache every step re-reads the whole sequence, so its step time grows with length.
    """
    if engine_factory is None and engines is None:
        raise InvalidInput("kv_cache_compare needs an engine factory or two engines")
    sampling = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0, ignore_eos=True)
    result = KVCacheComparison(prompt=prompt, max_new_tokens=max_new_tokens, runs=runs)
    timings = {kv: ModeTiming(mode=MODE_LABELS[kv], kv_cache=kv) for kv in (False, True)}
    result.modes.extend(timings.values())
    with ExitStack() as stack:
        ready: dict[bool, Engine] = {}
        for kv in (False, True):
            if engines is not None:
                ready[kv] = engines[kv]
                continue
            assert engine_factory is not None
            got = stack.enter_context(loaded(Variant(partial(engine_factory, kv), progress)))
            if got.engine is None:
                timings[kv].error = got.error
            else:
                ready[kv] = got.engine
        if len(ready) < 2:
            return result
        for run in range(runs):
            for kv in (False, True):
                if stop is not None and stop.is_set():
                    result.partial = True
                    return result
                timing = timings[kv]
                m = measure(ready[kv], [Request("r0", prompt)], sampling, stop=stop, sink=sink)
                if m.raised or not m.runs:
                    timing.error = m.error
                    result.partial = True
                    return result
                res = m.runs[0][1]
                if res.partial or res.error:
                    timing.e2e_runs_s.append(None)
                    timing.error = res.error
                    result.partial = True
                    return result
                _record(timing, res, first=run == 0)
                if on_mode:
                    on_mode(timing)
    return result


def _record(timing: ModeTiming, res: RunResult, first: bool) -> None:
    """One finished run of a mode: its time, its steps (the last run's), whether its text agrees."""
    trace = res.requests[0].trace
    start = ttft(trace)
    if start is not None:
        times = trace.event_times
        timing.step_times_s = [start] + [b - a for a, b in zip(times, times[1:], strict=False)]
    timing.e2e_runs_s.append(e2e(trace))
    text = res.requests[0].text
    if not first and text != timing.text:
        timing.texts_agree = False
    timing.text = text
    timing.output_tokens = trace.output_tokens


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

    def planned_work(self, params: Params, engine: str = "transformers") -> list[PlannedRun]:
        """One engine loaded per device, then its warm-up and measured runs of the prompt."""
        tokens = prompt_tokens([params["prompt"]])
        return [PlannedRun(1, params["max_new_tokens"], tokens, params["runs"] + params["warmup"], loads=1,
                           runs_on="cpu" if device == "cpu" else "gpu") for device in params["devices"]]

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
    params = (PROMPT, MAX_NEW_TOKENS_PARAM.but(default=64), RUNS)

    def planned_work(self, params: Params, engine: str = "transformers") -> list[PlannedRun]:
        """Both loops loaded (the scripted test engine stands in for both), then their runs in turn."""
        tokens, loads = prompt_tokens([params["prompt"]]), 0 if engine == "scripted" else 1
        return [PlannedRun(1, params["max_new_tokens"], tokens, params["runs"], loads, recompute=naive)
                for naive in (True, False)]

    def run(self, params: Params, ctx: RunContext) -> KVCacheComparison:
        """Both modes loaded together, their runs interleaved (the scripted test engine stands in for both)."""

        runs = params["runs"]

        def on_mode(mode: ModeTiming) -> None:
            ctx.report(f"{mode.mode} · run {mode.complete_runs}/{runs} done", None, new_run=True)

        prompt, tokens = params["prompt"], params["max_new_tokens"]
        if ctx.engine_name == "scripted" and ctx.engine is not None:
            return kv_cache_compare(engines={False: ctx.engine, True: ctx.engine}, prompt=prompt,
                                    max_new_tokens=tokens, runs=runs, stop=ctx.stop, sink=ctx.sink, on_mode=on_mode)
        if ctx.engine_name != "transformers":
            raise InvalidInput("the KV-cache comparison needs the transformers engine", "set engine to transformers")
        return kv_cache_compare(lambda kv: ctx.make_engine("transformers", kv_cache=kv), prompt=prompt,
                                max_new_tokens=tokens, runs=runs, stop=ctx.stop, sink=ctx.sink, on_mode=on_mode,
                                progress=ctx.loading("KV cache"))
