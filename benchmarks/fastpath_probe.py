"""Fast-path build options side by side on one GPU, for one model: what each option set does to a decode step.

For each option set (``hf_graphs.GraphOptions.with_`` specs; ``default`` = the current defaults) and batch
size: the compile + capture time, the decode step as graph replay (device time, trials interleaved across
the option sets so drift touches all alike: median and min–max), kernels per step counted in the graph, the
greedy tokens of 32 steps at batch 1 against the first option set's, and optionally the kernel profile of
the uncaptured step. For hybrid models, ``--prefill-batch`` also times the prefill (captured and not) per
option set, with a kernel profile of the uncaptured prefill. ``--greedy N`` runs ``bench.check_greedy``.

    python benchmarks/fastpath_probe.py arch:gemma-3-270m --variants v5,default,tuning=pdl --batches 1,128 \\
        --profile v5,default --out probe.json

Writes the JSON after every stage (a run cut short keeps what it measured) and prints a table at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tui_lab import bench  # noqa: E402


def _spec(name: str) -> str:
    return "" if name == "default" else name


def _time_replays(items: list[tuple[str, Any]], steps: int, trials: int) -> dict[str, list[float]]:
    """Interleaved trials: every backend's graph replayed ``steps`` times per trial, timed with events."""
    import torch

    out: dict[str, list[float]] = {k: [] for k, _ in items}
    for _ in range(trials):
        for key, be in items:
            e = be.entry
            start_at = be._written
            n = max(1, min(steps, e.length - start_at - 1))
            e.wp.fill_(start_at)
            e.pos.fill_(start_at)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(n):
                e.graph.replay()
            end.record()
            torch.cuda.synchronize()
            out[key].append(start.elapsed_time(end) / n)
    return out


def _greedy(be: Any, ids: Any, steps: int) -> tuple[list[int], Any]:
    import torch

    with torch.inference_mode():
        logits = be.prefill(ids, torch.ones_like(ids)).float()
        first = logits.clone()
        toks = [int(logits[0].argmax())]
        for _ in range(steps - 1):
            nxt = torch.tensor([[toks[-1]]] * ids.shape[0], device=ids.device)
            toks.append(int(be.step(nxt)[0].float().argmax()))
    return toks, first


def _prefill_profile(be: Any, ids: Any, mask: Any, top: int = 20) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from tui_lab.engines import hf_graphs

    with torch.inference_mode():
        hf_graphs._run_prefill(be.rt, be.entry, ids, mask)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            hf_graphs._run_prefill(be.rt, be.entry, ids, mask)
            torch.cuda.synchronize()
    rows, total, n = [], 0.0, 0
    for evt in prof.key_averages():
        dev = getattr(evt, "device_time_total", None) or getattr(evt, "cuda_time_total", 0.0)
        if not dev or evt.key.startswith(("cudaLaunch", "cudaGraph", "Memcpy")):
            continue
        n += evt.count
        total += dev
        rows.append((dev, evt.count, evt.key[:90]))
    rows.sort(reverse=True)
    return {"kernels": n, "kernel_us": total,
            "top": [{"us": round(u, 1), "count": c, "kernel": k} for u, c, k in rows[:top]]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--variants", default="v5,default", help="comma-separated option specs ('default': as is)")
    ap.add_argument("--batches", default="1")
    ap.add_argument("--prompt-tokens", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--tokens", type=int, default=32,
                    help="greedy tokens compared across option sets at the first batch size (0: no prefill, "
                         "no comparison: saves compiling each option set's prefill)")
    ap.add_argument("--trials", type=int, default=7)
    ap.add_argument("--profile", default="", help="option specs whose batch-1 step is profiled (comma-separated)")
    ap.add_argument("--prefill-batch", type=int, default=0, help="hybrid models: time prefills at this batch")
    ap.add_argument("--prefill-variants", default="", help="option specs for the prefill stage (default: --variants)")
    ap.add_argument("--greedy", type=int, default=0, help="bench.check_greedy with this many tokens (default options)")
    ap.add_argument("--budget", type=float, default=1e9,
                    help="seconds; option sets and profiles not yet started are skipped after it")
    ap.add_argument("--stage-budget", type=float, default=1e9,
                    help="seconds for the prefill and greedy stages, counted from their start")
    ap.add_argument("--device", default="cuda", help=argparse.SUPPRESS)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    import torch

    from tui_lab.engines import hf_graphs

    t_start = time.perf_counter()
    device = torch.device(args.device)
    out_path = Path(args.out)
    res: dict[str, Any] = {"model": args.model, "gpu": torch.cuda.get_device_name(device),
                           "versions": bench._versions(), "argv": sys.argv[1:]}

    def save() -> None:
        out_path.write_text(json.dumps(res, indent=1))

    bw = bench.measure_copy_bandwidth(device)
    res["bandwidth_GBps"] = bw / 1e9
    res["launch_cost"] = bench.measure_launch_cost(device)
    print(f"{res['gpu']}: copy {bw / 1e9:.0f} GB/s, one kernel in a graph "
          f"{res['launch_cost']['per_kernel_us']:.2f} µs", flush=True)
    t0 = time.perf_counter()
    model = bench.build_model(args.model, device, torch.bfloat16)
    res["build_model_s"] = time.perf_counter() - t0
    save()
    batches = [int(b) for b in args.batches.split(",")]
    names = [v.strip() for v in args.variants.split(",") if v.strip() and v.strip() != "none"]
    length = args.prompt_tokens + args.new_tokens
    ctx = args.prompt_tokens + args.new_tokens // 2
    arch = hf_graphs._runtime(model, hf_graphs.GraphOptions()).arch
    backends: list[tuple[str, Any]] = []
    res["variants"] = {}
    ref_tokens = ref_logits = None
    for name in names:
        if time.perf_counter() - t_start > args.budget:
            res["variants"][name] = {"skipped": "budget spent"}
            continue
        opts = hf_graphs.GraphOptions.from_env().with_(_spec(name))
        row: dict[str, Any] = {"options": str(opts), "per_batch": {}}
        res["variants"][name] = row
        try:
            for b in batches:
                t0 = time.perf_counter()
                be = hf_graphs.StaticGraphBackend(model, b, length, opts)
                setup = time.perf_counter() - t0
                cell: dict[str, Any] = {"setup_s": setup, "build": be.describe()}
                if args.tokens and b == batches[0]:
                    ids = bench._prompt_ids(model, b, args.prompt_tokens, device)
                    t0 = time.perf_counter()
                    toks, first = _greedy(be, ids, args.tokens)
                    cell["first_prefill_s"] = time.perf_counter() - t0
                    if ref_tokens is None:
                        ref_tokens, ref_logits = toks, first
                    diff = [i for i, (x, y) in enumerate(zip(toks, ref_tokens, strict=True)) if x != y]
                    cell["tokens_first_difference_vs_first_variant"] = diff[0] if diff else None
                    scale = float(ref_logits.abs().max())
                    rel = float((first - ref_logits).abs().max()) / scale
                    cell["prefill_logits_max_rel_diff_vs_first_variant"] = rel
                with torch.inference_mode():
                    kernels, how = bench.graph_kernel_count(lambda be=be: hf_graphs._run_step(be.rt, be.entry), device)
                cell["kernels_per_step"], cell["kernels_counted_by"] = kernels, how
                row["per_batch"][str(b)] = cell
                backends.append((f"{name}|{b}", be))
                print(name, b, json.dumps(cell), flush=True)
        except Exception as exc:
            row["error"] = bench._err(exc)
            print(name, "ERROR", row["error"], flush=True)
            torch.cuda.synchronize()
        save()
    # Interleaved timing of every (option set, batch).
    with torch.inference_mode():
        times = _time_replays(backends, args.steps, args.trials)
    for key, ms in times.items():
        name, b = key.split("|")
        cell = res["variants"][name]["per_batch"][b]
        step_s = statistics.median(ms) / 1e3
        copy_s = bench.roofline_step_s(model, int(b), ctx, bw, 2) + 2 * arch.state_bytes_per_sequence() * int(b) / bw
        cell.update({"step_ms": statistics.median(ms), "step_min_ms": min(ms), "step_max_ms": max(ms),
                     "floors": bench.floor_report(step_s, cell.get("kernels_per_step"),
                                                  bench.per_kernel_s_at(res["launch_cost"],
                                                                        cell.get("kernels_per_step")), copy_s)})
    save()
    for _, be in backends:
        be.release()
    backends.clear()
    for name in [v.strip() for v in args.profile.split(",") if v.strip()]:
        if time.perf_counter() - t_start > args.budget:
            break
        try:
            opts = hf_graphs.GraphOptions.from_env().with_(_spec(name))
            res.setdefault("profiles", {})[name] = bench.profile_step(model, batches[0], length, options=opts,
                                                                      top=None, prefill=bool(args.tokens))
        except Exception as exc:
            res.setdefault("profiles", {})[name] = {"error": bench._err(exc)}
        save()
    t_stage = time.perf_counter()
    if args.prefill_batch and arch.hybrid:
        res["prefill"] = {}
        b = args.prefill_batch
        ids = bench._prompt_ids(model, b, args.prompt_tokens, device)
        mask = torch.ones_like(ids)
        for name in [v.strip() for v in args.prefill_variants.split(",") if v.strip()] or names:
            if time.perf_counter() - t_stage > args.stage_budget:
                break
            opts = hf_graphs.GraphOptions.from_env().with_(_spec(name))
            cell = {}
            try:
                be = hf_graphs.StaticGraphBackend(model, b, args.prompt_tokens + 32, opts)
                t0 = time.perf_counter()
                with torch.inference_mode():
                    be.prefill(ids, mask)
                torch.cuda.synchronize()
                cell["first_s"] = time.perf_counter() - t0
                cell["captured"] = be._captured_prefill(args.prompt_tokens) is not None
                runs = []
                for _ in range(5):
                    torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    with torch.inference_mode():
                        be.prefill(ids, mask)
                    torch.cuda.synchronize()
                    runs.append(1e3 * (time.perf_counter() - t0))
                cell.update({"captured_ms": statistics.median(runs), "captured_spread_ms": [min(runs), max(runs)]})
                runs = []
                with torch.inference_mode():
                    for _ in range(3):
                        torch.cuda.synchronize()
                        t0 = time.perf_counter()
                        hf_graphs._run_prefill(be.rt, be.entry, ids, mask.bool())
                        torch.cuda.synchronize()
                        runs.append(1e3 * (time.perf_counter() - t0))
                cell["uncaptured_ms"] = statistics.median(runs[1:])
                cell["profile"] = _prefill_profile(be, ids, mask.bool())
                cell["notes"] = be.describe()
                be.release()
            except Exception as exc:
                cell["error"] = bench._err(exc)
                torch.cuda.synchronize()
            res["prefill"][name] = cell
            print("prefill", name, json.dumps({k: v for k, v in cell.items() if k != "profile"}), flush=True)
            save()
    if args.greedy and time.perf_counter() - t_stage < args.stage_budget:
        try:
            res["greedy_check"] = bench.check_greedy(model, args.greedy)
        except Exception as exc:
            res["greedy_check"] = {"error": bench._err(exc)}
        print("greedy:", json.dumps(res["greedy_check"]), flush=True)
        save()
    res["wall_s"] = time.perf_counter() - t_start
    save()
    print(f"\n{args.model} on {res['gpu']}: decode step per option set (graph replay, median [min–max] of "
          f"{args.trials} interleaved trials)")
    for name, row in res["variants"].items():
        for b, cell in row.get("per_batch", {}).items():
            if "step_ms" in cell:
                f = cell["floors"]
                print(f"  {name:<32} bs {b:>4}: {cell['step_ms']:.3f} ms [{cell['step_min_ms']:.3f}–"
                      f"{cell['step_max_ms']:.3f}], {cell.get('kernels_per_step')} kernels, copy floor "
                      f"{f['copy_floor_ms']:.3f}, launch floor {f['launch_floor_ms'] or 0:.3f}, "
                      f"setup {cell['setup_s']:.1f} s, tokens differ from first at "
                      f"{cell.get('tokens_first_difference_vs_first_variant', '-')}")
        if row.get("error") or row.get("skipped"):
            print(f"  {name:<32} {row.get('error') or row.get('skipped')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
