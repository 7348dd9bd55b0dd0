"""Traces: what recording costs, and how faithfully a replay plays a recording back (figures, never asserts).

(a) cost, headless: the ``generate`` experiment through the runner (the path the CLI and the engine host
    take) with recording off (``INFERENCE_LAB_TRACE=0``) and on (the default), runs alternating, median
    tokens/s of each and the ratio on / off; then what building the trace and writing its file takes after the
    run (outside any timed window) and the file's size.
(b) cost, in the app (``App.run_test``, the engine in its own host process, as a learner runs it): the same
    runs with recording off and on, one app per setting (the host reads the setting when it starts).
(c) replay: the recorded runs of a trace (``--trace``; default: a run recorded here with the scripted engine at
    GPU-like step times) played through ``execute_run``. Events carry the recording's times, so a replay's
    figures are the recording's: the inter-token gaps' error against the recording is printed (it is zero
    unless something is wrong); and how late each event was handed over against its due time (the pacing of
    the live view on this machine), p50/p99/max.

    python benchmarks/bench_traces.py                                   # CPU: embedded Gemma 3 270M, batch 1,4,16
    python benchmarks/bench_traces.py --device cuda --batches 1,64,1024 --tokens 128 --model arch:gemma-3-270m
    python benchmarks/bench_traces.py --only replay --trace tui_lab/traces/NAME.trace.json.gz

Writes ``benchmarks/results/traces-<card>-<date>.json`` (``--out`` to choose).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tui_lab.engines.base import Request, SamplingParams  # noqa: E402
from tui_lab.lab import trace as T  # noqa: E402
from tui_lab.lab.experiment import RunContext  # noqa: E402
from tui_lab.lab.export import write_json  # noqa: E402
from tui_lab.lab.run import execute_run  # noqa: E402
from tui_lab.lab.runner import run_experiment  # noqa: E402


def _card() -> str:
    return str(T.machine_facts().get("card") or "unknown")


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _set_recording(on: bool) -> None:
    os.environ[T.TRACE_ENV] = "1" if on else "0"


# ---------------------------------------------------------------------------------------------- (a) headless


def headless_cost(engine_name: str, model: str, device: str, batches: list[int], tokens: int, repeats: int) -> dict:
    """Tokens/s of ``generate`` through the runner, recording off and on (alternating), per batch size."""
    from tui_lab.engines import create_engine
    from tui_lab.engines.options import declared_only

    options = declared_only(engine_name, {"model": model, "device": device})
    engine = create_engine(engine_name, **options)
    engine.load()
    out: dict[str, Any] = {}
    try:
        for batch in batches:
            params = {"batch_size": batch, "max_new_tokens": tokens, "ignore_eos": True}
            ctx = RunContext(engine=engine, engine_name=engine_name, engine_options=options)
            run_experiment("generate", params, ctx)  # warm-up: graphs, caches, allocator
            rates: dict[str, list[float]] = {"off": [], "on": []}
            last = None
            for k in range(2 * repeats):
                on = (k % 2 == 1) if (k // 2) % 2 == 0 else (k % 2 == 0)  # off,on,on,off,...: no order bias
                _set_recording(on)
                outcome = run_experiment("generate", params, ctx)
                assert outcome.result is not None, outcome.message
                rates["on" if on else "off"].append(outcome.result.summary().output_tokens_per_s or 0.0)
                if on:
                    last = outcome
            _set_recording(True)
            assert last is not None and last.recording is not None and last.result is not None
            # What recording adds to a run, deterministically: the observer's call once the run has ended.
            result = last.result
            requests = [Request(r.request_id, r.prompt) for r in result.requests]
            probe = T.Recording("generate")
            t0 = time.perf_counter()
            for _ in range(100):
                probe.observe(engine, requests, result)
            observe_s = (time.perf_counter() - t0) / 100
            t0 = time.perf_counter()
            trace = last.recording.trace()
            built = time.perf_counter() - t0
            t0 = time.perf_counter()
            blob = T.to_bytes(trace)
            encoded = time.perf_counter() - t0
            off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
            out[str(batch)] = {"off_tokens_per_s": off, "on_tokens_per_s": on, "ratio_on_over_off": on / off,
                               "off_runs": rates["off"], "on_runs": rates["on"], "observe_us": observe_s * 1e6,
                               "observe_share_of_run": observe_s / result.wall_s if result.wall_s else None,
                               "build_ms": built * 1000, "encode_ms": encoded * 1000, "file_bytes": len(blob),
                               "tokens": batch * tokens}
            spread = (f"off {min(rates['off']):,.1f}-{max(rates['off']):,.1f}, "
                      f"on {min(rates['on']):,.1f}-{max(rates['on']):,.1f}")
            print(f"  headless batch {batch}: off {off:,.1f} tok/s · on {on:,.1f} tok/s · ratio {on / off:.4f} "
                  f"(runs: {spread}); recording's own work per run: {observe_s * 1e6:.0f} µs "
                  f"({100 * observe_s / result.wall_s:.4f} % of the run); when a trace is asked for: build "
                  f"{built * 1000:.1f} ms, encode {encoded * 1000:.1f} ms, {len(blob) / 1024:.1f} KiB", flush=True)
    finally:
        engine.unload()
    return out


# ---------------------------------------------------------------------------------------------- (b) in the app


async def _app_rates(engine_name: str, model: str, device: str, batches: list[int], tokens: int,
                     repeats: int) -> dict[int, float]:
    """Tokens/s of ``generate`` in the app, per batch: ``benchmarks/bench_ui.py``'s own in-app runs (kept in
    step with the UI there), with no keys pressed: the app only streams."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_ui

    bench_ui.KEY_INTERVAL_S = 0.0
    got = await bench_ui.app_figures(engine_name, model, device, batches, tokens, repeats)
    return {batch: float(got[batch]["tokens_per_s"]) for batch in batches}


def app_cost(engine_name: str, model: str, device: str, batches: list[int], tokens: int, repeats: int) -> dict:
    """Tokens/s in the app with recording off, then on (the engine host reads the setting when it starts)."""
    got = {}
    for on in (False, True):
        _set_recording(on)
        got["on" if on else "off"] = asyncio.run(_app_rates(engine_name, model, device, batches, tokens, repeats))
    _set_recording(True)
    out = {}
    for batch in batches:
        off, on = got["off"][batch], got["on"][batch]
        out[str(batch)] = {"off_tokens_per_s": off, "on_tokens_per_s": on, "ratio_on_over_off": on / off}
        print(f"  in the app batch {batch}: off {off:,.1f} tok/s · on {on:,.1f} tok/s · ratio {on / off:.4f}",
              flush=True)
    return out


# ---------------------------------------------------------------------------------------------- (c) replay


def _scripted_trace(path: Path, batch: int, tokens: int, step_s: float) -> Path:
    """A run of the scripted engine at GPU-like step times (no real time passes while recording it)."""
    from tui_lab.engines.scripted import FakeClock, ScriptedEngine, StepModel

    engine = ScriptedEngine(clock=FakeClock(), timing=StepModel(prefill_per_token=0.00002, decode_base=step_s,
                                                                decode_per_seq=0.000002))
    engine.load()
    ctx = RunContext(engine=engine, engine_name="scripted", record=True)
    outcome = run_experiment("batch_sweep", {"batch_sizes": [1, batch], "max_new_tokens": tokens, "runs": 1,
                                             "warmup": 0}, ctx)
    assert outcome.trace is not None
    return T.write_trace(path, outcome.trace)


def replay_accuracy(trace_path: Path, max_runs: int) -> dict:
    """Replay each measured run twice: events stamped with the recording's times (the figures) and with the
    time they were handed over (the pacing); gaps against the recording's and lateness against the due time."""
    from tui_lab.engines.replay import ReplayEngine

    trace = T.read_trace(trace_path)
    runs = [r for r in trace.runs if not r.warmup and r.requests.tok_t][:max_runs]
    result: dict[str, Any] = {"trace": str(trace_path), "recorded_on": T.machine_line(trace.meta), "runs": []}
    gap_err: dict[str, list[float]] = {"recorded": [], "delivered": []}
    late: list[float] = []
    for stamp in ("recorded", "delivered"):
        engine = ReplayEngine(trace=str(trace_path), stamp=stamp)
        engine.load()
        for run in runs:
            n = run.batch_size
            budgets = run.requests.budgets
            requests = [Request(f"r{i}", "p", budgets[i]) for i in range(n)]
            sampling = SamplingParams(max_new_tokens=run.max_new_tokens, ignore_eos=True)
            res = _in_thread(lambda engine=engine, requests=requests, sampling=sampling:
                             execute_run(engine, requests, sampling))
            shift = res.requests[0].trace.t_send - run.requests.send[0]
            for i, rr in enumerate(res.requests):
                want = run.requests.tok_t[run.requests.token_slice(i)]
                got = rr.trace.event_times
                gap_err[stamp] += [abs((b - a) - (d - c)) for a, b, c, d in zip(want, want[1:], got, got[1:],
                                                                                strict=False)]
                if stamp == "delivered":
                    late += [g - (w + shift) for w, g in zip(want, got, strict=False)]
            if stamp == "delivered":
                result["runs"].append({"label": run.label, "batch": n, "tokens": sum(run.requests.tok_n),
                                       "steps": len(run.steps)})
    for stamp, errs in gap_err.items():
        ms = [e * 1000 for e in errs]
        result[f"gap_error_ms_{stamp}"] = {"n": len(ms), "p50": _pct(ms, 0.5), "p99": _pct(ms, 0.99),
                                           "max": max(ms, default=None)}
    lat = [x * 1000 for x in late]
    result["handed_over_late_ms"] = {"n": len(lat), "p50": _pct(lat, 0.5), "p99": _pct(lat, 0.99),
                                     "max": max(lat, default=None)}
    r, d, h = result["gap_error_ms_recorded"], result["gap_error_ms_delivered"], result["handed_over_late_ms"]
    print(f"  replay of {result['recorded_on']} ({len(runs)} runs, {r['n']} gaps): gap error vs the recording "
          f"(events carry the recorded times) p99 {r['p99']:.4f} ms, max {r['max']:.4f} ms", flush=True)
    print(f"  pacing on this machine: gaps as handed over p50 {d['p50']:.3f} ms p99 {d['p99']:.3f} ms; events "
          f"late p50 {h['p50']:.3f} ms p99 {h['p99']:.3f} ms max {h['max']:.3f} ms", flush=True)
    return result


def _in_thread(fn: Any) -> Any:
    """Run ``fn`` in a worker thread, as the lab runs experiments (the main thread stays free)."""
    box: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: box.setdefault("r", fn()))
    worker.start()
    worker.join()
    return box["r"]


def main(argv: list[str] | None = None) -> int:
    """Run the parts asked for, print their figures and write them as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="headless,app,replay", help="parts: headless, app, replay")
    parser.add_argument("--engine", default="transformers")
    parser.add_argument("--model", default=None, help="default: embedded on cpu, arch:gemma-3-270m on cuda")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--batches", default=None, help="default: 1,4,16 on cpu, 1,64,1024 on cuda")
    parser.add_argument("--tokens", type=int, default=None, help="new tokens per request (16 on cpu, 128 on cuda)")
    parser.add_argument("--repeats", type=int, default=3, help="measured runs per setting and batch")
    parser.add_argument("--trace", default=None, help="trace to replay (default: recorded here, scripted)")
    parser.add_argument("--replay-runs", type=int, default=12, help="most recorded runs to replay")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    gpu = args.device == "cuda"
    model = args.model or ("arch:gemma-3-270m" if gpu else "embedded")
    batches = [int(b) for b in (args.batches or ("1,64,1024" if gpu else "1,4,16")).split(",")]
    tokens = args.tokens or (128 if gpu else 16)
    parts = set(args.only.split(","))
    card = _card()
    doc: dict[str, Any] = {"card": card, "machine": T.machine_facts(), "engine": args.engine, "model": model,
                           "device": args.device, "max_new_tokens": tokens, "repeats": args.repeats,
                           "load_avg": os.getloadavg(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           "command": " ".join(sys.argv)}
    print(f"traces benchmark on {card}: {args.engine} · {model} · {args.device} · {tokens} tokens", flush=True)
    if "headless" in parts:
        print("(a) recording cost, headless (generate through the runner)", flush=True)
        doc["headless"] = headless_cost(args.engine, model, args.device, batches, tokens, args.repeats)
    if "app" in parts:
        print("(b) recording cost in the app (App.run_test, engine host process)", flush=True)
        doc["app"] = app_cost(args.engine, model, args.device, batches, tokens, args.repeats)
    if "replay" in parts:
        print("(c) replay accuracy", flush=True)
        path = Path(args.trace) if args.trace else _scripted_trace(
            Path(os.environ.get("TMPDIR", "/tmp")) / "bench-replay.trace.json.gz", 64, 128, 0.004)
        doc["replay"] = replay_accuracy(path, args.replay_runs)
    slug = card.lower().replace(" ", "-").replace("/", "-")
    out = Path(args.out or f"benchmarks/results/traces-{slug}-{time.strftime('%Y-%m-%d')}.json")
    print(f"wrote {write_json(out, doc)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
