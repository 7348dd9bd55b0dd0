"""A ``Trace`` as Chrome trace-event JSON, the format Perfetto (ui.perfetto.dev) and chrome://tracing open.

Layout: one process per run (named by its label), in it a track of engine steps (``X`` slices named prefill or
decode, with the requests, tokens and KV tokens of each step in ``args``) and one track per request, its
phases as consecutive ``X`` slices (client queue, to engine, engine queue, prefill, decode, from engine; what
the source cannot split is one slice). Counters per run: the batch (requests in each step), the KV tokens held,
and where the engine reports them its KV-cache use and running/waiting requests. Token events are instants on
the request tracks when a run has at most ``TOKEN_MARKS_LIMIT`` of them.

Times are integer microseconds from the trace's first run (``ts``, ``dur``), so adjacent slices share exact
boundaries and never overlap by a rounding error: Perfetto, like the spec, only accepts slices on one track
that nest. ``check_chrome_trace`` applies those rules (and Perfetto's JSON importer's own: integer pid/tid,
``args`` objects with numeric counter values, a ``dur`` on every ``X``, matching ``B``/``E``) to any document;
``TRACE_EVENT_SCHEMA`` is the format's JSON schema (object form) for a schema validator.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tui_lab.lab.trace import Trace, TraceRun, known, machine_line

TOKEN_MARKS_LIMIT = 20_000
"""Runs with more token events than this get no per-token instants (the file would grow by ~100 bytes each)."""
STEPS_TID = 1
FIRST_REQUEST_TID = 10

JsonDict = dict[str, Any]


def _us(t: float, base: float) -> int:
    return round((t - base) * 1e6)


def _layout(trace: Trace) -> list[float]:
    """Each run's origin on the exported time axis: the first run's start when the runs follow each other on
    one clock (one recording), else each run one second after the previous one ended (runs put together)."""
    if not trace.runs:
        return []
    starts = [r.t0 for r in trace.runs]
    if all(a.end <= b.t0 + 1e-3 for a, b in zip(trace.runs, trace.runs[1:], strict=False)) or starts == sorted(starts):
        return [starts[0]] * len(starts)
    out, at = [], 0.0
    for r in trace.runs:
        out.append(r.t0 - at)
        at += (r.end - r.t0) + 1.0
    return out


def chrome_trace(trace: Trace, token_marks: bool | None = None) -> JsonDict:
    """The trace-event JSON object (``{"traceEvents": [...], ...}``) of ``trace``.

    ``token_marks``: an instant per token event on the request tracks (None: for runs with at most
    ``TOKEN_MARKS_LIMIT`` token events).
    """
    events: list[JsonDict] = []
    for k, (run, base) in enumerate(zip(trace.runs, _layout(trace), strict=True)):
        events.extend(_run_events(run, k + 1, base, token_marks))
    meta = trace.meta
    other = {"recorded": meta.get("recorded"), "machine": meta.get("machine"), "model": meta.get("model"),
             "engine": meta.get("engine"), "experiment": meta.get("experiment"), "versions": meta.get("versions"),
             "recorded_on": machine_line(meta), "clock": "CLOCK_MONOTONIC, µs from the first run's start"}
    if meta.get("replay_of"):
        other["replay_of"] = machine_line(meta)
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": other}


def _meta(name: str, pid: int, tid: int, value: str | int) -> JsonDict:
    key = "sort_index" if name.endswith("sort_index") else "name"
    return {"ph": "M", "name": name, "pid": pid, "tid": tid, "args": {key: value}}


def _run_events(run: TraceRun, pid: int, base: float, token_marks: bool | None) -> list[JsonDict]:
    rq, st = run.requests, run.steps
    title = f"run {pid}: {run.label}" + (" (warm-up)" if run.warmup and "warm" not in run.label else "")
    out: list[JsonDict] = [_meta("process_name", pid, 0, title), _meta("process_sort_index", pid, 0, pid)]
    cat = run.source or "run"
    if len(st):
        out += [_meta("thread_name", pid, STEPS_TID, "engine steps"), _meta("thread_sort_index", pid, STEPS_TID, 0)]
        previous = None
        for k in range(len(st)):
            start, end = _us(st.start[k], base), _us(st.end[k], base)
            if previous is not None:
                start = max(start, previous)
            end = previous = max(end, start)
            args: JsonDict = {"step": k, "requests": st.n_requests[k], "tokens": st.n_tokens[k],
                              "kv_tokens": st.kv_tokens[k]}
            if known(st.kv_usage[k]):
                args["kv_usage"] = round(st.kv_usage[k], 6)
            out.append({"ph": "X", "name": "prefill" if st.prefill[k] else "decode", "cat": cat, "pid": pid,
                        "tid": STEPS_TID, "ts": start, "dur": max(0, end - start), "args": args})
            out.append({"ph": "C", "name": "batch", "pid": pid, "tid": STEPS_TID, "ts": start,
                        "args": {"requests": st.n_requests[k]}})
            out.append({"ph": "C", "name": "KV tokens held", "pid": pid, "tid": STEPS_TID, "ts": start,
                        "args": {"tokens": st.kv_tokens[k]}})
        last = _us(st.end[-1], base)
        out.append({"ph": "C", "name": "batch", "pid": pid, "tid": STEPS_TID, "ts": last, "args": {"requests": 0}})
        out.append({"ph": "C", "name": "KV tokens held", "pid": pid, "tid": STEPS_TID, "ts": last,
                    "args": {"tokens": 0}})
    sm = run.samples
    for k in range(len(sm)):
        ts = _us(sm.t[k], base)
        out.append({"ph": "C", "name": "KV cache use (engine)", "pid": pid, "tid": STEPS_TID, "ts": ts,
                    "args": {"percent": round(100.0 * sm.kv_usage[k], 4)}})
        out.append({"ph": "C", "name": "scheduler", "pid": pid, "tid": STEPS_TID, "ts": ts,
                    "args": {"running": sm.running[k], "waiting": sm.waiting[k]}})
    marks = token_marks if token_marks is not None else len(rq.tok_t) <= TOKEN_MARKS_LIMIT
    for i in range(len(rq)):
        tid = FIRST_REQUEST_TID + i
        out += [_meta("thread_name", pid, tid, rq.ids[i]), _meta("thread_sort_index", pid, tid, tid)]
        ph = run.phases(i)
        at: int | None = None
        for span in ph.spans:
            if span.seconds == 0:
                continue  # nothing happened there (a batch's client queue, an in-process engine's transport)
            # Spans follow each other; a mark placed by an estimated engine clock may come a hair early: the
            # slices are kept in order (never overlapping), the true length stays in args.
            start, end = _us(span.start, base), _us(span.end, base)
            if at is not None:
                start = max(start, at)
            end = at = max(end, start)
            args = {"ms": round(span.seconds * 1000, 6)}
            out.append({"ph": "X", "name": span.name, "cat": cat, "pid": pid, "tid": tid, "ts": start,
                        "dur": max(0, end - start), "args": args})
        if known(rq.engine_arrival[i]):
            out.append({"ph": "i", "s": "t", "name": "engine arrival", "cat": cat, "pid": pid, "tid": tid,
                        "ts": _us(rq.engine_arrival[i], base)})
        if known(rq.finish[i]):
            out.append({"ph": "i", "s": "t", "name": f"finish: {rq.reasons[i] or 'unknown'}", "cat": cat,
                        "pid": pid, "tid": tid, "ts": _us(rq.finish[i], base),
                        "args": {"output_tokens": rq.output_tokens(i), "error": rq.errors[i] or None}})
        if marks:
            for j in range(rq.starts[i], rq.starts[i + 1]):
                out.append({"ph": "i", "s": "t", "name": "token", "cat": cat, "pid": pid, "tid": tid,
                            "ts": _us(rq.tok_t[j], base), "args": {"n": rq.tok_n[j], "id": rq.tok_id[j]}})
    return out


def write_chrome_trace(path: str | os.PathLike[str], trace: Trace, token_marks: bool | None = None) -> Path:
    """Write ``chrome_trace(trace)`` to ``path`` (``.json``, or ``.json.gz`` compressed: Perfetto opens both)."""
    import gzip

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(chrome_trace(trace, token_marks), separators=(",", ":"), allow_nan=False).encode()
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_bytes(gzip.compress(text, mtime=0) if target.name.endswith(".gz") else text)
    os.replace(tmp, target)
    return target


# ------------------------------------------------------------------------------------------------ checking

_NUMBER = {"type": "number"}
_ID = {"type": "integer", "minimum": 0, "maximum": 2**32 - 1}
_EVENT_BASE = {"name": {"type": "string"}, "cat": {"type": "string"}, "ph": {"type": "string", "minLength": 1},
               "ts": _NUMBER, "pid": _ID, "tid": _ID, "args": {"type": "object"}}

TRACE_EVENT_SCHEMA: JsonDict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Trace Event Format, JSON object form (the events this lab writes: X, B, E, i/I, C, M)",
    "type": "object",
    "required": ["traceEvents"],
    "properties": {
        "traceEvents": {"type": "array", "items": {"$ref": "#/$defs/event"}},
        "displayTimeUnit": {"enum": ["ms", "ns"]},
        "otherData": {"type": "object"},
    },
    "$defs": {
        "event": {
            "type": "object",
            "required": ["ph", "pid"],
            "properties": _EVENT_BASE,
            "allOf": [
                {"if": {"properties": {"ph": {"const": "X"}}},
                 "then": {"required": ["name", "ts", "dur", "tid"], "properties": {"dur": {"type": "number",
                                                                                           "minimum": 0}}}},
                {"if": {"properties": {"ph": {"enum": ["B", "E"]}}}, "then": {"required": ["ts", "tid"]}},
                {"if": {"properties": {"ph": {"enum": ["i", "I"]}}},
                 "then": {"required": ["name", "ts"], "properties": {"s": {"enum": ["g", "p", "t"]}}}},
                {"if": {"properties": {"ph": {"const": "C"}}},
                 "then": {"required": ["name", "ts", "args"],
                          "properties": {"args": {"type": "object", "minProperties": 1,
                                                  "additionalProperties": {"type": "number"}}}}},
                {"if": {"properties": {"ph": {"const": "M"}}},
                 "then": {"required": ["name", "args"],
                          "properties": {"name": {"enum": ["process_name", "process_labels", "process_sort_index",
                                                           "thread_name", "thread_sort_index"]}}}},
                {"properties": {"ph": {"enum": ["X", "B", "E", "i", "I", "C", "M"]}}},
            ],
        },
    },
}
"""JSON schema (draft 2020-12) of the trace-event format's object form, for the event types this lab writes."""


def check_chrome_trace(doc: Mapping[str, Any]) -> list[str]:
    """What in ``doc`` a trace-event reader would refuse or mis-draw (empty when nothing): the spec's and
    Perfetto's JSON importer's rules.

    * ``traceEvents`` is a list of objects, each with a one-letter ``ph``; ``pid``/``tid`` unsigned 32-bit ints;
      ``ts`` (µs) and ``dur`` finite numbers, ``dur`` ≥ 0 on every ``X``;
    * ``B``/``E`` pair up per thread, last in first out, never ending before they begin;
    * on one thread, duration slices (``X`` and ``B``/``E``) nest: a slice that starts inside another ends
      inside it too (Perfetto moves partial overlaps to a separate track);
    * ``C`` has an object ``args`` of numbers; ``M`` names a process or thread in ``args.name`` (or sorts it).
    """
    problems: list[str] = []
    events = doc.get("traceEvents")
    if not isinstance(events, list):
        return ["traceEvents is missing or not a list"]
    slices: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
    open_b: dict[tuple[int, int], list[tuple[int, str]]] = {}
    for n, ev in enumerate(events):
        where = f"event {n}"
        if not isinstance(ev, dict):
            problems.append(f"{where}: not an object")
            continue
        ph = ev.get("ph")
        if not isinstance(ph, str) or len(ph) != 1:
            problems.append(f"{where}: ph must be one letter (got {ph!r})")
            continue
        bad_id = False
        for key in ("pid", "tid"):
            value = ev.get(key)
            if key in ev and not (isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**32):
                problems.append(f"{where}: {key} must be an unsigned 32-bit integer (got {value!r})")
                bad_id = True
        if "pid" not in ev:
            problems.append(f"{where}: no pid")
        if bad_id:
            continue
        ts = ev.get("ts")
        if ph != "M" and not _finite(ts):
            problems.append(f"{where}: ts must be a finite number of µs (got {ts!r})")
            continue
        if "args" in ev and not isinstance(ev["args"], dict):
            problems.append(f"{where}: args must be an object")
        track = (int(ev.get("pid", 0) or 0), int(ev.get("tid", ev.get("pid", 0)) or 0))
        t = _ns(ts) if ph != "M" else 0
        if ph == "X":
            dur = ev.get("dur")
            if not isinstance(dur, (int, float)) or not _finite(dur) or dur < 0:
                problems.append(f"{where}: X needs a finite dur >= 0 (got {dur!r})")
                continue
            slices.setdefault(track, []).append((t, t + _ns(dur), n))
        elif ph == "B":
            open_b.setdefault(track, []).append((t, str(ev.get("name", ""))))
        elif ph == "E":
            stack = open_b.get(track)
            if not stack:
                problems.append(f"{where}: E without a matching B on pid {track[0]} tid {track[1]}")
                continue
            begin, _name = stack.pop()
            if t < begin:
                problems.append(f"{where}: E at {ts} before its B")
            slices.setdefault(track, []).append((begin, t, n))
        elif ph == "C":
            args = ev.get("args")
            if not isinstance(args, dict) or not args:
                problems.append(f"{where}: a counter needs args with at least one value")
            elif not all(_finite(v) for v in args.values()):
                problems.append(f"{where}: counter values must be finite numbers (got {args})")
            if not ev.get("name"):
                problems.append(f"{where}: a counter needs a name")
        elif ph in ("i", "I"):
            if ev.get("s", "t") not in ("g", "p", "t"):
                problems.append(f"{where}: instant scope must be g, p or t")
            elif ev.get("s", "t") == "t":
                slices.setdefault(track, []).append((t, t, n))  # a zero-length slice on its thread
        elif ph == "M":
            name = ev.get("name")
            args = ev.get("args") or {}
            if name in ("process_name", "thread_name") and not isinstance(args.get("name"), str):
                problems.append(f"{where}: {name} needs args.name")
            if name in ("process_sort_index", "thread_sort_index") and not isinstance(args.get("sort_index"), int):
                problems.append(f"{where}: {name} needs an integer args.sort_index")
        elif ph not in ("s", "t", "f", "b", "e", "n", "N", "O", "D", "P", "R"):
            problems.append(f"{where}: unknown phase {ph!r}")
    for track, stack in open_b.items():
        if stack:
            problems.append(f"pid {track[0]} tid {track[1]}: {len(stack)} B event(s) never ended")
    for track, spans in slices.items():
        problems.extend(_nesting(track, spans))
    return problems


def _nesting(track: tuple[int, int], spans: Sequence[tuple[int, int, int]]) -> list[str]:
    """Slices on one track must nest: sorted by start (longer first), each one ends by its parent's end."""
    out: list[str] = []
    stack: list[tuple[int, int, int]] = []
    for start, end, n in sorted(spans, key=lambda s: (s[0], -s[1], s[2])):
        while stack and stack[-1][1] <= start:
            stack.pop()
        if stack and end > stack[-1][1]:
            out.append(f"pid {track[0]} tid {track[1]}: slice of event {n} ({start}..{end} ns) overlaps event "
                       f"{stack[-1][2]} ({stack[-1][0]}..{stack[-1][1]} ns) without nesting in it")
            if len(out) >= 5:
                break
            continue
        stack.append((start, end, n))
    return out


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _ns(value: Any) -> int:
    """µs → integer ns, truncated, as Perfetto's importer does."""
    return int(float(value) * 1000)


def read_chrome_trace(path: str | os.PathLike[str]) -> JsonDict:
    """A trace-event JSON file (plain or gzip-compressed) as a dict; the array form is wrapped as the object form."""
    import gzip

    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    doc = json.loads(raw.decode("utf-8"))
    return {"traceEvents": doc} if isinstance(doc, list) else dict(doc)


def slices_by_track(doc: Mapping[str, Any]) -> dict[tuple[int, int], list[JsonDict]]:
    """The ``X`` events of a trace-event document by (pid, tid), each track's in time order (longer first where
    two start together: the outer one, as a viewer nests them)."""
    out: dict[tuple[int, int], list[JsonDict]] = {}
    for ev in doc.get("traceEvents", []):
        if isinstance(ev, dict) and ev.get("ph") == "X":
            pid = int(ev["pid"])
            out.setdefault((pid, int(ev.get("tid", pid))), []).append(ev)
    for spans in out.values():
        spans.sort(key=lambda e: (e["ts"], -e["dur"]))
    return out


def track_names(doc: Mapping[str, Any]) -> dict[tuple[int, int], str]:
    """(pid, tid) → thread name, and (pid, 0) → process name, from the ``M`` events."""
    out: dict[tuple[int, int], str] = {}
    for ev in doc.get("traceEvents", []):
        if isinstance(ev, dict) and ev.get("ph") == "M" and ev.get("name") in ("process_name", "thread_name"):
            tid = 0 if ev["name"] == "process_name" else int(ev.get("tid", 0))
            out[(int(ev["pid"]), tid)] = str(ev["args"]["name"])
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tui_lab.lab.trace_export TRACE [OUT]``: a lab trace as a Perfetto / chrome://tracing file."""
    import argparse
    import sys

    from tui_lab.lab.trace import read_trace
    from tui_lab.traces import find

    parser = argparse.ArgumentParser(prog="python -m tui_lab.lab.trace_export",
                                     description="Write a lab trace (--record FILE, or a shipped trace's name) as "
                                     "Chrome trace-event JSON: open it at ui.perfetto.dev or chrome://tracing.")
    parser.add_argument("trace", help="a trace file, or the name of one shipped with the lab")
    parser.add_argument("out", nargs="?", default=None, help="output (default: TRACE's name + .perfetto.json.gz)")
    parser.add_argument("--tokens", choices=("auto", "on", "off"), default="auto", help="an instant per token")
    args = parser.parse_args(argv)
    path = find(args.trace)
    if path is None:
        print(f"no trace file {args.trace!r}", file=sys.stderr)
        return 2
    trace = read_trace(path)
    out = Path(args.out) if args.out else path.with_name(path.name.removesuffix(".trace.json.gz").removesuffix(
        ".json.gz").removesuffix(".json") + ".perfetto.json.gz")
    marks = None if args.tokens == "auto" else args.tokens == "on"
    written = write_chrome_trace(out, trace, marks)
    problems = check_chrome_trace(read_chrome_trace(written))
    print(f"wrote {written}: {len(trace.runs)} runs of {machine_line(trace.meta)}"
          + (f"; {len(problems)} problems: {problems[:3]}" if problems else ""))
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
