"""Lesson 06's experiments: closed and open loop, interference, speculation, tools' numbers, energy.

Closed loop (a fixed number of users, each sending again when answered) runs on every engine.
Open loop (Poisson arrivals at a rate) needs an engine that takes requests while others run; with
such an engine (vLLM, an OpenAI endpoint) both loops go through the lab's load driver
(``tui_lab.lab.load.execute_load``); otherwise the closed loop runs as waves and is judged against
the Poisson schedule it would have had to keep (coordinated omission). Little's law and the
omission check are pure functions of the trace (``tui_lab.metrics.toolmetrics``), so they hold
whichever driver produced it.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Any

from tui_lab.engines.base import Engine, is_cuda
from tui_lab.errors import EngineFailure, InvalidInput, LabError
from tui_lab.lab.experiment import Experiment, Params, RunContext
from tui_lab.lab.measure import ms, run_batch, variant
from tui_lab.lab.memory import NUM_REQUESTS
from tui_lab.lab.planned import PlannedRun, prompt_tokens, reload
from tui_lab.lab.prompts import varied_prompts
from tui_lab.lab.run import RunResult
from tui_lab.metrics import itl_samples, percentile, summarize, tpot, ttft
from tui_lab.metrics.latency import RequestTrace
from tui_lab.metrics.toolmetrics import (
    coordinated_omission,
    cost_per_million_tokens,
    joules_per_token,
    little_check,
    max_in_system,
    poisson_arrivals,
    think_section,
    time_to_first_answer,
    tool_numbers,
)
from tui_lab.params import (
    BATCH_SIZE,
    IGNORE_EOS,
    MAX_NEW_TOKENS,
    MAX_NEW_TOKENS_PARAM,
    MAX_REQUESTS,
    PROMPT,
    SEED,
    Param,
)

# ----------------------------------------------------------------------------------- closed / open


@dataclass
class LoadLoopResult:
    """One load pattern's run, with Little's law and the coordinated-omission check on its trace."""

    mode: str
    concurrency: int
    rate: float
    num_requests: int
    summary: dict
    little: dict | None
    omission: dict
    max_in_system: int
    note: str = ""

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        return asdict(self)


def load_driver() -> ModuleType | None:
    """The lab's load driver module (``tui_lab.lab.load``: sessions, closed and open loops), or None."""
    try:
        from tui_lab.lab import load
    except ImportError:
        return None
    if not all(hasattr(load, n) for n in ("execute_load", "LoadPlan", "supports_sessions")):
        return None
    return load


class LoadLoop(Experiment):
    """Closed loop (fixed concurrency) and open loop (Poisson rate), checked with Little's law."""

    name = "load_loop"
    title = "Closed and open loop"
    description = "Fixed concurrency vs a Poisson request rate; Little's law and coordinated omission."
    kind = "run"
    result_type = LoadLoopResult
    params = (
        Param("mode", "choice", "closed", "closed loop (fixed concurrency) or open loop (a request rate)",
              choices=("closed", "open")),
        Param("concurrency", "int", 4, "requests in flight (closed loop)", 1, MAX_REQUESTS),
        Param("rate", "number", 8.0, "arrivals per second (open loop)", 0.01, 10000),
        NUM_REQUESTS.but(default=16),
        MAX_NEW_TOKENS_PARAM.but(default=24),
        SEED,
    )

    def planned_work(self, params: Params, engine: str = "transformers") -> list[PlannedRun] | None:
        """The closed loop: waves of ``concurrency`` requests (an open loop on a serving engine follows its
        arrival rate instead: not known)."""
        if params["mode"] == "open" and engine in ("vllm", "openai"):
            return None
        n, c = params["num_requests"], min(params["concurrency"], params["num_requests"])
        return [PlannedRun(c, params["max_new_tokens"], prompt_tokens(varied_prompts(c, params["seed"])),
                           -(-n // c))]

    def run(self, params: Params, ctx: RunContext) -> LoadLoopResult:
        """Run the pattern; compute L vs λ·W and latency from the intended (Poisson) send times."""
        n, c = params["num_requests"], params["concurrency"]
        prompts = varied_prompts(n, params["seed"])
        schedule = poisson_arrivals(n, params["rate"], params["seed"])
        note = ""
        driver = load_driver()
        if driver is not None and not driver.supports_sessions(ctx.engine):
            driver = None
        if driver is not None and hasattr(driver, "arrival_offsets"):
            schedule = list(driver.arrival_offsets(n, params["rate"], 1.0, params["seed"]))
        traces = []
        if driver is not None:
            from tui_lab.engines.base import SamplingParams

            open_loop = params["mode"] == "open"
            plan = driver.LoadPlan(
                num_requests=n, concurrency=None if open_loop else c,
                request_rate=params["rate"] if open_loop else None,
                sampling=SamplingParams(max_new_tokens=params["max_new_tokens"], ignore_eos=True),
                seed=params["seed"], cold_request=False,
            )
            ctx.report(f"{params['mode']} loop · {plan.label}", None, new_run=True)
            traces = list(driver.execute_load(ctx.loaded, plan, ctx.stop, ctx.sink).traces)
        else:
            if params["mode"] == "open":
                note = ("open-loop arrivals need an engine that takes requests while others run (vllm, openai); "
                        "measured the closed loop and judged it against the Poisson schedule")
            # Closed loop with equal reply lengths: every slot frees at the same step, so waves of
            # ``concurrency`` requests are exactly what "send again when answered" does.
            for start in range(0, n, c):
                if ctx.stopped():
                    break
                run = run_batch(ctx, ctx.loaded, prompts[start:start + c], params["max_new_tokens"],
                                f"closed loop · requests {start + 1}–{min(n, start + c)} of {n}")
                traces.extend(run.traces)
        from tui_lab.metrics import summarize_run

        mode = params["mode"] if driver is not None else "closed"
        lc = little_check(traces, offered_rate=params["rate"] if mode == "open" else None,
                          users=c if mode == "closed" else None)
        return LoadLoopResult(
            mode, c, params["rate"], n,
            summarize_run(traces).to_dict(), lc.to_dict() if lc else None,
            coordinated_omission(traces, schedule).to_dict(), max_in_system(traces), note,
        )


# ----------------------------------------------------------------------------------- interference


@dataclass
class InterferenceRow:
    """Running streams' ITL without and with a long prompt arriving, and that prompt's TTFT."""

    label: str
    itl_p50_ms: float | None
    itl_p99_ms: float | None
    itl_max_ms: float | None
    long_ttft_ms: float | None


@dataclass
class InterferenceResult:
    """Prefill–decode interference, with chunked prefill off and on."""

    streams: int
    long_prompt_words: int
    rows: list[InterferenceRow]
    note: str = ""

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        return asdict(self)


def _itl_row(label: str, stream_traces: list[RequestTrace], long_trace: RequestTrace | None) -> InterferenceRow:
    gaps = itl_samples(stream_traces)
    return InterferenceRow(label, ms(percentile(gaps, 50)), ms(summarize(gaps).p99), ms(max(gaps, default=None)),
                           ms(ttft(long_trace)) if long_trace is not None else None)


def _with_late_prompt(ctx: RunContext, engine: Engine, streams: list[str], long_prompt: str, tokens: int,
                      delay_s: float, label: str) -> tuple[list[RequestTrace], RequestTrace | None]:
    """Streams start decoding; ``delay_s`` later, in a second stream() call, the long prompt arrives."""
    from tui_lab.engines.base import Request, SamplingParams
    from tui_lab.lab.run import execute_run

    sampling = SamplingParams(max_new_tokens=tokens, temperature=0.0, ignore_eos=True)
    holder: dict[str, Any] = {}

    def late() -> None:
        if not ctx.stop.wait(delay_s):
            try:
                holder["run"] = execute_run(engine, [Request("long", long_prompt)],
                                            sampling.with_(max_new_tokens=4), ctx.stop, None)
            except LabError as exc:  # e.g. longer than the context: said in the result, not lost on a thread
                holder["error"] = exc.message

    thread = threading.Thread(target=late, daemon=True)
    ctx.report(label, None, new_run=True)
    thread.start()
    run = execute_run(engine, [Request(f"s{i}", p) for i, p in enumerate(streams)], sampling, ctx.stop, ctx.sink)
    thread.join()
    if "error" in holder:
        raise InvalidInput(f"the long prompt could not run: {holder['error']}",
                           hint="lower long_prompt_words or raise the engine's max_model_len")
    long_run = holder.get("run")
    long_trace = long_run.requests[0] if long_run is not None else None
    if long_trace is not None and long_trace.error:
        raise EngineFailure(f"the long prompt failed: {long_trace.error}")
    return run.traces, (long_run.traces[0] if long_run is not None else None)


def interfering_prompt(words: int) -> str:
    """The long prompt that joins the running streams: about ``words`` words of notes to summarise."""
    return " ".join(["Summarise the following notes carefully."] +
                    [f"note{i % 97} about topic {i % 13}." for i in range(words // 5)])


class Interference(Experiment):
    """A long prompt arrives while other streams decode: ITL p99 jumps; chunked prefill bounds it."""

    name = "interference"
    title = "Prefill–decode interference"
    description = "A long prompt joins running streams; chunked prefill and its token budget bound the stall."
    kind = "compare"
    result_type = InterferenceResult
    params = (
        Param("streams", "int", 4, "short streams decoding when the long prompt arrives", 1, MAX_REQUESTS),
        Param("stream_tokens", "int", 64, "new tokens per stream", 8, MAX_NEW_TOKENS),
        Param("long_prompt_words", "int", 1200, "words in the long prompt", 16, 100000),
        Param("max_num_batched_tokens", "int", 256, "chunked prefill's token budget per step", 16, 65536),
        Param("arrive_after_s", "number", 0.5, "seconds after the streams start that the long prompt arrives", 0, 60),
    )

    def planned_work(self, params: Params, engine: str = "transformers") -> list[PlannedRun]:
        """The streams alone and the long prompt alone; on vLLM, the streams with the long prompt on two
        variants (chunked prefill off and on), then the lab's engine back."""
        streams, tokens = varied_prompts(params["streams"]), params["stream_tokens"]
        alone = PlannedRun(len(streams), tokens, prompt_tokens(streams))
        long_tokens = prompt_tokens([interfering_prompt(params["long_prompt_words"])])
        if engine != "vllm":
            return [alone, PlannedRun(1, 2, long_tokens)]
        joined = [PlannedRun(len(streams), tokens, prompt_tokens(streams), loads=1), PlannedRun(1, 4, long_tokens)]
        return [alone, *joined, *joined, reload()]

    def run(self, params: Params, ctx: RunContext) -> InterferenceResult:
        """Streams alone; then with the long prompt, chunked prefill off and on (vLLM only)."""
        streams = varied_prompts(params["streams"])
        long_prompt = interfering_prompt(params["long_prompt_words"])
        tokens = params["stream_tokens"]
        alone = run_batch(ctx, ctx.loaded, streams, tokens, f"{len(streams)} streams alone")
        rows = [_itl_row("streams alone", alone.traces, None)]
        if not ctx.engine_name == "vllm":
            lone = run_batch(ctx, ctx.loaded, [long_prompt], 2, "the long prompt alone")
            rows.append(_itl_row("long prompt alone (its TTFT)", [], lone.traces[0]))
            return InterferenceResult(params["streams"], params["long_prompt_words"], rows,
                                      "a prompt can join running streams only on vLLM (continuous batching); "
                                      "this engine batches statically, so the stall lands in everyone's TTFT")
        note = ""
        budget = params["max_num_batched_tokens"]
        configs = (("chunked prefill off", {"enable_chunked_prefill": False, "max_num_batched_tokens": 8192}),
                   (f"chunked, budget {budget}", {"enable_chunked_prefill": True, "max_num_batched_tokens": budget}))
        for label, options in configs:
            if ctx.stopped():
                break
            try:
                with variant(ctx, label, **options) as eng:
                    st, lt = _with_late_prompt(ctx, eng, streams, long_prompt, tokens, params["arrive_after_s"],
                                               f"{label} · long prompt after {params['arrive_after_s']:g} s")
                rows.append(_itl_row(label, st, lt))
            except LabError as exc:
                note = " ".join(filter(None, (note, f"{label} could not run: {exc.message}.")))
        return InterferenceResult(params["streams"], params["long_prompt_words"], rows, note)


# ----------------------------------------------------------------------------------- speculation


@dataclass
class SpecRow:
    """One (speculation, text) pair."""

    speculation: str
    text: str
    tpot_ms: float | None
    tokens_per_s: float | None
    tokens_per_event: float
    """Mean tokens per streamed event: the reply's tokens over its chunks (the first, from the prefill, included)."""
    acceptance: float | None
    """Accepted draft tokens / proposed draft tokens (vLLM's counters)."""
    tokens_per_step: float | None
    """The reply's tokens over every engine step that served it (vLLM's step counter; prefill included)."""
    chunk_itl_ms: float | None
    """Mean gap between events (what a chunk-timing tool reports as ITL)."""
    mean_acceptance_length: float | None = None
    """vLLM's "mean acceptance length": 1 + accepted / drafts, over the steps that carried a draft only."""
    drafted_steps: int | None = None
    """Steps in which the proposer found a draft (vLLM counts a draft per request per such step)."""
    steps: int | None = None
    """Engine steps during the run (vLLM's stat logger is called once per step)."""
    events: int = 0
    output_tokens: int = 0


@dataclass
class SpeculationResult:
    """n-gram speculation off and on, on repetitive and fresh text."""

    k: int
    rows: list[SpecRow]
    speedup_repetitive: float | None
    speedup_fresh: float | None
    best_tokens_per_event: float = 0.0
    """The most tokens per streamed chunk of any row (1.0 without speculation)."""
    note: str = ""

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        return asdict(self)


REPETITIVE = ("Copy this list exactly, line by line, twice: apples, pears, plums, cherries, apples, pears, "
              "plums, cherries, apples, pears, plums, cherries.")
FRESH = "Write a short original story about a lighthouse keeper who finds a strange map."


def _spec_row(label: str, text_kind: str, run: RunResult, before: dict[str, float] | None,
              after: dict[str, float] | None) -> SpecRow:
    """One row from the run's trace and vLLM's counters read before and after it.

    The counters measure different things: vLLM's mean acceptance length averages only the steps that
    carried a draft (n-gram lookup finds none in many steps, which then make one token and are not
    counted), while tokens per step and per chunk divide the reply's tokens by every step or chunk.
    """
    traces = run.traces
    events = sum(len(tr.event_times) for tr in traces)
    tokens = sum(tr.output_tokens for tr in traces)
    acc = mean_len = per_step = None
    drafts = steps = None
    if before is not None and after is not None:
        drafted = after["draft_tokens"] - before["draft_tokens"]
        accepted = after["accepted_tokens"] - before["accepted_tokens"]
        drafts = int(after["drafts"] - before["drafts"])
        steps = int(after.get("steps", 0) - before.get("steps", 0)) or None
        if drafted > 0:
            acc = accepted / drafted
        if drafts > 0:
            mean_len = 1 + accepted / drafts
        if steps:
            per_step = tokens / steps
    gaps = [tr.event_times[i] - tr.event_times[i - 1] for tr in traces for i in range(1, len(tr.event_times))]
    tp = [t for t in (tpot(tr) for tr in traces) if t is not None]
    return SpecRow(label, text_kind, ms(percentile(tp, 50)), run.summary().output_tokens_per_s,
                   tokens / events if events else 0.0, acc, per_step, ms(sum(gaps) / len(gaps)) if gaps else None,
                   mean_len, drafts, steps, events, tokens)


def _speedup(rows: list[SpecRow], kind: str) -> float | None:
    off = next((r for r in rows if r.text == kind and r.speculation == "off"), None)
    on = next((r for r in rows if r.text == kind and r.speculation != "off"), None)
    if off is None or on is None or not off.tpot_ms or not on.tpot_ms:
        return None
    return off.tpot_ms / on.tpot_ms


class Speculation(Experiment):
    """vLLM n-gram speculation: acceptance, tokens per step and speed-up on repetitive vs fresh text."""

    name = "speculation"
    title = "Speculative decoding"
    description = "n-gram speculation off and on, repetitive and fresh text; tokens per chunk in the token bars."
    kind = "compare"
    result_type = SpeculationResult
    params = (
        Param("k", "int", 4, "draft tokens proposed per step", 1, 16),
        MAX_NEW_TOKENS_PARAM.but(default=96, min=8),
        Param("repetitive_prompt", "text", REPETITIVE, "a prompt whose answer repeats itself"),
        Param("fresh_prompt", "text", FRESH, "a prompt whose answer does not"),
    )

    def planned_work(self, params: Params, engine: str = "transformers") -> list[PlannedRun]:
        """A warm-up and both prompts on the loaded engine; on vLLM again on a variant with speculation (replies
        may end sooner)."""
        n = params["max_new_tokens"]
        tokens = prompt_tokens([params["repetitive_prompt"], params["fresh_prompt"]])
        once = [PlannedRun(1, min(n, 16), tokens), PlannedRun(1, n, tokens, 2)]
        if engine != "vllm":
            return once
        return [*once, PlannedRun(1, min(n, 16), tokens, loads=1), PlannedRun(1, n, tokens, 2), reload()]

    def run(self, params: Params, ctx: RunContext) -> SpeculationResult:
        """Both texts on the loaded engine (off), then on a vLLM variant with ``k`` n-gram tokens."""
        n = params["max_new_tokens"]
        texts = (("repetitive", params["repetitive_prompt"]), ("fresh", params["fresh_prompt"]))
        rows = []
        # One short unmeasured reply first on each engine: a fresh engine's first steps pay one-time costs
        # (kernel compilation, first allocations) that would land in whichever row runs first.
        run_batch(ctx, ctx.loaded, [texts[1][1]], min(n, 16), "warm-up (not measured)", ignore_eos=False)
        for kind, prompt in texts:
            rows.append(_spec_row("off", kind, run_batch(ctx, ctx.loaded, [prompt], n, f"speculation off · {kind}",
                                                         ignore_eos=False), None, None))
        note = ""
        if not ctx.engine_name == "vllm":
            note = "n-gram speculation is a vLLM option: pick engine vllm to measure it"
        else:
            try:
                with variant(ctx, f"n-gram speculation, k={params['k']}", ngram_speculative_tokens=params["k"]) as eng:
                    stats = getattr(eng, "scheduler_stats", None)
                    run_batch(ctx, eng, [texts[0][1]], min(n, 16), "warm-up (not measured)", ignore_eos=False)
                    for kind, prompt in texts:
                        before = stats() if stats else None
                        run = run_batch(ctx, eng, [prompt], n, f"speculation k={params['k']} · {kind}",
                                        ignore_eos=False)
                        rows.append(_spec_row(f"n-gram k={params['k']}", kind, run, before,
                                              stats() if stats else None))
            except LabError as exc:
                note = f"n-gram speculation could not run here: {exc.message}"
        best = max((r.tokens_per_event for r in rows), default=0.0)
        return SpeculationResult(params["k"], rows, _speedup(rows, "repetitive"), _speedup(rows, "fresh"), best, note)


# ----------------------------------------------------------------------------------- tools' numbers


@dataclass
class ToolMetricsResult:
    """One run's trace seen through each tool's definitions."""

    weighting: str
    rows: list[dict]
    summary: dict

    def to_dict(self) -> dict:
        """Plain-JSON form (ms figures beside the seconds)."""
        return asdict(self)


class ToolMetrics(Experiment):
    """One trace, every tool's ITL, TPOT and throughput side by side."""

    name = "tool_metrics"
    title = "One trace, every tool's numbers"
    description = "vLLM bench serve, AIPerf, guidellm and LLMPerf definitions applied to one run."
    kind = "run"
    result_type = ToolMetricsResult
    params = (
        BATCH_SIZE.but(default=8),
        MAX_NEW_TOKENS_PARAM.but(default=48, min=2),
        Param("weighting", "choice", "request", "average per request or per token", choices=("request", "token")),
        IGNORE_EOS,
    )

    def planned_work(self, params: Params, engine: str = "transformers") -> list[PlannedRun]:
        """One batch."""
        b = params["batch_size"]
        return [PlannedRun(b, params["max_new_tokens"], prompt_tokens(varied_prompts(b)))]

    def run(self, params: Params, ctx: RunContext) -> ToolMetricsResult:
        """One batch (replies of different lengths unless ``ignore_eos``), then every definition."""
        run = run_batch(ctx, ctx.loaded, varied_prompts(params["batch_size"]), params["max_new_tokens"],
                        f"batch {params['batch_size']}", ignore_eos=params["ignore_eos"])
        rows = []
        for r in tool_numbers(run.traces, params["weighting"]):
            d = r.to_dict()
            d.update(itl_mean_ms=ms(r.itl_mean_s), itl_p99_ms=ms(r.itl_p99_s), tpot_mean_ms=ms(r.tpot_mean_s))
            rows.append(d)
        return ToolMetricsResult(params["weighting"], rows, run.summary().to_dict())


# ----------------------------------------------------------------------------------- energy and cost


@dataclass
class EnergyPoint:
    """One batch size: throughput, per-user speed, energy per token and cost per million tokens."""

    batch_size: int
    tokens_per_s: float | None
    tpot_ms: float | None
    joules_per_token: float | None
    cost_per_million: float | None


@dataclass
class EnergyResult:
    """Energy and cost along the throughput–latency curve."""

    price_per_hour: float
    points: list[EnergyPoint]
    energy_source: str
    device: str
    note: str = ""

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        return asdict(self)


def _energy_mj() -> int | None:
    """NVML's total energy since the driver loaded (millijoules), GPU 0; None without NVML."""
    try:
        from tui_lab.telemetry import _nvml

        nvml = _nvml()
        nvml.nvmlInit()
        try:
            return int(nvml.nvmlDeviceGetTotalEnergyConsumption(nvml.nvmlDeviceGetHandleByIndex(0)))
        finally:
            nvml.nvmlShutdown()
    except Exception:
        return None


class EnergyCost(Experiment):
    """Joules per token from NVML's energy counter, and cost per million tokens from a price you type."""

    name = "energy_cost"
    title = "Energy and cost"
    description = "Joules per token (NVML total-energy counter) and cost per million tokens per batch size."
    kind = "sweep"
    result_type = EnergyResult
    params = (
        Param("batch_sizes", "int list", [1, 8, 32], "batch sizes to measure", 1, MAX_REQUESTS),
        MAX_NEW_TOKENS_PARAM.but(default=48, min=2),
        Param("price_per_hour", "number", 3.5, "what the GPU costs per hour, in your currency", 0, 10000),
    )

    def planned_work(self, params: Params, engine: str = "transformers") -> list[PlannedRun]:
        """One batch of each size."""
        n = params["max_new_tokens"]
        return [PlannedRun(b, n, prompt_tokens(varied_prompts(b))) for b in params["batch_sizes"]]

    def run(self, params: Params, ctx: RunContext) -> EnergyResult:
        """Each batch size once, with the energy counter read before and after."""
        device = ctx.device()
        on_gpu = is_cuda(device)
        points = []
        for b in params["batch_sizes"]:
            if ctx.stopped():
                break
            start = _energy_mj() if on_gpu else None
            run = run_batch(ctx, ctx.loaded, varied_prompts(b), params["max_new_tokens"], f"batch {b}")
            end = _energy_mj() if on_gpu else None
            s = run.summary()
            tokens = s.output_tokens
            tp = s.tpot_s.p50 if s.tpot_s is not None else None
            points.append(EnergyPoint(b, s.output_tokens_per_s, ms(tp), joules_per_token(start, end, tokens),
                                      cost_per_million_tokens(params["price_per_hour"], s.output_tokens_per_s)))
            ctx.emit(points[-1])
        source = "NVML total-energy counter, GPU 0" if on_gpu else "none (no GPU: NVML has no energy counter here)"
        note = "" if on_gpu else "joules per token need an NVIDIA GPU; the cost column uses the measured throughput"
        return EnergyResult(params["price_per_hour"], points, source, device, note)


# ------------------------------------------------------------------------------ reasoning: first answer


@dataclass
class AnswerLatencyResult:
    """Time to first token and to first *answer* token (after a think section) per request."""

    requests: list[dict]
    ttft_ms_p50: float | None
    ttfa_ms_p50: float | None
    think_tokens_mean: float | None
    note: str = ""

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        return asdict(self)


class AnswerLatency(Experiment):
    """A reasoning model thinks first: the user waits for the first answer token, not the first token."""

    name = "answer_latency"
    title = "Time to first answer token"
    description = "TTFT against time to the first token after the think section, think tokens counted apart."
    kind = "run"
    result_type = AnswerLatencyResult
    params = (
        PROMPT.but(default="Think it through, then answer: what is 17 times 23?"),
        BATCH_SIZE,
        MAX_NEW_TOKENS_PARAM.but(default=64),
    )

    def planned_work(self, params: Params, engine: str = "transformers") -> list[PlannedRun]:
        """One batch of the prompt (replies may end sooner)."""
        return [PlannedRun(params["batch_size"], params["max_new_tokens"], prompt_tokens([params["prompt"]]))]

    def run(self, params: Params, ctx: RunContext) -> AnswerLatencyResult:
        """Stream the batch and split every reply at the end of its think section (``<think>`` … ``</think>``)."""
        prompts = [params["prompt"]] * params["batch_size"]
        run = run_batch(ctx, ctx.loaded, prompts, params["max_new_tokens"], "reasoning stream", ignore_eos=False)
        reqs: list[dict[str, Any]] = []
        for r in run.requests:
            ta, think = time_to_first_answer(r.trace, r.texts)
            _, first, end = think_section(r.texts)
            reqs.append({"request_id": r.request_id, "ttft_ms": ms(ttft(r.trace)), "ttfa_ms": ms(ta),
                         "think_tokens": think, "thinks": end > first, "output_tokens": r.trace.output_tokens})
        thinks = [q["think_tokens"] for q in reqs]
        note = ""
        if reqs and not any(q["thinks"] for q in reqs):
            note = ("no think section (<think> … </think>) in these replies: the answer starts at the first token, "
                    "so TTFA = TTFT; whitespace before the answer is not thinking")
        elif any(q["ttfa_ms"] is None for q in reqs):
            note = "a reply was still thinking when it ended: raise max_new_tokens to reach its answer"
        return AnswerLatencyResult(
            reqs, percentile([q["ttft_ms"] for q in reqs if q["ttft_ms"] is not None], 50),
            percentile([q["ttfa_ms"] for q in reqs if q["ttfa_ms"] is not None], 50),
            sum(thinks) / len(thinks) if thinks else None, note,
        )
