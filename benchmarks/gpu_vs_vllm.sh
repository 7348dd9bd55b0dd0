#!/usr/bin/env bash
# The lab against vLLM itself on one GPU: `inference-lab bench` with the vllm-offline, lab-vllm and lab
# modes (and vllm-stream: the same LLM stepped by hand with delta outputs) for the three architecture models, one result file each under $OUT (default /tmp/out).
# Needs vLLM importable (on the lent GPU machine: `. .gpu/deps/setup.sh` after staging) and, where there
# is no model cache, a tarball of the materialized arch-* entries at ${ARCHS:-.gpucache/archs.tar.xz}.
# MODELS (gemma llama nemotron), MODES, GEMMA_SIZES, VARIANTS=1 (--vllm-variants) and *_BUDGET (s) select.
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
# vLLM modes first: the second vLLM load of a model reuses the first one's torch.compile cache (a cold
# load with graph capture took ~2 min on an H200 in 2026-12); the lab's transformers engine last.
b() { python3 -m tui_lab.bench --modes "${MODES:-vllm-offline,vllm-stream,lab-vllm,lab}" --repeats 1 "$@" 2>&1 \
        | grep -v '^INFO\|^(EngineCore'; }
for m in ${MODELS:-gemma llama nemotron}; do
  case $m in
    gemma) b --model arch:gemma-3-270m --batch-sizes "${GEMMA_SIZES:-1,8,64,256,1024}" --new-tokens 128 \
             ${VARIANTS:+--vllm-variants} --time-budget "${GEMMA_BUDGET:-300}" --out "$O/gemma.json" | tee "$O/gemma.log" ;;
    llama) b --model arch:llama-3-8b --batch-sizes 1,32,256 --new-tokens 64 \
             --time-budget "${LLAMA_BUDGET:-300}" --out "$O/llama.json" | tee "$O/llama.log" ;;
    nemotron) b --model arch:nemotron-nano-9b-v2 --batch-sizes 1,32 --new-tokens 32 \
             --time-budget "${NEMO_BUDGET:-300}" --out "$O/nemotron.json" | tee "$O/nemotron.log" ;;
  esac
done
