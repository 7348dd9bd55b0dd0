"""Lesson 05's experiments: bytes per weight, KV cache per token by attention design, KV dtype, preemption.

Each computes its figures from the architecture configs the lab ships (so they exist on any
machine), then measures what the loaded engine can show. vLLM on a GPU measures everything;
vLLM on CPU measures the KV capacity and preemption; other engines measure step times and the
largest batch they run, and the result says in one line what was not measured and why.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Literal, TypedDict

from tui_lab.engines.base import Engine, cuda_index, is_cuda
from tui_lab.errors import InvalidInput, LabError, OutOfMemory
from tui_lab.lab.experiment import Experiment, Params, RunContext
from tui_lab.lab.measure import ms, run_batch, variant
from tui_lab.lab.planned import PlannedRun, prompt_tokens, reload
from tui_lab.lab.prompts import varied_prompts
from tui_lab.lab.run import RunResult
from tui_lab.metrics import percentile
from tui_lab.metrics.memory import (
    ATTENTION_DESIGNS,
    decode_floor_s,
    dtype_bytes,
    kv_design,
    mamba_state_bytes,
    weight_bytes,
)
from tui_lab.params import MAX_NEW_TOKENS_PARAM, MAX_REQUESTS, Param, Value

GIB = 2**30


def arch_name(name: str, value: Value) -> str:
    """An architecture the lab ships (``llama-3-8b``; ``arch:llama-3-8b`` is taken too)."""
    from tui_lab.models.arch import ARCH_MODELS

    text = str(value).removeprefix("arch:")
    if text not in ARCH_MODELS:
        raise InvalidInput(f"{name} must be one of: {', '.join(ARCH_MODELS)} (got {value!r})")
    return text


ARCH_MODEL = Param("model", "text", "llama-3-8b", "the architecture to model (inference-lab models lists them)",
                   extra=arch_name)
NUM_REQUESTS = Param("num_requests", "int", 16, "requests sent together", 1, MAX_REQUESTS)
H200_HBM_GBS = 4800.0
"""NVIDIA H200 SXM memory bandwidth, 4.8 TB/s (NVIDIA H200 Tensor Core GPU datasheet)."""
H200_MEMORY_GIB = 141e9 / GIB
"""NVIDIA H200: 141 GB of HBM3e (same datasheet)."""


def card_figure(device: str, want: Literal["bandwidth", "memory"], given: float | None = None) -> tuple[float, str]:
    """The memory bandwidth (GB/s) or size (GiB) of the card ``device`` runs on, and one line on where it
    comes from. ``given`` wins; None reads the card.

    A CUDA device is read through NVML (``tui_lab.telemetry.card_specs``: the total memory, and the peak
    bandwidth from its memory clock and bus width); an engine off the GPU on a machine with one reads
    GPU 0; only without a GPU does the NVIDIA H200 datasheet stand in, and the line says so.
    """
    from tui_lab.telemetry import card_specs

    unit = "GB/s" if want == "bandwidth" else "GiB"
    if given is not None:
        return float(given), f"{want} {given:,.4g} {unit} as given"
    on_gpu = is_cuda(device)
    specs = card_specs(cuda_index(device) if on_gpu else 0)
    value = None
    if specs is not None:
        value = specs.bandwidth_gbs if want == "bandwidth" else specs.memory_bytes / GIB
    if specs is not None and value:
        where = "" if on_gpu else f" (GPU 0 of this machine; the engine runs on {device})"
        how = " (NVML: 2 × memory clock × bus width)" if want == "bandwidth" else " (NVML)"
        return value, f"{want} {value:,.0f} {unit} read from the {specs.name}{where}{how}"
    why = "no GPU here" if specs is None else f"NVML cannot say the {specs.name}'s {want}"
    fallback = H200_HBM_GBS if want == "bandwidth" else H200_MEMORY_GIB
    datasheet = "4,800 GB/s" if want == "bandwidth" else "141 GB"
    return fallback, f"{why}: the NVIDIA H200 datasheet's {datasheet} stands in for the card"


def _tpot_p50(run: RunResult) -> float | None:
    values = [r.trace for r in run.requests]
    from tui_lab.metrics import tpot

    return percentile([t for t in (tpot(tr) for tr in values) if t is not None], 50)


# ------------------------------------------------------------------------------------ bytes per weight


@dataclass(frozen=True)
class PrecisionRow:
    """One weight format: stored bytes, the memory floor of a batch-1 decode step, and its measurement."""

    dtype: str
    weight_gb: float
    floor_ms: float
    measured_ms: float | None = None
    note: str = ""


@dataclass
class PrecisionResult:
    """Bytes per weight against decode step time, for one architecture on one memory bandwidth."""

    model: str
    bandwidth_gbs: float
    rows: list[PrecisionRow]
    engine: str
    device: str
    loaded_step_ms: float | None
    """TPOT p50 at batch 1 of the loaded engine (its own weights' dtype)."""
    note: str = ""

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        return asdict(self)


PRECISION_PROMPT = "The future of AI is"
"""The prompt whose decode steps ``weight_precision`` times."""


class WeightPrecision(Experiment):
    """bf16, fp8 and int4 weights: the floor from the bytes, then the measured step."""

    name = "weight_precision"
    title = "Bytes per weight"
    description = "Decode step floor from weight bytes (bf16/fp8/int4) against the measured step."
    kind = "compare"
    result_type = PrecisionResult
    params = (
        ARCH_MODEL,
        Param("bandwidth_gbs", "number", None, "memory bandwidth the floors assume, GB/s (none: the card's)", 1,
              100000, optional=True),
        MAX_NEW_TOKENS_PARAM.but(min=2),
        Param("measure_fp8", "bool", True, "on vLLM with a GPU, also time fp8 weights"),
    )

    def planned_work(self, params: Params, engine: str = "transformers") -> list[PlannedRun]:
        """One prompt on the loaded engine; on vLLM with a GPU, again on an fp8 variant, then the lab's engine
        back. The floors are computed."""
        once = PlannedRun(1, params["max_new_tokens"], prompt_tokens([PRECISION_PROMPT]))
        if engine != "vllm" or not params["measure_fp8"]:
            return [once]
        return [once, replace(once, loads=1, runs_on="gpu"), reload("gpu")]

    def run(self, params: Params, ctx: RunContext) -> PrecisionResult:
        """Compute the three floors; time the loaded engine; on vLLM with a GPU also time fp8 weights."""
        from tui_lab.models.arch import ARCH_MODELS

        config = ARCH_MODELS[params["model"]].config
        device = ctx.device()
        bandwidth_gbs, source = card_figure(device, "bandwidth", params["bandwidth_gbs"])
        bw = bandwidth_gbs * 1e9
        rows = []
        for dt in ("bf16", "fp8", "int4"):
            wb = weight_bytes(config, dt)
            rows.append(PrecisionRow(dt, wb / 1e9, decode_floor_s(wb, bw) * 1000))
        base = run_batch(ctx, ctx.loaded, [PRECISION_PROMPT], params["max_new_tokens"], "batch 1 · loaded engine")
        loaded = ms(_tpot_p50(base))
        note = ""
        gpu_vllm = ctx.engine_name == "vllm" and is_cuda(device)
        if gpu_vllm and params["measure_fp8"] and not ctx.stopped():
            model = ctx.engine_options.get("model")
            try:
                with variant(ctx, "fp8 weights", quantization="fp8") as eng:
                    run = run_batch(ctx, eng, [PRECISION_PROMPT], params["max_new_tokens"], "batch 1 · fp8")
                rows[1] = PrecisionRow("fp8", rows[1].weight_gb, rows[1].floor_ms, ms(_tpot_p50(run)),
                                       f"measured on {model}")
            except LabError as exc:
                note = f"fp8 weights could not run: {exc.message}"
            rows[0] = PrecisionRow("bf16", rows[0].weight_gb, rows[0].floor_ms, loaded, f"measured on {model}")
        elif ctx.engine_name == "vllm":
            note = "fp8 weights need vLLM on an H100/H200-class GPU; this run timed the loaded weights only"
        else:
            note = "fp8 weights are a vLLM option (engine vllm on a GPU); this run timed the loaded engine only"
        rows[2] = PrecisionRow("int4", rows[2].weight_gb, rows[2].floor_ms, None,
                               "needs a checkpoint quantized ahead of time (AWQ/GPTQ): computed only")
        note = "; ".join(part for part in (source, note) if part)
        return PrecisionResult(params["model"], bandwidth_gbs, rows, ctx.engine_name, device, loaded, note)


# ---------------------------------------------------------------------------------- KV per token


@dataclass
class KvCapacityResult:
    """KV bytes per token for every shipped architecture and design, and the largest batch measured."""

    context: int
    kv_dtype: str
    free_gib: float
    designs: list[dict]
    measured_max_batch: int | None
    """The largest batch of ``context``-token sequences the loaded engine holds (vLLM: its KV blocks)."""
    measured_how: str
    fp8_max_batch: int | None = None
    shipped: dict[str, dict] = field(default_factory=dict)
    """Each architecture as shipped, by name with underscores (``shipped.llama_3_8b.max_batch``)."""
    throughput_tok_s: dict[str, float | None] = field(default_factory=dict)
    note: str = ""

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        return asdict(self)


def _vllm_capacity(engine: Engine, context: int) -> int | None:
    stats = getattr(engine, "scheduler_stats", None)
    if stats is None:
        return None
    snap = stats()
    blocks, size = int(snap.get("kv_blocks") or 0), int(snap.get("block_size") or 0)
    return blocks * size // context if blocks and size else None


def _largest_batch(ctx: RunContext, engine: Engine, limit: int, tokens: int) -> tuple[int, str]:
    """Double the batch until the engine runs out of memory or ``limit`` is reached."""
    batch, best = 1, 0
    while batch <= limit and not ctx.stopped():
        try:
            run = run_batch(ctx, engine, varied_prompts(batch), tokens, f"probe · batch {batch}")
        except OutOfMemory:
            return best, f"largest batch that ran (batch {batch} ran out of memory)"
        if isinstance(run.exception, OutOfMemory):
            return best, f"largest batch that ran (batch {batch} ran out of memory)"
        best = batch
        batch *= 2
    return best, f"largest batch tried (limit {limit}; raise probe_limit to go further)"


KV_THROUGHPUT_TOKENS = 32
"""New tokens per request of ``kv_capacity``'s throughput runs on vLLM."""


class KvCapacity(Experiment):
    """KV cache per token by attention design, then the largest batch that fits."""

    name = "kv_capacity"
    title = "KV cache per token"
    description = "KV bytes per token for MHA/GQA/MQA/sliding/hybrid designs and the largest batch that fits."
    kind = "inspect"
    result_type = KvCapacityResult
    params = (
        Param("context", "int", 4096, "tokens per sequence", 16, 131072),
        Param("memory_gib", "number", None, "GPU memory the table assumes, GiB (none: the card's)", 0.1, 4096,
              optional=True),
        Param("kv_cache_dtype", "choice", "bf16", "KV cache element type", choices=("bf16", "fp8")),
        Param("compare_fp8", "bool", False, "on vLLM, also load an fp8 KV cache and measure it"),
        Param("probe_limit", "int", 16, "largest batch the probe tries", 1, MAX_REQUESTS),
        Param("probe_tokens", "int", 4, "new tokens per probe run", 1, 64),
        Param("throughput_batch", "int", 8, "batch of the throughput runs", 1, MAX_REQUESTS),
    )

    def planned_work(self, params: Params, engine: str = "transformers") -> list[PlannedRun]:
        """On vLLM a throughput batch (and with ``compare_fp8`` one on an fp8 variant, then the lab's engine
        back); elsewhere the doubling probe up to ``probe_limit`` (it stops sooner when memory runs out)."""
        if engine == "vllm":
            b = params["throughput_batch"]
            once = PlannedRun(b, KV_THROUGHPUT_TOKENS, prompt_tokens(varied_prompts(b)))
            return [once, replace(once, loads=1), reload()] if params["compare_fp8"] else [once]
        plan, batch = [], 1
        while batch <= params["probe_limit"]:
            plan.append(PlannedRun(batch, params["probe_tokens"], prompt_tokens(varied_prompts(batch))))
            batch *= 2
        return plan

    def run(self, params: Params, ctx: RunContext) -> KvCapacityResult:
        """Tabulate the designs; measure capacity (vLLM: KV blocks; others: doubling probe)."""
        from tui_lab.models.arch import ARCH_MODELS

        context, kvd = params["context"], params["kv_cache_dtype"]
        memory_gib, source = card_figure(ctx.device(), "memory", params["memory_gib"])
        designs = []
        for name, arch in ARCH_MODELS.items():
            free = max(0.0, memory_gib * GIB * 0.9 - weight_bytes(arch.config))
            for design in ATTENTION_DESIGNS:
                d = kv_design(name, arch.config, design, context, kvd, free)
                designs.append({**d.to_dict(), "free_gib": free / GIB})
        note = ""
        fp8_batch = None
        thr: dict[str, float | None] = {}
        if ctx.engine_name == "vllm" and hasattr(ctx.engine, "scheduler_stats"):
            measured = _vllm_capacity(ctx.loaded, context)
            how = f"vLLM's KV blocks × block size ÷ {context} tokens"
            prompts = varied_prompts(params["throughput_batch"])
            run = run_batch(ctx, ctx.loaded, prompts, KV_THROUGHPUT_TOKENS, "throughput · auto KV")
            thr["auto"] = run.summary().output_tokens_per_s
            if params["compare_fp8"] and not ctx.stopped():
                try:
                    with variant(ctx, "fp8 KV cache", kv_cache_dtype="fp8") as eng:
                        fp8_batch = _vllm_capacity(eng, context)
                        run = run_batch(ctx, eng, prompts, KV_THROUGHPUT_TOKENS, "throughput · fp8 KV")
                        thr["fp8"] = run.summary().output_tokens_per_s
                except LabError as exc:
                    note = f"fp8 KV cache could not run here: {exc.message}"
        else:
            measured, how = _largest_batch(ctx, ctx.loaded, params["probe_limit"], params["probe_tokens"])
            if params["compare_fp8"]:
                note = "the fp8 KV cache is measured on the vLLM engine only (kv_cache_dtype=fp8)"
        shipped = {d["model"].replace("-", "_"): d for d in designs if d["design"] == "as shipped"}
        note = "; ".join(part for part in (source, note) if part)
        return KvCapacityResult(context, kvd, memory_gib, designs, measured, how, fp8_batch, shipped, thr, note)


# ------------------------------------------------------------------------------------- preemption


class CounterSample(TypedDict):
    """The scheduler's counters at one moment (``t`` from the first send); None where the engine has none."""

    t: float
    running: int
    waiting: int
    kv_usage: float | None
    preemptions: int | None


@dataclass
class PreemptionResult:
    """The scheduler's counters over one overloaded run, and the run's latency."""

    num_requests: int
    samples: list[CounterSample]
    """``{"t", "running", "waiting", "kv_usage", "preemptions"}`` over time (t from the first send)."""
    source: str
    preemptions: int | None
    peak_waiting: int
    peak_running: int
    summary: dict
    note: str = ""
    kv_capacity_tokens: int | None = None
    """Tokens the KV cache held (vLLM: blocks × block size)."""

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        return asdict(self)


def counters_from_trace(run: RunResult) -> list[CounterSample]:
    """Running (first token seen, not finished) and waiting (sent, no token yet) at every event time."""
    spans = []
    for r in run.requests:
        tr = r.trace
        if tr.event_times:
            spans.append((tr.t_send, tr.event_times[0], tr.event_times[-1]))
    if not spans:
        return []
    t0 = min(s for s, _, _ in spans)
    times = sorted({t for span in spans for t in span})
    out: list[CounterSample] = []
    for t in times:
        running = sum(1 for _, first, last in spans if first <= t < last)
        waiting = sum(1 for sent, first, _ in spans if sent <= t < first)
        out.append(CounterSample(t=t - t0, running=running, waiting=waiting, kv_usage=None, preemptions=None))
    return out


class Preemption(Experiment):
    """Push concurrency past the KV cache and watch vLLM preempt."""

    name = "preemption"
    title = "Preemption"
    description = "More requests than the KV cache holds: running, waiting, KV usage and preemptions live."
    kind = "run"
    result_type = PreemptionResult
    params = (
        NUM_REQUESTS.but(default=32),
        MAX_NEW_TOKENS_PARAM.but(default=96),
        Param("num_kv_blocks", "int", 64, "KV cache blocks vLLM gets (16 tokens each)", 1, 1_000_000),
        Param("max_num_seqs", "int", 32, "sequences vLLM runs at once", 1, MAX_REQUESTS),
        Param("max_model_len", "int", 256, "context length vLLM reserves", 32, 131072),
        Param("sample_interval_s", "number", 0.1, "seconds between counter samples", 0.01, 5),
    )

    def planned_work(self, params: Params, engine: str = "transformers") -> list[PlannedRun]:
        """The requests in one batch; on vLLM on a variant that runs ``max_num_seqs`` at a time (waves of them;
        the recomputation after a preemption is left out), then the lab's engine back."""
        n, tokens = params["num_requests"], params["max_new_tokens"]
        prompt = prompt_tokens(varied_prompts(n))
        if engine != "vllm":
            return [PlannedRun(n, tokens, prompt)]
        slots = min(n, params["max_num_seqs"])
        return [PlannedRun(slots, tokens, prompt, repeats=-(-n // slots), loads=1), reload()]

    def run(self, params: Params, ctx: RunContext) -> PreemptionResult:
        """On vLLM: a variant with ``num_kv_blocks`` blocks, polled while it runs; else counters from the trace."""
        prompts = varied_prompts(params["num_requests"])
        n = params["max_new_tokens"]
        if not ctx.engine_name == "vllm":
            run = run_batch(ctx, ctx.loaded, prompts, n, f"{len(prompts)} requests")
            samples = counters_from_trace(run)
            return _preemption_result(params, samples, "derived from the trace", None, run,
                                      "only vLLM's scheduler preempts: this engine runs the whole batch at once")
        samples = []
        stop_poll = threading.Event()
        with variant(ctx, f"vLLM with {params['num_kv_blocks']} KV blocks",
                     num_kv_blocks=params["num_kv_blocks"], max_num_seqs=params["max_num_seqs"],
                     max_model_len=params["max_model_len"]) as eng:
            reset = getattr(eng, "reset_scheduler_stats", None)
            if reset is not None:
                reset()
            stats = getattr(eng, "scheduler_stats", None)
            t0 = time.perf_counter()

            def poll() -> None:
                while not stop_poll.is_set() and stats is not None:
                    snap = stats()
                    sample = CounterSample(t=time.perf_counter() - t0, running=int(snap["running"]),
                                           waiting=int(snap["waiting"]), kv_usage=float(snap["kv_usage"]),
                                           preemptions=int(snap["preemptions"]))
                    samples.append(sample)
                    ctx.emit(sample)
                    stop_poll.wait(params["sample_interval_s"])

            poller = threading.Thread(target=poll, daemon=True)
            poller.start()
            try:
                run = run_batch(ctx, eng, prompts, n, f"{len(prompts)} requests · {params['num_kv_blocks']} blocks")
            finally:
                stop_poll.set()
                poller.join(timeout=2)
            final = stats() if stats is not None else {}
            total = int(final["preemptions"]) if stats is not None else None
            capacity = int(final.get("kv_blocks", 0)) * int(final.get("block_size", 0)) or None
        source = "vLLM scheduler (stat logger)" if stats is not None else "derived from the trace"
        if stats is None:
            samples = counters_from_trace(run)
        result = _preemption_result(params, samples, source, total, run, "")
        result.kv_capacity_tokens = capacity
        return result


def _preemption_result(params: Params, samples: list[CounterSample], source: str, total: int | None,
                       run: RunResult, note: str) -> PreemptionResult:
    return PreemptionResult(
        params["num_requests"], samples, source, total,
        max((s["waiting"] for s in samples), default=0), max((s["running"] for s in samples), default=0),
        run.summary().to_dict(), note or (run.error or ""),
    )



__all__ = ["KvCapacityResult", "PrecisionResult", "PreemptionResult", "counters_from_trace", "dtype_bytes",
           "mamba_state_bytes"]
