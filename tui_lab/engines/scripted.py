"""A scripted engine with an injected clock — for tests and snapshots only.

It produces deterministic tokens ("tok0 tok1 ...", or words from a given text)
with timing from a simple model of a GPU: a prefill cost that grows with the
prompt and the batch, and a decode step whose cost grows slowly with batch size.
With ``FakeClock`` no real time passes, so tests and SVG snapshots are exact;
with ``real_time=True`` it sleeps, which the UI flood benchmark uses.

``ScriptedServingEngine`` adds continuous batching (``open_session``, the load modes): each
``events()`` call is one decode step of every request in flight, so a test drives a closed loop
step by step, with no wall-clock timing at all. Its prompts are counted by ``WordTokenizer``
(one token per word, after a BOS), the same count ``RequestSubmitted.prompt_tokens`` reports.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from tui_lab.engines.base import EngineBase, EngineInfo, ProgressCallback, Request, SamplingParams, validate_batch
from tui_lab.engines.events import RequestFinished, RequestSubmitted, StreamEvent, TokenEvent, TokenStep
from tui_lab.errors import InvalidInput, LabError

WORDS = (
    "the quick brown fox jumps over the lazy dog while a patient model predicts one token at a time"
).split()


class FakeClock:
    """A clock that only moves when told to (``advance``)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        with self._lock:
            self.now += seconds


@dataclass(frozen=True)
class StepModel:
    """Timing of the scripted engine (seconds): step = base + per_seq · batch."""

    prefill_per_token: float = 0.0004
    decode_base: float = 0.012
    decode_per_seq: float = 0.0002
    load_s: float = 0.0


class ScriptedEngine(EngineBase):
    """Deterministic engine for tests: fixed tokens, modelled timing, injected clock."""

    name = "scripted"

    def __init__(
        self,
        clock: Callable[[], float] | None = None,
        timing: StepModel | None = None,
        eos_after: dict[int, int] | None = None,
        fail_at_batch: int | None = None,
        real_time: bool = False,
        model: str = "scripted",
    ) -> None:
        # Sleeping through the modelled timing needs a real clock to stamp the tokens.
        self.clock = clock or (time.perf_counter if real_time else FakeClock())
        self.timing = timing or StepModel()
        self.eos_after = eos_after or {}
        """request index → number of tokens after which it emits EOS (unless ignore_eos)."""
        self.fail_at_batch = fail_at_batch
        """Batch sizes at or above this raise an out-of-memory style ``LabError``."""
        self.real_time = real_time
        self._model = model
        super().__init__()

    def _sleep(self, seconds: float) -> None:
        if self.real_time:
            time.sleep(seconds)
        elif isinstance(self.clock, FakeClock):
            self.clock.advance(seconds)

    def load(self, progress: ProgressCallback | None = None) -> EngineInfo:
        """Pretend to load, reporting a few progress stages."""
        for i, stage in enumerate(("reading weights", "moving to device", "warming up")):
            if progress:
                progress(stage, i / 3)
            self._sleep(self.timing.load_s / 3)
        if progress:
            progress("ready", 1.0)
        self._info = EngineInfo(
            engine=self.name, model=self._model, device="scripted", dtype="none",
            versions={"scripted": "1"}, text_is_meaningful=True, max_context=4096,
        )
        return self._info

    def unload(self) -> None:
        """Nothing to free."""
        self._info = None

    def _require_loaded(self) -> None:
        """A scripted engine generates whether or not ``load`` ran (tests drive it both ways)."""

    def _stream(
        self, requests: list[Request], sampling: SamplingParams, stop: threading.Event | None
    ) -> Iterator[StreamEvent]:
        """Yield submitted, token and finished events with modelled timing."""
        batch = len(requests)
        if self.fail_at_batch is not None and batch >= self.fail_at_batch:
            from tui_lab.errors import OutOfMemory

            raise OutOfMemory(
                f"out of memory at batch size {batch}",
                hint=f"try batch size {self.fail_at_batch - 1} or less",
                largest_batch=self.fail_at_batch - 1,
            )
        t0 = self.clock()
        for r in requests:
            yield RequestSubmitted(r.request_id, t0, prompt_tokens=len(r.prompt.split()) + 1)
        prompt_tokens = sum(len(r.prompt.split()) + 1 for r in requests)
        self._sleep(self.timing.prefill_per_token * prompt_tokens)
        budgets = [r.budget(sampling) for r in requests]
        done = [False] * batch
        produced = [0] * batch
        step = 0
        while not all(done):
            if (stop is not None and stop.is_set()) or self._cancel.is_set():
                t = self.clock()
                for i, r in enumerate(requests):
                    if not done[i]:
                        yield RequestFinished(r.request_id, t, "cancelled")
                return
            if step > 0:
                active = batch - sum(done)
                self._sleep(self.timing.decode_base + self.timing.decode_per_seq * active)
            t = self.clock()
            # One TokenStep per step, as the transformers engine yields them (the batch decodes in lock step).
            rows = [i for i in range(batch) if not done[i]]
            yield TokenStep([requests[i].request_id for i in rows],
                            [100 + (i + step) % len(WORDS) for i in rows],
                            [" " + WORDS[(i + step + (sampling.seed or 0)) % len(WORDS)] for i in rows], t)
            for i in rows:
                produced[i] += 1
                eos = self.eos_after.get(i)
                if produced[i] >= budgets[i]:
                    done[i] = True
                    yield RequestFinished(requests[i].request_id, t, "length")
                elif eos is not None and produced[i] >= eos and not sampling.ignore_eos:
                    done[i] = True
                    yield RequestFinished(requests[i].request_id, t, "eos")
            step += 1


class WordTokenizer:
    """A tokenizer for the scripted engine: a BOS (id 1), then one token per whitespace-separated word.

    ``encode(text) -> ids`` and ``decode(ids) -> text``, the two calls the lab's prompt builder uses.
    """

    BOS = 1

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._words: list[str] = []

    def encode(self, text: str) -> list[int]:
        """[BOS] + one id per word."""
        ids = [self.BOS]
        for word in text.split():
            if word not in self._ids:
                self._ids[word] = len(self._words) + 2
                self._words.append(word)
            ids.append(self._ids[word])
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """The words of ``ids`` joined by spaces (the BOS dropped)."""
        return " ".join(self._words[i - 2] for i in ids if i >= 2)


class ScriptedServingEngine(ScriptedEngine):
    """The scripted engine with continuous batching: requests join a running batch (``open_session``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prompt_tokenizer = WordTokenizer()
        """How this engine counts prompt tokens (``tui_lab.engines.base.prompt_tokenizer`` finds it)."""

    def open_session(self, sampling: SamplingParams) -> _ScriptedSession:
        """A ``LoadSession``: each ``events()`` call runs one decode step of every request in flight."""
        sampling.validate()
        self.info  # noqa: B018 - raises before load
        return _ScriptedSession(self, sampling)


class _ScriptedSession:
    """Requests join and leave a batch decoded step by step on the engine's clock."""

    def __init__(self, engine: ScriptedServingEngine, sampling: SamplingParams) -> None:
        self._engine = engine
        self._sampling = sampling
        self._running: dict[str, list] = {}
        """request id → [request, tokens produced, budget, prompt tokens still to prefill]"""
        self._queued: list[StreamEvent] = []
        self._used: set[str] = set()
        self._closed = False
        self.steps = 0
        self.peak = 0
        """The most requests decoded in one step."""

    def submit(self, request: Request) -> None:
        """Join the batch now (``RequestSubmitted`` at the engine's clock)."""
        validate_batch([request], self._sampling)
        if self._closed:
            raise LabError("this load session is closed")
        if request.request_id in self._used:
            raise InvalidInput(f"request id {request.request_id!r} was already used in this session")
        self._used.add(request.request_id)
        n_prompt = len(self._engine.prompt_tokenizer.encode(request.prompt))
        self._queued.append(RequestSubmitted(request.request_id, self._engine.clock(), n_prompt))
        self._running[request.request_id] = [request, 0, request.budget(self._sampling), n_prompt]

    def events(self, timeout: float) -> list[StreamEvent]:
        """What was queued, then one decode step of the batch; with nothing to do, ``timeout`` passes on the
        engine's clock (slept in real time, advanced on a ``FakeClock``) and nothing comes."""
        out, self._queued = self._queued, []
        if not self._running:
            if not out:
                self._engine._sleep(timeout)
            return out
        timing = self._engine.timing
        joined = sum(entry[3] for entry in self._running.values())
        self._engine._sleep(timing.prefill_per_token * joined + timing.decode_base
                            + timing.decode_per_seq * len(self._running))
        t = self._engine.clock()
        self.steps += 1
        self.peak = max(self.peak, len(self._running))
        for rid, entry in list(self._running.items()):
            request, produced, budget, _ = entry
            out.append(TokenEvent(rid, 100 + produced % len(WORDS), " " + WORDS[produced % len(WORDS)], t))
            entry[1], entry[3] = produced + 1, 0
            if entry[1] >= budget:
                out.append(RequestFinished(rid, t, "length"))
                del self._running[rid]
        return out

    def close(self) -> list[StreamEvent]:
        """Cancel what is still running: queued events, then a cancelled finish for each."""
        if self._closed:
            return []
        self._closed = True
        out, self._queued = self._queued, []
        t = self._engine.clock()
        out.extend(RequestFinished(rid, t, "cancelled") for rid in self._running)
        self._running.clear()
        return out


def make_scripted(name: str = "scripted", model: str = "scripted", device: str = "cpu", clock: Any = None,
                  timing: StepModel | None = None, real_time: bool = False, fail_at_batch: int | None = None,
                  load_error: Exception | None = None, **_ignored: Any) -> ScriptedEngine:
    """A scripted engine made by name, for tests (the engine host imports it as
    ``"tui_lab.engines.scripted:make_scripted"``); ``load_error`` is raised by ``load``."""
    engine = ScriptedEngine(clock=clock if clock is not None else FakeClock(), timing=timing,
                            real_time=real_time, fail_at_batch=fail_at_batch, model=str(model))
    if load_error is not None:
        def fail(progress: Any = None) -> Any:
            raise load_error

        engine.load = fail  # type: ignore[method-assign]
    return engine
