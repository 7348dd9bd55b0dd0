"""An OpenAI-compatible HTTP endpoint as an engine: measure a real deployment from the client side.

Requests go to ``/v1/completions`` or ``/v1/chat/completions`` with ``stream=True``;
the server answers with server-sent events (``data: {json}`` lines, ending with
``data: [DONE]``). Every chunk is timestamped when it reaches this process, the
way ``vllm bench serve`` measures a server.

Token counts: a chunk with text counts as one token, unless the server says
otherwise. vLLM servers (``owned_by == "vllm"`` in ``/v1/models``) are asked for
usage on every chunk (``continuous_usage_stats``), which gives exact per-chunk
counts and the prompt length. That usage is trusted only on the chunks that
carry it: a server may name itself vLLM and still send usage once at the end.
A usage-only chunk (no choices) never counts as a token and never moves the
request's last token time, so E2E ends at the last token-carrying chunk. Other
servers send usage once at the end (``include_usage``); when its
``completion_tokens`` differs from the chunks counted, the difference goes onto
the request's last token event (the engine
holds back each request's newest event until the next chunk arrives so that it
can still be corrected; its timestamp is the time it arrived, not when it is
passed on). ``RequestSubmitted`` is likewise passed on with the first chunk, so
that it can carry the prompt length when the server reports one (0 otherwise);
its ``t`` is always the time the HTTP request was sent.

Each request runs in its own asyncio task on a loop in a background thread, so
``stream()`` is a plain blocking iterator. One HTTP client (one connection pool)
serves every run until ``unload``, so only the engine's very first request pays
for a new connection. ``open_session()`` gives a ``LoadSession``: requests sent
one at a time, at moments the caller picks, while others stream (load modes). A failing request ends with
``RequestFinished(reason="error")`` and the others go on; when every request of
a batch fails before any output (server down), ``stream()`` raises
``EngineFailure`` with the first message instead.

The API key is read from the named environment variable at ``load()``, sent as a
Bearer token, and kept out of ``EngineInfo``, events, error messages and results.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import queue
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from tui_lab.engines.base import (
    MAX_BATCH_SIZE,
    EngineBase,
    EngineInfo,
    LoadSession,
    ProgressCallback,
    Request,
    SamplingParams,
    validate_batch,
)
from tui_lab.engines.events import (
    FinishReason,
    RequestFinished,
    RequestSubmitted,
    SessionEvents,
    StreamEvent,
    TokenEvent,
)
from tui_lab.engines.loop_thread import start_loop_thread
from tui_lab.errors import EngineFailure, InvalidInput, LabError

APIS = ("completions", "chat")

_POLL_S = 0.05
"""How often a waiting ``stream()`` checks its stop flag."""

_MAX_ERROR_CHARS = 300

_KEEPALIVE_S = 120.0
"""How long an idle pooled connection is kept: longer than any pause between the runs of a sweep."""


async def _close_tasks_and_generators(client: Any = None) -> None:
    """Cancel every other task on the running loop, wait for them, close open async generators and the client."""
    me = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.get_running_loop().shutdown_asyncgens()
    if client is not None:
        with contextlib.suppress(Exception):
            await client.aclose()


_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s\"',;]+")
_WORD = re.compile(r"[^\s\"'`,;()\[\]{}<>=]+")
_MIN_PIECE = 6
"""A piece of the key this long or longer is masked too (a key cut short by a server's or our truncation)."""


def scrub_secret(text: str, secret: str | None) -> str:
    """``text`` with the API key masked as ``***``: the whole key, any piece of it of 6 or more characters
    (an echo cut short), and any ``Bearer`` token whatever it is.

    Every message built from what a server sent (an error body, a chunk, an exception's text) passes through
    here before it is shortened, shown, raised or stored.
    """
    if not text:
        return text
    text = _BEARER.sub(r"\1***", text)
    if not secret:
        return text
    text = text.replace(secret, "***")

    def mask(match: re.Match[str]) -> str:
        word = match.group(0)
        core = word.rstrip(".…:!?")
        if len(core) >= _MIN_PIECE and core in secret:
            return "***" + word[len(core):]
        return word

    return _WORD.sub(mask, text)


class _StreamError(Exception):
    """One request's failure, already phrased for the user."""


@dataclass
class _RequestState:
    """Per-request bookkeeping while its stream is read (one owner: its task)."""

    request_id: str
    t_send: float = 0.0
    submitted_sent: bool = False
    prompt_tokens: int = 0
    held: TokenEvent | None = None
    counted: int = 0
    usage_completion: int | None = None
    continuous_total: int | None = None
    finish_reason: str | None = None
    got_output: bool = False


class OpenAIEngine(EngineBase):
    """Streams completions from any OpenAI-compatible server (vLLM, SGLang, TGI, ...)."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        api_key_env: str | None = None,
        api: str = "completions",
        concurrency: int | None = None,
        timeout: float = 60,
    ) -> None:
        if not base_url:
            raise InvalidInput("the openai engine needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InvalidInput(f"base URL must look like http://host:port/v1 (got {base_url!r})")
        if api not in APIS:
            raise InvalidInput(f"api must be one of {', '.join(APIS)} (got {api!r})")
        if concurrency is not None and concurrency < 1:
            raise InvalidInput(f"concurrency must be at least 1 (got {concurrency})")
        if timeout <= 0:
            raise InvalidInput(f"timeout must be > 0 seconds (got {timeout})")
        path = parts.path.rstrip("/")
        if not path.endswith("/v1"):
            path = f"{path}/v1"
        self.base_url = f"{parts.scheme}://{parts.netloc}{path}"
        self.model = model
        self.api_key_env = api_key_env
        self.api = api
        self.concurrency = concurrency
        self.timeout = float(timeout)
        self._api_key: str | None = None
        self._continuous_usage = False
        super().__init__()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: Any = None
        """The shared ``httpx.AsyncClient`` (one pool for every run until ``unload``); lives on the loop."""

    # ----------------------------------------------------------------- lifecycle

    def load(self, progress: ProgressCallback | None = None) -> EngineInfo:
        """Check the server (``GET /v1/models``), pick the model, and return what it serves."""
        import httpx

        report = progress or (lambda stage, fraction: None)
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise LabError(
                    f"environment variable {self.api_key_env} is not set",
                    hint=f"export {self.api_key_env}=<your key>, or leave out --api-key-env",
                )
            self._api_key = key
        report(f"contacting {self.base_url}", 0.1)
        try:
            with httpx.Client(timeout=self._timeouts(), headers=self._headers()) as client:
                response = client.get(f"{self.base_url}/models")
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        if response.status_code >= 400:
            raise EngineFailure(self._http_error_message(response.status_code, response.text),
                                hint=self._http_hint(response.status_code))
        try:
            entries = response.json().get("data") or []
            served = {str(e["id"]): e for e in entries}
        except (ValueError, AttributeError, KeyError, TypeError):
            raise EngineFailure(
                f"{self.base_url}/models did not return an OpenAI model list",
                hint="check that --base-url points at an OpenAI-compatible server",
            ) from None
        if not served:
            raise EngineFailure(f"the server at {self.base_url} serves no models")
        model = self.model or next(iter(served))
        if model not in served:
            raise LabError(
                f"the server does not serve model {model!r}",
                hint=f"choose one of: {', '.join(sorted(served))}",
            )
        entry = served[model]
        # vLLM can report usage on every chunk: exact token counts per chunk instead of one per chunk.
        self._continuous_usage = str(entry.get("owned_by", "")).lower() == "vllm"
        max_context = entry.get("max_model_len")
        self._start_loop()
        versions = {"httpx": httpx.__version__}
        notes = [f"api={self.api}", f"concurrency={self.concurrency or 'all at once'}"]
        if entry.get("owned_by"):
            notes.append(f"server: {entry['owned_by']}")
        self._info = EngineInfo(
            engine=self.name,
            model=model,
            device=f"remote {urlsplit(self.base_url).netloc}",
            dtype="unknown",
            versions=versions,
            text_is_meaningful=True,
            max_context=int(max_context) if isinstance(max_context, int) else None,
            notes=tuple(notes),
        )
        report("ready", 1.0)
        return self._info

    def unload(self) -> None:
        """Stop the background loop and forget the key."""
        self._cancel.set()
        loop, self._loop = self._loop, None
        thread, self._thread = self._thread, None
        self._info = None
        self._api_key = None
        client, self._client = self._client, None
        if loop is not None and thread is not None and thread.is_alive():
            # Close cancelled streams on their own loop, so no connection is left to the garbage collector.
            try:
                asyncio.run_coroutine_threadsafe(_close_tasks_and_generators(client), loop).result(timeout=5)
            except BaseException:
                pass
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
        if loop is not None and not loop.is_running():
            loop.close()

    # ----------------------------------------------------------------- streaming

    unique_ids = True

    def _require_loaded(self) -> None:
        if self._info is None or self._loop is None:
            raise LabError("the openai engine is not loaded yet", hint="load it first")

    def _stream(
        self, requests: list[Request], sampling: SamplingParams, stop: threading.Event | None
    ) -> Iterator[StreamEvent]:
        """Send the batch (``concurrency`` at a time) and yield events as chunks arrive."""
        loop = self._loop
        if loop is None:  # unloaded between ``stream`` and the first event asked for
            raise LabError("the openai engine was unloaded", hint="load it again")
        events: queue.Queue[StreamEvent] = queue.Queue()
        states = {r.request_id: _RequestState(r.request_id) for r in requests}
        future = asyncio.run_coroutine_threadsafe(self._run_batch(requests, sampling, states, events), loop)
        pending = {r.request_id for r in requests}
        # Until some request produces output, failures are held back: if all fail, one clear error is better.
        held: list[StreamEvent] = []
        errors: list[str] = []
        submitted: set[str] = set()
        any_output = False
        try:
            while pending:
                # An unload from another thread (the app quitting) ends the stream like a stop.
                if self._cancel.is_set() or (stop is not None and stop.is_set()) or self._loop is None:
                    future.cancel()
                    yield from self._cancelled(requests, states, pending, held, submitted, events)
                    return
                try:
                    item = events.get(timeout=_POLL_S)
                except queue.Empty:
                    if future.done() and events.empty():
                        if future.cancelled():
                            # Cancelled from outside (unload): whatever did not finish was cut off.
                            yield from self._cancelled(requests, states, pending, held, submitted, events)
                            return
                        break
                    continue
                if isinstance(item, RequestSubmitted):
                    submitted.add(item.request_id)
                if isinstance(item, RequestFinished):
                    pending.discard(item.request_id)
                    if item.reason == "error" and item.error:
                        errors.append(item.error)
                if any_output:
                    yield item
                    continue
                held.append(item)
                if isinstance(item, TokenEvent):
                    any_output = True
                    yield from held
                    held.clear()
            failure = future.exception() if pending and future.done() and not future.cancelled() else None
            if failure is not None:
                raise EngineFailure(self._describe(failure))
            if not any_output and errors and len(errors) == len(requests):
                first = self._scrub(errors[0])
                raise EngineFailure(first if len(requests) == 1 else f"all {len(requests)} requests failed: {first}")
            yield from held
        finally:
            if not future.done():
                future.cancel()

    @staticmethod
    def _cancelled(
        requests: Sequence[Request],
        states: dict[str, _RequestState],
        pending: set[str],
        held: list[StreamEvent],
        submitted: set[str],
        events: queue.Queue,
    ) -> Iterator[StreamEvent]:
        """After a stop: what already arrived, then every unfinished request closed as cancelled."""
        arrived = list(held)
        while True:
            try:
                arrived.append(events.get_nowait())
            except queue.Empty:
                break
        for item in arrived:
            if isinstance(item, RequestFinished):
                if item.request_id not in pending:
                    continue
                pending.discard(item.request_id)
            if isinstance(item, RequestSubmitted):
                submitted.add(item.request_id)
            yield item
        t = time.perf_counter()
        for r in requests:
            if r.request_id not in pending:
                continue
            state = states[r.request_id]
            if r.request_id not in submitted:
                # Sent with no answer yet: its send time is known. Never sent (held back by the
                # concurrency limit): it counts as handed over now, with nothing to show.
                yield RequestSubmitted(r.request_id, state.t_send or t, state.prompt_tokens)
            yield RequestFinished(r.request_id, t, "cancelled")
        pending.clear()

    async def _run_batch(
        self,
        requests: list[Request],
        sampling: SamplingParams,
        states: dict[str, _RequestState],
        events: queue.Queue,
    ) -> None:
        client = await self._shared_client()
        gate = asyncio.Semaphore(self.concurrency or len(requests))
        tasks = [
            asyncio.create_task(self._one(client, gate, r, sampling, states[r.request_id], events))
            for r in requests
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    async def _shared_client(self) -> Any:
        """The engine's one HTTP client, made on first use (on the loop) and kept until ``unload``.

        Its connection pool outlives each run: in a sweep only the very first request pays for a new
        connection (load modes report that cold request apart), not the first request of every run.
        """
        import httpx

        if self._client is None:
            limits = httpx.Limits(max_connections=MAX_BATCH_SIZE, max_keepalive_connections=MAX_BATCH_SIZE,
                                  keepalive_expiry=_KEEPALIVE_S)
            self._client = httpx.AsyncClient(timeout=self._timeouts(), headers=self._headers(), limits=limits)
        return self._client

    def open_session(self, sampling: SamplingParams) -> LoadSession:
        """A session that sends each submitted request at once on the shared client (see ``LoadSession``)."""
        sampling.validate()
        if self._info is None or self._loop is None:
            raise LabError("the openai engine is not loaded yet", hint="load it first")
        self._cancel.clear()
        return _OpenAISession(self, sampling)

    async def _one(
        self,
        client: Any,
        gate: asyncio.Semaphore | None,
        request: Request,
        sampling: SamplingParams,
        state: _RequestState,
        events: queue.Queue,
    ) -> None:
        """Send one request and turn its SSE chunks into events (after a slot of ``gate``, if given)."""
        async with gate if gate is not None else contextlib.nullcontext():
            state.t_send = time.perf_counter()
            try:
                await self._read_stream(client, request, sampling, state, events)
                self._flush(state, events, final=True)
                reason: FinishReason = "length" if state.finish_reason == "length" else "eos"
                self._submitted(state, events)
                events.put(RequestFinished(request.request_id, time.perf_counter(), reason))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Keep what arrived; the request ends with the reason, the others go on.
                self._flush(state, events, final=False)
                self._submitted(state, events)
                message = exc.args[0] if isinstance(exc, _StreamError) else self._describe(exc)
                finished = RequestFinished(request.request_id, time.perf_counter(), "error", error=self._scrub(message))
                events.put(finished)

    async def _read_stream(
        self,
        client: Any,
        request: Request,
        sampling: SamplingParams,
        state: _RequestState,
        events: queue.Queue,
    ) -> None:
        url = f"{self.base_url}/{'chat/completions' if self.api == 'chat' else 'completions'}"
        async with client.stream("POST", url, json=self._body(request, sampling)) as response:
            if response.status_code >= 400:
                body = (await response.aread()).decode("utf-8", "replace")
                raise _StreamError(self._http_error_message(response.status_code, body))
            kind = response.headers.get("content-type", "")
            if "text/event-stream" not in kind:
                raise _StreamError(f"malformed stream: the server answered {kind or 'no content type'}, "
                                   "not server-sent events")
            done = False
            async for line in response.aiter_lines():
                t = time.perf_counter()
                line = line.strip()
                if not line or line.startswith(":") or not line.startswith("data:"):
                    continue  # keep-alives, comments, event names
                data = line[len("data:"):].strip()
                if data == "[DONE]":
                    done = True
                    break
                try:
                    chunk = json.loads(data)
                except ValueError:
                    raise _StreamError(f"malformed stream: not JSON: {self._excerpt(data)}") from None
                if not isinstance(chunk, dict):
                    raise _StreamError(f"malformed stream: unexpected chunk {self._excerpt(data)}")
                self._apply_chunk(chunk, t, state, events)
            if not done and state.finish_reason is None:
                raise _StreamError("the server closed the stream before it finished (no [DONE])")

    def _apply_chunk(self, chunk: dict, t: float, state: _RequestState, events: queue.Queue) -> None:
        if "error" in chunk:
            err = chunk["error"]
            message = err.get("message") if isinstance(err, dict) else str(err)
            text = " ".join(self._scrub(str(message)).split())[:_MAX_ERROR_CHARS]
            raise _StreamError(f"the server reported an error mid-stream: {text}")
        usage = chunk.get("usage") or None
        chunk_total: int | None = None
        if isinstance(usage, dict):
            if isinstance(usage.get("prompt_tokens"), int):
                state.prompt_tokens = usage["prompt_tokens"]
            if isinstance(usage.get("completion_tokens"), int):
                state.usage_completion = usage["completion_tokens"]
                chunk_total = usage["completion_tokens"]
        choices = chunk.get("choices")
        if choices is None and usage is None:
            raise _StreamError(f"malformed stream: chunk without choices: {self._excerpt(json.dumps(chunk))}")
        if not choices:
            # A usage-only chunk (the end-of-stream summary) carries no token: it neither counts one nor
            # moves the request's last token time; ``_flush`` reconciles the count with it.
            return
        text = ""
        for choice in choices:
            if not isinstance(choice, dict):
                raise _StreamError("malformed stream: a choice is not an object")
            if self.api == "chat":
                text += (choice.get("delta") or {}).get("content") or ""
            else:
                text += choice.get("text") or ""
            if choice.get("finish_reason"):
                state.finish_reason = str(choice["finish_reason"])
        if chunk_total is not None:
            # Usage on this very chunk (vLLM's continuous usage): the running total says how many tokens
            # it carried. Trusted only where it comes per chunk; a server that names itself vLLM may
            # still send usage once at the end (older versions, gateways rewriting stream_options).
            state.continuous_total = chunk_total
            n_new = chunk_total - state.counted
        else:
            n_new = 1 if text else 0
        if n_new <= 0 and not text:
            return
        self._submitted(state, events)
        if n_new <= 0:
            # Text with no new token (a detokenizer releasing held-back characters): join the previous event.
            if state.held is not None:
                h = state.held
                state.held = TokenEvent(h.request_id, h.token_id, h.text + text, h.t, h.n_tokens)
                return
            n_new = 1
        state.counted += n_new
        if state.held is not None:
            events.put(state.held)
        state.held = TokenEvent(state.request_id, -1, text, t, n_tokens=n_new)
        state.got_output = True

    def _flush(self, state: _RequestState, events: queue.Queue, final: bool) -> None:
        """Pass on the held-back last event, corrected by the server's final usage count if it differs."""
        held, state.held = state.held, None
        if held is None:
            return
        if final and state.usage_completion is not None and state.usage_completion != state.counted:
            held = TokenEvent(held.request_id, held.token_id, held.text, held.t,
                              max(1, held.n_tokens + state.usage_completion - state.counted))
        self._submitted(state, events)
        events.put(held)

    @staticmethod
    def _submitted(state: _RequestState, events: queue.Queue) -> None:
        if not state.submitted_sent:
            state.submitted_sent = True
            events.put(RequestSubmitted(state.request_id, state.t_send, state.prompt_tokens))

    def _body(self, request: Request, sampling: SamplingParams) -> dict[str, Any]:
        stream_options: dict[str, Any] = {"include_usage": True}
        if self._continuous_usage:
            stream_options["continuous_usage_stats"] = True
        body: dict[str, Any] = {
            "model": self.info.model,
            "stream": True,
            "stream_options": stream_options,
            "max_tokens": request.budget(sampling),
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
        }
        if self.api == "chat":
            body["messages"] = [{"role": "user", "content": request.prompt}]
        else:
            body["prompt"] = request.prompt
        if sampling.seed is not None and not sampling.greedy:
            body["seed"] = sampling.seed
        # Not in OpenAI's own API, but understood by vLLM, SGLang and TGI; sent only when set.
        if sampling.top_k:
            body["top_k"] = sampling.top_k
        if sampling.repetition_penalty != 1.0:
            body["repetition_penalty"] = sampling.repetition_penalty
        if sampling.ignore_eos:
            body["ignore_eos"] = True
        return body

    # ----------------------------------------------------------------- helpers

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream, application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _timeouts(self) -> Any:
        import httpx

        # `timeout` bounds every wait: connecting, and each gap between chunks of a stream.
        return httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0))

    def _scrub(self, text: str) -> str:
        """``text`` with this engine's API key (and any Bearer token) masked: ``scrub_secret``."""
        return scrub_secret(text, self._api_key)

    def _excerpt(self, text: str, limit: int = 80) -> str:
        """The start of something the server sent, masked first and then shortened, quoted."""
        return repr(self._scrub(text)[:limit])

    def _transport_error(self, exc: BaseException) -> LabError:
        import httpx

        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return EngineFailure(
                f"cannot reach the server at {self.base_url} ({self._scrub(str(exc)) or type(exc).__name__})",
                hint="start the server, or check --base-url (host and port)",
            )
        return EngineFailure(self._describe(exc))

    def _describe(self, exc: BaseException) -> str:
        import httpx

        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return self._scrub(f"cannot reach the server at {self.base_url}: {exc or type(exc).__name__}")
        if isinstance(exc, httpx.ReadTimeout | httpx.WriteTimeout | httpx.PoolTimeout):
            return f"timed out: the server sent nothing for {self.timeout:g} s"
        if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
            return self._scrub(f"the connection to the server was lost mid-stream ({exc or type(exc).__name__})")
        text = " ".join(str(exc).split()) or type(exc).__name__
        return self._scrub(f"{type(exc).__name__}: {text}")[:_MAX_ERROR_CHARS]

    def _http_error_message(self, status: int, body: str) -> str:
        """``HTTP 404: <the server's own message>`` from an OpenAI-style error body (key masked, then shortened)."""
        message = ""
        try:
            payload = json.loads(body)
            if isinstance(payload, dict):
                err = payload.get("error", payload)
                if isinstance(err, dict):
                    message = str(err.get("message") or err.get("detail") or "")
                elif err:
                    message = str(err)
                message = message or str(payload.get("detail") or payload.get("message") or "")
        except ValueError:
            message = body
        message = " ".join(self._scrub(message).split())[:_MAX_ERROR_CHARS] or "(no message)"
        return f"the server answered HTTP {status}: {message}"

    @staticmethod
    def _http_hint(status: int) -> str | None:
        if status in (401, 403):
            return "check the API key (--api-key-env names the variable that holds it)"
        if status == 404:
            return "check --base-url (it should end in /v1)"
        return None

    def _start_loop(self) -> None:
        if self._loop is not None:
            return
        self._loop, self._thread = start_loop_thread("openai-engine-loop")


class _OpenAISession:
    """``LoadSession`` over HTTP: each ``submit`` starts one streaming request on the engine's shared client."""

    def __init__(self, engine: OpenAIEngine, sampling: SamplingParams) -> None:
        self._engine = engine
        self._sampling = sampling
        self._states: dict[str, _RequestState] = {}
        self._futures: dict[str, concurrent.futures.Future] = {}
        self._events = SessionEvents()
        self._closed = False

    def submit(self, request: Request) -> None:
        """Start ``request`` now; its ``RequestSubmitted.t`` is when its HTTP request goes out."""
        validate_batch([request], self._sampling)
        loop = self._engine._loop
        if self._closed or loop is None:
            raise LabError("this load session is closed (the engine was unloaded or the run ended)")
        if request.request_id in self._states:
            raise InvalidInput(f"request id {request.request_id!r} was already used in this session")
        state = _RequestState(request.request_id)
        self._states[request.request_id] = state
        self._events.open.add(request.request_id)
        self._futures[request.request_id] = asyncio.run_coroutine_threadsafe(self._send(request, state), loop)

    async def _send(self, request: Request, state: _RequestState) -> None:
        client = await self._engine._shared_client()
        await self._engine._one(client, None, request, self._sampling, state, self._events.queue)

    def events(self, timeout: float) -> list[StreamEvent]:
        """What arrived since the last call (waits up to ``timeout`` for the first event)."""
        return self._events.take(timeout)

    def close(self) -> list[StreamEvent]:
        """Cancel unfinished requests: what already arrived, then each one closed as cancelled."""
        if self._closed:
            return []
        self._closed = True
        open_ids = self._events.open
        for rid in open_ids:
            self._futures[rid].cancel()
        for rid in open_ids:
            with contextlib.suppress(BaseException):
                self._futures[rid].result(timeout=2)
        out, submitted = self._events.take_closing()
        t = time.perf_counter()
        for rid in sorted(open_ids):
            state = self._states[rid]
            if not state.submitted_sent and rid not in submitted:
                out.append(RequestSubmitted(rid, state.t_send or t, state.prompt_tokens))
            out.append(RequestFinished(rid, t, "cancelled"))
        open_ids.clear()
        return out


__all__ = ["APIS", "OpenAIEngine", "scrub_secret"]
