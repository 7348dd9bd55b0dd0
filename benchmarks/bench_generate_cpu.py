"""Tokens/s of the transformers engine's decode loop against plain ``model.generate()``, on CPU.

Same model object, same prompts, same batch sizes and lengths, greedy, EOS ignored
(``min_new_tokens`` for generate), run side by side and interleaved (engine,
generate, engine, generate, ...) so that a busy machine slows both alike; the
median of the repeats is reported. Both sides include tokenization and turning
the output into text. The greedy tokens of both are compared as a sanity check.

    python benchmarks/bench_generate_cpu.py                    # batch 1,4,8 × 32,64 new tokens
    python benchmarks/bench_generate_cpu.py --batch-sizes 1,8 --new-tokens 32 --repeats 5

Writes ``benchmarks/results/cpu-<date>.json`` (with machine info) and prints a table.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

PROMPTS = [
    "The future of AI is",
    "Once upon a time, in a small village by the sea, there lived",
    "The three most important things to know about GPUs are",
    "Hi",
    "Water boils at a lower temperature on a mountain because",
    "def fibonacci(n):",
    "The capital of France is Paris, and the capital of Germany is",
    "In the year 2050, cities will",
]


def machine_info() -> dict:
    """CPU model, cores, memory, load and library versions."""
    import torch
    import transformers

    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = None
    try:
        with open("/proc/meminfo") as fh:
            mem = int(next(line.split()[1] for line in fh if line.startswith("MemTotal"))) / 2**20
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem, 1) if mem else None,
        "torch_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def run_engine(engine: object, prompts: list[str], new_tokens: int) -> tuple[float, float, list[list[int]]]:
    """Wall and CPU seconds of one engine run (tokenize → last token as text), and the tokens per request."""
    from tui_lab.engines.base import Request, SamplingParams
    from tui_lab.engines.events import TokenEvent, per_token

    requests = [Request(f"r{i}", p) for i, p in enumerate(prompts)]
    sampling = SamplingParams(max_new_tokens=new_tokens, temperature=0.0, ignore_eos=True)
    tokens: dict[str, list[int]] = {r.request_id: [] for r in requests}
    c0, t0 = time.process_time(), time.perf_counter()
    for event in per_token(engine.stream(requests, sampling)):
        if isinstance(event, TokenEvent):
            tokens[event.request_id].append(event.token_id)
    return time.perf_counter() - t0, time.process_time() - c0, [tokens[r.request_id] for r in requests]


def run_generate(model: object, tokenizer: object, prompts: list[str],
                 new_tokens: int) -> tuple[float, float, list[list[int]]]:
    """Wall and CPU seconds of one ``model.generate()`` run (tokenize → batch_decode), and the tokens."""
    import torch

    c0, t0 = time.process_time(), time.perf_counter()
    enc = tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
    new = out[:, enc["input_ids"].shape[1]:]
    tokenizer.batch_decode(new, skip_special_tokens=True)
    return time.perf_counter() - t0, time.process_time() - c0, new.tolist()


def main(argv: list[str] | None = None) -> int:
    """Run the comparison, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--batch-sizes", default="1,4,8")
    parser.add_argument("--new-tokens", default="32,64")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/cpu-<date>.json)")
    args = parser.parse_args(argv)

    import torch

    from tui_lab.engines.hf import TransformersEngine

    if args.threads:
        torch.set_num_threads(args.threads)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    lengths = [int(n) for n in args.new_tokens.split(",")]

    engine = TransformersEngine(model=args.model, device="cpu", dtype="float32")
    info = engine.load()
    model, tokenizer = engine.model, engine.tokenizer
    machine = machine_info()
    print(f"{info.model} on {machine['cpu']} ({machine['cores']} cores, {machine['torch_threads']} torch threads),"
          f" {info.dtype}; load average {machine['load_average']}", flush=True)
    run_generate(model, tokenizer, PROMPTS[:1], 4)  # warm generate's own code paths too

    rows = []
    header = (f"{'batch':>5} {'new':>4} {'engine tok/s':>13} {'generate tok/s':>15} {'ratio':>6} {'best-of':>8}"
              f" {'cpu-time':>8} {'same':>5}")
    print(header)
    print("-" * len(header))
    for bs in batch_sizes:
        prompts = [PROMPTS[i % len(PROMPTS)] for i in range(bs)]
        for new in lengths:
            eng_s, gen_s, eng_cpu, gen_cpu, pair_ratios = [], [], [], [], []
            same = True
            for rep in range(args.repeats):
                # Alternate which side goes first, so a load change on the machine hits both alike.
                if rep % 2 == 0:
                    t_e, c_e, tok_e = run_engine(engine, prompts, new)
                    t_g, c_g, tok_g = run_generate(model, tokenizer, prompts, new)
                else:
                    t_g, c_g, tok_g = run_generate(model, tokenizer, prompts, new)
                    t_e, c_e, tok_e = run_engine(engine, prompts, new)
                eng_s.append(t_e)
                gen_s.append(t_g)
                eng_cpu.append(c_e)
                gen_cpu.append(c_g)
                pair_ratios.append(t_g / t_e)
                same = same and tok_e == tok_g
            tokens = bs * new
            eng_tps = tokens / statistics.median(eng_s)
            gen_tps = tokens / statistics.median(gen_s)
            ratio = statistics.median(pair_ratios)
            best_ratio = min(gen_s) / min(eng_s)
            cpu_ratio = statistics.median(gen_cpu) / statistics.median(eng_cpu)
            row = {
                "batch_size": bs, "new_tokens": new, "tokens_per_run": tokens,
                "engine_s": eng_s, "generate_s": gen_s, "engine_cpu_s": eng_cpu, "generate_cpu_s": gen_cpu,
                "engine_tokens_per_s": round(eng_tps, 2), "generate_tokens_per_s": round(gen_tps, 2),
                "ratio": round(ratio, 3), "ratio_best_of": round(best_ratio, 3), "ratio_cpu_time": round(cpu_ratio, 3),
                "same_greedy_tokens": same,
            }
            rows.append(row)
            print(f"{bs:>5} {new:>4} {eng_tps:>13.1f} {gen_tps:>15.1f} {ratio:>6.2f} {best_ratio:>8.2f}"
                  f" {cpu_ratio:>8.2f} {str(same):>5}", flush=True)

    machine["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    result = {
        "benchmark": "transformers engine decode loop vs model.generate(), CPU, greedy, EOS ignored",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": info.model, "dtype": info.dtype, "repeats": args.repeats,
        "statistic": "median tokens/s; ratio = median of paired generate_s/engine_s; ratio_best_of = fastest "
                     "runs; ratio_cpu_time = median generate_cpu_s / median engine_cpu_s",
        "machine": machine, "engine": info.to_dict(), "results": rows,
    }
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / f"cpu-{time.strftime('%Y-%m-%d')}.json"
    from tui_lab.lab.export import write_json

    print(f"wrote {write_json(out, result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
