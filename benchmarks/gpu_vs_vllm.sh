#!/usr/bin/env bash
# The lab against vLLM itself on one GPU: `inference-lab bench` with the vllm-offline, lab-vllm and lab
# modes for the three architecture models, one result file each under $OUT (default /tmp/out).
# Needs vLLM importable (on the lent GPU machine: `. .gpu/deps/setup.sh` after staging) and, where there
# is no model cache, a tarball of the materialized arch-* entries at ${ARCHS:-.gpucache/archs.tar.xz}.
# Budgets keep the whole run under ~8 minutes on an H200.
set -o pipefail
export PYTHONUNBUFFERED=1
O=${OUT:-/tmp/out}
mkdir -p "$O"
if [ -f "${ARCHS:-.gpucache/archs.tar.xz}" ]; then
  export INFERENCE_LAB_CACHE=${INFERENCE_LAB_CACHE:-/tmp/ilcache}
  mkdir -p "$INFERENCE_LAB_CACHE" && tar -xJf "${ARCHS:-.gpucache/archs.tar.xz}" -C "$INFERENCE_LAB_CACHE"
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee "$O/card.txt"
b() { python3 -m tui_lab.bench --modes lab-vllm,lab,vllm-offline --repeats 1 "$@"; }
b --model arch:gemma-3-270m --batch-sizes 1,8,64,256,1024 --new-tokens 128 --vllm-variants \
  --time-budget "${GEMMA_BUDGET:-230}" --out "$O/gemma.json" 2>&1 | grep -v '^INFO\|^(EngineCore' | tee "$O/gemma.log"
b --model arch:llama-3-8b --batch-sizes 1,32,256 --new-tokens 64 \
  --time-budget "${LLAMA_BUDGET:-120}" --out "$O/llama.json" 2>&1 | grep -v '^INFO\|^(EngineCore' | tee "$O/llama.log"
b --model arch:nemotron-nano-9b-v2 --batch-sizes 1,32 --new-tokens 32 \
  --time-budget "${NEMO_BUDGET:-120}" --out "$O/nemotron.json" 2>&1 | grep -v '^INFO\|^(EngineCore' | tee "$O/nemotron.log"
