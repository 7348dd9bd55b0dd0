"""The engine host process: transport, columnar frames, stop, crashes, orphans, clocks."""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tui_lab.engines.events import RequestFinished, RequestSubmitted, TokenEvent, TokenStep, per_token
from tui_lab.host import protocol as p
from tui_lab.host.client import EngineHost

FACTORY = "tests.host_engines:make_scripted"


def _wait(events: queue.Queue, kind: type, timeout: float = 30.0, seen: list | None = None) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            ev = events.get(timeout=0.2)
        except queue.Empty:
            continue
        if seen is not None:
            seen.append(ev)
        if isinstance(ev, kind):
            return ev
    raise AssertionError(f"no {kind.__name__} within {timeout}s (seen: {seen!r:.300})")


@pytest.fixture
def host():
    events: queue.Queue = queue.Queue()
    h = EngineHost(events.put, factory=FACTORY)
    yield h, events
    h.close()


def _load(h: EngineHost, events: queue.Queue, model: str = "scripted") -> Any:
    h.send(p.Load(engine="scripted", model=model))
    return _wait(events, p.Loaded)


def test_frame_round_trip_is_columnar_and_lossless() -> None:
    evs = [RequestSubmitted("r0", 1.0, 3), RequestSubmitted("r1", 1.0, 3),
           TokenEvent("r0", 7, " a", 1.5), TokenEvent("r1", 8, " b", 1.5, 2), RequestFinished("r1", 1.6, "length")]
    b = p.FrameBuilder(4)
    b.add(evs)
    frame = pickle.loads(pickle.dumps(b.take(), protocol=5))
    assert list(frame.index) == [0, 1] and list(frame.token_id) == [7, 8] and list(frame.n_tokens) == [1, 2]
    assert frame.text == [" a", " b"] and list(frame.t) == [1.5, 1.5]
    assert p.FrameReader().events(frame) == evs
    assert b.take() is None


def test_token_steps_fold_into_the_same_columns_as_token_events() -> None:
    ids = ["r0", "r1", "r2"]
    evs = [RequestSubmitted(r, 1.0, 3) for r in ids]
    evs += [TokenStep(ids, [7, 8, 9], [" a", " b", " c"], 1.5), TokenStep(ids, [10, 11, 12], ["d", "e", "f"], 1.6),
            RequestFinished("r1", 1.6, "length"), TokenStep(["r0", "r2"], [13, 14], ["g", "h"], 1.7)]
    by_step, by_token = p.FrameBuilder(1), p.FrameBuilder(1)
    by_step.add(evs)
    by_token.add(list(per_token(evs)))
    a, b = by_step.take(), by_token.take()
    assert (list(a.index), list(a.token_id), a.text, list(a.t), list(a.n_tokens), a.new_ids) == \
           (list(b.index), list(b.token_id), b.text, list(b.t), list(b.n_tokens), b.new_ids)
    assert list(a.index) == [0, 1, 2, 0, 1, 2, 0, 2] and list(a.t) == [1.5] * 3 + [1.6] * 3 + [1.7] * 2
    # a later frame of the same run keeps the indices (the id table lives on)
    by_step.add([TokenStep(["r0", "r2"], [15, 16], ["i", "j"], 1.8)])
    later = by_step.take()
    assert list(later.index) == [0, 2] and later.new_ids == []


def test_generate_runs_in_the_host_with_frames_and_result(host) -> None:
    h, events = host
    assert _load(h, events).info.engine == "scripted"
    h.send(p.Run(1, "generate", {"batch_size": 4, "max_new_tokens": 8}))
    seen: list = []
    done = _wait(events, p.RunDone, seen=seen)
    frames = [e for e in seen if isinstance(e, p.Frame)]
    reader = p.FrameReader()
    tokens = [e for f in frames for e in reader.events(f) if isinstance(e, TokenEvent)]
    assert len(tokens) == 32
    assert done.result.requests[0].token_ids.__len__() == 8 and not done.result.partial
    assert any(isinstance(e, p.RunProgressLine) and e.progress.new_run for e in seen)
    # frames are batched by time: 8 steps of 10 ms give a handful, not one per token
    assert len(frames) < len(tokens)


def test_stop_acts_within_a_step(host) -> None:
    h, events = host
    _load(h, events)
    h.send(p.Run(2, "generate", {"batch_size": 2, "max_new_tokens": 2000}))
    _wait(events, p.Frame)
    h.send(p.Stop(2))
    done = _wait(events, p.RunDone, timeout=30)  # a bound for a loaded machine; the count below is the check
    assert done.result.partial
    assert done.result.requests[0].token_ids.__len__() < 2000


def test_host_and_ui_clocks_are_comparable(host) -> None:
    h, _ = host
    before, t_host, after = h.ping()
    assert before <= t_host <= after


def test_a_killed_host_takes_everything_it_started_before_its_death_is_reported(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """kill -9 of the host (the out-of-memory killer): its children, in its group or in a group of their own,
    are gone by the time HostDied arrives."""

    def session_members(leader: int) -> list[int]:
        out = []
        for name in filter(str.isdigit, os.listdir("/proc")):
            with contextlib.suppress(OSError):
                if _alive(int(name)) and leader in (os.getpgid(int(name)), os.getsid(int(name))):
                    out.append(int(name))
        return out

    child_file = tmp_path / "children.pid"
    monkeypatch.setenv("HOST_TEST_CHILD_FILE", str(child_file))
    events: queue.Queue = queue.Queue()
    h = EngineHost(events.put, factory=FACTORY)
    try:
        _load(h, events, "grandchild")
        in_group, own_group = (int(pid) for pid in child_file.read_text().split())
        assert os.getpgid(in_group) == h.pid and os.getpgid(own_group) == own_group
        assert os.getsid(own_group) == h.pid
        assert {in_group, own_group} <= set(session_members(h.pid))
        os.kill(h.pid, signal.SIGKILL)
        died = _wait(events, p.HostDied, timeout=60)
        # Checked at the moment the death is reported, not after a wait.
        assert not _alive(in_group) and not _alive(own_group)
        assert session_members(h.pid) == []
        assert died.exitcode == -signal.SIGKILL and "press m" in died.message
    finally:
        h.close()


def _host_script(model: str, wait_for: str) -> str:
    return textwrap.dedent(f"""
        import json, queue
        from tui_lab.host import protocol as p
        from tui_lab.host.client import EngineHost
        q = queue.Queue()
        h = EngineHost(q.put, factory={FACTORY!r})
        h.send(p.Load(engine="scripted", model={model!r}))
        while True:
            ev = q.get(timeout=120)
            if isinstance(ev, p.Loaded):
                h.send(p.Run(1, "generate", {{"batch_size": 2, "max_new_tokens": 50}}))
            if isinstance(ev, p.{wait_for}):
                break
        print(json.dumps({{**ev.__dict__, "log": str(h.log_path)}}), flush=True)
        h.close()
    """)


def test_the_hosts_output_goes_to_its_log_and_the_error_names_the_cause(tmp_path: Path) -> None:
    """A child process dies with a traceback, the load fails pointing "above": the error carries the child's
    exception and the log's path, and nothing reaches the app's terminal."""
    import json

    env = {**os.environ, "PYTHONPATH": os.getcwd(), "INFERENCE_LAB_LOGS": str(tmp_path / "logs")}
    out = subprocess.run([sys.executable, "-c", _host_script("child-traceback", "HostError")], capture_output=True,
                         text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    error = json.loads(out.stdout.strip().splitlines()[-1])
    log = Path(error["log"])
    assert log.parent == tmp_path / "logs" and log.name.startswith("host-")
    assert error["what"] == "load" and "Engine core initialization failed" in error["message"]
    assert f"cause in the engine log: ValueError: 42 KV blocks do not fit in 1 GiB ({log})" in error["hint"]
    assert "\n" not in error["hint"]
    text = log.read_text()
    assert "loading the scripted engine" in text and "Traceback (most recent call last)" in text
    assert "engine core: sizing the KV cache" in text
    assert len(out.stdout.strip().splitlines()) == 1  # the app's terminal got the one line it printed itself
    for line in ("Traceback", "42 KV blocks", "sizing the KV cache", "loading the scripted engine"):
        assert line not in out.stderr


def test_a_run_that_fails_mid_stream_names_the_cause_from_the_log(host) -> None:
    """The run keeps its partial result; its error gets the child's exception from the host's log."""
    h, events = host
    assert h.log_path is not None and h.log_path.exists()
    _load(h, events, "crash-midrun-child")
    h.send(p.Run(7, "generate", {"batch_size": 2, "max_new_tokens": 50}))
    done = _wait(events, p.RunDone)
    error = done.result.error
    assert done.result.partial and error.startswith("EngineCore encountered an issue")
    assert f"cause in the engine log: MemoryError: worker lost its KV blocks ({h.log_path})" in error


def test_a_crash_names_the_fatal_error_from_the_log(tmp_path: Path) -> None:
    import json

    env = {**os.environ, "PYTHONPATH": os.getcwd(), "INFERENCE_LAB_LOGS": str(tmp_path / "logs")}
    out = subprocess.run([sys.executable, "-c", _host_script("crash-segv", "HostDied")], capture_output=True,
                         text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    died = json.loads(out.stdout.strip().splitlines()[-1])
    assert died["exitcode"] == -signal.SIGSEGV and "segmentation fault" in died["message"]
    assert f"cause in the engine log: Fatal Python error: Segmentation fault ({died['log']})" in died["message"]
    assert "Fatal Python error" not in out.stderr


@pytest.mark.parametrize("model", ["crash-exit", "crash-raise"])
def test_crash_mid_run_reports_an_error_and_a_fresh_host_works(model: str) -> None:
    events: queue.Queue = queue.Queue()
    h = EngineHost(events.put, factory=FACTORY)
    try:
        _load(h, events, model)
        h.send(p.Run(3, "generate", {"batch_size": 2, "max_new_tokens": 50}))
        if model == "crash-exit":
            died = _wait(events, p.HostDied, timeout=10)
            assert died.exitcode == 3 and "press m" in died.message
            assert not h.send(p.Ping()) or not h.alive()
        else:
            err = _wait(events, p.HostError, timeout=10)
            assert "blew up" in err.message and err.run_id == 3 and err.hint
            assert _wait(events, p.RunDone).run_id == 3
            assert h.alive()  # an exception in an engine does not take the host down
    finally:
        h.close()
    fresh: queue.Queue = queue.Queue()
    h2 = EngineHost(fresh.put, factory=FACTORY)
    try:
        _load(h2, fresh)
        h2.send(p.Run(4, "generate", {"batch_size": 1, "max_new_tokens": 3}))
        assert _wait(fresh, p.RunDone).result.requests[0].token_ids.__len__() == 3
    finally:
        h2.close()


def test_unknown_experiment_is_an_error_not_a_hang(host) -> None:
    h, events = host
    _load(h, events)
    h.send(p.Run(5, "no-such-thing", {}))
    err = _wait(events, p.HostError)
    assert "unknown experiment" in err.message
    assert _wait(events, p.RunDone).result is None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGHUP])
def test_killing_the_ui_leaves_no_host_and_no_children(tmp_path: Path, sig: signal.Signals) -> None:
    child_file = tmp_path / "child.pid"
    script = textwrap.dedent(f"""
        import queue, sys, time
        from tui_lab.host import protocol as p
        from tui_lab.host.client import EngineHost
        q = queue.Queue()
        h = EngineHost(q.put, factory={FACTORY!r})
        h.send(p.Load(engine="scripted", model="grandchild"))
        while not isinstance(q.get(timeout=60), p.Loaded):
            pass
        h.send(p.Run(1, "generate", {{"batch_size": 2, "max_new_tokens": 100000}}))
        print(h.pid, flush=True)
        time.sleep(120)
    """)
    env = {**os.environ, "HOST_TEST_CHILD_FILE": str(child_file), "PYTHONPATH": os.getcwd()}
    ui = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        host_pid = int(ui.stdout.readline())
        grandchild, own_group = (int(pid) for pid in child_file.read_text().split())
        assert _alive(host_pid) and _alive(grandchild) and _alive(own_group)
        ui.send_signal(sig)
        ui.wait(10)
        end = time.monotonic() + 10
        while time.monotonic() < end and (_alive(host_pid) or _alive(grandchild) or _alive(own_group)):
            time.sleep(0.1)
        assert not _alive(host_pid), "the host outlived the UI"
        assert not _alive(grandchild), "the host's child outlived the UI"
        assert not _alive(own_group), "the host's child in a group of its own outlived the UI"
    finally:
        if ui.poll() is None:
            ui.kill()


def test_the_ui_side_never_imports_torch() -> None:
    """Loading and running through the host leaves torch, transformers and vLLM out of the UI process."""
    script = textwrap.dedent(f"""
        import queue, sys
        import tui_lab.ui.app  # the app module itself must not pull them in either
        from tui_lab.host import protocol as p
        from tui_lab.host.client import EngineHost
        q = queue.Queue()
        h = EngineHost(q.put, factory={FACTORY!r})
        h.send(p.Load(engine="scripted", model="scripted"))
        h.send(p.Run(1, "generate", {{"batch_size": 2, "max_new_tokens": 4}}))
        while not isinstance(q.get(timeout=60), p.RunDone):
            pass
        h.close()
        print(sorted(m for m in ("torch", "transformers", "vllm") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_engine_info_crosses_as_builtin_values() -> None:
    """A library's ``str`` subclass (``torch.__version__``) would import that library when unpickled in the UI."""
    from tui_lab.engines.base import EngineInfo
    from tui_lab.host.server import plain_info

    class Version(str):
        pass

    info = plain_info(EngineInfo("e", "m", "cpu", "float32", versions={"torch": Version("2.13")}))
    assert type(info.versions["torch"]) is str
    assert b"Version" not in pickle.dumps(info, protocol=5)


def test_a_vllm_variant_makes_room_and_the_lab_engine_comes_back() -> None:
    """A second vLLM beside the loaded one ran out of memory: the loaded one is released, then loaded again."""
    from tui_lab.engines.scripted import ScriptedEngine
    from tui_lab.lab.experiment import RunContext

    made: list[str] = []
    loaded = ScriptedEngine()
    loaded.load()
    released: list[bool] = []

    def reload() -> ScriptedEngine:
        engine = ScriptedEngine()
        engine.load()
        made.append("reloaded")
        return engine

    ctx = RunContext(engine=loaded, engine_name="vllm", engine_options={"model": "m"},
                     engine_factory=lambda name, **kw: made.append(name) or ScriptedEngine(),
                     release=lambda: released.append(True), reload=reload)
    ctx.make_engine("transformers")
    assert not released and ctx.engine is loaded  # another engine kind: the loaded one stays
    ctx.make_engine("vllm", max_num_seqs=2)
    assert released == [True] and ctx.engine is None
    assert ctx.loaded is not None and made[-1] == "reloaded"

def test_the_cause_is_the_first_real_exception_of_the_log() -> None:
    """vLLM's shape: its engine core's traceback (each line prefixed), then the wrapper the host raised."""
    from tui_lab.host.logs import cause

    log = textwrap.dedent("""\
        INFO 12-07 09:00:00 [core.py:93] Initializing a V1 LLM engine
        WARNING 12-07 09:00:01 [cpu.py:12] Pin memory is not supported on CPU.
        (EngineCore_DP0 pid=4242) ERROR 12-07 09:00:02 [core.py:708] EngineCore failed to start.
        (EngineCore_DP0 pid=4242) Traceback (most recent call last):
        (EngineCore_DP0 pid=4242)   File "/x/vllm/v1/engine/core.py", line 699, in run_engine_core
        (EngineCore_DP0 pid=4242) torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB
        (EngineCore_DP0 pid=4242)
        (EngineCore_DP0 pid=4242) The above exception was the direct cause of the following exception:
        (EngineCore_DP0 pid=4242) RuntimeError: Engine core initialization failed. See root cause above.
    """)
    assert cause(log) == "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert cause("RuntimeError: Engine core initialization failed. See root cause above.\n").startswith(
        "RuntimeError: Engine core")  # nothing better: the wrapper itself
    assert cause("Fatal Python error: Segmentation fault\n\nThread 0x1 (most recent call first):\n") == \
        "Fatal Python error: Segmentation fault"
    assert cause("INFO all good\nWARNING some deprecation\n") is None
