"""GPU figures for lessons 05 and 06 (and the TP=1 half of lesson 04's "one GPU or two").

Runs the lessons' experiments headless on vLLM, one experiment per process (so each frees its GPU
memory), with architecture models only (random weights, no downloads; the embedded checkpoint is
too large to carry to a lent GPU). Speculation then measures what n-gram drafting costs and gains on a
random-weight model's text, which is noise: its acceptance is not that of real text. Prints one JSON
line per experiment and writes them all to ``$OUT/gpu-lessons.json``. Budget: about 8 minutes on an
H200 (each experiment starts one or two vLLM engines; a cold start with compilation took 100-140 s).

    python benchmarks/gpu_lessons.py            # all, in order, within --budget seconds
    python benchmarks/gpu_lessons.py --only kv_capacity
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

# NVLink multicast off before vLLM starts its workers (they inherit the environment).
os.environ.setdefault("NCCL_NVLS_ENABLE", "0")

VLLM = {"device": "cuda", "gpu_memory_utilization": 0.4, "max_num_seqs": 64, "max_model_len": 4608}

PLAN: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    # (experiment, params, engine options)
    ("weight_precision", {"model": "llama-3-8b", "max_new_tokens": 64}, {"model": "arch:llama-3-8b"}),
    ("kv_capacity", {"context": 4096, "kv_cache_dtype": "fp8", "compare_fp8": True, "throughput_batch": 32},
     {"model": "arch:llama-3-8b"}),
    ("speculation", {"k": 4, "max_new_tokens": 96}, {"model": "arch:gemma-3-270m"}),
    ("one_gpu_or_two", {"model": "llama-3-8b", "sweep": [1, 32, 128, 256], "memory_utilization": 0.5},
     {"model": "arch:gemma-3-270m", "gpu_memory_utilization": 0.1}),
]


def run_one(name: str, params: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """Load vLLM with ``options``, run experiment ``name`` and return its result as JSON data."""
    from tui_lab.engines import create_engine
    from tui_lab.lab.experiment import RunContext, get
    from tui_lab.lab.export import to_jsonable

    engine_options = {**VLLM, **options}
    if os.environ.get("INFERENCE_LAB_CACHE"):
        engine_options["cache_dir"] = os.environ["INFERENCE_LAB_CACHE"]
    engine = create_engine("vllm", **engine_options)
    started = time.perf_counter()
    info = engine.load()
    try:
        exp = get(name)
        ctx = RunContext(engine=engine, engine_name="vllm", engine_options=engine_options, engine_factory=create_engine)
        result = exp.run(exp.validate(params), ctx)
    finally:
        engine.unload()
    return {"experiment": name, "params": params, "engine": info.to_dict(), "wall_s": time.perf_counter() - started,
            "result": to_jsonable(result.to_dict())}


def main(argv: list[str] | None = None) -> int:
    """Run the plan (each experiment in a child process) and write the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=None, help="run one experiment of the plan")
    parser.add_argument("--budget", type=float, default=240.0, help="seconds for the whole plan")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        name, params, options = json.loads(args.child)
        print(json.dumps(run_one(name, params, options)), flush=True)
        return 0
    out_dir = os.environ.get("OUT", "gpu-out")
    os.makedirs(out_dir, exist_ok=True)
    deadline = time.monotonic() + args.budget
    docs = []
    for name, params, options in PLAN:
        if args.only and name != args.only:
            continue
        left = deadline - time.monotonic()
        if left < 20:
            print(f"skipped {name}: the {args.budget:.0f} s budget is spent", file=sys.stderr)
            continue
        cmd = [sys.executable, __file__, "--child", json.dumps([name, params, options])]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=left)
        except subprocess.TimeoutExpired:
            print(f"{name}: timed out", file=sys.stderr)
            continue
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            print(f"{name}: failed (rc {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            continue
        doc = json.loads(lines[-1])
        docs.append(doc)
        print(json.dumps(doc), flush=True)
    with open(os.path.join(out_dir, "gpu-lessons.json"), "w", encoding="utf-8") as fh:
        json.dump({"date": time.strftime("%Y-%m-%d"), "runs": docs}, fh, indent=2)
    return 0 if docs else 1


if __name__ == "__main__":
    sys.exit(main())
