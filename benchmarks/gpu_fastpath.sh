#!/usr/bin/env bash
# The fast path's build options and floors on a lent H100/H200 (see benchmarks/GPU_NOTES.md), in one call.
# Run from the repo root with .whl/ (the TUI stack's wheels) and, for engine modes, the materialized arch models
# in .labcache/ (INFERENCE_LAB_CACHE) or packed as labcache.tar.xz; results go to $OUT (default ./gpu-out).
#   STAGE=probe  benchmarks/fastpath_probe.py per model: option sets side by side, kernels, profiles, prefill
#                (Nemotron-H at batch 32) and the greedy check
#   STAGE=second what the first probe left out (Gemma's steps, Nemotron-H's prefill, greedy check), bench on Gemma
#   STAGE=bench  inference-lab bench with --floors and --loads 3: the chosen build against the previous one,
#                interleaved over fresh loads, per model
set -uo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl 2>/dev/null
fi
if [ -f labcache.tar.xz ] && [ ! -d .labcache/models ]; then  # arch models' config + tokenizer (tar -cJf)
  mkdir -p .labcache && tar -xJf labcache.tar.xz -C .labcache
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 INFERENCE_LAB_CACHE=${INFERENCE_LAB_CACHE:-$PWD/.labcache}
log="$OUT/log"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv,noheader | tee -a "$log"
python3 -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__)' | tee -a "$log"
run() {  # run SECONDS NAME CMD...: one step, cut at its limit, its rc in the log
  local limit=$1 name=$2; shift 2
  echo "== $name (limit ${limit}s)" | tee -a "$log"
  timeout "$limit" "$@" 2>&1 | tee -a "$log"
  echo "== $name rc=${PIPESTATUS[0]}" | tee -a "$log"
}
case "${STAGE:-probe}" in
probe)
  run "${T_GEMMA:-130}" gemma python3 benchmarks/fastpath_probe.py arch:gemma-3-270m --budget 95 \
    --variants "v5,default,tuning=pdl,tuning=coordinate,linear=reduce,tuning=pdl+linear=reduce" --batches 1,128 \
    --profile v5,default --out "$OUT/probe-gemma.json"
  run "${T_LLAMA:-85}" llama python3 benchmarks/fastpath_probe.py arch:llama-3-8b --budget 60 \
    --variants "v5,default,tuning=pdl" --batches 1 --profile default --out "$OUT/probe-llama.json"
  run "${T_NEMOTRON:-175}" nemotron python3 benchmarks/fastpath_probe.py arch:nemotron-nano-9b-v2 --budget 140 \
    --variants "v5,default,tuning=pdl" --batches 1 --new-tokens 32 --profile default --prefill-batch 32 \
    --greedy 32 --out "$OUT/probe-nemotron.json"
  ;;
second)
  # What the first probe ran out of time for: Gemma's steps per option set (no prefills compiled), Nemotron-H's
  # prefill at batch 32 (scan chunk of the model vs fitted) and the greedy check, then the bench itself on Gemma.
  run "${T_GEMMA:-110}" gemma python3 benchmarks/fastpath_probe.py arch:gemma-3-270m --budget 70 --tokens 0 \
    --variants "v5,default,tuning=pdl,linear=reduce,tuning=pdl+linear=reduce,tuning=coordinate" --batches 1,128 \
    --profile default,v5 --out "$OUT/probe2-gemma.json"
  run "${T_NEMOTRON:-150}" nemotron python3 benchmarks/fastpath_probe.py arch:nemotron-nano-9b-v2 --variants none \
    --batches 1 --prefill-batch 32 --prefill-variants v5,default --stage-budget 120 --greedy 32 \
    --out "$OUT/probe2-nemotron.json"
  run "${T_BENCH:-80}" bench python3 -m tui_lab.bench --model arch:gemma-3-270m --modes lab-direct,lab-direct+v5 \
    --batch-sizes 1 --new-tokens 32 --loads 3 --repeats 2 --floors --out "$OUT/bench-gemma.json"
  ;;
bench)
  opts=${NEW:-}  # the chosen build, as fast-path options after '+' (empty: the defaults)
  run "${T_GEMMA:-110}" gemma python3 -m tui_lab.bench --model arch:gemma-3-270m --modes "lab-direct${opts},lab-direct+v5" \
    --batch-sizes 1,128 --loads 3 --repeats 3 --floors --out "$OUT/bench-gemma.json"
  run "${T_LLAMA:-90}" llama python3 -m tui_lab.bench --model arch:llama-3-8b --modes "lab-direct${opts},lab-direct+v5" \
    --batch-sizes 1 --new-tokens 64 --loads 3 --repeats 2 --floors --out "$OUT/bench-llama.json"
  run "${T_NEMOTRON:-150}" nemotron python3 -m tui_lab.bench --model arch:nemotron-nano-9b-v2 \
    --modes "lab${opts},lab+v5" --batch-sizes 1,32 --new-tokens 32 --loads 3 --repeats 2 --floors \
    --out "$OUT/bench-nemotron.json"
  ;;
esac
echo "done" | tee -a "$log"
