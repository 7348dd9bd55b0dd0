"""The one measurement loop (``tui_lab.lab.measure``): warm-ups, measured runs, stops, errors, unloading."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import pytest

from tui_lab.engines.base import EngineInfo, Request, SamplingParams
from tui_lab.engines.events import StreamEvent, TokenEvent, TokenStep
from tui_lab.engines.scripted import ScriptedEngine
from tui_lab.errors import DeviceUnavailable, EngineFailure, OutOfMemory
from tui_lab.lab.measure import ENDED_EARLY, Variant, loaded, measure

SAMPLING = SamplingParams(max_new_tokens=4, ignore_eos=True)
BATCH = [Request("r0", "Hello"), Request("r1", "there")]


class Engine(ScriptedEngine):
    """The scripted engine, counting its runs and unloads; on run ``fail_on`` it fails the way ``how`` says.

    ``how``: "mid" fails after the first token, "start" raises before anything is generated, "stop" sets
    ``stop`` after the first token (a learner pressing stop).
    """

    def __init__(self, fail_on: int = 0, how: str = "mid", stop: threading.Event | None = None,
                 error: type[Exception] = EngineFailure) -> None:
        super().__init__()
        self.fail_on, self.how, self.stop_event, self.error = fail_on, how, stop, error
        self.calls: list[list[str]] = []
        self.unloads = 0

    def unload(self) -> None:
        self.unloads += 1
        super().unload()

    def stream(self, requests: Sequence[Request], sampling: SamplingParams,
               stop: threading.Event | None = None) -> Iterator[StreamEvent]:
        self.calls.append([r.request_id for r in requests])
        this = len(self.calls) == self.fail_on
        if this and self.how == "start":
            raise self.error("no room for the batch")
        for event in super().stream(requests, sampling, stop):
            yield event
            if this and isinstance(event, (TokenEvent, TokenStep)):
                if self.how == "stop":
                    self.stop_event.set()  # type: ignore[union-attr]
                else:
                    raise self.error("the device went away mid-run")


def ready(engine: Engine) -> Engine:
    engine.load()
    return engine


def test_all_runs_measured_after_the_warm_ups_which_are_not_recorded() -> None:
    engine = ready(Engine())
    seen: list[tuple[int, bool]] = []
    results: list[tuple[int, bool, int]] = []
    m = measure(engine, BATCH, SAMPLING, warmup=2, runs=3, on_run=lambda i, warm: seen.append((i, warm)),
                on_result=lambda i, warm, res: results.append((i, warm, res.traces[0].output_tokens)))
    assert len(engine.calls) == 5
    assert seen == [(0, True), (1, True), (2, False), (3, False), (4, False)]
    assert [i for i, _ in m.runs] == [0, 1, 2]  # warm-ups are run, never kept
    assert m.complete == m.runs and not m.cut_short and m.ended is None and m.error is None
    assert [r[2] for r in results] == [4] * 5
    assert engine.unloads == 0  # an engine given loaded stays loaded


def test_requests_come_from_the_maker_by_run_index() -> None:
    engine = ready(Engine())
    m = measure(engine, lambda i: [Request(f"run{i}", "Hi")], SAMPLING, warmup=1, runs=2)
    assert engine.calls == [["run0"], ["run1"], ["run2"]]
    assert [res.requests[0].request_id for _, res in m.runs] == ["run1", "run2"]


def test_stop_mid_run_keeps_the_finished_runs_and_the_truncated_one() -> None:
    stop = threading.Event()
    engine = ready(Engine(fail_on=3, how="stop", stop=stop))  # the second measured run
    m = measure(engine, BATCH, SAMPLING, warmup=1, runs=3, stop=stop)
    assert m.ended == "stopped" and m.cut_short and m.error is None
    assert len(engine.calls) == 3
    assert [i for i, _ in m.runs] == [0, 1]
    assert not m.runs[0][1].partial and m.runs[1][1].partial
    assert m.complete == m.runs[:1]
    assert m.last is m.runs[1][1] and not m.last_warm


def test_stop_before_a_run_starts_runs_nothing_more() -> None:
    stop = threading.Event()
    engine = ready(Engine())
    m = measure(engine, BATCH, SAMPLING, runs=3, stop=stop, on_result=lambda *_: stop.set())
    assert len(engine.calls) == 1 and m.ended == "stopped" and m.last is None
    assert len(m.complete) == 1


def test_stop_in_a_warm_up_keeps_nothing() -> None:
    stop = threading.Event()
    engine = ready(Engine(fail_on=1, how="stop", stop=stop))
    m = measure(engine, BATCH, SAMPLING, warmup=1, runs=2, stop=stop)
    assert m.ended == "stopped" and m.runs == [] and m.last_warm


def test_error_in_run_two_keeps_run_one() -> None:
    engine = ready(Engine(fail_on=2))
    m = measure(engine, BATCH, SAMPLING, runs=3)
    assert m.ended == "error" and not m.raised
    assert "the device went away mid-run" in m.error
    assert isinstance(m.exception, EngineFailure)
    assert len(m.complete) == 1 and m.complete[0][0] == 0
    assert m.runs[-1][1].partial and m.runs[-1][1].error  # the failed run's tokens are there to look at
    assert len(engine.calls) == 2


def test_raised_error_in_run_two_keeps_run_one_and_hands_the_error_back() -> None:
    engine = ready(Engine(fail_on=2, how="start", error=OutOfMemory))
    m = measure(engine, BATCH, SAMPLING, runs=3)
    assert m.ended == "error" and m.raised and isinstance(m.exception, OutOfMemory)
    assert m.error.startswith("no room for the batch")
    assert [i for i, _ in m.runs] == [0] and m.last is None


def test_a_run_the_engine_ends_early_without_a_stop_is_an_error() -> None:
    class Short(Engine):
        def stream(self, requests, sampling, stop=None):  # noqa: ANN001, ANN201
            for event in super().stream(requests, sampling, stop):
                if type(event).__name__ == "RequestFinished":
                    return  # never says the requests finished
                yield event

    m = measure(ready(Short()), BATCH, SAMPLING, runs=2)
    assert m.ended == "error" and m.error == ENDED_EARLY and len(m.runs) == 1


def test_the_variant_is_loaded_and_unloaded_even_on_error() -> None:
    made: list[Engine] = []

    def make() -> Engine:
        made.append(Engine(fail_on=2, how="start"))
        return made[-1]

    m = measure(Variant(make), BATCH, SAMPLING, runs=2)
    assert m.raised and len(m.runs) == 1
    assert m.engine is not None and m.engine["engine"] == "scripted"
    assert made[0].unloads == 1 and made[0]._info is None

    def boom(*_: object) -> None:
        raise RuntimeError("a bug in a callback")

    made.clear()
    with pytest.raises(RuntimeError):
        measure(Variant(make), BATCH, SAMPLING, runs=2, on_result=boom)
    assert made[0].unloads == 1  # other exceptions pass up, after the unload


def test_a_variant_that_cannot_load_is_unavailable_and_runs_nothing() -> None:
    class NoGpu(Engine):
        def load(self, progress=None) -> EngineInfo:  # noqa: ANN001
            raise DeviceUnavailable("CUDA was requested but no GPU is available", "use --device cpu")

    engine = NoGpu()
    m = measure(Variant(lambda: engine), BATCH, SAMPLING, runs=2)
    assert m.ended == "unavailable" and m.runs == [] and engine.calls == []
    assert m.error == "CUDA was requested but no GPU is available; use --device cpu"
    assert engine.unloads == 1  # a half-loaded engine is still told to let go

    def missing() -> Engine:
        raise ImportError("No module named 'vllm'")

    m = measure(Variant(missing), BATCH, SAMPLING)
    assert m.ended == "unavailable" and m.error == "engine unavailable: No module named 'vllm'"


def test_loaded_prepares_once_and_unloads() -> None:
    engine = Engine()
    prepared: list[object] = []
    with loaded(Variant(lambda: engine, prepare=prepared.append)) as variant:
        assert variant.engine is engine and variant.info["engine"] == "scripted"
        measure(variant.engine, BATCH, SAMPLING, runs=2)
        measure(variant.engine, BATCH, SAMPLING, runs=1)
    assert prepared == [engine] and engine.unloads == 1 and len(engine.calls) == 3
