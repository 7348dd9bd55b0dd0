#!/usr/bin/env bash
# One lease on a lent H100/H200 (see benchmarks/GPU_NOTES.md): a batch sweep through the lab, then the full
# benchmark. Run from the repo root with .whl/ and the materialized arch model carried (INFERENCE_LAB_CACHE);
# results go to $OUT (default: ./gpu-out). PICK_ATTENTION=1 first times the three decode attention kernels.
set -uo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 INFERENCE_LAB_CACHE=${INFERENCE_LAB_CACHE:-$PWD/.cache/inference-lab}
log="$OUT/all.log"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv,noheader | tee -a "$log"

if [ "${PICK_ATTENTION:-0}" = 1 ]; then
  # Decode attention: the three implementations at batch 1 and 128 (each is one small compile).
  for a in reduce matmul sdpa; do
    INFERENCE_LAB_GRAPH_ATTENTION=$a timeout 75 python3 -m tui_lab.bench --modes lab-direct --batch-sizes 1,128 \
      --out "$OUT/att_$a.json" >> "$log" 2>&1
  done
  best=$(python3 benchmarks/bench_gpu.py --pick-attention "$OUT")
  echo "attention: $best" | tee -a "$log"
  export INFERENCE_LAB_GRAPH_ATTENTION=$best
fi

# A batch sweep through the lab's CLI (the product path): the knee should be visible.
timeout 200 python3 -m tui_lab sweep --model arch:gemma-3-270m --device cuda --batch-sizes 1,8,32,64,128,256,512,1024 \
  --ignore-eos --max-tokens 128 --runs 3 --warmup 1 --out "$OUT/sweep.json" >> "$log" 2>&1
echo "sweep rc=$?" | tee -a "$log"

# The benchmark (the committed results file), with a bigger architecture.
timeout "${BENCH_TIMEOUT:-400}" python3 -m tui_lab.bench \
  --modes lab-direct,lab-direct-sync,lab-direct-sync-serial,lab,lab-serial,lab-eager,hf-generate,hf-generate-compiled \
  --batch-sizes 1,8,32,128 --compiled-batch-sizes 1,128 --readiness --profile --check-greedy --check-overlap \
  --big-model arch:llama-3-8b ${BENCH_EXTRA:-} --time-budget "${BENCH_BUDGET:-300}" --out "$OUT/bench.json" >> "$log" 2>&1
echo "bench rc=$?" | tee -a "$log"
