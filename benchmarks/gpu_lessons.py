"""GPU figures for the lessons' experiments (03-06), run headless on one GPU.

Each experiment runs in its own process (so each frees its GPU memory), with architecture models
only (random weights, no downloads; the embedded checkpoint is too large to carry to a lent GPU).
Speculation then measures what n-gram drafting costs and gains on a random-weight model's text,
which is noise: its acceptance is not that of real text.

Engine starts dominate: a cold vLLM start with compilation took 100-190 s on an H200, and most
experiments start one or two engine variants of their own. ``--parallel N`` runs N experiments at
once and sets ``INFERENCE_LAB_GPU_LOCK`` (see ``tui_lab.gpu_share``): their engine starts overlap,
but their timed runs take turns, so no two runs share the GPU. Other processes given the same
variable (a ``bench`` run) take the same turns. Each experiment's engine gets a small slice of GPU
memory, so several fit side by side.

Prints one JSON line per experiment and rewrites ``$OUT/gpu-lessons.json`` after each one, so a
cut-off session keeps what finished.

    python benchmarks/gpu_lessons.py --list
    python benchmarks/gpu_lessons.py --parallel 3 --budget 540
    python benchmarks/gpu_lessons.py --only prefix_cache,queueing
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from typing import Any

from gpu_children import last_json_line, plan_parser, run_children

# NVLink multicast off before vLLM starts its workers (they inherit the environment).
os.environ.setdefault("NCCL_NVLS_ENABLE", "0")

GEMMA = {"engine": "vllm", "model": "arch:gemma-3-270m", "device": "cuda", "gpu_memory_utilization": 0.06,
         "max_num_seqs": 64, "max_model_len": 4608}
LLAMA = {**GEMMA, "model": "arch:llama-3-8b", "gpu_memory_utilization": 0.4}
NEMOTRON = {**GEMMA, "model": "arch:nemotron-nano-9b-v2", "gpu_memory_utilization": 0.3, "max_num_seqs": 128,
            "max_model_len": 2048}
"""0.25 of the card with max_model_len 1024 failed to start beside other engines (2026-12-02); this started."""
TRANSFORMERS = {"engine": "transformers", "model": "arch:gemma-3-270m", "device": "cuda", "dtype": "bfloat16"}

PLAN: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
    # (label, experiment, params, engine options)
    ("nemotron_sweep", "batch_sweep", {"batch_sizes": [1, 8, 32, 128], "max_new_tokens": 32, "runs": 2},
     NEMOTRON),
    ("gemma_sweep", "batch_sweep", {"batch_sizes": [1, 8, 64, 256, 1024], "max_new_tokens": 64, "runs": 2},
     {**GEMMA, "max_num_seqs": 1024}),
    ("prefix_cache", "prefix_cache", {"num_requests": 16, "shared_prefix_words": 1500, "max_new_tokens": 16,
                                      "runs": 2}, GEMMA),
    ("queueing", "queueing", {"num_requests": 256, "max_num_seqs": 32, "max_new_tokens": 64}, GEMMA),
    ("static_vs_continuous", "static_vs_continuous", {}, GEMMA),
    ("interference", "interference", {"streams": 16, "stream_tokens": 256, "long_prompt_words": 2000,
                                      "max_num_batched_tokens": 512, "arrive_after_s": 0.3}, GEMMA),
    ("speculation", "speculation", {"k": 4, "max_new_tokens": 128}, GEMMA),
    ("load_open", "load_loop", {"mode": "open", "rate": 40, "num_requests": 200, "max_new_tokens": 64}, GEMMA),
    ("load_closed", "load_loop", {"mode": "closed", "concurrency": 8, "num_requests": 200, "max_new_tokens": 64},
     GEMMA),
    ("tool_metrics", "tool_metrics", {"batch_size": 32, "max_new_tokens": 64}, GEMMA),
    # Gemma 3's sliding-window layers take blocks of their own on a GPU (hybrid KV cache groups): 64 blocks
    # did not hold one 256-token sequence there; 256 blocks hold 4,096 tokens and still preempt.
    ("preemption", "preemption", {"num_kv_blocks": 256}, GEMMA),
    ("graphs_compare", "graphs_compare", {"batch_size": 1, "max_new_tokens": 64, "runs": 3}, TRANSFORMERS),
    ("weight_precision", "weight_precision", {"model": "llama-3-8b", "max_new_tokens": 64}, LLAMA),
    ("kv_capacity", "kv_capacity", {"context": 4096, "kv_cache_dtype": "fp8", "compare_fp8": True,
                                    "throughput_batch": 32}, LLAMA),
    ("one_gpu_or_two", "one_gpu_or_two", {"model": "llama-3-8b", "sweep": [1, 32, 128, 256],
                                          "memory_utilization": 0.5}, {**GEMMA, "gpu_memory_utilization": 0.1}),
]
DEFAULT_SKIP = {"weight_precision", "kv_capacity", "one_gpu_or_two"}
"""Measured in an earlier session (``benchmarks/results/nvidia-h200-2026-12-02-lessons.json``), or needing
half the card: run them with ``--only``."""


def run_one(name: str, params: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """Load the engine ``options`` name, run experiment ``name`` and return its result as JSON data."""
    from tui_lab.engines import create_engine
    from tui_lab.lab.experiment import RunContext
    from tui_lab.lab.export import to_jsonable
    from tui_lab.lab.inventory import get

    engine_options = dict(options)
    engine_name = engine_options.pop("engine")
    if os.environ.get("INFERENCE_LAB_CACHE"):
        engine_options["cache_dir"] = os.environ["INFERENCE_LAB_CACHE"]
    engine = create_engine(engine_name, **engine_options)
    started = time.perf_counter()
    info = engine.load()
    load_s = time.perf_counter() - started
    try:
        exp = get(name)
        ctx = RunContext(engine=engine, engine_name=engine_name, engine_options=engine_options,
                         engine_factory=create_engine)
        result = exp.run(exp.validate(params), ctx)
    finally:
        engine.unload()
    return {"experiment": name, "params": params, "engine_name": engine_name, "engine": info.to_dict(),
            "load_s": load_s, "wall_s": time.perf_counter() - started, "result": to_jsonable(result.to_dict())}


def main(argv: list[str] | None = None) -> int:
    """Run the plan (each experiment in a child process, ``--parallel`` at once) and write the figures."""
    parser = plan_parser(__doc__.splitlines()[0], "labels", parallel=1)
    args = parser.parse_args(argv)
    if args.child:
        name, params, options = json.loads(args.child)
        print(json.dumps(run_one(name, params, options)), flush=True)
        return 0
    if args.list:
        for label, name, params, options in PLAN:
            print(f"{label:22} {name:22} {options['engine']:12} {options['model']:28} {json.dumps(params)}")
        return 0
    wanted = set(args.only.split(",")) if args.only else None
    plan = [p for p in PLAN if (p[0] in wanted if wanted else p[0] not in DEFAULT_SKIP)]
    out_dir = os.environ.get("OUT", "gpu-out")
    os.makedirs(out_dir, exist_ok=True)
    if args.parallel > 1:
        os.environ.setdefault("INFERENCE_LAB_GPU_LOCK", os.path.join(tempfile.gettempdir(), "inference-lab-gpu"))
    docs: list[dict] = []

    def save() -> None:
        with open(os.path.join(out_dir, "gpu-lessons.json"), "w", encoding="utf-8") as fh:
            json.dump({"date": time.strftime("%Y-%m-%d"), "parallel": args.parallel, "runs": docs}, fh, indent=2)

    def finish(label: str, returncode: int, text: str, seconds: float) -> None:
        line = last_json_line(label, returncode, text, seconds)
        if line is None:
            return
        doc = json.loads(line)
        doc["label"] = label
        docs.append(doc)
        save()
        print(json.dumps(doc), flush=True)

    jobs = [(label, [sys.executable, __file__, "--child", json.dumps([name, params, options])])
            for label, name, params, options in plan]
    run_children(jobs, args.parallel, args.budget, finish)
    save()
    return 0 if docs else 1


if __name__ == "__main__":
    sys.exit(main())
