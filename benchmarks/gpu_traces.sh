#!/usr/bin/env bash
# Record the traces the lab ships, on one lent H100/H200, in one call (benchmarks/gpu_traces.py says what each
# part records). Run from the repo root; results go to $OUT (default: ./gpu-out): $OUT/traces/*.trace.json.gz
# (copy them into tui_lab/traces/), $OUT/gpu-traces.json (one entry per part: file, bytes, runs, seconds),
# a log per part and $OUT/all.log. Then, on the GPU or anywhere: python benchmarks/bench_traces.py --only replay
# --trace $OUT/traces/<file> prints how faithfully each one replays.
#
# Needs: the lab (the repo, or its wheel in .whl/), torch with CUDA; for static_vs_continuous's vLLM modes,
# vLLM importable: when vLLM was staged on this machine, .gpu/deps/setup.sh is sourced here (without vLLM
# that part records the transformers mode only and says the vLLM modes could not run). Architecture models
# need their materialized config + tokenizer: a model cache in $INFERENCE_LAB_CACHE, or a tarball of its
# arch-* entries at ${ARCHS:-.gpucache/archs.tar.xz}.
#
# Time: the whole plan is bounded by BUDGET (default 540 s); parts run PARALLEL (3) at once, loads
# overlapping, timed runs taking turns. Seen budgets per part (load + runs): batch_sweep ~90 s, graphs_compare
# ~60 s, static_vs_continuous ~150-250 s (a cold vLLM start compiles), nemotron ~120 s.
set -uo pipefail
OUT=${OUT:-gpu-out}
export OUT
mkdir -p "$OUT/traces"
log="$OUT/all.log"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl 2>/dev/null
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
if [ -f "${ARCHS:-.gpucache/archs.tar.xz}" ]; then
  export INFERENCE_LAB_CACHE=${INFERENCE_LAB_CACHE:-/tmp/ilcache}
  mkdir -p "$INFERENCE_LAB_CACHE" && tar -xJf "${ARCHS:-.gpucache/archs.tar.xz}" -C "$INFERENCE_LAB_CACHE"
fi
export INFERENCE_LAB_CACHE=${INFERENCE_LAB_CACHE:-$PWD/.cache/inference-lab}
if [ -f .gpu/deps/setup.sh ]; then
  # shellcheck disable=SC1091
  . .gpu/deps/setup.sh || echo "vLLM is not staged here: static_vs_continuous records its transformers mode only" \
    | tee -a "$log"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee -a "$log"
python3 -c "import vllm; print('vllm', vllm.__version__)" 2>/dev/null | tee -a "$log" \
  || echo "no vLLM: static_vs_continuous records its transformers mode only" | tee -a "$log"
python3 benchmarks/gpu_traces.py --parallel "${PARALLEL:-3}" --budget "${BUDGET:-540}" ${ONLY:+--only "$ONLY"} \
  2>&1 | grep -v '^INFO\|^(EngineCore' | tee -a "$log"
rc=${PIPESTATUS[0]}
ls -l "$OUT/traces" | tee -a "$log"
echo "gpu_traces rc=$rc" | tee -a "$log"
exit "$rc"
