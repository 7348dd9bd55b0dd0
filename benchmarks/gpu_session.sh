#!/usr/bin/env bash
# One lease on a lent H100/H200 for what only a GPU can show (see benchmarks/GPU_NOTES.md), in one call:
#   1. the traces the lab ships (benchmarks/gpu_traces.sh: batch sweep 1→1024, CUDA graphs on/off,
#      static batching, Nemotron), copied afterwards into tui_lab/traces/;
#   2. what recording costs, headless and in the app (benchmarks/bench_traces.py, batch 1 / 64 / 1024);
#   3. experiments that read the card: energy_cost (NVML joules), weight_precision and kv_capacity
#      (the card's own bandwidth and memory), each through the CLI as a learner runs it;
#   4. if time is left (STAGE=ui), the app against headless (benchmarks/bench_ui.py), then again with the
#      timeline shown at batch 1024 (--timeline).
# Run from the repo root with .whl/ (pure-Python wheels: ../gpu/wheels.sh httpx httpcore h11 anyio sniffio idna
# certifi psutil) and .gpucache/archs.tar.xz (the arch-* model cache, tar -cJf) carried. Results: $OUT.
set -uo pipefail
OUT=${OUT:-gpu-out}
export OUT
mkdir -p "$OUT"
log="$OUT/session.log"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 INFERENCE_LAB_CACHE=/tmp/ilcache
mkdir -p "$INFERENCE_LAB_CACHE" && tar -xJf .gpucache/archs.tar.xz -C "$INFERENCE_LAB_CACHE"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$log"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" \
  | tee -a "$log"
git log -1 --format='commit %H' 2>/dev/null | tee -a "$log"

if [ "${STAGE:-main}" = main ]; then
  # The experiments run beside the trace recording; timed runs take turns through one GPU lock.
  export INFERENCE_LAB_GPU_LOCK=/tmp/inference-lab-gpu
  (
    for exp in energy_cost weight_precision kv_capacity; do
      timeout 90 python3 -m tui_lab experiment "$exp" --engine transformers --model arch:gemma-3-270m \
        --device cuda --out "$OUT/$exp.json" > "$OUT/$exp.txt" 2>&1
      echo "$exp rc=$?" | tee -a "$log"
    done
  ) &
  BUDGET=${TRACE_BUDGET:-300} PARALLEL=3 bash benchmarks/gpu_traces.sh > "$OUT/traces.log" 2>&1
  echo "traces rc=$?" | tee -a "$log"
  wait
  unset INFERENCE_LAB_GPU_LOCK
  timeout 200 python3 benchmarks/bench_traces.py --device cuda --only headless,app --batches 1,64,1024 --tokens 128 \
    --repeats 3 --out "$OUT/traces-cost.json" > "$OUT/traces-cost.log" 2>&1
  echo "trace cost rc=$?" | tee -a "$log"
fi
if [ "${STAGE:-main}" = ui ]; then
  # The app against headless with the timeline shown, interleaved over two loads; the first run at each batch size
  # against the warm ones (the engine builds a new shape's CUDA graphs before the run is timed).
  timeout 420 python3 benchmarks/bench_ui.py --device cuda --engine transformers --batches 1,64,1024 --loads 2 \
    --timeline --tag timeline --out-dir "$OUT" > "$OUT/ui.log" 2>&1
  echo "bench_ui rc=$?" | tee -a "$log"
fi
tail -n 40 "$OUT"/*.log | cut -c1-300
# One file back: the machine returns only a few files per call.
tar -czf /tmp/gpu-session.tgz -C "$OUT" . && rm -rf "${OUT:?}"/* && mv /tmp/gpu-session.tgz "$OUT/"
