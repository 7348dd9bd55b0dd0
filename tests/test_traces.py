"""Traces: built from runs, split into phases that add up, stored compactly, exported for Perfetto, replayed.

Every timing here comes from an injected clock (the scripted engine's ``FakeClock``; the replay engine with a
clock and a sleep that only move it), so the tests assert events, counts and relations, never wall time.
"""

from __future__ import annotations

import gzip
import json
import math
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tui_lab.cli import main
from tui_lab.engines import create_engine
from tui_lab.engines.base import EngineInfo, Request, SamplingParams
from tui_lab.engines.events import RequestFinished, RequestSubmitted, SessionEvents, TokenEvent, TokenStep
from tui_lab.engines.replay import ReplayEngine
from tui_lab.engines.scripted import FakeClock, ScriptedEngine
from tui_lab.errors import InvalidInput
from tui_lab.lab import trace as T
from tui_lab.lab.experiment import RunContext
from tui_lab.lab.load import LoadPlan, execute_load
from tui_lab.lab.run import RunRecorder, RunResult, execute_run
from tui_lab.lab.runner import run_experiment
from tui_lab.lab.trace_export import (
    TRACE_EVENT_SCHEMA,
    check_chrome_trace,
    read_chrome_trace,
    slices_by_track,
    track_names,
    write_chrome_trace,
)
from tui_lab.metrics import itl_samples
from tui_lab.traces import find as traces_find

SCRIPTED = ["--engine", "scripted", "-q"]


def scripted_run(batch: int = 4, tokens: int = 5, eos_after: dict[int, int] | None = None) -> tuple[
        ScriptedEngine, RunResult]:
    engine = ScriptedEngine(clock=FakeClock(), eos_after=eos_after)
    engine.load()
    requests = [Request(f"r{i}", "the quick brown fox") for i in range(batch)]
    return engine, execute_run(engine, requests, SamplingParams(max_new_tokens=tokens))


def assert_phases_add_up(run: T.TraceRun) -> None:
    for i in range(len(run.requests)):
        ph = run.phases(i)
        assert ph.spans, ph
        assert math.isclose(sum(p.seconds for p in ph.spans), ph.e2e_from_arrival, abs_tol=1e-9)
        # consecutive: each span starts where the previous one ended
        for a, b in zip(ph.spans, ph.spans[1:], strict=False):
            assert a.end == b.start
        assert ph.spans[0].start == ph.arrival and ph.spans[-1].end == ph.last_token
        assert {p.name for p in ph.spans} <= set(T.PHASES) | {T.NOT_SPLIT}


# ------------------------------------------------------------------------------------------- building


def test_a_scripted_run_becomes_a_step_table_and_phases_that_add_up() -> None:
    engine, res = scripted_run(batch=4, tokens=5, eos_after={1: 3})
    run = T.run_from_result(res, "batch 4", engine)
    assert run.source == "scripted" and run.kind == "batch" and run.batch_size == 4
    st, rq = run.steps, run.requests
    # One step per decode step: the prefill step gives every request its first token, then request 1 ends.
    assert len(st) == 5
    assert st.prefill == [True, False, False, False, False]
    assert st.n_requests == [4, 4, 4, 3, 3] and st.n_tokens == st.n_requests
    for k in range(1, len(st)):
        assert st.start[k] == st.end[k - 1]  # back to back: each step starts when the previous one ended
    assert st.start[0] == min(rq.send)
    # KV tokens held: prompt + tokens so far, summed over the step's requests.
    prompt = rq.prompt_tokens[0]
    assert st.kv_tokens[0] == 4 * (prompt + 1) and st.kv_tokens[3] == 3 * (prompt + 4)
    assert all(math.isnan(u) for u in st.kv_usage)  # the scripted engine reports no KV-cache use
    assert [m for m in st.members(rq)] == [[0, 1, 2, 3]] * 3 + [[0, 2, 3]] * 2
    assert [rq.output_tokens(i) for i in range(4)] == [5, 3, 5, 5]
    assert rq.reasons == ["length", "eos", "length", "length"]
    assert all(not math.isnan(t) for t in rq.finish)
    assert_phases_add_up(run)
    ph = run.phases(0)
    # In process: nothing travels between host and engine, no queue; TTFT is prefill, the rest decode.
    assert ph.remainder == 0 and ph.seconds("engine queue") == 0 and ph.seconds("client queue") == 0
    assert math.isclose(ph.seconds("prefill"), rq.first_token(0) - rq.send[0])
    assert math.isclose(ph.seconds("decode"), rq.last_token(0) - rq.first_token(0))
    assert run.unseen == ["the engine's own KV-cache use (KV tokens held are computed from the tokens instead)"]


def test_the_transformers_engines_tokenize_time_is_named_not_hidden() -> None:
    _, res = scripted_run(batch=2, tokens=3)
    for rr in res.requests:
        rr.engine_times = {"tokenize_s": 0.001, "prefill_s": 0.0, "decode_s": 0.0}
    run = T.run_from_result(res, "hf", source="transformers")
    ph = run.phases(0)
    assert math.isclose(ph.seconds("to engine"), 0.001) and math.isclose(ph.remainder, 0.001)
    assert math.isclose(run.steps.start[0], run.requests.send[0] + 0.001)  # the prefill step starts after it
    assert_phases_add_up(run)


def _vllm_like(offset: float, broken: bool = False) -> RunResult:
    """Two requests as vLLM reports them: host send/token times, engine stamps on a clock ``offset`` behind."""
    recorder = RunRecorder([Request("a", "x"), Request("b", "y")], SamplingParams(max_new_tokens=3))
    host = 500.0
    for rid in ("a", "b"):
        recorder.add(RequestSubmitted(rid, host, 4))
    for k, t in enumerate((host + 0.030, host + 0.040, host + 0.050)):
        recorder.add(TokenStep(["a", "b"] if k < 2 else ["a"], [1, 2][: 2 if k < 2 else 1],
                               ["x", "y"][: 2 if k < 2 else 1], t))
    engine = {"a": (0.001, 0.005, 0.029, 0.049), "b": (0.001, 0.010, 0.029, 0.039)}
    ends = {"a": host + 0.050, "b": host + 0.040}
    for rid, (q, s, f, last) in engine.items():
        stamps = {"queued_ts": host + q - offset, "scheduled_ts": host + s - offset,
                  "first_token_ts": host + f - offset + (0.5 if broken else 0.0),
                  "last_token_ts": host + last - offset, "arrival_wall_s": 1.7e9 + host + 0.0005,
                  "wall_minus_monotonic_s": 1.7e9}
        times = {"queued_s": s - q, "prefill_s": f - s, "decode_s": last - f, **stamps}
        recorder.add(RequestFinished(rid, ends[rid], "length", engine_times=times))
    return recorder.finish(0.05)


def test_vllm_stamps_on_the_hosts_clock_are_checked_and_used_as_they_are() -> None:
    run = T.run_from_result(_vllm_like(offset=0.0), "vllm", source="vllm")
    assert run.notes == ["engine stamps on the host's clock (CLOCK_MONOTONIC), checked against the host's send "
                         "and token times"]
    rq = run.requests
    assert math.isclose(rq.queued[0], 500.001) and math.isclose(rq.scheduled[1], 500.010)
    # The wall-clock arrival, converted with the wall − monotonic offset sampled beside it.
    assert math.isclose(rq.engine_arrival[0], 500.0005)
    ph = run.phases(1)
    assert math.isclose(ph.seconds("to engine"), 0.001) and math.isclose(ph.seconds("engine queue"), 0.009)
    assert math.isclose(ph.seconds("prefill"), 0.019) and math.isclose(ph.seconds("decode"), 0.010)
    assert math.isclose(ph.seconds("from engine"), 0.001)  # the host had the last token 1 ms after the engine
    assert_phases_add_up(run)
    # Steps are the reader's wake-ups; the first carries the prefill and starts when the later request was
    # scheduled (the engine idled before).
    assert run.steps.n_requests == [2, 2, 1] and run.steps.prefill == [True, False, False]
    assert math.isclose(run.steps.start[0], 500.010)


def test_vllm_stamps_from_another_clock_get_a_measured_offset_or_are_dropped() -> None:
    run = T.run_from_result(_vllm_like(offset=1000.0), "vllm", source="vllm")
    assert run.notes and run.notes[0].startswith("engine clock offset estimated at +1000000.")
    rq = run.requests
    assert rq.send[0] <= rq.queued[0] <= rq.first_token(0)  # placed between the host's own times
    assert abs(rq.first_engine[0] - rq.first_token(0)) < 0.002
    assert_phases_add_up(run)
    broken = T.run_from_result(_vllm_like(offset=0.0, broken=True), "vllm", source="vllm")
    assert broken.notes[0].startswith("engine stamps dropped")
    assert broken.phases(0).as_dict().keys() == {"client queue", T.NOT_SPLIT, "decode"}
    assert_phases_add_up(broken)


def test_a_vllm_arrival_before_the_send_is_kept_and_explained() -> None:
    res = _vllm_like(offset=0.0)
    for rr in res.requests:
        assert rr.engine_times is not None
        rr.engine_times["arrival_wall_s"] = 1.7e9 + 499.990  # rendered 10 ms before the lab's send
    run = T.run_from_result(res, "vllm", source="vllm")
    assert run.requests.engine_arrival == pytest.approx([499.990, 499.990])
    assert any("renders the prompt" in n for n in run.notes)
    assert_phases_add_up(run)  # an instant, not a phase: the phases still start at the send
    for rr in res.requests:
        assert rr.engine_times is not None
        rr.engine_times["arrival_wall_s"] = 1.7e9 + 500.5  # after the core queued it: a wall clock that moved
    moved = T.run_from_result(res, "vllm", source="vllm")
    assert all(math.isnan(a) for a in moved.requests.engine_arrival)
    assert any("wall clock moved" in n for n in moved.notes)


def test_engine_clock_interval_rules() -> None:
    nan = T.NAN
    same = T.engine_clock([1.0], [1.001], [1.05], [1.049], [1.2], [1.199])
    assert same.usable and same.offset == 0.0
    ahead = T.engine_clock([1.0], [11.001], [1.05], [11.049], [1.2], [11.199])
    assert ahead.usable and -10.001 <= ahead.offset <= -9.999
    nothing = T.engine_clock([1.0], [nan], [1.05], [nan], [1.2], [nan])
    assert not nothing.usable


def test_vllm_engine_stamps_and_scheduler_samples_from_fake_stats() -> None:
    from tui_lab.engines.vllm_engine import SchedulerCounters, engine_stamps

    wall = time.time()
    metrics = SimpleNamespace(arrival_time=wall, queued_ts=5.0, scheduled_ts=5.5, first_token_ts=6.0,
                              last_token_ts=7.0, num_preemptions=1)
    stamps = engine_stamps(metrics)
    assert stamps["queued_ts"] == 5.0 and stamps["last_token_ts"] == 7.0 and stamps["preemptions"] == 1.0
    # wall − monotonic measured here: the arrival lands on the monotonic clock now.
    assert abs((stamps["arrival_wall_s"] - stamps["wall_minus_monotonic_s"]) - time.monotonic()) < 1.0
    assert engine_stamps(None) == {}
    counters = SchedulerCounters()
    t0 = time.monotonic()
    for k in range(3):
        counters.record(SimpleNamespace(num_running_reqs=k + 1, num_waiting_reqs=2 - k, kv_cache_usage=0.1 * k),
                        None)
    got = counters.samples(t0, time.monotonic())
    assert got["running"] == [1.0, 2.0, 3.0] and got["waiting"] == [2.0, 1.0, 0.0]
    assert got["kv_usage"] == pytest.approx([0.0, 0.1, 0.2]) and got["t"] == sorted(got["t"])
    assert counters.samples(0.0, t0 - 1) == {"t": [], "running": [], "waiting": [], "kv_usage": []}


def test_samples_give_the_steps_kv_use() -> None:
    engine, res = scripted_run(batch=2, tokens=3)
    ends = sorted({t for r in res.requests for t in r.trace.event_times})
    samples = {"t": [ends[0] - 1e-3, ends[1] - 1e-3], "running": [2, 2], "waiting": [0, 0], "kv_usage": [0.25, 0.5]}
    run = T.run_from_result(res, "x", engine, samples=samples)
    assert run.steps.kv_usage == [0.25, 0.5, 0.5]
    assert not any("KV-cache use" in u for u in run.unseen)


def test_a_server_seen_from_its_client_says_what_it_cannot_see() -> None:
    recorder = RunRecorder([Request("a", "x")], SamplingParams(max_new_tokens=3))
    recorder.add(RequestSubmitted("a", 10.0, 3))
    for k, t in enumerate((10.2, 10.25, 10.3)):
        recorder.add(TokenEvent("a", k, "w", t))
    recorder.add(RequestFinished("a", 10.3, "length"))
    run = T.run_from_result(recorder.finish(0.3), "server", source="openai")
    ph = run.phases(0)
    assert ph.as_dict() == pytest.approx({"client queue": 0.0, T.NOT_SPLIT: 0.2, "decode": 0.1})
    assert len(run.steps) == 0 and run.requests.tok_step == [-1, -1, -1]
    assert any("queue and prefill are one span" in u for u in run.unseen)
    assert any("decode steps" in u for u in run.unseen)
    assert_phases_add_up(run)


class _Session:
    """A server-like load session: each request gets a token every 5 ms on the real clock, in its own thread."""

    def __init__(self) -> None:
        self.box = SessionEvents()

    def submit(self, request: Request) -> None:
        self.box.open.add(request.request_id)
        threading.Thread(target=self._run, args=(request,), daemon=True).start()

    def _run(self, request: Request) -> None:
        self.box.put(RequestSubmitted(request.request_id, time.perf_counter(), 3))
        for k in range(request.max_new_tokens or 2):
            time.sleep(0.005)
            self.box.put(TokenEvent(request.request_id, k, "x", time.perf_counter()))
        self.box.put(RequestFinished(request.request_id, time.perf_counter(), "length"))

    def events(self, timeout: float) -> list:
        return self.box.take(timeout)

    def close(self) -> list:
        out: list = []
        while self.box.open:
            out.extend(self.events(0.05))
        return out


class _ServerEngine:
    name = "openai"

    @property
    def info(self) -> EngineInfo:
        return EngineInfo("openai", "fake", "server", "none")

    def open_session(self, sampling: SamplingParams) -> _Session:
        return _Session()

    def cancel(self) -> None:
        pass


def test_a_load_run_has_client_queue_time_from_its_arrivals() -> None:
    plan = LoadPlan(num_requests=6, concurrency=2, sampling=SamplingParams(max_new_tokens=2, ignore_eos=True),
                    cold_request=False)
    load = execute_load(_ServerEngine(), plan)
    rec = T.Recording("load_run")
    rec.add_result(load, _ServerEngine())
    [run] = rec.runs
    assert run.kind == "load" and run.load is not None and run.load["concurrency"] == 2
    rq = run.requests
    for i in range(len(rq)):
        ph = run.phases(i)
        assert math.isclose(ph.seconds("client queue"), load.client_queue[i], abs_tol=1e-6)
        assert rq.arrival[i] <= rq.send[i]
    # Arrivals keep the plan's schedule: all at the start in a closed loop.
    assert max(rq.arrival) - min(rq.arrival) < 1e-6
    assert max(ph.seconds("client queue") for ph in (run.phases(i) for i in range(len(rq)))) > 0
    assert_phases_add_up(run)


# ------------------------------------------------------------------------------------------- recording


def test_an_experiment_records_every_run_labelled_with_warm_ups_flagged() -> None:
    engine = ScriptedEngine(clock=FakeClock())
    engine.load()
    ctx = RunContext(engine=engine, engine_name="scripted")
    outcome = run_experiment("batch_sweep", {"batch_sizes": [1, 2], "max_new_tokens": 3, "runs": 2, "warmup": 1},
                             ctx)
    trace = outcome.trace
    assert trace is not None and outcome.result is not None
    assert [r.label for r in trace.runs] == ["batch 1 · warm-up", "batch 1 · run 1/2", "batch 1 · run 2/2",
                                             "batch 2 · warm-up", "batch 2 · run 1/2", "batch 2 · run 2/2"]
    assert [r.warmup for r in trace.runs] == [True, False, False, True, False, False]
    assert [r.batch_size for r in trace.runs] == [1, 1, 1, 2, 2, 2]
    assert trace.meta["experiment"] == "batch_sweep" and trace.meta["params"]["batch_sizes"] == [1, 2]
    assert trace.meta["machine"]["card"] and trace.meta["engine"] == "scripted"
    assert ctx.progress is None  # the recording let go of the context's progress line


def test_recording_off_keeps_nothing_and_a_record_dir_gets_a_file(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    engine = ScriptedEngine(clock=FakeClock())
    engine.load()
    monkeypatch.setenv(T.TRACE_ENV, "0")
    assert run_experiment("generate", {"batch_size": 2, "max_new_tokens": 2},
                          RunContext(engine=engine, engine_name="scripted")).trace is None
    forced = run_experiment("generate", {"batch_size": 2, "max_new_tokens": 2},
                            RunContext(engine=engine, engine_name="scripted", record=True))
    assert forced.trace is not None and len(forced.trace.runs) == 1
    monkeypatch.delenv(T.TRACE_ENV)
    monkeypatch.setenv(T.RECORD_DIR_ENV, str(tmp_path))
    run_experiment("generate", {"batch_size": 2, "max_new_tokens": 2}, RunContext(engine=engine,
                                                                                 engine_name="scripted"))
    [written] = list(tmp_path.glob("generate-*" + T.SUFFIX))
    assert T.read_trace(written).runs[0].batch_size == 2


# ------------------------------------------------------------------------------------------- files


def test_a_trace_file_reads_back_the_same_run() -> None:
    engine, res = scripted_run(batch=3, tokens=4, eos_after={2: 2})
    run = T.run_from_result(res, "x", engine)
    back = T.decode(json.loads(gzip.decompress(T.to_bytes(T.Trace({"k": 1}, [run])))))
    [got] = back.runs
    a, b = run.requests, got.requests
    for name in ("ids", "prompts", "prompt_tokens", "budgets", "reasons", "starts", "tok_n", "tok_id", "tok_text",
                 "tok_step"):
        assert getattr(a, name) == getattr(b, name), name
    assert b.tok_t == pytest.approx(a.tok_t, abs=1e-9) and b.send == pytest.approx(a.send, abs=1e-9)
    assert got.steps.end == pytest.approx(run.steps.end, abs=1e-9)
    assert got.steps.start == pytest.approx(run.steps.start, abs=1e-9)
    assert got.steps.n_requests == run.steps.n_requests and got.steps.prefill == run.steps.prefill
    assert got.steps.kv_tokens == run.steps.kv_tokens and back.meta == {"k": 1}
    with pytest.raises(ValueError, match="not an inference-lab-trace"):
        T.decode({"format": "other"})


def test_a_1024_by_128_run_stays_under_two_megabytes() -> None:
    """The shipped traces' budget: steps + per-request step deltas + ids + texts, gzip-compressed."""
    import random

    rng = random.Random(0)
    vocab = [("▁" if rng.random() < 0.5 else "") + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz")
                                                           for _ in range(rng.randint(1, 9))) for _ in range(50_000)]
    batch, tokens = 1024, 128
    recorder = RunRecorder([Request(f"r{i}", f"prompt {i}") for i in range(batch)],
                           SamplingParams(max_new_tokens=tokens))
    ids = [f"r{i}" for i in range(batch)]
    t = 1000.0
    for rid in ids:
        recorder.add(RequestSubmitted(rid, t, 12))
    for _ in range(tokens):
        t += 0.004 + rng.random() * 1e-4
        picks = [rng.randrange(len(vocab)) for _ in range(batch)]
        recorder.add(TokenStep(ids, picks, [vocab[p] for p in picks], t))
    for rid in ids:
        recorder.add(RequestFinished(rid, t, "length"))
    run = T.run_from_result(recorder.finish(0.5), "big", source="transformers")
    size = len(T.to_bytes(T.Trace({}, [run])))
    assert len(run.steps) == tokens and size <= 2_000_000, size


# ------------------------------------------------------------------------------------------- export


def _big_trace() -> T.Trace:
    engine = ScriptedEngine(clock=FakeClock(), eos_after={0: 2})
    engine.load()
    ctx = RunContext(engine=engine, engine_name="scripted")
    outcome = run_experiment("batch_sweep", {"batch_sizes": [1, 3], "max_new_tokens": 4, "runs": 1, "warmup": 0,
                                             "ignore_eos": False}, ctx)
    assert outcome.trace is not None
    vllm = T.run_from_result(_vllm_like(0.0), "vllm run", source="vllm",
                             samples={"t": [500.02, 500.045], "running": [2, 1], "waiting": [0, 0],
                                      "kv_usage": [0.3, 0.2]})
    server = T.run_from_result(_vllm_like(0.0), "server run", source="openai")
    outcome.trace.runs += [vllm, server]
    return outcome.trace


def test_the_chrome_export_passes_the_schema_and_perfettos_rules_and_reads_back(tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    trace = _big_trace()
    path = write_chrome_trace(tmp_path / "t.json.gz", trace)
    doc = read_chrome_trace(path)
    jsonschema.validators.validator_for(TRACE_EVENT_SCHEMA).check_schema(TRACE_EVENT_SCHEMA)
    jsonschema.validate(doc, TRACE_EVENT_SCHEMA)
    assert check_chrome_trace(doc) == []
    names = track_names(doc)
    tracks = slices_by_track(doc)
    for pid, run in enumerate(trace.runs, start=1):
        assert names[(pid, 0)].startswith(f"run {pid}: {run.label}")
        if len(run.steps):
            assert names[(pid, 1)] == "engine steps"
            steps = tracks[(pid, 1)]
            assert len(steps) == len(run.steps)
            assert [s["name"] == "prefill" for s in steps] == run.steps.prefill
            assert [s["args"]["requests"] for s in steps] == run.steps.n_requests
        else:
            assert (pid, 1) not in tracks
        for i in range(len(run.requests)):
            tid = 10 + i
            assert names[(pid, tid)] == run.requests.ids[i]
            spans = [e for e in doc["traceEvents"] if e["ph"] == "X" and e["pid"] == pid and e["tid"] == tid]
            expect = [p for p in run.phases(i).spans if p.seconds != 0]  # empty phases are left out
            assert [s["name"] for s in spans] == [p.name for p in expect]
            assert [s["ts"] + s["dur"] for s in spans[:-1]] == [s["ts"] for s in spans[1:]]  # back to back
            total_us = sum(s["dur"] for s in spans)
            assert abs(total_us - run.phases(i).e2e_from_arrival * 1e6) <= len(spans)  # µs rounding only
            assert len(tracks[(pid, tid)]) == len(spans)
    counters = {ev["name"] for ev in doc["traceEvents"] if ev["ph"] == "C"}
    assert {"batch", "KV tokens held", "KV cache use (engine)", "scheduler"} <= counters
    assert doc["otherData"]["recorded_on"].startswith(trace.meta["machine"]["card"])


def test_the_export_checker_refuses_what_perfetto_would() -> None:
    def ev(**kw: object) -> dict:
        return {"pid": 1, "tid": 1, "name": "s", "cat": "c", **kw}

    assert check_chrome_trace({"traceEvents": [ev(ph="X", ts=0, dur=5), ev(ph="X", ts=5, dur=5),
                                               ev(ph="X", ts=1, dur=2)]}) == []
    bad = {
        "overlap": [ev(ph="X", ts=0, dur=5), ev(ph="X", ts=3, dur=5)],
        "negative": [ev(ph="X", ts=0, dur=-1)],
        "unmatched": [ev(ph="E", ts=3)],
        "open": [ev(ph="B", ts=3)],
        "string pid": [{**ev(ph="X", ts=0, dur=1), "pid": "p"}],
        "counter": [ev(ph="C", ts=0, args={"v": "x"})],
        "no ts": [ev(ph="X", dur=1)],
    }
    for what, events in bad.items():
        assert check_chrome_trace({"traceEvents": events}), what


# ------------------------------------------------------------------------------------------- replay


def _recorded(tmp_path: Path, batch_sizes: tuple[int, ...] = (1, 2, 4), tokens: int = 5) -> tuple[Path, T.Trace]:
    engine = ScriptedEngine(clock=FakeClock(), eos_after={1: 2})
    engine.load()
    ctx = RunContext(engine=engine, engine_name="scripted")
    outcome = run_experiment("batch_sweep", {"batch_sizes": list(batch_sizes), "max_new_tokens": tokens,
                                             "runs": 1, "warmup": 0, "ignore_eos": False}, ctx)
    assert outcome.trace is not None
    path = T.write_trace(tmp_path / "rec.trace.json.gz", outcome.trace)
    return path, outcome.trace


def _replay(path: Path, **kw: object) -> tuple[ReplayEngine, FakeClock]:
    clock = FakeClock(start=5.0)
    engine = ReplayEngine(trace=str(path), clock=clock, sleep=clock.advance, **kw)  # type: ignore[arg-type]
    engine.load()
    return engine, clock


def test_replay_through_execute_run_gives_the_recorded_tokens_and_gaps(tmp_path: Path) -> None:
    path, trace = _recorded(tmp_path)
    engine, clock = _replay(path)
    info = engine.info
    assert info.engine == "replay" and info.device.startswith(f"replay of {trace.meta['machine']['card']}, ")
    assert any("not this machine's" in n for n in info.notes)
    for run in trace.runs:
        n = run.batch_size
        seen: list = []
        res = execute_run(engine, [Request(f"q{i}", "any prompt") for i in range(n)],
                          SamplingParams(max_new_tokens=5), sink=seen.extend, flush_interval=0.0)
        assert [r.trace.output_tokens for r in res.requests] == [run.requests.output_tokens(i) for i in range(n)]
        assert [r.finish_reason for r in res.requests] == run.requests.reasons
        assert [r.texts for r in res.requests] == [run.requests.tok_text[run.requests.token_slice(i)]
                                                   for i in range(n)]
        recorded_gaps = [b - a for i in range(n) for a, b in
                         zip(run.requests.tok_t[run.requests.token_slice(i)],
                             run.requests.tok_t[run.requests.token_slice(i)][1:], strict=False)]
        assert itl_samples(res.traces) == pytest.approx(recorded_gaps, abs=1e-9)
        ttfts = [r.trace.first_token_time - r.trace.t_send for r in res.requests]
        assert ttfts == pytest.approx([run.requests.first_token(i) - run.requests.send[i] for i in range(n)],
                                      abs=1e-9)
        # The same event path: one TokenStep per recorded step, never one object per token.
        assert sum(1 for e in seen if isinstance(e, TokenStep)) == len(run.steps)
        assert not any(isinstance(e, TokenEvent) for e in seen)
    assert clock() > 5.0  # it waited (on the injected clock) through the recorded time


def test_replay_refuses_a_shape_it_lacks_in_one_line(tmp_path: Path) -> None:
    path, _ = _recorded(tmp_path, batch_sizes=(1, 2))
    engine, _ = _replay(path)
    with pytest.raises(InvalidInput) as err:
        list(engine.stream([Request(f"q{i}", "p") for i in range(3)], SamplingParams(max_new_tokens=5)))
    assert "no batch 3 × 5 tokens" in err.value.message
    assert err.value.hint == "it has batch 1 or 2 × 5 tokens"
    with pytest.raises(InvalidInput, match="batch 1 × 9 tokens"):
        list(engine.stream([Request("q", "p")], SamplingParams(max_new_tokens=9)))


def test_replay_stops_within_a_step_and_closes_what_was_open(tmp_path: Path) -> None:
    path, _ = _recorded(tmp_path, batch_sizes=(2,))
    engine, _ = _replay(path)
    stop = threading.Event()
    events = []
    for event in engine.stream([Request("a", "p"), Request("b", "p")], SamplingParams(max_new_tokens=5), stop):
        events.append(event)
        if isinstance(event, TokenStep):
            stop.set()
    finished = [e for e in events if isinstance(e, RequestFinished)]
    assert sum(isinstance(e, TokenStep) for e in events) == 1
    assert sorted(e.request_id for e in finished) == ["a", "b"] and {e.reason for e in finished} == {"cancelled"}


def test_replay_of_a_variant_takes_only_the_runs_recorded_with_it(tmp_path: Path) -> None:
    path, _ = _recorded(tmp_path, batch_sizes=(1,))
    engine, _ = _replay(path, variant={"engine": "scripted", "real_time": False})
    assert engine.shapes() == ["batch 1 × 5 tokens"]
    with pytest.raises(InvalidInput, match="no run recorded with engine=scripted, real_time=True") as err:
        _replay(path, variant={"engine": "scripted", "real_time": True})
    assert err.value.hint == "it has: scripted (real_time=False)"


def test_a_comparison_replays_each_variant_from_its_own_runs(tmp_path: Path) -> None:
    engine = ScriptedEngine(clock=FakeClock())
    engine.load()
    params = {"batch_size": 2, "max_new_tokens": 4, "runs": 2}
    recorded = run_experiment("graphs_compare", params, RunContext(engine=engine, engine_name="scripted"))
    assert recorded.trace is not None and recorded.result is not None
    path = T.write_trace(tmp_path / "graphs.trace.json.gz", recorded.trace)
    clock = FakeClock(start=3.0)
    replay = create_engine("replay", trace=str(path), clock=clock, sleep=clock.advance)
    replay.load()

    def factory(name: str, **options: object) -> object:
        return create_engine(name, **options, clock=clock, sleep=clock.advance)

    ctx = RunContext(engine=replay, engine_name="replay", engine_options={"trace": str(path)}, engine_factory=factory)
    again = run_experiment("graphs_compare", params, ctx)
    assert again.result is not None, again.message
    before, after = recorded.result.to_dict(), again.result.to_dict()
    assert [m["label"] for m in after["modes"]] == [m["label"] for m in before["modes"]]
    for a, b in zip(before["modes"], after["modes"], strict=True):
        assert [r["step_ms"] for r in b["runs"]] == [pytest.approx(r["step_ms"], abs=1e-6) for r in a["runs"]]
        assert b["gpu"] is None  # this machine's GPU telemetry is never put beside a replay


def test_a_trace_of_a_replay_stays_the_original_machines(tmp_path: Path) -> None:
    path, trace = _recorded(tmp_path, batch_sizes=(2,))
    engine, _ = _replay(path)
    outcome = run_experiment("generate", {"batch_size": 2, "max_new_tokens": 5, "ignore_eos": False},
                             RunContext(engine=engine, engine_name="replay"))
    again = outcome.trace
    assert again is not None
    assert again.meta["replay_of"]["file"] == path.name
    assert again.meta["machine"] == trace.meta["machine"] and again.meta["recorded"] == trace.meta["recorded"]
    [run] = again.runs
    assert run.source == "scripted"
    assert run.steps.n_requests == trace.runs[0].steps.n_requests
    assert [run.phases(i).as_dict() for i in range(2)] == [
        pytest.approx(trace.runs[0].phases(i).as_dict(), abs=1e-9) for i in range(2)]


def test_the_shipped_trace_replays_by_name() -> None:
    from tui_lab import traces

    assert traces.names(), "a trace ships with the lab"
    name = traces.names()[0]
    trace = T.read_trace(traces.shipped()[0])
    assert trace.meta["model"] and trace.meta["machine"]["card"] and trace.runs
    clock = FakeClock(start=1.0)
    engine = create_engine("replay", trace=name, clock=clock, sleep=clock.advance)
    engine.load()
    run = next(r for r in trace.runs if not r.warmup)
    res = execute_run(engine, [Request(f"r{i}", "p") for i in range(run.batch_size)],
                      SamplingParams(max_new_tokens=run.max_new_tokens, ignore_eos=True))
    assert sum(r.trace.output_tokens for r in res.requests) == sum(run.requests.tok_n)
    assert engine.info.text_is_meaningful == trace.meta["text_is_meaningful"]


# ------------------------------------------------------------------------------------------- CLI


def test_a_replay_asked_for_nothing_else_plays_every_recorded_run(capsys: pytest.CaptureFixture[str]) -> None:
    """``sweep --engine replay --trace NAME`` ran the sweep's own defaults (batch 1, 8, 32 … × 32 tokens) and
    refused every point: the trace's recorded parameters are the replay's defaults."""
    trace = T.read_trace(traces_find("cpu-gemma-3-270m-batch-sweep"))
    assert main(["sweep", "--engine", "replay", "--trace", "cpu-gemma-3-270m-batch-sweep", "--json", "-q"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [p["batch_size"] for p in doc["points"]] == trace.meta["params"]["batch_sizes"]
    assert all(p["status"] == "ok" for p in doc["points"])
    assert main(["sweep", "--engine", "replay", "--trace", "cpu-gemma-3-270m-batch-sweep", "--json", "-q",
                 "--batch-sizes", "2"]) == 0  # a flag still wins
    assert [p["batch_size"] for p in json.loads(capsys.readouterr().out)["points"]] == [2]


def test_record_then_replay_round_trip_through_the_cli(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rec = tmp_path / "sweep.trace.json.gz"
    args = ["--batch-sizes", "1,2", "--max-tokens", "3", "--runs", "1", "--warmup", "0", "--json"]
    assert main(["sweep", *SCRIPTED, *args, "--record", str(rec)]) == 0
    captured = capsys.readouterr()
    recorded = json.loads(captured.out)
    assert f"wrote {rec} (trace of 2 runs)" in captured.err
    assert main(["sweep", "--engine", "replay", "--trace", str(rec), "-q", *args]) == 0
    replayed = json.loads(capsys.readouterr().out)
    assert replayed["engine"]["device"].startswith("replay of ")
    for a, b in zip(recorded["points"], replayed["points"], strict=True):
        assert a["label"] == b["label"]
        for key in ("ttft_s", "e2e_s", "tpot_s"):
            assert b[key]["p50"] == pytest.approx(a[key]["p50"], abs=1e-9), key
        assert b["output_tokens_per_s"] == pytest.approx(a["output_tokens_per_s"], rel=1e-9)
    # run and experiment take --record too; a shape the trace lacks is one line, exit 2.
    one = tmp_path / "one.trace.json.gz"
    assert main(["run", *SCRIPTED, "--batch-size", "2", "--max-tokens", "2", "--json", "--record", str(one)]) == 0
    assert main(["experiment", "generate", *SCRIPTED, "--param", "batch_size=2", "--param", "max_new_tokens=2",
                 "--json", "--record", str(tmp_path / "exp.trace.json.gz")]) == 0
    capsys.readouterr()
    assert main(["run", "--engine", "replay", "--trace", str(one), "-q", "--batch-size", "3",
                 "--max-tokens", "2"]) == 2
    err = capsys.readouterr().err
    assert "no batch 3 × 2 tokens" in err and "it has batch 2 × 2 tokens" in err
    assert main(["run", "--engine", "replay", "-q"]) == 2
    assert "the replay engine needs a trace" in capsys.readouterr().err
