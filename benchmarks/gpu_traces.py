"""Record the traces the lab ships (``tui_lab/traces/``) on a GPU: every run of a few lessons' experiments.

Each part runs one experiment through the lab's runner in its own process, with recording on, and writes
its trace to ``$OUT/traces/<card>-<part>.trace.json.gz`` (card, driver, versions, model and settings inside):

* ``batch_sweep`` — Gemma 3 270M architecture, transformers engine with CUDA graphs, batch 1 → 1024 (every
  power of two) × 128 tokens, one warm-up and one measured run per batch (the warm-ups are left out of the
  file: a replayed sweep plays the measured run for its warm-up too);
* ``graphs_compare`` — the same decode loop eager and replayed from CUDA graphs, batch 1 × 128 tokens;
* ``static_vs_continuous`` — replies of very different lengths in static batches (transformers, vLLM) and
  continuously batched (vLLM, with its per-request queue/prefill/decode times and KV-cache samples);
* ``nemotron`` — Nemotron Nano 9B v2 architecture (hybrid Mamba-2/attention), transformers with CUDA graphs,
  batch 1, 8, 32 × 128 tokens.

Parts run ``--parallel`` at once with ``INFERENCE_LAB_GPU_LOCK`` set (``tui_lab.gpu_share``): engine loads
overlap, timed runs take turns, so no two runs share the GPU. ``--budget`` bounds the whole plan; a part that
would start too late is skipped and said. One JSON line per part (file, size, runs, seconds), and
``$OUT/gpu-traces.json`` rewritten after each part.

    python benchmarks/gpu_traces.py --list
    python benchmarks/gpu_traces.py --parallel 3 --budget 540
    python benchmarks/gpu_traces.py --only batch_sweep,nemotron
    OUT=/tmp/smoke python benchmarks/gpu_traces.py --smoke --parallel 1    # the same plan, tiny, on a CPU
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from gpu_children import last_json_line, plan_parser, run_children

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("NCCL_NVLS_ENABLE", "0")

TRANSFORMERS = {"engine": "transformers", "model": "arch:gemma-3-270m", "device": "cuda", "dtype": "bfloat16",
                "cuda_graphs": True}
NEMOTRON = {**TRANSFORMERS, "model": "arch:nemotron-nano-9b-v2"}
BATCHES = [2**k for k in range(11)]
LENGTHS = [128, 16, 112, 32, 96, 48, 80, 64, 120, 8, 104, 24, 88, 40, 72, 56]
"""Sixteen replies of very different lengths (static batches wait for their longest; continuous ones do not)."""

PLAN: list[tuple[str, str, dict[str, Any], dict[str, Any], bool]] = [
    # (part, experiment, params, engine options, keep warm-up runs in the file)
    ("batch_sweep", "batch_sweep", {"batch_sizes": BATCHES, "max_new_tokens": 128, "runs": 1, "warmup": 1,
                                    "ignore_eos": True, "latency_budget": "chat"}, TRANSFORMERS, False),
    # The lab's engine is transformers (its static batches); the experiment starts the vLLM variants itself.
    ("static_vs_continuous", "static_vs_continuous", {"lengths": LENGTHS, "max_num_seqs": 4}, TRANSFORMERS, True),
    ("graphs_compare", "graphs_compare", {"batch_size": 1, "max_new_tokens": 128, "runs": 3}, TRANSFORMERS, True),
    ("nemotron", "batch_sweep", {"batch_sizes": [1, 8, 32], "max_new_tokens": 128, "runs": 1, "warmup": 1,
                                 "ignore_eos": True}, NEMOTRON, False),
]
"""static_vs_continuous starts among the first: a cold vLLM start compiles for one to three minutes."""


def smoke_plan(plan: list[tuple[str, str, dict[str, Any], dict[str, Any], bool]]) -> list[
        tuple[str, str, dict[str, Any], dict[str, Any], bool]]:
    """The plan shrunk to run on a CPU in a few minutes (checks this script, not the GPU): Gemma 3 270M
    architecture everywhere, a few tokens, small batches."""
    small = {"batch_sizes": [1, 2], "max_new_tokens": 4, "lengths": [6, 2, 4, 3], "max_num_seqs": 2}
    out = []
    for part, name, params, options, keep in plan:
        shrunk = {k: (small[k] if k in small else v) for k, v in params.items()}
        out.append((part, name, shrunk, {**options, "device": "cpu", "dtype": "float32",
                                         "model": "arch:gemma-3-270m"}, keep))
    return out


def card_slug() -> str:
    """"h200", "h100-80gb-hbm3", ... from the GPU's name (or "cpu")."""
    from tui_lab.lab.trace import machine_facts

    card = str(machine_facts().get("card") or "cpu").lower()
    for prefix in ("nvidia ", "cpu "):
        card = card.removeprefix(prefix)
    return "-".join(card.replace("/", " ").split()) or "gpu"


def run_part(part: str, name: str, params: dict[str, Any], options: dict[str, Any], keep_warmup: bool,
             out_dir: str) -> dict[str, Any]:
    """Load the engine ``options`` name, run experiment ``name`` recording every run, write the trace."""
    from tui_lab.engines import create_engine
    from tui_lab.lab.experiment import RunContext
    from tui_lab.lab.runner import run_experiment
    from tui_lab.lab.trace import without_warmups, write_trace

    engine_options = dict(options)
    engine_name = str(engine_options.pop("engine"))
    if os.environ.get("INFERENCE_LAB_CACHE"):
        engine_options["cache_dir"] = os.environ["INFERENCE_LAB_CACHE"]
    started = time.perf_counter()
    engine = create_engine(engine_name, **engine_options)
    info = engine.load()
    load_s = time.perf_counter() - started
    try:
        ctx = RunContext(engine=engine, engine_name=engine_name, engine_options=engine_options,
                         engine_factory=create_engine, record=True)
        outcome = run_experiment(name, params, ctx)
        if outcome.failed or outcome.trace is None:
            raise RuntimeError(f"{name} failed: {outcome.message} {outcome.hint}")
        trace = outcome.recording.trace(command=[sys.argv[0], "--only", part]) if outcome.recording else None
        assert trace is not None
        if not keep_warmup:
            trace = without_warmups(trace)
        path = Path(out_dir) / "traces" / f"{card_slug()}-{part}.trace.json.gz"
        write_trace(path, trace)
    finally:
        engine.unload()
    from tui_lab.lab.runner import problems

    return {"part": part, "experiment": name, "file": str(path), "bytes": path.stat().st_size,
            "runs": len(trace.runs), "tokens": sum(sum(r.requests.tok_n) for r in trace.runs),
            "engine": info.to_dict(), "load_s": round(load_s, 1), "wall_s": round(time.perf_counter() - started, 1),
            "problems": problems(outcome.result)}


def main(argv: list[str] | None = None) -> int:
    """Run the plan (each part in a child process, ``--parallel`` at once) and say what was written."""
    parser = plan_parser(__doc__.splitlines()[0], "parts", parallel=3)
    parser.add_argument("--smoke", action="store_true", help="run the plan shrunk, on the CPU (checks the script)")
    args = parser.parse_args(argv)
    out_dir = os.environ.get("OUT", "gpu-out")
    if args.child:
        part, name, params, options, keep = json.loads(args.child)
        print(json.dumps(run_part(part, name, params, options, keep, out_dir)), flush=True)
        return 0
    if args.list:
        for part, name, params, options, _keep in PLAN:
            print(f"{part:22} {name:22} {options['engine']:12} {options['model']:28} {json.dumps(params)}")
        return 0
    wanted = set(args.only.split(",")) if args.only else None
    plan = [p for p in (smoke_plan(PLAN) if args.smoke else PLAN) if wanted is None or p[0] in wanted]
    os.makedirs(os.path.join(out_dir, "traces"), exist_ok=True)
    if args.parallel > 1:
        os.environ.setdefault("INFERENCE_LAB_GPU_LOCK", os.path.join(tempfile.gettempdir(), "inference-lab-gpu"))
    docs: list[dict[str, Any]] = []

    def save() -> None:
        with open(os.path.join(out_dir, "gpu-traces.json"), "w", encoding="utf-8") as fh:
            json.dump({"date": time.strftime("%Y-%m-%d"), "parallel": args.parallel, "parts": docs}, fh, indent=2)

    def finish(part: str, returncode: int, text: str, seconds: float) -> None:
        with open(os.path.join(out_dir, f"{part}.log"), "w", encoding="utf-8") as fh:
            fh.write(text)
        line = last_json_line(part, returncode, text, seconds)
        if line is None:
            return
        doc = json.loads(line)
        docs.append(doc)
        save()
        print(json.dumps({k: doc[k] for k in ("part", "file", "bytes", "runs", "tokens", "load_s", "wall_s",
                                              "problems")}), flush=True)

    jobs = [(part, [sys.executable, __file__, "--child", json.dumps([part, name, params, options, keep])])
            for part, name, params, options, keep in plan]
    run_children(jobs, args.parallel, args.budget, finish)
    save()
    total = sum(d["bytes"] for d in docs)
    print(f"{len(docs)} of {len(plan)} parts recorded, {total / 1e6:.2f} MB in {out_dir}/traces", flush=True)
    return 0 if len(docs) == len(plan) else 1


if __name__ == "__main__":
    sys.exit(main())
