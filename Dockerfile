# inference-lab for GPU VMs: CUDA + vLLM (CUDA build) + this project; `docker run` opens the lab.
#
#   docker build -t inference-lab .
#   docker run --gpus all -it --rm --shm-size=8g -e HF_TOKEN \
#       -v inference-lab-cache:/cache inference-lab
#
# --shm-size: vLLM's worker processes (and NCCL with --tensor-parallel-size > 1) talk through shared
#   memory; Docker's default 64 MB is too small. (--ipc=host works too.)
# -e HF_TOKEN: only for gated hub models; the token is read at run time and never stored in the image.
# /cache: materialized models (INFERENCE_LAB_CACHE) and the Hugging Face cache (HF_HOME) persist in a
#   named volume, so the embedded model is built once, not at every start.

# The devel image brings nvcc: vLLM's FlashInfer compiles some kernels just in time.
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-devel-ubuntu24.04
FROM ${CUDA_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    INFERENCE_LAB_CACHE=/cache/inference-lab \
    HF_HOME=/cache/huggingface \
    INFERENCE_LAB_LESSONS=/opt/inference-lab/lessons \
    TERM=xterm-256color \
    COLORTERM=truecolor

# Ubuntu 24.04's Python is 3.12 (pyproject.toml asks for >= 3.11). Not version-pinned: the
# distribution's python3 takes security updates within 3.12.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

# vLLM first, in its own layer: it pins its torch (vllm 0.32.0 → torch 2.13.0, CUDA wheels from PyPI)
# and accepts transformers >=5.16.1,<5.20 — the same range as pyproject.toml, so installing the
# project next does not move either.
ARG VLLM_VERSION=0.32.0
RUN pip install "vllm==${VLLM_VERSION}"

WORKDIR /opt/inference-lab
COPY pyproject.toml README.md ./
COPY tui_lab ./tui_lab
COPY lessons ./lessons
# The project as pyproject.toml defines it (its dependencies and the `inference-lab` script).
RUN pip install . \
    && inference-lab --help > /dev/null

RUN useradd --create-home --uid 1000 lab \
    && mkdir -p /cache \
    && chown lab:lab /cache
VOLUME ["/cache"]
USER 1000
WORKDIR /home/lab

ENTRYPOINT ["inference-lab"]
