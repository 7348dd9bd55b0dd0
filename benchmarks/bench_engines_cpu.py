"""Tokens/s of the transformers and vLLM engines on this CPU, side by side, at batch 1, 4 and 16.

Both engines get the same prompts (the lab's seeded schedule), the same number
of new tokens, greedy decoding and ``ignore_eos`` (every request produces exactly
``--max-tokens`` tokens, so the work is identical). The engines run one after
the other, never at the same time: each is loaded, warmed up, measured and
unloaded before the next starts, so neither steals cores from the other.

Usage::

    python benchmarks/bench_engines_cpu.py                       # batch 1,4,16; 32 tokens; 2 runs
    python benchmarks/bench_engines_cpu.py --batch-sizes 1,8 --runs 3 --out /tmp/bench.json

Prints a table and writes a JSON document (default:
``benchmarks/results/engines-cpu-<UTC date-time>.json``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from tui_lab.engines import create_engine
from tui_lab.engines.base import Engine, SamplingParams
from tui_lab.errors import LabError
from tui_lab.lab.export import write_json
from tui_lab.lab.prompts import prompt_schedule
from tui_lab.lab.run import RunResult, execute_run, make_requests

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ENGINES = ("transformers", "vllm")


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """What the numbers were measured on (the box is shared: the load average says how busy it was)."""
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    try:
        info["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
        info["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    except (OSError, ValueError, AttributeError):
        pass
    return info


def one_point(engine: Engine, batch: int, sampling: SamplingParams, runs: int) -> dict[str, Any]:
    """Measure ``runs`` runs of one batch size; report medians of the per-run figures."""
    requests = make_requests(prompt_schedule(batch, seed=0), batch)
    results: list[RunResult] = []
    for _ in range(runs):
        result = execute_run(engine, requests, sampling)
        if result.partial:
            raise LabError(f"batch {batch} did not finish: {result.error or 'partial'}")
        results.append(result)
    summaries = [r.summary() for r in results]

    def median(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return statistics.median(present) if present else None

    return {
        "batch_size": batch,
        "runs": runs,
        "output_tokens_per_run": summaries[0].output_tokens,
        "output_tokens_per_s": median([s.output_tokens_per_s for s in summaries]),
        "output_tokens_per_s_runs": [s.output_tokens_per_s for s in summaries],
        "ttft_p50_s": median([s.ttft_s.p50 for s in summaries]),
        "tpot_p50_s": median([s.tpot_s.p50 for s in summaries]),
        "per_user_tokens_per_s_p50": median([s.decode_tokens_per_s.p50 for s in summaries]),
        "wall_s": median([r.wall_s for r in results]),
    }


def bench_engine(name: str, batch_sizes: list[int], sampling: SamplingParams, runs: int,
                 options: dict[str, Any]) -> dict[str, Any]:
    """Load one engine, warm it up, measure every batch size, unload it."""
    out: dict[str, Any] = {"engine": name, "options": options}
    started = time.perf_counter()
    engine = create_engine(name, **options)
    try:
        info = engine.load()
        out["load_s"] = round(time.perf_counter() - started, 1)
        out["info"] = info.to_dict()
        # One untimed run at the largest batch: first-call allocations and caches are not the engine's speed.
        execute_run(engine, make_requests(prompt_schedule(1, seed=1), max(batch_sizes)), sampling.with_(
            max_new_tokens=4))
        out["points"] = []
        for batch in batch_sizes:
            point = one_point(engine, batch, sampling, runs)
            out["points"].append(point)
            print(f"  {name:<12} batch {batch:>3}: {point['output_tokens_per_s']:7.1f} tok/s", file=sys.stderr)
    except LabError as exc:
        out["error"] = str(exc)
    finally:
        engine.unload()
    return out


def table(results: list[dict[str, Any]], batch_sizes: list[int]) -> str:
    """Output tokens/s, batch sizes down, engines across (plus TTFT / TPOT p50)."""
    names = [r["engine"] for r in results]
    head = f"{'batch':>5} | " + " | ".join(f"{n + ' tok/s':>18} {'TTFT p50':>9} {'TPOT p50':>9}" for n in names)
    lines = [head, "-" * len(head)]
    by_engine = {r["engine"]: {p["batch_size"]: p for p in r.get("points", [])} for r in results}
    for batch in batch_sizes:
        cells = []
        for n in names:
            p = by_engine[n].get(batch)
            if p is None:
                cells.append(f"{'-':>18} {'-':>9} {'-':>9}")
                continue
            tpot = f"{p['tpot_p50_s'] * 1000:.1f} ms" if p["tpot_p50_s"] is not None else "-"
            cells.append(f"{p['output_tokens_per_s']:>18.1f} {p['ttft_p50_s'] * 1000:>6.0f} ms {tpot:>9}")
        lines.append(f"{batch:>5} | " + " | ".join(cells))
    for r in results:
        if "error" in r:
            lines.append(f"{r['engine']}: {r['error']}")
        elif "load_s" in r:
            lines.append(f"{r['engine']}: loaded in {r['load_s']} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON document."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", default="1,4,16", help="comma-separated (default: 1,4,16)")
    parser.add_argument("--max-tokens", type=int, default=32, help="new tokens per request (default: 32)")
    parser.add_argument("--runs", type=int, default=2, help="measured runs per batch size (default: 2)")
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated (default: transformers,vllm)")
    parser.add_argument("--model", default="embedded", help="model spec (default: embedded)")
    parser.add_argument("--out", default=None, help="JSON path (default: results/engines-cpu-DATE-TIME.json)")
    args = parser.parse_args(argv)
    try:
        batch_sizes = [int(x) for x in args.batch_sizes.split(",") if x.strip()]
    except ValueError:
        parser.error(f"--batch-sizes must be integers separated by commas (got {args.batch_sizes!r})")
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    sampling = SamplingParams(max_new_tokens=args.max_tokens, ignore_eos=True).validate()
    options = {
        "transformers": {"model": args.model, "device": "cpu"},
        "vllm": {"model": args.model, "device": "cpu", "max_num_seqs": max(batch_sizes)},
    }
    doc: dict[str, Any] = {
        "benchmark": "engines-cpu",
        "started_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "sampling": sampling.to_dict(),
        "batch_sizes": batch_sizes,
        "runs": args.runs,
        "prompts": "tui_lab.lab.prompts.prompt_schedule(batch, seed=0)",
        "results": [],
    }
    for name in engines:
        print(f"{name}: loading and measuring ...", file=sys.stderr)
        doc["results"].append(bench_engine(name, batch_sizes, sampling, args.runs, options.get(name, {})))
    try:
        doc["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    text = table(doc["results"], batch_sizes)
    print(text)
    stamp = f"{dt.datetime.now(dt.UTC):%Y%m%d-%H%M}"
    out = Path(args.out) if args.out else RESULTS_DIR / f"engines-cpu-{stamp}.json"
    write_json(out, doc)
    print(f"wrote {out}")
    return 1 if any("error" in r for r in doc["results"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
