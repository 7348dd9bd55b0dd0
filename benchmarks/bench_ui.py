"""UI benchmarks (figures, not timed asserts).

(a) Overhead: the same generation headless (``execute_run``) and inside the app
    (headless Textual via ``run_test``, the app's worker + sink + redraw timers);
    reports the tokens/s ratio app / headless (target ≥ 0.97). Uses the embedded
    Gemma 3 270M on CPU with the transformers engine when it can be loaded, else
    the scripted engine in real time (and says so).
(b) Flood: the scripted engine producing ~20,000 tokens/s for 10 s while keys are
    pressed; reports how long each key took to show on screen, the UI message
    queue's peak length, and process memory over time.
(c) Timeline (``--timeline-cost``): a batch of 1024 × 128 tokens from a scripted engine in its own host
    process, paced like a GPU (one decode step every ``--step-ms``, 3.1 ms as the H100 trace's batch 1024),
    headless and in the app with the timeline hidden and shown, taking turns: tokens/s, how long each
    timeline redraw took, and how long after the engine's last token the app had the run's end.
    ``--device ... --timeline`` runs the real-engine comparison with the timeline shown.

    python benchmarks/bench_ui.py [--quick] [--skip-real] [--out benchmarks/results/ui-DATE.json]
    python benchmarks/bench_ui.py --timeline-cost [--step-ms 3.1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pickle
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

from textual import events

from tui_lab.engines.base import Request, SamplingParams
from tui_lab.engines.scripted import ScriptedEngine, StepModel
from tui_lab.lab.export import write_json
from tui_lab.lab.run import execute_run
from tui_lab.ui.app import AppOptions, LabApp
from tui_lab.ui.live import LiveRun
from tui_lab.ui.loaded import LoadedExperiment
from tui_lab.ui.testing import FIXTURE_LESSONS, SCRIPTED_SPEC
from tui_lab.ui.widgets.live_panel import LivePanel
from tui_lab.ui.widgets.timeline import TimelineView


def _live(app: LabApp) -> LiveRun | None:
    """The run on the app's Run tab."""
    return app.query_one(LivePanel).live


class LentEngine:
    """A loaded engine lent to the app (no reload, no unload on quit)."""

    def __init__(self, engine) -> None:
        self._e = engine
        self.name = engine.name

    def load(self, progress=None):
        return self._e.info

    @property
    def info(self):
        return self._e.info

    def stream(self, requests, sampling, stop=None):
        return self._e.stream(requests, sampling, stop)

    def cancel(self) -> None:
        self._e.cancel()

    def unload(self) -> None:
        pass


def _rss_mb() -> float | None:
    try:
        import psutil
    except ImportError:  # the GPU machine may lack it: memory is then read from /proc
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except OSError:
            return None
    return psutil.Process().memory_info().rss / 2**20


async def _wait(pilot, cond, timeout: float, poll_s: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("app did not get there in time")
        # A plain sleep, not pilot.pause: pausing the pilot makes the app settle every call, which would
        # add the harness's own work to the UI overhead being measured.
        await asyncio.sleep(poll_s)


def _app(engine, batch: int, tokens: int) -> LabApp:
    app = LabApp(AppOptions(engine_factory=lambda name, **kw: LentEngine(engine), lessons=FIXTURE_LESSONS,
                            cursor_blink=False, save_progress=False,
                            engine_options={"model": "bench", "device": "cpu"}))
    return app


async def _run_in_app(engine, batch: int, tokens: int, prompts: list[str]) -> float:
    app = _app(engine, batch, tokens)
    async with app.run_test(size=(160, 48)) as pilot:
        await _wait(pilot, lambda: app.engine_state == "ready", 30)
        app.settings = app.settings.with_(batch_size=batch, max_new_tokens=tokens, greedy=True, prompt=prompts[0])
        await pilot.press("r")
        await _wait(pilot, lambda: bool(app.results) and app.busy is None, 600, poll_s=0.25)
        return app.results[-1]["output_tokens_per_s"]


def overhead(engine, label: str, batch: int, tokens: int, repeats: int) -> dict:
    """Alternate headless and in-app runs; compare median tokens/s."""
    prompts = _prompts(batch)
    requests = [Request(f"r{i}", p) for i, p in enumerate(prompts)]
    # Exactly what the app sends for these settings (greedy, EOS honoured).
    sampling = SamplingParams(max_new_tokens=tokens, temperature=0.0, ignore_eos=False)
    def in_thread() -> float:
        # The app generates in a worker thread; headless is measured in one too, so the comparison
        # isolates the UI (on a busy 2-core machine torch on the main thread was far slower, see main_thread).
        out: dict = {}
        worker = threading.Thread(target=lambda: out.setdefault("r", execute_run(engine, requests, sampling)))
        worker.start()
        worker.join()
        return out["r"].summary().output_tokens_per_s

    in_thread()  # warm-up
    headless, in_app = [], []
    for _ in range(repeats):
        headless.append(in_thread())
        in_app.append(asyncio.run(_run_in_app(engine, batch, tokens, prompts)))
    main_thread = execute_run(engine, requests, sampling).summary().output_tokens_per_s
    ratio = statistics.median(in_app) / statistics.median(headless)
    return {"engine": label, "batch": batch, "max_new_tokens": tokens, "repeats": repeats,
            "headless_tokens_per_s": headless, "app_tokens_per_s": in_app,
            "headless_median": statistics.median(headless), "app_median": statistics.median(in_app),
            "headless_main_thread_tokens_per_s": main_thread,
            "ratio_app_over_headless": ratio}


async def _flood(duration_s: float, rate: float, batch: int) -> dict:
    step = batch / rate
    engine = ScriptedEngine(timing=StepModel(prefill_per_token=0.0, decode_base=step, decode_per_seq=0.0),
                            real_time=True, clock=time.perf_counter)
    engine.load()
    tokens = int(duration_s / step) * 10  # more than can be made in time: the run is stopped at duration_s
    # What the producer alone reaches (no UI, no sink), for comparison with the rate inside the app.
    t0 = time.perf_counter()
    probe = threading.Event()
    threading.Timer(2.0, probe.set).start()
    alone = execute_run(engine, [Request(f"r{i}", "flood") for i in range(batch)],
                        SamplingParams(max_new_tokens=tokens, ignore_eos=True), stop=probe)
    producer_alone = alone.summary().output_tokens / (time.perf_counter() - t0)
    app = LabApp(AppOptions(engine_factory=lambda name, **kw: LentEngine(engine), lessons=FIXTURE_LESSONS,
                            cursor_blink=False, save_progress=False))
    latencies: list[float] = []
    rss: list[tuple[float, float]] = []
    queue_peak = 0
    async with app.run_test(size=(160, 48)) as pilot:
        await _wait(pilot, lambda: app.engine_state == "ready", 30)
        app.settings = app.settings.with_(batch_size=batch, max_new_tokens=tokens)
        app.action_run()
        t_start = time.monotonic()
        await _wait(pilot, lambda: _live(app) is not None and _live(app).figures().tokens_done > 0, 10)
        i = 0
        while app.busy and time.monotonic() - t_start < duration_s:
            queue_peak = max(queue_peak, app._message_queue.qsize())
            key, want = ("b", 128) if i % 2 == 0 else ("B", 64)
            t0 = time.perf_counter()
            # Post the key as the terminal driver would, then watch the status line (what the screen shows).
            app.post_message(events.Key(key, key))
            while f"batch {want} " not in app.query_one("#status").content.plain:
                await asyncio.sleep(0.001)
            latencies.append(time.perf_counter() - t0)
            rss.append((round(time.monotonic() - t_start, 2), round(_rss_mb(), 1)))
            i += 1
            await asyncio.sleep(0.3)
        app.action_stop()
        await _wait(pilot, lambda: app.busy is None, 30)
        fig = _live(app).figures()
        produced = fig.tokens_done
        wall = time.monotonic() - t_start
        live_tokens_kept = sum(len(r.tokens) for r in _live(app).requests)
    lat_ms = sorted(x * 1000 for x in latencies)
    return {
        "target_tokens_per_s": rate, "producer_alone_tokens_per_s": producer_alone, "batch": batch,
        "duration_s": round(wall, 2), "tokens": produced,
        "achieved_tokens_per_s": produced / wall if wall else None,
        "key_to_screen_ms": {"n": len(lat_ms), "p50": statistics.median(lat_ms) if lat_ms else None,
                             "max": max(lat_ms) if lat_ms else None},
        "ui_queue_peak": queue_peak,
        "rss_mb_over_time": rss,
        "tokens_kept_on_screen": live_tokens_kept,
    }


def transport(batch: int = 256, tokens: int = 400) -> dict:
    """Tokens/s of a delay-free scripted engine headless vs. through the host process, and cost per token."""
    import queue

    from tui_lab.host import protocol as hp
    from tui_lab.host.client import EngineHost
    from tui_lab.host.flood import make_flood

    engine = make_flood("scripted")
    engine.load()
    requests = [Request(f"r{i}", "flood") for i in range(batch)]
    sampling = SamplingParams(max_new_tokens=tokens)
    t0 = time.perf_counter()
    execute_run(engine, requests, sampling, sink=lambda events: None)
    headless_s = time.perf_counter() - t0
    n = batch * tokens
    events_q: queue.Queue = queue.Queue()
    host = EngineHost(events_q.put, factory="tui_lab.host.flood:make_flood")
    try:
        host.send(hp.Load(engine="scripted", model="scripted"))
        while not isinstance(events_q.get(timeout=60), hp.Loaded):
            pass
        reader, got, frames, pickled = hp.FrameReader(), 0, 0, 0
        t0 = time.perf_counter()
        host.send(hp.Run(1, "generate", {"batch_size": batch, "max_new_tokens": tokens}))
        while True:
            ev = events_q.get(timeout=300)
            if isinstance(ev, hp.Frame):
                frames += 1
                pickled += len(pickle.dumps(ev, protocol=5))
                reader.table(ev)
                got += sum(ev.n_tokens)
            elif isinstance(ev, hp.RunDone):
                break
        host_s = time.perf_counter() - t0
    finally:
        host.close()
    return {"batch": batch, "tokens": n, "tokens_received": got, "frames": frames,
            "headless_tokens_per_s": n / headless_s, "host_tokens_per_s": n / host_s,
            "bytes_per_token": pickled / max(got, 1),
            "cost_us_per_token": max(host_s - headless_s, 0.0) / n * 1e6}


def _paced_engine(step_s: float) -> dict:
    """The scripted engine's options for a GPU's pace: one decode step every ``step_s`` on the real clock."""
    return {"model": "scripted", "device": "cpu", "real_time": True, "clock": time.perf_counter,
            "timing": StepModel(prefill_per_token=0.0, decode_base=step_s, decode_per_seq=0.0)}


async def _timeline_in_app(batch: int, tokens: int, step_s: float, shown: bool) -> dict:
    """One ``generate`` run in the app, the paced engine in its own host process, the timeline shown or not."""
    app = LabApp(AppOptions(engine_spec=SCRIPTED_SPEC, engine_options=_paced_engine(step_s), lessons=FIXTURE_LESSONS,
                            cursor_blink=False, save_progress=False))
    async with app.run_test(size=(160, 48)) as pilot:
        await _wait(pilot, lambda: app.engine_state == "ready", 60)
        draws = time_timeline(app, shown)
        app.settings = app.settings.with_(batch_size=batch, max_new_tokens=tokens)
        queue_peak = 0
        app.action_run()
        while app.busy:
            queue_peak = max(queue_peak, app._message_queue.qsize())
            await asyncio.sleep(0.002)
        t_done = time.perf_counter()  # the app has the run's end (perf_counter: the host's clock too, on Linux)
        await _wait(pilot, lambda: bool(app.results), 30)
        rate = app.results[-1]["output_tokens_per_s"]
        live = _live(app)
        t_last = max((r.t_last for r in live.requests if r.t_last is not None), default=None) if live else None
        await pilot.pause(0.6)  # the finished run drawn from its result
    return {"tokens_per_s": rate, "redraw_ms": draws, "queue_peak": queue_peak,
            "done_after_last_token_ms": (t_done - t_last) * 1000 if t_last is not None else None}


def timeline_cost(batch: int = 1024, tokens: int = 128, step_s: float = 0.0031, repeats: int = 3) -> dict:
    """Headless, in the app with the timeline hidden and with it shown, taking turns ``repeats`` times."""
    engine = ScriptedEngine(**{k: v for k, v in _paced_engine(step_s).items() if k not in ("model", "device")})
    engine.load()
    requests = [Request(f"r{i}", p) for i, p in enumerate(_prompts(batch))]
    sampling = SamplingParams(max_new_tokens=tokens)
    rows: dict[str, list] = {"headless": [], "hidden": [], "shown": []}
    draws: list[float] = []
    lags: dict[str, list[float]] = {"hidden": [], "shown": []}
    peaks: dict[str, list[int]] = {"hidden": [], "shown": []}
    for _ in range(repeats):
        rows["headless"].append(execute_run(engine, requests, sampling).summary().output_tokens_per_s)
        for side in ("hidden", "shown"):
            got = asyncio.run(_timeline_in_app(batch, tokens, step_s, side == "shown"))
            rows[side].append(got["tokens_per_s"])
            peaks[side].append(got["queue_peak"])
            if got["done_after_last_token_ms"] is not None:
                lags[side].append(got["done_after_last_token_ms"])
            if side == "shown":
                draws += got["redraw_ms"]
    med = {k: statistics.median(v) for k, v in rows.items()}
    return {"batch": batch, "max_new_tokens": tokens, "step_ms": step_s * 1000, "repeats": repeats,
            "tokens_per_s": rows, "median_tokens_per_s": med,
            "ratio_hidden_over_headless": med["hidden"] / med["headless"],
            "ratio_shown_over_headless": med["shown"] / med["headless"],
            "timeline_redraw_ms": _ms(draws), "done_after_last_token_ms": {k: _ms(v) for k, v in lags.items()},
            "ui_queue_peak": peaks}


def _versions() -> dict:
    out = {"python": sys.version.split()[0]}
    for name in ("torch", "transformers", "vllm", "textual"):
        try:
            out[name] = __import__(name).__version__
        except Exception:  # not installed here
            continue
    return out


def _gpu_name() -> str:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def headless_figures(engine_name: str, model: str, device: str, batches: list[int], tokens: int,
                     repeats: int) -> dict[int, float]:
    """Tokens/s of ``generate`` with the engine in this process (no UI): median of ``repeats`` after a warm-up."""
    from tui_lab.engines import create_engine
    from tui_lab.engines.options import declared_only

    engine = create_engine(engine_name, **declared_only(engine_name, {"model": model, "device": device}))
    engine.load()
    out = {}
    try:
        for batch in batches:
            requests = [Request(f"r{i}", p) for i, p in enumerate(_prompts(batch))]
            sampling = SamplingParams(max_new_tokens=tokens, ignore_eos=True)
            execute_run(engine, requests, sampling)  # warm-up (graph capture, compile)
            rates = [execute_run(engine, requests, sampling).summary().output_tokens_per_s for _ in range(repeats)]
            out[batch] = statistics.median(rates)
            print(f"  headless {engine_name} batch {batch}: {out[batch]:,.0f} tok/s", flush=True)
    finally:
        engine.unload()
    return out


def _prompts(batch: int) -> list[str]:
    from tui_lab.lab.prompts import batch_prompts
    from tui_lab.params import DEFAULT_PROMPT

    return batch_prompts([DEFAULT_PROMPT], batch, 0)


async def app_figures(engine_name: str, model: str, device: str, batches: list[int], tokens: int,
                      repeats: int) -> dict[int, dict]:
    """The same runs inside the app (headless Textual), the engine in its own host process, while keys are
    pressed: tokens/s, key→screen latency and the UI process's memory."""
    app = LabApp(AppOptions(engine=engine_name, engine_options={"model": model, "device": device},
                            lessons=FIXTURE_LESSONS, cursor_blink=False, save_progress=False))
    out: dict[int, dict] = {}
    async with app.run_test(size=(160, 48)) as pilot:
        await _wait(pilot, lambda: app.engine_state in ("ready", "failed"), 900, poll_s=0.5)
        if app.engine_state != "ready":
            raise RuntimeError(app.query_one("#engine-text").content.plain)
        app.load_experiment(LoadedExperiment.of("generate", {"ignore_eos": True}))
        draws = time_timeline(app, TIMELINE)
        for batch in batches:
            rates, keys, rss = [], [], []
            del draws[:]
            for _ in range(repeats + 1):  # the first is the warm-up, as headless
                rates.append(await _run_pressing_keys(pilot, app, batch, tokens, keys, rss))
            first, rates = rates[0], rates[1:]
            p99 = _p99(keys)
            out[batch] = {"tokens_per_s": statistics.median(rates), "key_ms_p50": statistics.median(keys) if keys
                          else None, "key_ms_p99": p99, "keys": len(keys), "first_run_tokens_per_s": first,
                          "ui_rss_mb": [r for r in (min(rss, default=None), max(rss, default=None))],
                          "timeline_shown": TIMELINE, "timeline_redraw_ms": _ms(draws)}
            print(f"  in the app {engine_name} batch {batch}: {out[batch]['tokens_per_s']:,.0f} tok/s (first run "
                  f"{first:,.0f}: {first / out[batch]['tokens_per_s']:.3f} of the warm runs), key p50 "
                  f"{out[batch]['key_ms_p50']} ms p99 {p99} ms over {len(keys)} keys", flush=True)
    return out


KEY_INTERVAL_S = 0.05
"""How often ``g`` is pressed during an in-app run (``--key-interval``; 0: no keys, the app only streams)."""
TIMELINE = False
"""``--timeline``: the in-app runs of ``--device`` show the Run tab's timeline."""


def time_timeline(app: LabApp, shown: bool) -> list[float]:
    """Show (or not) the app's timeline; the list returned fills with how long each of its redraws took (ms),
    counting only those that drew (a redraw with nothing new returns at once)."""
    if shown:
        app.action_timeline("toggle")
    view = app.query_one(TimelineView)
    draws: list[float] = []
    redraw = view.redraw

    def timed(live, selected) -> None:
        before = view.shown
        t0 = time.perf_counter()
        redraw(live, selected)
        if view.shown is not before:
            draws.append((time.perf_counter() - t0) * 1000)

    view.redraw = timed  # type: ignore[method-assign]
    return draws


def _ms(values: list[float]) -> dict:
    return {"n": len(values), "p50": round(statistics.median(values), 2) if values else None,
            "max": round(max(values), 2) if values else None}


async def _run_pressing_keys(pilot, app: LabApp, batch: int, tokens: int, keys: list[float],
                             rss: list[float | None], t_start: float | None = None) -> float:
    """One ``generate`` run in the app while ``g`` is pressed every 50 ms; key→screen times go to ``keys``
    (ms) and the UI process's memory to ``rss`` (MB; ``(seconds since t_start, MB)`` when ``t_start`` is given).
    Returns the run's tokens/s as the app recorded it."""
    app.settings = app.settings.with_(batch_size=batch, max_new_tokens=tokens, greedy=True,
                                      prompt="The future of AI is")
    n_results = len(app.results)
    app.action_run()
    while app.busy and not KEY_INTERVAL_S:
        rss.append(_rss_mb() if t_start is None else (round(time.perf_counter() - t_start, 1), _rss_mb()))
        await asyncio.sleep(0.05)
    while app.busy:
        # g flips greedy decoding in the settings (not the run in flight); the status line shows it.
        was_greedy = " greedy " in app.query_one("#status").content.plain
        t0 = time.perf_counter()
        app.post_message(events.Key("g", "g"))
        while app.busy and (" greedy " in app.query_one("#status").content.plain) == was_greedy:
            await asyncio.sleep(0.0005)
        if app.busy:
            keys.append((time.perf_counter() - t0) * 1000)
        rss.append(_rss_mb() if t_start is None else (round(time.perf_counter() - t_start, 1), _rss_mb()))
        await asyncio.sleep(KEY_INTERVAL_S)
    await _wait(pilot, lambda n=n_results: len(app.results) > n, 60)
    return app.results[-1]["output_tokens_per_s"]


def _p99(values: list[float]) -> float | None:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else None


async def app_soak(engine_name: str, model: str, device: str, batch: int, tokens: int, seconds: float) -> dict:
    """Back-to-back ``generate`` runs at ``batch`` in the app for ``seconds`` while keys are pressed: the UI
    process's memory over time (bounded or not), key→screen latency and tokens/s."""
    app = LabApp(AppOptions(engine=engine_name, engine_options={"model": model, "device": device},
                            lessons=FIXTURE_LESSONS, cursor_blink=False, save_progress=False))
    async with app.run_test(size=(160, 48)) as pilot:
        await _wait(pilot, lambda: app.engine_state in ("ready", "failed"), 900, poll_s=0.5)
        if app.engine_state != "ready":
            raise RuntimeError(app.query_one("#engine-text").content.plain)
        app.load_experiment(LoadedExperiment.of("generate", {"ignore_eos": True}))
        await _run_pressing_keys(pilot, app, batch, tokens, [], [])  # warm-up: graphs for this shape
        keys: list[float] = []
        samples: list = []
        rates: list[float] = []
        t_start = time.perf_counter()
        while time.perf_counter() - t_start < seconds:
            rates.append(await _run_pressing_keys(pilot, app, batch, tokens, keys, samples, t_start))
        wall = time.perf_counter() - t_start
    mbs = [mb for _, mb in samples if mb is not None]
    step = max(1, len(samples) // 60)
    doc = {"engine": engine_name, "batch_size": batch, "max_new_tokens": tokens, "seconds": round(wall, 1),
           "runs": len(rates), "app_tokens_per_s": statistics.median(rates) if rates else None,
           "key_ms_p50": statistics.median(keys) if keys else None, "key_ms_p99": _p99(keys), "keys": len(keys),
           "ui_rss_mb": {"first": mbs[0] if mbs else None, "max": max(mbs, default=None),
                         "last": mbs[-1] if mbs else None},
           "ui_rss_mb_over_time": samples[::step]}
    print(f"soak {engine_name} batch {batch} × {tokens} tokens for {doc['seconds']} s ({doc['runs']} runs): "
          f"{doc['app_tokens_per_s'] or 0:,.0f} tok/s; key p50/p99 {doc['key_ms_p50']}/{doc['key_ms_p99']} ms "
          f"over {len(keys)} keys; UI RSS MB first/max/last {doc['ui_rss_mb']}", flush=True)
    return doc


def engine_in_app(engines: list[str], model: str, device: str, batches: list[int], tokens: int, repeats: int,
                  out_dir: str, soak_s: float = 0.0, soak_tokens: int = 2048, tag: str = "", loads: int = 3) -> dict:
    """Headless against in-app tokens/s per engine and batch; writes ``ui-<card>-<date>.json``.

    Each side loads its engine ``loads`` times, the sides taking turns (headless, app, headless, app, ...), so a
    drift of the machine touches both alike. Per batch: each side's median and spread over the loads, and the
    ratio app / headless with its range over every pairing of loads; a range that covers 1.0 says the app's
    cost is not measurable here."""
    from tui_lab.bench import compare_modes, summarize_loads

    per_load, runs = [], []
    for engine_name in engines:
        for load in range(loads):
            headless = headless_figures(engine_name, model, device, batches, tokens, repeats)
            in_app = asyncio.run(app_figures(engine_name, model, device, batches, tokens, repeats))
            for batch in batches:
                a = in_app[batch]
                per_load.append({"engine": engine_name, "load": load, "batch_size": batch,
                                 "headless_tokens_per_s": headless[batch], "app_tokens_per_s": a["tokens_per_s"],
                                 "ratio": a["tokens_per_s"] / headless[batch], "key_ms_p50": a["key_ms_p50"],
                                 "key_ms_p99": a["key_ms_p99"], "keys": a["keys"], "ui_rss_mb_min_max": a["ui_rss_mb"]})
                print(f"{engine_name} load {load + 1}/{loads} batch {batch}: headless {headless[batch]:,.0f} · in app "
                      f"{a['tokens_per_s']:,.0f} tok/s · ratio {per_load[-1]['ratio']:.3f} · key p50/p99 "
                      f"{a['key_ms_p50']}/{a['key_ms_p99']} ms", flush=True)
        mine = [r for r in per_load if r["engine"] == engine_name]
        sides = [{"model": engine_name, "mode": side, "batch_size": r["batch_size"],
                  "tokens_per_s": r[f"{side}_tokens_per_s"]} for r in mine for side in ("app", "headless")]
        summary = {(row["mode"], row["batch_size"]): row for row in summarize_loads(sides)}
        for c in compare_modes(list(summary.values())):
            b = c["batch_size"]
            these = [r for r in mine if r["batch_size"] == b]
            p50s = [r["key_ms_p50"] for r in these if r["key_ms_p50"] is not None]
            p99s = [r["key_ms_p99"] for r in these if r["key_ms_p99"] is not None]
            runs.append({"engine": engine_name, "batch_size": b, "loads": len(these),
                         "headless_tokens_per_s": summary[("headless", b)]["tokens_per_s"]["median"],
                         "app_tokens_per_s": summary[("app", b)]["tokens_per_s"]["median"],
                         "headless_spread": [summary[("headless", b)]["tokens_per_s"][k] for k in ("min", "max")],
                         "app_spread": [summary[("app", b)]["tokens_per_s"][k] for k in ("min", "max")],
                         "ratio": c["ratio"], "ratio_range": [c["low"], c["high"]], "measurable": c["measurable"],
                         "key_ms_p50": statistics.median(p50s) if p50s else None,
                         "key_ms_p99": max(p99s) if p99s else None, "keys": sum(r["keys"] for r in these)})
            verdict = "" if c["measurable"] else " — the range covers 1.0: the app's cost is not measurable here"
            print(f"{engine_name} batch {b} over {len(these)} loads: in app / headless {c['ratio']:.3f} "
                  f"[{c['low']:.3f}–{c['high']:.3f}]{verdict}", flush=True)
    card = _gpu_name()
    doc = {"gpu": card, "versions": _versions(), "model": model, "max_new_tokens": tokens, "repeats": repeats,
           "loads": loads, "key_interval_s": KEY_INTERVAL_S, "cpus": os.cpu_count(), "command": " ".join(sys.argv),
           "runs": runs, "per_load": per_load}
    if soak_s > 0:
        doc["soak"] = [asyncio.run(app_soak(name, model, device, max(batches), soak_tokens, soak_s))
                       for name in engines]
    slug = card.lower().replace(" ", "-")
    path = Path(out_dir) / f"ui-{slug}-{time.strftime('%Y-%m-%d')}{'-' + tag if tag else ''}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2))
    print(f"wrote {path}")
    return doc


def main(argv: list[str] | None = None) -> int:
    """Run both benchmarks, print the figures and write them as JSON."""
    global KEY_INTERVAL_S, TIMELINE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, shorter flood")
    parser.add_argument("--skip-real", action="store_true", help="use the scripted engine for the overhead test")
    parser.add_argument("--out", default=f"benchmarks/results/ui-{time.strftime('%Y-%m-%d')}.json")
    parser.add_argument("--transport", action="store_true",
                        help="only measure the engine host transport (scripted flood through the host process)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="headless against in-app with a real engine on this device (the engine in its own "
                        "process in the app)")
    parser.add_argument("--engine", default="transformers", help="engines for --device, comma-separated")
    parser.add_argument("--model", default="arch:gemma-3-270m", help="model for --device")
    parser.add_argument("--batches", default="1,64,256,1024", help="batch sizes for --device")
    parser.add_argument("--tokens", type=int, default=128, help="new tokens per request for --device")
    parser.add_argument("--repeats", type=int, default=2, help="measured runs per point for --device")
    parser.add_argument("--loads", type=int, default=3,
                        help="with --device: fresh engine loads per side, headless and app taking turns (default 3)")
    parser.add_argument("--out-dir", default="benchmarks/results", help="where --device writes its JSON")
    parser.add_argument("--soak", type=float, default=0.0, metavar="SECONDS",
                        help="with --device: also run the largest batch back to back in the app for this long and "
                        "report the UI process's memory over time")
    parser.add_argument("--soak-tokens", type=int, default=2048, help="new tokens per request in the soak runs")
    parser.add_argument("--key-interval", type=float, default=KEY_INTERVAL_S, metavar="SECONDS",
                        help="with --device: press g this often during in-app runs (0: no keys)")
    parser.add_argument("--tag", default="", help="suffix of the --device result file's name")
    parser.add_argument("--timeline", action="store_true", help="with --device: the in-app runs show the timeline")
    parser.add_argument("--timeline-cost", action="store_true",
                        help="only (c): batch 1024 × 128 from a paced scripted engine, headless against in the app "
                        "with the timeline hidden and shown (--batches' largest, --tokens, --step-ms, --repeats)")
    parser.add_argument("--step-ms", type=float, default=3.1, help="with --timeline-cost: one decode step (ms)")
    args = parser.parse_args(argv)
    KEY_INTERVAL_S = args.key_interval
    TIMELINE = args.timeline
    if args.timeline_cost:
        t = timeline_cost(max(int(b) for b in args.batches.split(",")), args.tokens, args.step_ms / 1000, args.repeats)
        m, d = t["median_tokens_per_s"], t["timeline_redraw_ms"]
        print(f"(c) timeline: batch {t['batch']} × {t['max_new_tokens']} tokens, a step every {t['step_ms']:.1f} ms; "
              f"tokens/s headless {m['headless']:,.0f} · in the app, timeline hidden {m['hidden']:,.0f} "
              f"({t['ratio_hidden_over_headless']:.3f}) · shown {m['shown']:,.0f} "
              f"({t['ratio_shown_over_headless']:.3f}); "
              f"timeline redraw p50 {d['p50']} ms, max {d['max']} ms over {d['n']}; the app had the run's end "
              f"{t['done_after_last_token_ms']} ms after its last token; UI queue peak {t['ui_queue_peak']}")
        doc = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "processor": platform.processor()},
               "versions": _versions(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "timeline": t}
        print(f"written to {write_json(args.out, doc)}")
        return 0
    if args.device:
        engine_in_app(args.engine.split(","), args.model, args.device, [int(b) for b in args.batches.split(",")],
                      args.tokens, args.repeats, args.out_dir, args.soak, args.soak_tokens, args.tag, args.loads)
        return 0
    if args.transport:
        t = transport()
        print(f"transport: batch {t['batch']}, {t['tokens']} tokens in {t['frames']} frames; headless "
              f"{t['headless_tokens_per_s']:.0f} tok/s, through the host {t['host_tokens_per_s']:.0f} tok/s "
              f"(received {t['tokens_received']}); {t['bytes_per_token']:.1f} bytes/token pickled; "
              f"≈{t['cost_us_per_token']:.2f} µs/token added")
        return 0
    result: dict = {
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0], "cpus": os.cpu_count(),
                    "processor": platform.processor(), "load_avg": os.getloadavg()},
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    repeats = 2 if args.quick else 3
    engine, label = None, ""
    if not args.skip_real:
        try:
            from tui_lab.engines.hf import TransformersEngine

            engine = TransformersEngine(model="embedded", device="cpu")
            engine.load()
            label = "transformers · embedded Gemma 3 270M · cpu"
        except Exception as exc:  # report and fall back: the benchmark still says something
            print(f"real model unavailable ({exc}); using the scripted engine in real time", file=sys.stderr)
            engine = None
    if engine is None:
        engine = ScriptedEngine(timing=StepModel(decode_base=0.01, decode_per_seq=0.0005), real_time=True,
                                clock=time.perf_counter)
        engine.load()
        label = "scripted (real time) — the real model was not used"
    result["overhead"] = overhead(engine, label, batch=4, tokens=32, repeats=repeats)
    o = result["overhead"]
    print(f"(a) overhead [{label}] batch {o['batch']} × {o['max_new_tokens']} tokens: headless "
          f"{o['headless_median']:.1f} tok/s, in app {o['app_median']:.1f} tok/s → ratio "
          f"{o['ratio_app_over_headless']:.3f} (target ≥ 0.97); headless on the main thread: "
          f"{o['headless_main_thread_tokens_per_s']:.1f} tok/s")
    flood = asyncio.run(_flood(4.0 if args.quick else 10.0, 20_000.0, 64))
    result["flood"] = flood
    k = flood["key_to_screen_ms"]
    print(f"(b) flood: producer alone {flood['producer_alone_tokens_per_s']:.0f} tok/s; "
          f"{flood['achieved_tokens_per_s']:.0f} tok/s achieved in the app for {flood['duration_s']} s "
          f"({flood['tokens']} tokens); key → screen p50 {k['p50']:.1f} ms, max {k['max']:.1f} ms over "
          f"{k['n']} presses; UI queue peak {flood['ui_queue_peak']}; RSS MB {flood['rss_mb_over_time'][0][1]} → "
          f"{flood['rss_mb_over_time'][-1][1]}; tokens kept on screen {flood['tokens_kept_on_screen']}")
    print(f"written to {write_json(args.out, result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
