"""Serving experiments for lessons 03 and 04: CUDA graphs, prefix caching, queueing, static vs continuous batching.

Every experiment takes engine *factories* (a callable that builds an engine not
yet loaded), loads one engine at a time, measures it with ``tui_lab.lab.measure``
and unloads it again, so the same code drives the transformers and vLLM engines and,
in tests, scripted engines with a fake clock. Every figure is computed from the
per-token timestamps of the run (and, where vLLM gives them, its own
queued / prefill / decode times). Nothing here imports torch, vLLM or Textual.

A missing GPU or a missing vLLM is not an error here: the result records the
reason and says in its ``note`` what was and was not measured.
"""

from __future__ import annotations

import statistics
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from tui_lab.engines.base import Engine, ProgressCallback, Request, SamplingParams
from tui_lab.errors import InvalidInput, LabError
from tui_lab.lab.compare import default_gpu_check
from tui_lab.lab.experiment import EventSink, Experiment, Params, RunContext
from tui_lab.lab.measure import Variant, loaded, measure
from tui_lab.lab.planned import PlannedRun, prompt_tokens, reload
from tui_lab.lab.run import RunResult
from tui_lab.metrics import Percentiles, e2e, output_throughput, summarize, tpot, ttft
from tui_lab.params import (
    BATCH_SIZE,
    IGNORE_EOS,
    MAX_NEW_TOKENS,
    MAX_NEW_TOKENS_PARAM,
    MAX_REQUESTS,
    PROMPT,
    RUNS,
    SAMPLING,
    SEED,
    Param,
)

GraphsFactory = Callable[[bool, str], Engine]
"""(cuda_graphs, device) → a transformers-like engine, not yet loaded."""
PrefixFactory = Callable[[bool], Engine]
"""enable_prefix_caching → a vLLM-like engine, not yet loaded."""
SeqsFactory = Callable[[int], Engine]
"""max_num_seqs → a vLLM-like engine, not yet loaded."""
PlainFactory = Callable[[], Engine]
"""() → an engine, not yet loaded."""


_WARMUP_PROMPT = "Warm-up: say hello."

MIN_GPU_SAMPLES = 4
"""NVML's busy % covers the last sampling period: fewer samples than this (at 4 Hz, under a second of
running) mostly measure the gaps around the run, so no figure is given."""


# ----------------------------------------------------------------------------------------------- factories


def graphs_engine_factory(**options: object) -> GraphsFactory:
    """The transformers engine with CUDA graphs on or off, on a given device."""
    from tui_lab.engines import create_engine

    return lambda graphs, device: create_engine("transformers", device=device, cuda_graphs=graphs, **options)


def prefix_engine_factory(**options: object) -> PrefixFactory:
    """The vLLM engine with prefix caching on or off."""
    from tui_lab.engines import create_engine

    return lambda on: create_engine("vllm", enable_prefix_caching=on, **options)


def seqs_engine_factory(**options: object) -> SeqsFactory:
    """The vLLM engine with a given ``max_num_seqs`` (its concurrent-sequence limit)."""
    from tui_lab.engines import create_engine

    return lambda n: create_engine("vllm", max_num_seqs=n, **options)


def plain_engine_factory(engine: str = "transformers", **options: object) -> PlainFactory:
    """Any engine by name with fixed options."""
    from tui_lab.engines import create_engine

    return lambda: create_engine(engine, **options)


# ------------------------------------------------------------------------------------------------ helpers


def _stopped(stop: threading.Event | None) -> bool:
    return stop is not None and stop.is_set()


def _median(values: Sequence[float | None]) -> float | None:
    xs = [v for v in values if v is not None]
    return statistics.median(xs) if xs else None


def _gaps(times: Sequence[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def _warm_up(engine: Engine, stop: threading.Event | None) -> None:
    """One tiny discarded request: the first request of a fresh engine pays one-time costs.

    An engine error is not reported here: the measured run will meet (and report) the same problem.
    """
    measure(engine, [Request("warmup", _WARMUP_PROMPT)], SamplingParams(max_new_tokens=2, ignore_eos=True),
            stop=stop)


# ------------------------------------------------------------------------------------- 1. CUDA graphs on/off


@dataclass
class GraphRun:
    """One timed generation of a batch in one mode."""

    run_index: int
    step_ms: list[float]
    """Decode steps of the batch (gaps between successive tokens of its first request), in ms."""
    ttft_s: float | None
    e2e_s: float | None
    output_tokens: int
    tokens_per_s: float | None
    """Output tokens of the whole batch / (last token − send)."""
    partial: bool = False

    @property
    def step_ms_p50(self) -> float | None:
        """Median decode step of this run."""
        return _median(self.step_ms)

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        return {
            "run_index": self.run_index, "step_ms": list(self.step_ms), "step_ms_p50": self.step_ms_p50,
            "ttft_s": self.ttft_s, "e2e_s": self.e2e_s, "output_tokens": self.output_tokens,
            "tokens_per_s": self.tokens_per_s, "partial": self.partial,
        }


@dataclass
class GraphsMode:
    """The decode loop in one mode (eager or CUDA graphs), or why it could not run."""

    label: str
    cuda_graphs: bool
    device: str
    available: bool = True
    reason: str | None = None
    engine: dict | None = None
    runs: list[GraphRun] = field(default_factory=list)
    gpu: dict | None = None
    """GPU telemetry over the measured runs (mean busy %, ...), when a sampler ran."""
    fell_back: str | None = None
    """Graphs were asked for but the engine decoded eagerly: its note saying why."""

    @property
    def step_ms(self) -> Percentiles:
        """Decode step times pooled over the measured runs (ms)."""
        return summarize(s for r in self.runs for s in r.step_ms)

    @property
    def tokens_per_s(self) -> float | None:
        """Median batch throughput over the runs."""
        return _median([r.tokens_per_s for r in self.runs])

    @property
    def ttft_s(self) -> float | None:
        """Median TTFT over the runs."""
        return _median([r.ttft_s for r in self.runs])

    @property
    def gpu_busy_pct(self) -> float | None:
        """Mean GPU busy % while this mode ran (None without telemetry or with too few samples)."""
        if not self.gpu or (self.gpu.get("n") or 0) < MIN_GPU_SAMPLES:
            return None
        return self.gpu.get("util_pct_mean")

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        return {
            "label": self.label, "cuda_graphs": self.cuda_graphs, "device": self.device,
            "available": self.available, "reason": self.reason, "engine": self.engine,
            "runs": [r.to_dict() for r in self.runs], "step_ms": self.step_ms.to_dict(),
            "tokens_per_s": self.tokens_per_s, "ttft_s": self.ttft_s, "gpu": self.gpu,
            "gpu_busy_pct": self.gpu_busy_pct, "fell_back": self.fell_back,
        }


@dataclass
class GraphsComparison:
    """The same decode loop eager and replayed from CUDA graphs."""

    prompt: str
    batch_size: int
    max_new_tokens: int
    runs: int
    gpu_available: bool
    gpu_reason: str
    modes: list[GraphsMode] = field(default_factory=list)
    partial: bool = False

    def mode(self, cuda_graphs: bool) -> GraphsMode | None:
        """The eager (False) or graphs (True) mode, if it was tried."""
        return next((m for m in self.modes if m.cuda_graphs == cuda_graphs), None)

    def _both(self) -> tuple[GraphsMode, GraphsMode] | None:
        eager, graphs = self.mode(False), self.mode(True)
        # A comparison cut short compares nothing: its modes did not run the same work.
        if self.partial or eager is None or graphs is None or not eager.runs or not graphs.runs:
            return None
        return eager, graphs

    @property
    def step_speedup(self) -> float | None:
        """Median eager step / median graphs step (None unless both ran)."""
        both = self._both()
        if both is None or not both[0].step_ms.p50 or not both[1].step_ms.p50:
            return None
        return both[0].step_ms.p50 / both[1].step_ms.p50

    @property
    def throughput_ratio(self) -> float | None:
        """Graphs tokens/s ÷ eager tokens/s (None unless both ran)."""
        both = self._both()
        if both is None or not both[0].tokens_per_s or not both[1].tokens_per_s:
            return None
        return both[1].tokens_per_s / both[0].tokens_per_s

    @property
    def note(self) -> str:
        """One or two sentences: the result, or what could not be measured and why."""
        parts = []
        if not self.gpu_available:
            parts.append(f"CUDA graphs need an NVIDIA GPU, and there is none here ({self.gpu_reason}): "
                         "only the eager decode loop ran, on the CPU. On a GPU the graphs mode replays "
                         "each decode step as one launch.")
        graphs = self.mode(True)
        if graphs is not None and graphs.fell_back:
            parts.append(f"The graphs mode decoded eagerly: {graphs.fell_back}.")
        for m in self.modes:
            if not m.available:
                parts.append(f"{m.label} did not run: {m.reason}.")
        short = [m.label for m in self.modes if m.gpu and m.gpu_busy_pct is None]
        if short:
            parts.append(f"GPU busy % not shown for {', '.join(short)}: the runs were too short for NVML "
                         f"(fewer than {MIN_GPU_SAMPLES} samples at 4 Hz); raise max new tokens or runs.")
        if self.step_speedup is not None:
            eager, graphs_mode = self._both()  # type: ignore[misc]
            parts.append(f"Decode step {eager.step_ms.p50:.2f} ms eager vs {graphs_mode.step_ms.p50:.2f} ms with "
                         f"CUDA graphs: {self.step_speedup:.1f}x per step, "
                         f"{self.throughput_ratio or 0:.1f}x tokens/s.")
        elif self.gpu_available and not parts:
            parts.append("not enough runs to compare")
        if self.partial:
            parts.append("Stopped early: partial result.")
        return " ".join(parts)

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        return {
            "experiment": "graphs_compare", "prompt": self.prompt, "batch_size": self.batch_size,
            "max_new_tokens": self.max_new_tokens, "runs": self.runs, "gpu_available": self.gpu_available,
            "gpu_reason": self.gpu_reason, "partial": self.partial,
            "modes": [m.to_dict() for m in self.modes],
            "step_speedup": self.step_speedup, "throughput_ratio": self.throughput_ratio, "note": self.note,
        }


def _default_sampler() -> Any:
    """A started ``GpuSampler`` if the telemetry module and a GPU exist, else None (never raises)."""
    try:
        from tui_lab.telemetry import GpuSampler
    except Exception:
        return None
    try:
        sampler = GpuSampler(interval=0.25)
        return sampler if sampler.start() else None
    except Exception:
        return None


def _sampler_summary(sampler: Any) -> dict | None:
    """Mean busy % (and the rest, where the telemetry module can summarize) of a stopped sampler."""
    try:
        samples = list(sampler.snapshot()) if hasattr(sampler, "snapshot") else list(sampler.samples)
    except Exception:
        return None
    if not samples:
        return None
    try:
        from tui_lab.telemetry import summarize_samples

        return dict(summarize_samples(samples))
    except Exception:
        utils = [s.util_pct for s in samples if getattr(s, "util_pct", None) is not None]
        return {"n": len(samples), "util_pct_mean": sum(utils) / len(utils) if utils else None}


def graphs_compare(
    factory: GraphsFactory,
    prompt: str = "The future of AI is",
    batch_size: int = 1,
    max_new_tokens: int = 64,
    runs: int = 3,
    warmup: int = 1,
    gpu_check: Callable[[], tuple[bool, str]] | None = default_gpu_check,
    sampler_factory: Callable[[], Any] | None = None,
    stop: threading.Event | None = None,
    sink: EventSink | None = None,
    progress: ProgressCallback | None = None,
) -> GraphsComparison:
    """Time the decode loop eager, then with CUDA graphs, ``runs`` times each after ``warmup`` runs.

    ``factory(cuda_graphs, device)`` makes the engine. ``gpu_check()`` says whether
    a CUDA GPU exists (default: torch's view, imported lazily); ``None`` assumes one
    (scripted engines in tests). Without a GPU only the eager loop runs, on the CPU, and the note says
    CUDA graphs need a GPU. On a GPU, ``sampler_factory()`` (default: the telemetry
    module's ``GpuSampler``, if present) gives GPU busy % per mode.
    """
    if gpu_check is None:
        ok, reason = True, "assumed"
    else:
        ok, reason = gpu_check()
    result = GraphsComparison(prompt, batch_size, max_new_tokens, runs, ok, reason)
    sampling = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0, ignore_eos=True)
    requests = [Request(f"r{i}", prompt) for i in range(batch_size)]
    plan = [(False, "cuda"), (True, "cuda")] if ok else [(False, "cpu")]
    for graphs, device in plan:
        if _stopped(stop):
            result.partial = True
            break
        label = "CUDA graphs" if graphs else f"eager ({device})"
        mode = GraphsMode(label=label, cuda_graphs=graphs, device=device)
        result.modes.append(mode)
        with loaded(Variant(partial(factory, graphs, device), progress)) as variant:
            if variant.engine is None:
                mode.available, mode.reason = False, variant.error
                continue
            mode.engine = variant.info
            sampler: list[Any] = []

            def start_sampler(index: int, warm: bool, device: str = device, sampler: list[Any] = sampler) -> None:
                # GPU telemetry covers the measured runs only: it starts once the warm-ups are done.
                if not warm and not sampler and device != "cpu":
                    sampler.append((sampler_factory or _default_sampler)())

            def keep(index: int, warm: bool, res: RunResult, mode: GraphsMode = mode) -> None:
                if warm:
                    return
                run = _graph_run(index - warmup, res)
                if run.output_tokens:
                    mode.runs.append(run)

            try:
                m = measure(variant.engine, requests, sampling, warmup=warmup, runs=runs, stop=stop, sink=sink,
                            on_run=start_sampler, on_result=keep)
            finally:
                if sampler and sampler[0] is not None:
                    try:
                        sampler[0].stop()
                    except Exception:
                        pass
                    mode.gpu = _sampler_summary(sampler[0])
            if m.raised:
                mode.reason = m.error
            else:
                if m.last is not None and m.last.error:
                    mode.reason = m.last.error
                if m.ended in ("stopped", "interrupted") or (m.last is not None and not m.last_warm):
                    result.partial = True
                if graphs:
                    # The backend is built per run, so a fallback to eager shows in the notes only after a run.
                    notes = [n for n in variant.engine.info.notes if "eager" in n.lower()]
                    mode.fell_back = notes[0] if notes else None
        if result.partial:
            break
    return result


def _graph_run(index: int, res: RunResult) -> GraphRun:
    first = res.requests[0].trace
    return GraphRun(
        run_index=index,
        step_ms=[g * 1000.0 for g in _gaps(first.event_times)],
        ttft_s=ttft(first),
        e2e_s=e2e(first),
        output_tokens=sum(r.trace.output_tokens for r in res.requests),
        tokens_per_s=output_throughput(res.traces),
        partial=res.partial,
    )


# ------------------------------------------------------------------------------------------ 2. prefix caching

_PREFIX_TEXT = (
    "Field notes for the reading room assistant. The reading room opens at nine and closes at six. "
    "Visitors sign the ledger at the door, leave bags in the lockers, and use pencils only. Maps older "
    "than a century are kept in the flat drawers along the north wall and may be viewed with gloves. "
    "The card catalogue lists every shelf by subject, then by the year a volume arrived. Quiet talk is "
    "welcome near the windows; the long tables in the centre are for silent work. Staff answer questions "
    "about the local harbour, the old railway, the weather records kept since the lighthouse was built, "
    "and the letters donated by families of the valley. Copies can be ordered at the desk and are ready "
    "the next morning."
)
"""Our own text, repeated word by word to build a shared prefix of any length."""


def shared_prefix(words: int) -> str:
    """A deterministic passage of exactly ``words`` words (the shared part of every prompt)."""
    base = _PREFIX_TEXT.split()
    return " ".join(base[i % len(base)] for i in range(words))


def shared_prefix_prompts(n: int, words: int, offset: int = 0, seed: int = 0) -> list[str]:
    """``n`` prompts: the same ``words``-word prefix, then distinct questions (schedule items ``offset``…)."""
    from tui_lab.lab.prompts import prompt_schedule

    prefix = shared_prefix(words)
    questions = prompt_schedule(offset + n, seed)[offset:]
    head = f"{prefix}\n\n" if prefix else ""
    return [f"{head}Question {offset + i + 1}: {q}\nAnswer:" for i, q in enumerate(questions)]


@dataclass
class PrefixMode:
    """Requests sharing a prefix, with the prefix cache off or on."""

    enabled: bool
    available: bool = True
    reason: str | None = None
    engine: dict | None = None
    first_ttft_s: float | None = None
    """TTFT of the first (warm-up) request: with the cache on it fills the cache and pays full price."""
    ttft_values: list[float] = field(default_factory=list)
    prefill_values: list[float] = field(default_factory=list)
    """The engine's own prefill times (first token − scheduled), measured runs only."""
    queued_values: list[float] = field(default_factory=list)
    tpot_values: list[float] = field(default_factory=list)
    prompt_tokens: list[int] = field(default_factory=list)
    runs_done: int = 0

    @property
    def label(self) -> str:
        """How the table names this mode."""
        return "prefix cache on" if self.enabled else "prefix cache off"

    @property
    def ttft(self) -> Percentiles:
        """TTFT over the measured requests."""
        return summarize(self.ttft_values)

    @property
    def prefill(self) -> Percentiles:
        """Engine prefill time over the measured requests."""
        return summarize(self.prefill_values)

    @property
    def queued(self) -> Percentiles:
        """Engine queued time over the measured requests."""
        return summarize(self.queued_values)

    @property
    def tpot(self) -> Percentiles:
        """TPOT over the measured requests.

        The cache does not make a decode step cheaper; TPOT moves only because, with the cache off, other
        requests' long prefill chunks share the engine's steps with decoding ones.
        """
        return summarize(self.tpot_values)

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        return {
            "label": self.label, "enable_prefix_caching": self.enabled, "available": self.available,
            "reason": self.reason, "engine": self.engine, "first_request_ttft_s": self.first_ttft_s,
            "runs": self.runs_done, "ttft_s": self.ttft.to_dict(), "engine_prefill_s": self.prefill.to_dict(),
            "engine_queued_s": self.queued.to_dict(), "tpot_s": self.tpot.to_dict(),
            "prompt_tokens_p50": _median([float(p) for p in self.prompt_tokens]),
            "ttft_values_s": list(self.ttft_values), "engine_prefill_values_s": list(self.prefill_values),
        }


@dataclass
class PrefixCacheComparison:
    """TTFT of requests sharing a long prefix, prefix cache off vs on."""

    num_requests: int
    shared_prefix_words: int
    max_new_tokens: int
    runs: int
    modes: list[PrefixMode] = field(default_factory=list)
    partial: bool = False

    def mode(self, enabled: bool) -> PrefixMode | None:
        """The mode with the cache on or off, if it was tried."""
        return next((m for m in self.modes if m.enabled == enabled), None)

    def _ratio(self, attr: str) -> float | None:
        off, on = self.mode(False), self.mode(True)
        if self.partial or off is None or on is None:  # cut short: nothing is compared
            return None
        a, b = getattr(off, attr).p50, getattr(on, attr).p50
        return a / b if a and b else None

    @property
    def ttft_ratio(self) -> float | None:
        """TTFT p50 with the cache off ÷ with it on (> 1: the cache helps)."""
        return self._ratio("ttft")

    @property
    def prefill_ratio(self) -> float | None:
        """Engine prefill p50 off ÷ on."""
        return self._ratio("prefill")

    @property
    def note(self) -> str:
        """What was measured, the gain, and what to keep in mind."""
        parts: list[str] = []
        reasons = {m.reason for m in self.modes if not m.available}
        for reason in sorted(r for r in reasons if r):
            parts.append(f"Not measured: {reason}.")
        off, on = self.mode(False), self.mode(True)
        if self.ttft_ratio is not None and off is not None and on is not None:
            parts.append(f"Prefix caching: TTFT p50 {off.ttft.p50:.3f} s → {on.ttft.p50:.3f} s "
                         f"({self.ttft_ratio:.1f}x).")
            if self.prefill_ratio is not None:
                parts.append(f"vLLM's own prefill p50 {off.prefill.p50:.3f} s → {on.prefill.p50:.3f} s.")
        if on is not None and on.first_ttft_s is not None:
            parts.append(f"The first request with the cache on filled the cache and paid full price "
                         f"(TTFT {on.first_ttft_s:.3f} s); it is reported apart, not in the percentiles.")
        if self.partial:
            parts.append("Stopped early: partial result.")
        return " ".join(parts) or "nothing measured"

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        return {
            "experiment": "prefix_cache", "num_requests": self.num_requests,
            "shared_prefix_words": self.shared_prefix_words, "max_new_tokens": self.max_new_tokens,
            "runs": self.runs, "partial": self.partial, "modes": [m.to_dict() for m in self.modes],
            "ttft_ratio": self.ttft_ratio, "prefill_ratio": self.prefill_ratio, "note": self.note,
        }


def prefix_cache_compare(
    factory: PrefixFactory,
    num_requests: int = 16,
    shared_prefix_words: int = 400,
    max_new_tokens: int = 16,
    runs: int = 2,
    seed: int = 0,
    stop: threading.Event | None = None,
    sink: EventSink | None = None,
    progress: ProgressCallback | None = None,
) -> PrefixCacheComparison:
    """Send ``num_requests`` prompts sharing a ``shared_prefix_words``-word prefix, cache off then on.

    Each mode gets its own engine (``factory(enable_prefix_caching)``). Its first
    request (one prompt with the prefix) runs alone and is reported separately:
    with the cache on it is the one that fills the cache. Then ``runs`` batches of
    ``num_requests`` prompts are submitted at once; every batch uses new
    questions after the prefix, so only the prefix can come from the cache.
    """
    result = PrefixCacheComparison(num_requests, shared_prefix_words, max_new_tokens, runs)
    sampling = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0, ignore_eos=True)
    for enabled in (False, True):
        if _stopped(stop):
            result.partial = True
            break
        mode = PrefixMode(enabled=enabled)
        result.modes.append(mode)

        def batch(index: int) -> list[Request]:
            if index == 0:  # the first request, alone: with the cache on, it fills the cache
                return [Request("first", shared_prefix_prompts(1, shared_prefix_words, 0, seed)[0])]
            offset = 1 + (index - 1) * num_requests
            prompts = shared_prefix_prompts(num_requests, shared_prefix_words, offset, seed)
            return [Request(f"r{i}", p) for i, p in enumerate(prompts)]

        def record(index: int, warm: bool, res: RunResult, mode: PrefixMode = mode) -> None:
            if warm:
                mode.first_ttft_s = ttft(res.requests[0].trace)
                return
            for rr in res.requests:
                if rr.trace.output_tokens == 0:
                    continue
                mode.ttft_values.append(ttft(rr.trace))  # type: ignore[arg-type]
                value = tpot(rr.trace)
                if value is not None:
                    mode.tpot_values.append(value)
                mode.prompt_tokens.append(rr.trace.prompt_tokens)
                times = rr.engine_times or {}
                if "prefill_s" in times:
                    mode.prefill_values.append(times["prefill_s"])
                if "queued_s" in times:
                    mode.queued_values.append(times["queued_s"])
            mode.runs_done += 1

        # The first request is the one warm-up run: timed and reported apart, never pooled with the runs.
        m = measure(Variant(partial(factory, enabled), progress), batch, sampling, warmup=1, runs=runs,
                    stop=stop, sink=sink, on_result=record)
        if m.ended == "unavailable":
            mode.available, mode.reason = False, m.error
            continue
        mode.engine = m.engine
        if m.raised:
            # Bad input found by the engine (e.g. the prompt does not fit its context): say so, go on.
            mode.available, mode.reason = False, m.error
            continue
        if m.last is not None and m.last.error:
            mode.reason = m.last.error
        if m.cut_short:
            result.partial = True
            # A first request cut short by an engine error leaves the other mode to try; a stop ends here.
            if not (m.last is not None and m.last_warm and not _stopped(stop)):
                break
    return result


# ------------------------------------------------------------------------------------------------ 3. queueing


@dataclass
class QueuedRequest:
    """One request of a queueing run, in submission order."""

    index: int
    request_id: str
    fifo_wave: int
    """The wave it would start in if slots were handed out first come, first served: index // max_num_seqs."""
    wave: int | None
    """The wave it started in, measured: a new wave starts when a request only began after another finished."""
    queued_s: float | None
    """Time waiting for a slot (vLLM's scheduled − queued; estimated from TTFT where the engine has no times)."""
    prefill_s: float | None
    decode_s: float | None
    ttft_s: float | None
    e2e_s: float | None
    output_tokens: int
    finish_reason: str | None

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        return dict(self.__dict__)


@dataclass
class QueueingResult:
    """More requests than the engine runs at once: who waited and for how long."""

    num_requests: int
    max_num_seqs: int
    max_new_tokens: int
    engine: dict | None = None
    requests: list[QueuedRequest] = field(default_factory=list)
    run: RunResult | None = None
    queued_source: str = "engine"
    """"engine" (vLLM's own queued time) or "estimated" (TTFT − the smallest TTFT)."""
    error: str | None = None
    partial: bool = False
    extra_notes: list[str] = field(default_factory=list)

    @property
    def summary(self) -> Any:
        """The run's ``RunSummary`` (TTFT, E2E, TPOT percentiles, throughput), or None."""
        return self.run.summary() if self.run is not None else None

    @property
    def queued(self) -> Percentiles:
        """Queued time over the requests."""
        return summarize(r.queued_s for r in self.requests)

    @property
    def waited(self) -> int:
        """How many requests waited for a slot: they started only after an earlier request had finished."""
        return sum(1 for r in self.requests if r.wave is not None and r.wave > 0)

    @property
    def waves(self) -> int:
        """Number of measured waves."""
        return len({r.wave for r in self.requests if r.wave is not None})

    @property
    def note(self) -> str:
        """The story in one paragraph."""
        parts = list(self.extra_notes)
        if self.error:
            parts.append(f"Not measured: {self.error}.")
        if self.requests:
            q = self.queued
            if self.num_requests <= self.max_num_seqs:
                parts.append(f"All {self.num_requests} requests fit in max_num_seqs={self.max_num_seqs}: "
                             "no queue forms; raise the number of requests to see one.")
            parts.append(f"{self.waited} of {len(self.requests)} requests waited for a slot "
                         f"(max_num_seqs={self.max_num_seqs}); they started in {self.waves} wave(s). "
                         f"Queued time p50 {_fmt_s(q.p50)}, p90 {_fmt_s(q.p90)}.")
            s = self.summary
            if s is not None and s.ttft_s.p50 is not None:
                parts.append(f"TTFT p50 {_fmt_s(s.ttft_s.p50)}, p90 {_fmt_s(s.ttft_s.p90)}: "
                             "the waiting shows up in TTFT, first in the tail.")
            if self.queued_source != "engine":
                parts.append("This engine reports no queue times: waiting is estimated as TTFT minus the "
                             "smallest TTFT.")
        if self.partial:
            parts.append("Stopped early: partial result.")
        return " ".join(parts)

    def to_dict(self) -> dict:
        """Plain-JSON form (``summary`` holds the run's percentiles, as a ``generate`` run's does)."""
        s = self.summary
        return {
            "experiment": "queueing", "num_requests": self.num_requests, "max_num_seqs": self.max_num_seqs,
            "max_new_tokens": self.max_new_tokens, "engine": self.engine, "partial": self.partial,
            "error": self.error, "queued_source": self.queued_source,
            "waited": self.waited, "waves": self.waves, "queued_s": self.queued.to_dict(),
            "summary": s.to_dict() if s is not None else None,
            "requests": [r.to_dict() for r in self.requests], "note": self.note,
        }


def _fmt_s(value: float | None) -> str:
    if value is None:
        return "n/a (n too small)"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _measured_waves(spans: list[tuple[float, float] | None]) -> list[int | None]:
    """Waves from (start, finish) times: a request that starts once a running one has finished opens a new wave.

    Requests admitted together (or while earlier prefills were still going) start well before anyone in
    their wave finishes; one that only got in because a slot was freed starts at a finish. Timestamps of
    starts and finishes may come from different places (vLLM stamps them about one step apart), so
    "at a finish" means: in the second half of the time from the wave's first start to its first finish.
    """
    order = sorted((span, i) for i, span in enumerate(spans) if span is not None)
    waves: list[int | None] = [None] * len(spans)
    wave, wave_start, first_finish = 0, None, None
    for (start, finish), i in order:
        if wave_start is not None and first_finish is not None and start >= (wave_start + first_finish) / 2:
            wave, wave_start, first_finish = wave + 1, None, None
        waves[i] = wave
        wave_start = start if wave_start is None else wave_start
        first_finish = finish if first_finish is None else min(first_finish, finish)
    return waves


def queueing_run(
    factory: SeqsFactory | None = None,
    num_requests: int = 64,
    max_num_seqs: int = 8,
    max_new_tokens: int = 32,
    sampling: SamplingParams | None = None,
    engine: Engine | None = None,
    seed: int = 0,
    stop: threading.Event | None = None,
    sink: EventSink | None = None,
    progress: ProgressCallback | None = None,
) -> QueueingResult:
    """Submit ``num_requests`` distinct prompts at once to an engine limited to ``max_num_seqs`` sequences.

    Give ``factory(max_num_seqs)`` (an engine is made, loaded and unloaded here)
    or a loaded ``engine`` already limited that way. The rows, in submission
    order, show each request's engine queued time, TTFT and E2E, and the wave it
    started in. Only a continuous-batching engine (vLLM) has a queue to show: the
    transformers engine runs the whole batch at once (the note says so).
    """
    if factory is None and engine is None:
        raise InvalidInput("queueing_run needs an engine factory or a loaded engine")
    from tui_lab.lab.prompts import prompt_schedule

    base = sampling or SamplingParams(temperature=0.0, ignore_eos=True)
    sampling = base.with_(max_new_tokens=max_new_tokens).validate()
    result = QueueingResult(num_requests, max_num_seqs, max_new_tokens)
    requests = [Request(f"r{i}", p) for i, p in enumerate(prompt_schedule(num_requests, seed))]
    source: Engine | Variant
    if engine is None:
        source = Variant(lambda: factory(max_num_seqs), progress,  # type: ignore[misc]
                         prepare=lambda loaded_engine: _warm_up(loaded_engine, stop))
    else:
        source = engine
        result.engine = engine.info.to_dict()
    m = measure(source, requests, sampling, stop=stop, sink=sink)
    if m.ended == "unavailable":
        result.error = m.error
        return result
    if engine is None:
        result.engine = m.engine
    if result.engine and result.engine.get("engine") == "transformers":
        result.extra_notes.append("The transformers engine runs the whole batch at once (static batching), so "
                                  "nothing queues inside it; use the vLLM engine to see a queue.")
    if m.raised:
        result.error = m.error
        return result
    if not m.runs:  # stopped before the run began
        result.partial = True
        return result
    res = m.runs[0][1]
    result.run = res
    result.partial = res.partial
    if res.error:
        result.error = res.error
    _fill_queue_rows(result, res)
    return result


def _fill_queue_rows(result: QueueingResult, res: RunResult) -> None:
    ttfts = [ttft(r.trace) for r in res.requests]
    have_engine = any(r.engine_times and "queued_s" in r.engine_times for r in res.requests)
    result.queued_source = "engine" if have_engine else "estimated"
    floor = min((t for t in ttfts if t is not None), default=None)
    queued: list[float | None] = []
    spans: list[tuple[float, float] | None] = []
    for r, t1 in zip(res.requests, ttfts, strict=True):
        times = r.engine_times or {}
        if have_engine:
            q = times.get("queued_s")
        else:
            q = None if t1 is None or floor is None else t1 - floor
        queued.append(q)
        t_end = e2e(r.trace)
        if q is None or t_end is None:
            spans.append(None)
            continue
        start = r.trace.t_send + q
        if have_engine and "prefill_s" in times and "decode_s" in times:
            # vLLM's own times share one clock: finish = scheduled + prefill + decode.
            spans.append((start, start + times["prefill_s"] + times["decode_s"]))
        else:
            spans.append((start, r.trace.t_send + t_end))
    waves = _measured_waves(spans)
    for i, (r, t1) in enumerate(zip(res.requests, ttfts, strict=True)):
        times = r.engine_times or {}
        result.requests.append(QueuedRequest(
            index=i, request_id=r.request_id, fifo_wave=i // result.max_num_seqs, wave=waves[i],
            queued_s=queued[i], prefill_s=times.get("prefill_s"), decode_s=times.get("decode_s"),
            ttft_s=t1, e2e_s=e2e(r.trace), output_tokens=r.trace.output_tokens, finish_reason=r.finish_reason,
        ))


# ------------------------------------------------------------------------------ 4. static vs continuous batching


def default_lengths(n: int = 8, lo: int = 8, hi: int = 64) -> list[int]:
    """``n`` output lengths from ``lo`` to ``hi``, long and short interleaved (64, 8, 56, 16, ...).

    Interleaving puts a long reply into every static batch, so each batch runs as
    long as its longest member while the short ones sit finished.
    """
    if n == 1:
        return [hi]
    spread = [round(lo + (hi - lo) * i / (n - 1)) for i in range(n)]
    out: list[int] = []
    left, right = 0, n - 1
    while left <= right:
        out.append(spread[right])
        if left != right:
            out.append(spread[left])
        left, right = left + 1, right - 1
    return out


@dataclass
class ServedRequest:
    """One request of a batching mode; times count from when *all* requests arrived (the mode's start)."""

    request_id: str
    target_tokens: int
    batch: int | None
    """The static batch it ran in (None for continuous batching)."""
    output_tokens: int
    wait_s: float | None
    """Arrival → handed to the engine (static: waiting for earlier batches)."""
    engine_queued_s: float | None
    """Handed to the engine → scheduled, from the engine's own times (continuous: waiting for a free slot)."""
    ttft_s: float | None
    e2e_s: float | None
    finish_reason: str | None

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        return dict(self.__dict__)


@dataclass
class BatchingMode:
    """One way of serving the requests: static batches or continuous batching, on one engine."""

    key: str
    label: str
    policy: str
    """"static" or "continuous"."""
    available: bool = True
    reason: str | None = None
    engine: dict | None = None
    requests: list[ServedRequest] = field(default_factory=list)
    wall_s: float | None = None
    """First arrival → last token."""
    padded_steps: int | None = None
    """Static only: sequence-steps a finished request's slot sat idle waiting for its batch's longest."""
    batch_steps: int | None = None
    """Static only: decode steps run (each batch runs as long as its longest request)."""
    partial: bool = False

    @property
    def output_tokens(self) -> int:
        """Tokens produced by all requests."""
        return sum(r.output_tokens for r in self.requests)

    @property
    def tokens_per_s(self) -> float | None:
        """Output tokens / wall time."""
        return self.output_tokens / self.wall_s if self.wall_s else None

    @property
    def e2e(self) -> Percentiles:
        """Per-request latency from arrival."""
        return summarize(r.e2e_s for r in self.requests)

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        return {
            "key": self.key, "label": self.label, "policy": self.policy, "available": self.available,
            "reason": self.reason, "engine": self.engine, "wall_s": self.wall_s,
            "output_tokens": self.output_tokens, "tokens_per_s": self.tokens_per_s,
            "e2e_s": self.e2e.to_dict(), "padded_steps": self.padded_steps, "batch_steps": self.batch_steps,
            "partial": self.partial, "requests": [r.to_dict() for r in self.requests],
        }


@dataclass
class BatchingComparison:
    """The same requests (very different reply lengths) served with static and continuous batching."""

    lengths: list[int]
    slots: int
    modes: list[BatchingMode] = field(default_factory=list)
    partial: bool = False

    def mode(self, key: str) -> BatchingMode | None:
        """A mode by key: ``static_hf``, ``static_vllm`` or ``continuous_vllm``."""
        return next((m for m in self.modes if m.key == key), None)

    def _wall_ratio(self, slow: str, fast: str) -> float | None:
        a, b = self.mode(slow), self.mode(fast)
        if self.partial or a is None or b is None or not a.wall_s or not b.wall_s or a.partial or b.partial:
            return None
        return a.wall_s / b.wall_s

    @property
    def policy_speedup(self) -> float | None:
        """Static waves ÷ continuous on the *same* engine (vLLM): the scheduling policy alone."""
        return self._wall_ratio("static_vllm", "continuous_vllm")

    @property
    def engine_speedup(self) -> float | None:
        """transformers static ÷ vLLM continuous: policy and engine together."""
        return self._wall_ratio("static_hf", "continuous_vllm")

    @property
    def note(self) -> str:
        """The comparison in a few sentences."""
        parts = []
        for m in self.modes:
            if not m.available:
                parts.append(f"{m.label}: not run ({m.reason}).")
        static = next((m for m in self.modes if m.policy == "static" and m.padded_steps is not None), None)
        if static is not None:
            parts.append(f"Static batches of {self.slots} ran {static.batch_steps} decode steps; "
                         f"{static.padded_steps} sequence-steps were slots held by finished requests.")
        if self.policy_speedup is not None:
            parts.append(f"On the same vLLM engine, continuous batching finished {self.policy_speedup:.2f}x "
                         "sooner than waiting for each batch to end.")
        if self.engine_speedup is not None:
            parts.append(f"vLLM continuous vs transformers static: {self.engine_speedup:.2f}x (this also "
                         "includes the engines' different per-step speed).")
        if self.partial:
            parts.append("Stopped early: partial result.")
        return " ".join(parts) or "nothing measured"

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        return {
            "experiment": "static_vs_continuous", "lengths": list(self.lengths), "slots": self.slots,
            "partial": self.partial, "modes": [m.to_dict() for m in self.modes],
            "policy_speedup": self.policy_speedup, "engine_speedup": self.engine_speedup, "note": self.note,
        }


def _serve(engine: Engine, mode: BatchingMode, requests: list[Request], slots: int, sampling: SamplingParams,
           stop: threading.Event | None, sink: EventSink | None) -> None:
    """Static: batches of ``slots``, each waiting for the previous one to end. Continuous: all at once."""
    groups = ([requests[i:i + slots] for i in range(0, len(requests), slots)] if mode.policy == "static"
              else [requests])
    t0: float | None = None
    last: float | None = None
    batch_steps = padded = 0

    def record(b: int, _warm: bool, res: RunResult) -> None:
        nonlocal t0, last, batch_steps, padded
        sends = [r.trace.t_send for r in res.requests if r.trace.t_send == r.trace.t_send]  # NaN: never sent
        if t0 is None and sends:
            t0 = min(sends)
        produced = [r.trace.output_tokens for r in res.requests]
        if mode.policy == "static" and produced:
            batch_steps += max(produced)
            padded += sum(max(produced) - n for n in produced)
        for req, rr in zip(groups[b], res.requests, strict=True):
            tr = rr.trace
            base = t0 if t0 is not None else tr.t_send
            t1, tn = tr.first_token_time, tr.last_token_time
            if tn is not None:
                last = tn if last is None else max(last, tn)
            mode.requests.append(ServedRequest(
                request_id=req.request_id, target_tokens=req.max_new_tokens or sampling.max_new_tokens,
                batch=b if mode.policy == "static" else None, output_tokens=tr.output_tokens,
                wait_s=(tr.t_send - base) if tr.t_send == tr.t_send else None,
                engine_queued_s=(rr.engine_times or {}).get("queued_s"),
                ttft_s=None if t1 is None else t1 - base, e2e_s=None if tn is None else tn - base,
                finish_reason=rr.finish_reason,
            ))
        if res.error:
            mode.reason = res.error

    # Each group is one run: the next static batch starts only when the previous one has ended.
    m = measure(engine, lambda b: groups[b], sampling, runs=len(groups), stop=stop, sink=sink, on_result=record)
    if m.raised:
        mode.available, mode.reason = False, m.error
        return
    if m.cut_short:
        mode.partial = True
    if t0 is not None and last is not None:
        mode.wall_s = last - t0
    if mode.policy == "static":
        mode.batch_steps, mode.padded_steps = batch_steps, padded


def _forget_prefixes(engine: Engine) -> None:
    """Empty a prefix cache between modes that send the same prompts (else the second mode measures the cache)."""
    reset = getattr(engine, "reset_prefix_cache", None)
    if callable(reset):
        try:
            reset()
        except LabError:
            pass


def static_vs_continuous(
    factory_hf: PlainFactory | None,
    factory_vllm: SeqsFactory | None,
    lengths: Sequence[int] | None = None,
    slots: int = 4,
    static_on_vllm: bool = True,
    seed: int = 0,
    stop: threading.Event | None = None,
    sink: EventSink | None = None,
    progress: ProgressCallback | None = None,
) -> BatchingComparison:
    """Serve requests of very different reply lengths with static and with continuous batching.

    All requests "arrive" together; ``lengths[i]`` is request i's exact reply
    length (EOS ignored). Modes, one engine at a time:

    * ``static_hf`` — the transformers engine in batches of ``slots``: each batch
      runs until its longest reply ends, the next batch waits for it;
    * ``static_vllm`` — the same static batches on vLLM (``static_on_vllm``), so
      the policy can be compared on one engine;
    * ``continuous_vllm`` — all requests submitted at once to vLLM with
      ``max_num_seqs=slots``: a finished request's slot is refilled at the next step.

    Latencies count from the common arrival time. Either factory may be None to skip its modes.
    """
    lengths = list(lengths) if lengths is not None else default_lengths()
    from tui_lab.lab.prompts import prompt_schedule

    prompts = prompt_schedule(len(lengths), seed)
    requests = [Request(f"r{i}", p, n) for i, (p, n) in enumerate(zip(prompts, lengths, strict=True))]
    sampling = SamplingParams(max_new_tokens=max(lengths), temperature=0.0, ignore_eos=True)
    result = BatchingComparison(lengths=lengths, slots=slots)
    plan: list[tuple[Callable[[], Engine], list[BatchingMode]]] = []
    if factory_hf is not None:
        plan.append((factory_hf, [BatchingMode("static_hf", f"transformers · static batches of {slots}", "static")]))
    if factory_vllm is not None:
        vmodes = [BatchingMode("continuous_vllm", f"vLLM · continuous (max_num_seqs={slots})", "continuous")]
        if static_on_vllm:
            vmodes.insert(0, BatchingMode("static_vllm", f"vLLM · static batches of {slots}", "static"))
        plan.append((lambda: factory_vllm(slots), vmodes))
    for make, modes in plan:
        if _stopped(stop):
            result.partial = True
            break
        result.modes.extend(modes)
        with loaded(Variant(make, progress, prepare=lambda engine: _warm_up(engine, stop))) as variant:
            if variant.engine is None:
                for m in modes:
                    m.available, m.reason = False, variant.error
                continue
            for m in modes:
                m.engine = variant.info
                if _stopped(stop):
                    m.partial = result.partial = True
                    break
                _forget_prefixes(variant.engine)
                _serve(variant.engine, m, requests, slots, sampling, stop, sink)
                if m.partial:
                    result.partial = True
                    break
        if result.partial:
            break
    return result


# ------------------------------------------------------------------------------------------ the experiments

NUM_REQUESTS = Param("num_requests", "int", 16, "requests sent at once", 1, MAX_REQUESTS)
MAX_NUM_SEQS = Param("max_num_seqs", "int", 8, "sequences the engine runs at once", 1, MAX_REQUESTS)
REPLY_LENGTHS = Param("lengths", "int list", [32, 4, 28, 8, 24, 12, 20, 16], "each request's exact reply length",
                      1, MAX_NEW_TOKENS, max_items=MAX_REQUESTS)


class Graphs(Experiment):
    """CUDA graphs off and on."""

    name = "graphs_compare"
    title = "CUDA graphs on/off"
    description = "The same decode loop eager and replayed from CUDA graphs: launch overhead made visible."
    kind = "compare"
    result_type = GraphsComparison
    params = (PROMPT, BATCH_SIZE, MAX_NEW_TOKENS_PARAM.but(default=64, min=2), RUNS)

    def planned_work(self, params: Params, engine: str = "transformers") -> list[PlannedRun]:
        """The eager loop, then (where there is a GPU) the graphs loop: a load, a warm-up and the runs each."""
        b, n = params["batch_size"], params["max_new_tokens"]
        tokens, repeats = prompt_tokens([params["prompt"]]), params["runs"] + 1
        return [PlannedRun(b, n, tokens, repeats, loads=1), PlannedRun(b, n, tokens, repeats, loads=1, runs_on="gpu")]

    def run(self, params: Params, ctx: RunContext) -> GraphsComparison:
        """Eager and graph-replayed decode (the eager loop on the CPU alone without a GPU)."""

        def gpu_check() -> tuple[bool, str]:
            if ctx.engine_options.get("device") == "cpu":
                return False, "the device is set to cpu"
            return default_gpu_check()

        return graphs_compare(
            lambda graphs, device: ctx.make_engine("transformers", device=device, cuda_graphs=graphs),
            prompt=params["prompt"], batch_size=params["batch_size"], max_new_tokens=params["max_new_tokens"],
            runs=params["runs"], gpu_check=None if ctx.engine_name in ("scripted", "replay") else gpu_check,
            # A replay's GPU was the recording's: this machine's telemetry would not be its.
            sampler_factory=(lambda: None) if ctx.engine_name == "replay" else None,
            stop=ctx.stop, sink=ctx.sink, progress=ctx.loading("CUDA graphs"),
        )


class PrefixCache(Experiment):
    """vLLM's prefix cache off and on."""

    name = "prefix_cache"
    title = "Prefix caching"
    description = "Requests sharing a long prefix with vLLM's prefix cache off and on: TTFT drops."
    kind = "compare"
    result_type = PrefixCacheComparison
    params = (NUM_REQUESTS, Param("shared_prefix_words", "int", 400, "words every prompt shares at its start", 0, 4096),
              MAX_NEW_TOKENS_PARAM.but(default=16), RUNS.but(default=2), SEED)

    def planned_work(self, params: Params, engine: str = "transformers") -> list[PlannedRun] | None:
        """On a loaded vLLM: per mode, a load, the first request alone and the batches (each prefilled in full:
        the cache's saving is what the run measures), then the lab's engine back. Beside another engine the
        vLLM loads are not known."""
        if engine != "vllm":
            return None
        n, tokens = params["num_requests"], params["max_new_tokens"]
        prompt = prompt_tokens(shared_prefix_prompts(n, params["shared_prefix_words"], 1, params["seed"]))
        mode = [PlannedRun(1, tokens, prompt, loads=1), PlannedRun(n, tokens, prompt, params["runs"])]
        return [*mode, *mode, reload()]

    def run(self, params: Params, ctx: RunContext) -> PrefixCacheComparison:
        """One vLLM load per mode."""
        return prefix_cache_compare(
            lambda on: ctx.make_engine("vllm", enable_prefix_caching=on),
            num_requests=params["num_requests"], shared_prefix_words=params["shared_prefix_words"],
            max_new_tokens=params["max_new_tokens"], runs=params["runs"], seed=params["seed"], stop=ctx.stop,
            sink=ctx.sink, progress=ctx.loading("prefix cache"),
        )


class Queueing(Experiment):
    """More requests than vLLM runs at once."""

    name = "queueing"
    title = "Queueing"
    description = "More requests than the engine runs at once (max_num_seqs): waiting shows up in TTFT."
    kind = "compare"
    result_type = QueueingResult
    params = (NUM_REQUESTS.but(default=64), MAX_NUM_SEQS, MAX_NEW_TOKENS_PARAM, *SAMPLING, IGNORE_EOS.but(default=True))

    def planned_work(self, params: Params, engine: str = "transformers") -> list[PlannedRun] | None:
        """On a loaded vLLM: a variant running ``max_num_seqs`` at a time, its warm-up and the requests in waves
        of that many, then the lab's engine back. Beside another engine the vLLM load is not known."""
        if engine != "vllm":
            return None
        n, tokens = params["num_requests"], params["max_new_tokens"]
        slots = min(n, params["max_num_seqs"])
        from tui_lab.lab.prompts import prompt_schedule

        prompt = prompt_tokens(prompt_schedule(n, params["seed"]))
        return [PlannedRun(1, 2, prompt_tokens([_WARMUP_PROMPT]), loads=1),
                PlannedRun(slots, tokens, prompt, repeats=-(-n // slots)), reload()]

    def run(self, params: Params, ctx: RunContext) -> QueueingResult:
        """Waiting shows up in TTFT."""
        from tui_lab.lab.run import sampling_from

        sampling = sampling_from(params)
        return queueing_run(
            lambda n: ctx.make_engine("vllm", max_num_seqs=n),
            num_requests=params["num_requests"], max_num_seqs=params["max_num_seqs"],
            max_new_tokens=sampling.max_new_tokens, sampling=sampling, seed=params["seed"], stop=ctx.stop,
            sink=ctx.sink, progress=ctx.loading("queueing"),
        )


class StaticVsContinuous(Experiment):
    """Static batches (transformers, vLLM) and continuous batching (vLLM)."""

    name = "static_vs_continuous"
    title = "Static vs continuous batching"
    description = ("Replies of very different lengths in static batches (transformers, vLLM) and continuously "
                   "batched (vLLM).")
    kind = "compare"
    result_type = BatchingComparison
    params = (REPLY_LENGTHS, MAX_NUM_SEQS.but(default=4), SEED)

    def planned_work(self, params: Params, engine: str = "transformers") -> None:
        """Not known: it loads a transformers engine and a vLLM one, and one of them is not the loaded engine."""
        return None

    def run(self, params: Params, ctx: RunContext) -> BatchingComparison:
        """Replies of very different lengths, three ways."""
        return static_vs_continuous(
            lambda: ctx.make_engine("transformers"), lambda n: ctx.make_engine("vllm", max_num_seqs=n),
            lengths=params["lengths"], slots=params["max_num_seqs"], seed=params["seed"], stop=ctx.stop,
            sink=ctx.sink, progress=ctx.loading("batching"),
        )
