"""Load modes: closed loop, open-loop arrivals, client queue time, mixed lengths, the load sweep.

A small in-test engine with a real ``open_session`` (a thread per request, real clock) stands in
for a server here; the same driver runs against a real ``vllm serve`` in test_openai_engine.py.
"""

from __future__ import annotations

import pickle
import statistics
import threading
import time

import pytest

from tui_lab.engines.base import EngineInfo, LoadSession, Request, SamplingParams, supports_sessions
from tui_lab.engines.events import RequestFinished, RequestSubmitted, SessionEvents, TokenEvent, per_token
from tui_lab.engines.scripted import ScriptedEngine
from tui_lab.errors import InvalidInput
from tui_lab.lab import inventory
from tui_lab.lab.experiment import RunContext
from tui_lab.lab.load import LoadPlan, LoadSweepPlan, arrival_offsets, execute_load, output_lengths, run_load_sweep
from tui_lab.metrics import e2e, ttft


class _Session:
    def __init__(self, engine: ThreadedEngine, sampling: SamplingParams) -> None:
        self.engine = engine
        self.sampling = sampling
        self.box = SessionEvents()
        self.cancel = threading.Event()

    def submit(self, request: Request) -> None:
        self.box.open.add(request.request_id)
        threading.Thread(target=self._run, args=(request,), daemon=True).start()

    def _run(self, request: Request) -> None:
        e = self.engine
        with e.lock:
            e.in_flight += 1
            e.peak = max(e.peak, e.in_flight)
        self.box.put(RequestSubmitted(request.request_id, time.perf_counter(), 4))
        time.sleep(e.ttft_s)
        for _ in range(request.budget(self.sampling)):
            if self.cancel.is_set():
                break
            self.box.put(TokenEvent(request.request_id, 1, "x", time.perf_counter()))
            time.sleep(e.step_s)
        with e.lock:
            e.in_flight -= 1
        self.box.put(RequestFinished(request.request_id, time.perf_counter(), "cancelled" if self.cancel.is_set()
                                   else "length"))

    def events(self, timeout: float) -> list:
        return self.box.take(timeout)

    def close(self) -> list:
        self.cancel.set()
        out = []
        deadline = time.monotonic() + 2
        while self.box.open and time.monotonic() < deadline:
            out.extend(self.events(0.05))
        return out


class ThreadedEngine:
    """Each request: a fixed TTFT, then one token every ``step_s`` (no batching limit of its own)."""

    name = "threaded"

    def __init__(self, ttft_s: float = 0.02, step_s: float = 0.005) -> None:
        self.ttft_s, self.step_s = ttft_s, step_s
        self.lock = threading.Lock()
        self.in_flight = 0
        self.peak = 0
        self.sessions = 0

    @property
    def info(self) -> EngineInfo:
        return EngineInfo("threaded", "fake", "cpu", "none")

    def open_session(self, sampling: SamplingParams) -> LoadSession:
        self.sessions += 1
        return _Session(self, sampling)

    def cancel(self) -> None:
        pass


def plan(**changes) -> LoadPlan:
    base = dict(num_requests=8, concurrency=2, sampling=SamplingParams(max_new_tokens=4, ignore_eos=True),
                cold_request=False)
    base.update(changes)
    return LoadPlan(**base)


def _stepped_engine():
    """The scripted engine with continuous batching on its fake clock: every decode step takes 10 ms."""
    from tui_lab.engines.scripted import ScriptedServingEngine, StepModel

    engine = ScriptedServingEngine(timing=StepModel(prefill_per_token=0.0, decode_base=0.01, decode_per_seq=0.0))
    engine.load()
    return engine


def test_closed_loop_keeps_c_in_flight_and_reports_queue_time_apart():
    engine = _stepped_engine()
    sessions = []
    opened = engine.open_session
    engine.open_session = lambda sampling: sessions.append(opened(sampling)) or sessions[-1]
    load = execute_load(engine, plan(concurrency=2), clock=engine.clock)
    assert not load.run.partial and load.run.error is None
    assert sessions[-1].peak == 2 and load.max_in_flight == 2
    assert all(r.trace.output_tokens == 4 for r in load.run.requests)
    # Every request arrives at 0; the later ones waited on the client for a slot, and that wait is not TTFT:
    # two at a time, 4 steps of 10 ms each, so pair k waits 40 ms × k and every TTFT is one step.
    assert load.client_queue == pytest.approx([0.0, 0.0, 0.04, 0.04, 0.08, 0.08, 0.12, 0.12])
    assert [ttft(t) for t in load.traces] == pytest.approx([0.01] * 8)
    assert load.client_queue_s.n == 8
    # A new request goes out as one finishes: request 2 is sent after request 0 or 1 has ended.
    first_end = min(r.trace.last_token_time for r in load.run.requests[:2])
    assert load.run.requests[2].trace.t_send >= first_end
    assert load.window_output_tokens_per_s == pytest.approx(
        32 / (max(t.last_token_time for t in load.traces) - min(t.t_send for t in load.traces)))


def test_open_loop_follows_the_arrival_schedule_and_the_cap():
    engine = ThreadedEngine(ttft_s=0.05, step_s=0.02)
    load = execute_load(engine, plan(concurrency=None, request_rate=40.0, max_concurrency=3, num_requests=10))
    assert load.max_in_flight <= 3 and engine.peak <= 3
    sends = [r.trace.t_send for r in load.run.requests]
    assert sends == sorted(sends)
    # Sent no earlier than scheduled: queue time is never negative, and is there only when the cap bit.
    assert all(q is not None and q >= 0 for q in load.client_queue)
    assert max(load.client_queue) > 0.02  # 40 req/s into 3 slots of ~130 ms: arrivals had to wait


def test_arrivals_poisson_and_gamma_like_vllm_bench():
    a = arrival_offsets(2000, 4.0, 1.0, seed=1)
    assert a == arrival_offsets(2000, 4.0, 1.0, seed=1)  # seeded
    assert a[-1] == pytest.approx(2000 / 4.0)  # rescaled: the last arrival at N/R
    gaps = [y - x for x, y in zip([0.0, *a], a, strict=False)]
    assert statistics.mean(gaps) == pytest.approx(0.25, rel=0.01)
    cv_poisson = statistics.stdev(gaps) / statistics.mean(gaps)
    bursty = arrival_offsets(2000, 4.0, 0.25, seed=1)
    bgaps = [y - x for x, y in zip([0.0, *bursty], bursty, strict=False)]
    cv_bursty = statistics.stdev(bgaps) / statistics.mean(bgaps)
    # Gamma(shape k): coefficient of variation 1/sqrt(k): 1 for Poisson, 2 for burstiness 0.25.
    assert cv_poisson == pytest.approx(1.0, abs=0.1) and cv_bursty == pytest.approx(2.0, abs=0.3)
    assert arrival_offsets(5, None) == [0.0] * 5


def test_mixed_output_lengths_break_lock_step():
    assert output_lengths("16,64,128", 5, 0) == [16, 64, 128, 16, 64]
    drawn = output_lengths("uniform:16:128", 50, 3)
    assert drawn == output_lengths("uniform:16:128", 50, 3) and min(drawn) >= 16 and max(drawn) <= 128
    assert len(set(drawn)) > 10
    engine = ThreadedEngine()
    load = execute_load(engine, plan(output_lens="2,6", num_requests=4))
    assert [r.trace.output_tokens for r in load.run.requests] == [2, 6, 2, 6]
    for bad in ("uniform:9:3", "a,b", "0,4", "uniform:3"):
        with pytest.raises(InvalidInput):
            plan(output_lens=bad).validate()
        with pytest.raises(InvalidInput, match="input lengths"):
            plan(input_lens=bad).validate()
    with pytest.raises(InvalidInput, match="input lengths"):
        inventory.get("load_run").validate({"input_lens": "uniform:64:16"})
    assert inventory.get("load_run").validate({"input_lens": "128"})["input_lens"] == "128"


def test_input_lengths_give_prompts_of_exactly_that_many_tokens():
    """Fixed, cycled and seeded-uniform input lengths, counted the way the engine counts its prompts."""
    from tui_lab.engines.scripted import ScriptedServingEngine
    from tui_lab.lab.prompts import EXACT_NOTE

    engine = ScriptedServingEngine()
    engine.load()
    cycled = execute_load(engine, plan(input_lens="3,7,12", num_requests=5))
    assert [r.trace.prompt_tokens for r in cycled.run.requests] == [3, 7, 12, 3, 7]
    assert cycled.input_note == EXACT_NOTE and cycled.to_dict()["plan"]["input_lens"] == "3,7,12"
    assert len({r.prompt.split()[0] for r in cycled.run.requests}) > 1  # not one prompt's prefix for all
    fixed = execute_load(engine, plan(input_lens="40", num_requests=3))
    assert [r.trace.prompt_tokens for r in fixed.run.requests] == [40, 40, 40]
    drawn = [execute_load(engine, plan(input_lens="uniform:5:60", num_requests=12, seed=4)) for _ in range(2)]
    counts = [r.trace.prompt_tokens for r in drawn[0].run.requests]
    assert counts == [r.trace.prompt_tokens for r in drawn[1].run.requests]  # seeded
    assert min(counts) >= 5 and max(counts) <= 60 and len(set(counts)) > 3
    plain = execute_load(engine, plan(num_requests=2))
    assert plain.input_note == "" and all(r.trace.prompt_tokens < 20 for r in plain.run.requests)


def test_input_lengths_without_a_local_tokenizer_are_approximate_and_say_so():
    from tui_lab.lab.prompts import APPROXIMATE_NOTE, COMMON_WORDS

    load = execute_load(ThreadedEngine(), plan(input_lens="8,20", num_requests=4))
    assert load.input_note == APPROXIMATE_NOTE and "approximate" in load.to_dict()["input_note"]
    words = [r.prompt.split() for r in load.run.requests]
    assert [len(w) for w in words] == [7, 19, 7, 19]  # a BOS plus one token per common word
    assert all(w in COMMON_WORDS for ws in words for w in ws)
    assert words[0] != words[2]


def test_prompt_of_tokens_is_exact_for_a_subword_tokenizer():
    """A tokenizer of letter pairs with a BOS and an EOS: a cut inside a word decodes to a shorter word."""
    from tui_lab.lab.prompts import input_prompts, prompt_of_tokens

    class Letters:
        """Decodes by letter pairs back to text: a cut inside a word yields a shorter word."""

        def __init__(self):
            self.table = {}

        def encode(self, text):
            ids = [0]
            for w, word in enumerate(text.split()):
                for i in range(0, len(word), 2):
                    piece = (" " if i == 0 and w else "") + word[i:i + 2]
                    ids.append(self.table.setdefault(piece, len(self.table) + 10))
            return ids + [1]

        def decode(self, ids):
            back = {v: k for k, v in self.table.items()}
            return "".join(back[i] for i in ids if i >= 10)

    tok = Letters()
    for n in (3, 4, 9, 31, 200):
        text = prompt_of_tokens(n, tok, "Explain to a curious teenager how the water cycle works " * 40)
        assert len(tok.encode(text)) == n
    prompts, _ = input_prompts([5, 17, 64, 301], tok, seed=2)
    assert [len(tok.encode(p)) for p in prompts] == [5, 17, 64, 301]
    with pytest.raises(InvalidInput, match="no room for text"):
        prompt_of_tokens(2, tok, "some words here")


@pytest.mark.real_model
def test_input_prompts_are_exact_for_the_embedded_gemma_tokenizer(embedded_checkpoint):
    from transformers import AutoTokenizer

    from tui_lab.lab.prompts import EXACT_NOTE, input_prompts

    tok = AutoTokenizer.from_pretrained(embedded_checkpoint)
    wanted = [2, 3, 16, 64, 128, 513, 2048]
    prompts, note = input_prompts(wanted, tok, seed=1)
    assert [len(tok.encode(p)) for p in prompts] == wanted and note == EXACT_NOTE
    assert tok.encode(prompts[3])[0] == tok.bos_token_id
    again, _ = input_prompts(wanted, tok, seed=1)
    assert again == prompts and len({p[:20] for p in prompts[2:]}) == len(prompts[2:])


def test_bad_plans_are_one_line_errors():
    for changes in (dict(concurrency=None), dict(request_rate=1.0), dict(num_requests=0),
                    dict(concurrency=None, request_rate=-1.0), dict(concurrency=None, request_rate=1.0, burstiness=0),
                    dict(burstiness=2.0), dict(max_concurrency=3)):
        with pytest.raises(InvalidInput):
            plan(**changes).validate()


def test_static_batch_engine_is_refused_clearly():
    engine = ScriptedEngine()
    engine.load()
    assert not supports_sessions(engine)
    with pytest.raises(InvalidInput, match="static batches.*cannot add a request"):
        execute_load(engine, plan())


def test_stop_mid_load_keeps_what_was_measured():
    engine = _stepped_engine()
    stop = threading.Event()
    seen = []

    def sink(events):
        seen.extend(events)
        if sum(isinstance(e, TokenEvent) for e in per_token(seen)) >= 3:
            stop.set()

    load = execute_load(engine, plan(num_requests=20, sampling=SamplingParams(max_new_tokens=50)), stop=stop,
                        sink=sink, flush_interval=0, clock=engine.clock)
    assert load.run.partial
    assert sum(r.trace.output_tokens for r in load.run.requests) >= 3
    assert all(q is None for q in load.client_queue[4:])  # never sent


def _interrupt_after(n_tokens: int):
    """A sink that raises KeyboardInterrupt (Ctrl-C) once ``n_tokens`` tokens have been passed on."""
    seen = [0, False]

    def sink(events):
        seen[0] += sum(e.n_tokens for e in events if isinstance(e, TokenEvent))
        if seen[0] >= n_tokens and not seen[1]:
            seen[1] = True
            raise KeyboardInterrupt

    return sink


def test_ctrl_c_counts_what_was_sent_and_keeps_cut_requests_out_of_latency():
    """Closed loop of 2 on the scripted engine's step clock: Ctrl-C when the third request has two tokens."""
    from tui_lab.engines.scripted import ScriptedServingEngine

    engine = ScriptedServingEngine()
    engine.load()
    # q0 and q1 take 5 steps (10 tokens); q2 and q3 start at step 6; after step 7 they hold 2 tokens each.
    load = execute_load(engine, plan(num_requests=8, concurrency=2, sampling=SamplingParams(max_new_tokens=5)),
                        sink=_interrupt_after(14), flush_interval=0, clock=engine.clock)
    assert load.run.error == "interrupted" and load.run.partial
    assert [r.finish_reason for r in load.run.requests[:4]] == ["length", "length", "cancelled", "cancelled"]
    assert all(r.finish_reason is None for r in load.run.requests[4:])  # never sent
    summary = load.run.summary()  # what the CLI table and the app's view show
    assert summary.requests == 4 and summary.e2e_s.n == 2  # sent, and not cut
    assert summary.cut == 2
    assert (load.sent, load.cut) == (4, 2) and load.summary() == summary
    # Latency covers the two finished requests only; the cut ones' tokens still count in the output.
    assert summary.e2e_s.n == summary.tpot_s.n == summary.ttft_s.n == 2
    assert summary.output_tokens == 14
    finished = [e2e(r.trace) for r in load.run.requests[:2]]
    assert summary.e2e_s.mean == pytest.approx(sum(finished) / 2)
    doc = load.to_dict()
    assert (doc["sent"], doc["cut"], doc["summary"]["requests"], doc["summary"]["cut"]) == (4, 2, 4, 2)
    assert load.client_queue_s.n == 4


def test_load_sweep_point_leaves_cut_requests_out_of_latency():
    from tui_lab.engines.scripted import ScriptedServingEngine

    class Counting(ScriptedServingEngine):
        def open_session(self, sampling):
            self.sessions.append(super().open_session(sampling))
            return self.sessions[-1]

    engine = Counting()
    engine.sessions = []
    engine.load()

    class StopAtStep7:
        """Stop once the load's own session (the second: the first is the cold request) ran 7 decode steps."""

        def is_set(self) -> bool:
            return len(engine.sessions) >= 2 and engine.sessions[-1].steps >= 7

    sweep = LoadSweepPlan(axis="concurrency", values=(2,), base=plan(num_requests=8,
                          sampling=SamplingParams(max_new_tokens=5)), latency_budget=None)
    result = run_load_sweep(engine, sweep, stop=StopAtStep7())
    point = result.points[0]
    assert result.partial and point.point.status == "partial"
    assert point.point.e2e_s.n == 2 and point.point.runs[0].requests == 4


def test_load_sweep_knee_budget_and_cold_request():
    engine = _stepped_engine()
    sweep = LoadSweepPlan(axis="concurrency", values=(1, 2, 4), base=plan(num_requests=8),
                          latency_budget={"ttft_p50": 1.0})
    seen = []
    result = run_load_sweep(engine, sweep, on_point=seen.append, clock=engine.clock)
    assert [p.label for p in seen] == ["concurrency 1", "concurrency 2", "concurrency 4"]
    assert result.cold is not None and result.cold.output_tokens == 4
    assert all(p.complete and p.window_output_tokens_per_s for p in result.points)
    # A step costs the same at any batch here: throughput doubles with the concurrency (32 tokens in 32, 16, 8
    # steps of 10 ms).
    tps = [p.window_output_tokens_per_s for p in result.points]
    assert tps == pytest.approx([100.0, 200.0, 400.0])
    assert result.knee is not None and "window throughput" in result.knee_note()
    assert result.budget_pick is not None
    doc = result.to_dict()
    point = doc["points"][0]
    assert {"window_output_tokens_per_s", "mean_run_output_tokens_per_s", "client_queue_s"} <= set(point)
    assert doc["knee_throughput"] == "window_output_tokens_per_s"
    text = _render(result)
    assert "window tok/s" in text and "mean/run tok/s" in text and "concurrency 4" in text and "knee" in text
    assert "window output throughput" in _render(result.points[0].loads[0])
    # Results cross the host → UI process boundary: they must pickle.
    again = pickle.loads(pickle.dumps(result))
    assert again.points[0].window_output_tokens_per_s == result.points[0].window_output_tokens_per_s


def _render(result) -> str:
    from tui_lab.views import render, to_text

    return to_text(render(result, 120), 120)


def test_experiment_objects_are_in_the_inventory_and_run():
    assert {"load_run", "load_sweep"} <= set(inventory.names())
    exp = inventory.get("load_run")
    params = exp.validate({"mode": "rate", "request_rate": 50.0, "num_requests": 4, "max_new_tokens": 3})
    reports = []
    result = exp.run(params, RunContext(engine=ThreadedEngine(), progress=reports.append))
    assert not result.run.partial and len(result.traces) == 4 and result.cold is not None
    assert reports and reports[0].new_run
    with pytest.raises(InvalidInput):
        exp.validate({"mode": "nope"})
    with pytest.raises(InvalidInput):
        exp.validate({"no_such_key": 1})
    sweep = inventory.get("load_sweep")
    partials = []
    res = sweep.run(sweep.validate({"concurrencies": "1,2", "num_requests": 4, "max_new_tokens": 3}),
                    RunContext(engine=ThreadedEngine(), partial=partials.append))
    assert len(res.points) == 2 and len(partials) == 2


def test_a_load_says_where_the_time_to_a_first_token_went() -> None:
    """Requests held back by the client's cap wait before they are sent: that wait is part of what the user waits
    for a first token, and a figure that starts at the send leaves it out. The load splits it out and names what
    the engine does not let the lab split (a server seen from its client: queue + prefill as one span)."""
    from tui_lab.views import render, to_text

    exp = inventory.get("load_run")
    params = exp.validate({"mode": "rate", "request_rate": 1000.0, "max_concurrency": 1, "num_requests": 4,
                           "max_new_tokens": 3})
    result = exp.run(params, RunContext(engine=ThreadedEngine(ttft_s=0.05, step_s=0.01), engine_name="openai"))
    split = result.ttft_split
    assert split["n"] == 4
    assert set(split) >= {"client_queue_s", "queue_and_prefill_s", "arrival_to_first_s", "client_queue_pct"}
    assert "engine_queue_s" not in split and "prefill_s" not in split  # not seen from a client
    assert split["queue_and_prefill_s"] == pytest.approx(0.05, abs=0.03)
    assert split["client_queue_pct"] > 40  # three of four requests waited for the one slot, 80+ ms each
    assert result.to_dict()["ttft_split"] == split
    text = " ".join(to_text(render(result, 200), 200).split())
    assert "arrival → first token, medians: client queue" in text and "queue + prefill" in text
