"""The engine contract: requests in, a stream of timestamped events out.

An engine turns ``Request`` objects, generated with one ``SamplingParams``, into the events of
``tui_lab.engines.events`` (submitted, tokens, finished), each stamped with the engine's clock.
``Engine`` is the protocol every engine meets; ``EngineBase`` is the state and the ``stream``
checks they share. Nothing here imports torch.
"""

from __future__ import annotations

import atexit
import gc
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

from tui_lab.engines.events import StreamEvent
from tui_lab.errors import EngineFailure, InvalidInput
from tui_lab.params import MAX_NEW_TOKENS_PARAM, REPETITION_PENALTY, SEED, TEMPERATURE, TOP_K, TOP_P

ProgressCallback = Callable[[str, "float | None"], None]
"""Called with a human-readable stage and a completed fraction (0..1) or None."""

MAX_BATCH_SIZE = 1024


@dataclass(frozen=True)
class SamplingParams:
    """How tokens are chosen. ``temperature == 0`` means greedy decoding.

    ``top_k == 0`` and ``top_p == 1`` switch those filters off. ``seed`` makes
    sampling reproducible: the same seed, prompts and batch give the same tokens.
    """

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    seed: int | None = 0
    ignore_eos: bool = False

    @property
    def greedy(self) -> bool:
        """True when decoding picks the most likely token (temperature 0)."""
        return self.temperature == 0.0

    def validate(self) -> SamplingParams:
        """Raise ``InvalidInput`` with a one-line message for any bad value (the parameters' own checks)."""
        for param, value in ((MAX_NEW_TOKENS_PARAM, self.max_new_tokens), (TEMPERATURE, self.temperature),
                             (TOP_P, self.top_p), (TOP_K, self.top_k), (REPETITION_PENALTY, self.repetition_penalty),
                             (SEED.but(optional=True), self.seed)):
            param.check(value)
        return self

    def to_dict(self) -> dict:
        """Plain-JSON form (used in result files)."""
        return asdict(self)

    def with_(self, **changes: Any) -> SamplingParams:
        """A copy with some fields changed."""
        return replace(self, **changes)


@dataclass(frozen=True)
class Request:
    """One prompt to complete. ``max_new_tokens`` overrides the sampling default."""

    request_id: str
    prompt: str
    max_new_tokens: int | None = None

    def budget(self, sampling: SamplingParams) -> int:
        """The number of new tokens this request may produce."""
        return self.max_new_tokens if self.max_new_tokens is not None else sampling.max_new_tokens


@dataclass(frozen=True)
class EngineInfo:
    """What was loaded, where, and with which library versions."""

    engine: str
    model: str
    device: str
    dtype: str
    versions: dict[str, str] = field(default_factory=dict)
    text_is_meaningful: bool = True
    max_context: int | None = None
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """Plain-JSON form (used in result files)."""
        d = asdict(self)
        d["notes"] = list(self.notes)
        return d


def is_cuda(device: object) -> bool:
    """Whether ``device`` names a CUDA device: ``"cuda"``, ``"cuda:1"``, an engine's report such as
    ``"cuda (NVIDIA H100 80GB HBM3)"`` or ``"cuda:0 (NVIDIA H200)"``, or a ``torch.device`` of type cuda.

    Every place that asks "is this on a CUDA GPU" asks here, so a device string with a card name or an
    index never passes for a CPU.
    """
    kind = getattr(device, "type", None)
    text = str(kind if isinstance(kind, str) else device).strip().lower()
    return text == "cuda" or text.startswith(("cuda:", "cuda "))


def cuda_index(device: object) -> int:
    """The CUDA device index in ``device`` (``"cuda:1 (...)"`` → 1); 0 when it names none."""
    index = getattr(device, "index", None)
    if isinstance(index, int):
        return index
    head = str(device).strip().lower().split(" ", 1)[0]
    _, _, number = head.partition(":")
    return int(number) if number.isdigit() else 0


@runtime_checkable
class Engine(Protocol):
    """What every engine implements. Blocking methods run in worker threads."""

    name: str

    def load(self, progress: ProgressCallback | None = None) -> EngineInfo:
        """Load the model (reporting progress) and return what was loaded."""
        ...

    @property
    def info(self) -> EngineInfo:
        """What is loaded; raises if ``load`` has not succeeded."""
        ...

    def stream(
        self, requests: Sequence[Request], sampling: SamplingParams, stop: threading.Event | None = None
    ) -> Iterator[StreamEvent]:
        """Generate for all requests together, yielding events as they happen.

        Setting ``stop`` (or calling ``cancel``) ends the stream within one
        decode step; unfinished requests then get ``RequestFinished(reason="cancelled")``.
        """
        ...

    def cancel(self) -> None:
        """Ask the running ``stream`` to stop at its next step (thread-safe)."""
        ...

    def unload(self) -> None:
        """Free the model and any device memory or child processes."""
        ...


@runtime_checkable
class LoadSession(Protocol):
    """Requests handed to a running engine one at a time, while others generate (load modes).

    ``stream`` takes a whole batch at once; a load generator (a closed loop that sends a new
    request as soon as one finishes, or open-loop arrivals at a request rate) needs to add
    requests at times it chooses. Engines that can do that (a server, vLLM's continuous
    batching) offer ``open_session(sampling) -> LoadSession``; engines that run static batches
    (transformers) do not have the method, and ``supports_sessions`` tells them apart.

    Events are the same as ``stream``'s: ``RequestSubmitted`` (``t`` is when the engine sent the
    request), ``TokenEvent``, ``RequestFinished``. Times are ``time.perf_counter`` seconds, so the
    caller can set them against its own schedule. One thread drives a session.
    """

    def submit(self, request: Request) -> None:
        """Send ``request`` now, without waiting; its events come from ``events``. Ids are unique per session."""
        ...

    def events(self, timeout: float) -> list[StreamEvent]:
        """Events that arrived since the last call, waiting at most ``timeout`` seconds for the first one."""
        ...

    def close(self) -> list[StreamEvent]:
        """Abort unfinished requests; returns their closing events (``reason="cancelled"``). Idempotent."""
        ...


def supports_sessions(engine: object) -> bool:
    """Whether ``engine`` can take requests while others run (``open_session``)."""
    return callable(getattr(engine, "open_session", None))


def prompt_tokenizer(engine: object) -> object | None:
    """The loaded engine's tokenizer as ``encode(text) -> ids`` / ``decode(ids) -> text``, or None.

    ``encode`` counts a prompt the way the engine does (special tokens such as BOS included), so a prompt
    built to N tokens with it is N tokens in the engine's ``RequestSubmitted.prompt_tokens``. An engine
    offers it as its ``prompt_tokenizer`` attribute; a remote server has none (None here).
    """
    try:
        return getattr(engine, "prompt_tokenizer", None)
    except Exception:  # an engine not loaded yet
        return None


class EngineBase:
    """State every engine shares: what is loaded (``_info``) and the cancel flag (``_cancel``).

    Subclasses call ``super().__init__()``, set ``_info`` in ``load`` and check
    ``_cancel`` once per decode step.
    """

    name = "engine"

    def __init__(self) -> None:
        self._info: EngineInfo | None = None
        self._cancel = threading.Event()

    @property
    def info(self) -> EngineInfo:
        """What is loaded; raises ``EngineFailure`` before ``load`` has succeeded."""
        if self._info is None:
            raise EngineFailure(f"the {self.name} engine is not loaded yet", hint="call load() first.")
        return self._info

    def cancel(self) -> None:
        """Ask the running ``stream`` to stop at its next step (thread-safe)."""
        self._cancel.set()

    #: Engines that track requests by id (vLLM, a server) need each id once per batch.
    unique_ids = False

    def stream(
        self, requests: Sequence[Request], sampling: SamplingParams, stop: threading.Event | None = None
    ) -> Iterator[StreamEvent]:
        """Check the batch and that a model is loaded (both at once, before anything is generated),
        clear an earlier ``cancel``, then yield what ``_stream`` generates."""
        validate_batch(requests, sampling)
        self._require_loaded()
        if self.unique_ids:
            require_unique_ids(requests)
        self._cancel.clear()
        return self._stream(list(requests), sampling, stop)

    def prepare(self, requests: Sequence[Request], sampling: SamplingParams) -> float:
        """Build, before a timed run, what a batch of this shape needs that is built once per shape (the
        transformers engine's CUDA graphs); the seconds it took. Engines with nothing to build return 0.0."""
        return 0.0

    def _require_loaded(self) -> None:
        """Raise a clear error when ``stream`` is called before ``load`` has succeeded."""
        self.info  # noqa: B018 - the property raises when nothing is loaded

    def _stream(
        self, requests: list[Request], sampling: SamplingParams, stop: threading.Event | None
    ) -> Iterator[StreamEvent]:
        """The engine's own generation: submitted / token / finished events as they happen."""
        raise NotImplementedError


_THAW_AT_EXIT = False


def settle_heap() -> None:
    """Collect garbage once, then exempt every object alive now from later collections (``gc.freeze``).

    Engines call it at the end of ``load`` and ``unload``. A loaded model brings hundreds of
    thousands of long-lived Python objects (modules, compiled graphs, tokenizer tables), and each
    full collection walks all of them: 0.2–0.3 s, enough to stall a run in the middle (seen as one
    run of a GPU sweep three times slower than its neighbours). Frozen, they are not walked again;
    reference counting still frees them when they are dropped. The freeze is lifted first, so the
    unloaded model's reference cycles are collected; objects of cycles made between two calls wait
    for the next one.
    """
    global _THAW_AT_EXIT
    if not _THAW_AT_EXIT:
        # Objects still frozen at exit are never finalized (native extensions then report them as leaks).
        atexit.register(gc.unfreeze)
        _THAW_AT_EXIT = True
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def require_unique_ids(requests: Sequence[Request]) -> None:
    """Engines that track requests by id (vLLM, a server) need each id once per batch."""
    if len({r.request_id for r in requests}) != len(requests):
        raise InvalidInput("request ids in one batch must be unique")


def validate_batch(requests: Sequence[Request], sampling: SamplingParams) -> None:
    """Shared checks every engine runs before generating."""
    sampling.validate()
    if not requests:
        raise InvalidInput("at least one request is needed")
    if len(requests) > MAX_BATCH_SIZE:
        raise InvalidInput(f"batch size must be at most {MAX_BATCH_SIZE} (got {len(requests)})")
    for r in requests:
        if r.max_new_tokens is not None and r.max_new_tokens < 1:
            raise InvalidInput(f"max new tokens must be at least 1 (got {r.max_new_tokens})")


