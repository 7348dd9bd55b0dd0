"""How close the lab's "about N s here" comes to what each lesson step then takes, on this machine.

Loads the transformers engine as the app does, measures its pace the same way (``calibrate``), then for every
lesson step whose experiment runs on that engine: the estimate the step's line shows before its first run,
the run itself (the step's preset for the device, ``cpu`` values on a CPU), and the time it took. The pace is
not refined between steps, so each figure is what a learner sees on a step they open first.

    python benchmarks/bench_estimates.py                      # every such step (long on a CPU)
    python benchmarks/bench_estimates.py --only roofline,interference
    python benchmarks/bench_estimates.py --device cuda --out benchmarks/results/estimates-gpu.json

Prints one line per step (estimate, taken, taken / estimate) and writes them as JSON. A ratio far from 1 on
a quiet machine is the estimate's error; on a busy one it is partly the machine (the script says the load).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--model", default=None, help="model name (default: the embedded model)")
    parser.add_argument("--only", default="", help="comma-separated experiment names (default: every step's)")
    parser.add_argument("--out", default=f"benchmarks/results/estimates-{time.strftime('%Y-%m-%d')}.json")
    args = parser.parse_args(argv)

    from tui_lab.engines import create_engine
    from tui_lab.lab.experiment import RunContext
    from tui_lab.lab.export import write_json
    from tui_lab.lab.pace import about, calibrate
    from tui_lab.lab.runner import run_experiment
    from tui_lab.lessons import load_lessons
    from tui_lab.ui.loaded import LoadedExperiment

    only = {name for name in args.only.split(",") if name}
    options: dict[str, object] = {"device": args.device, **({"model": args.model} if args.model else {})}
    engine = create_engine("transformers", **options)
    t0 = time.perf_counter()
    engine.load()
    pace = calibrate(engine, load_s=time.perf_counter() - t0)
    on_cpu = pace.on_cpu
    print(f"engine loaded on {engine.info.device} in {pace.load_s:.1f} s; pace: "
          + ", ".join(f"batch {b} {s * 1000:.0f} ms/step" for b, s in pace.steps), flush=True)

    rows = []
    for lesson in load_lessons():
        for index, step in enumerate(lesson.steps, start=1):
            if not step.experiment or step.engine not in (None, "transformers") or (on_cpu and step.replay):
                continue
            if only and step.experiment not in only:
                continue
            loaded = LoadedExperiment.from_step(lesson, step, on_cpu)
            assert loaded is not None
            estimate = pace.seconds(loaded.experiment.planned_work(loaded.values, "transformers"))
            load_before = os.getloadavg()[0]
            ctx = RunContext(engine=engine, engine_name="transformers", engine_options=options)
            started = time.perf_counter()
            outcome = run_experiment(step.experiment, loaded.values, ctx)
            taken = time.perf_counter() - started
            row = {"lesson": lesson.id, "step": index, "title": step.title, "experiment": step.experiment,
                   "estimate_s": estimate, "taken_s": taken, "ratio": taken / estimate if estimate else None,
                   "failed": outcome.message or None, "load_1min": load_before}
            rows.append(row)
            ratio = f"{row['ratio']:.2f}" if row["ratio"] else "—"
            failed = f"  FAILED: {outcome.message}" if outcome.failed else ""
            print(f"{lesson.id}.{index:<2} {step.experiment:20s} said {about(estimate):22s} took {taken:6.1f} s"
                  f"  taken/said {ratio}  (load {load_before:.1f}){failed}", flush=True)
    ratios = [r["ratio"] for r in rows if r["ratio"] and not r["failed"]]
    if ratios:
        print(f"taken / said over {len(ratios)} steps: median {statistics.median(ratios):.2f}, "
              f"range {min(ratios):.2f}–{max(ratios):.2f}")
    write_json(args.out, {"device": str(engine.info.device), "cpus": os.cpu_count(), "pace": {
        "load_s": pace.load_s, "steps": pace.steps, "prefills": pace.prefills}, "steps": rows})
    print(f"wrote {args.out}")
    engine.unload()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
