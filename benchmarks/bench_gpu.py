"""Thin wrapper: ``python benchmarks/bench_gpu.py [bench options]`` = ``inference-lab bench`` (for machines
without the console script), plus ``--pick-attention DIR`` used by ``gpu_run.sh``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def pick_attention(folder: str) -> str:
    """The decode attention with the lowest summed decode step time in ``DIR/att_<name>.json``."""
    best, best_ms = "reduce", float("inf")
    for path in sorted(Path(folder).glob("att_*.json")):
        runs = json.loads(path.read_text())["runs"]
        times = [r.get("decode_ms_per_step") for r in runs]
        if runs and all(times):
            total = sum(times)
            if total < best_ms:
                best, best_ms = path.stem[len("att_"):], total
    return best


if __name__ == "__main__":
    if sys.argv[1:2] == ["--pick-attention"]:
        print(pick_attention(sys.argv[2]))
        sys.exit(0)
    from tui_lab.bench import main

    sys.exit(main(sys.argv[1:]))
