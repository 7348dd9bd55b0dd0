"""What each engine takes: its options as ``Param``s, the one vocabulary (pure: no engine is imported).

The CLI builds its engine flags from these declarations (every command's, the lab's own command line
included), the Controls build their engine fields from them, and ``create_engine`` checks an engine's
options against them before the engine is made. An option an engine does not declare (a comparison's
``quantization``, a test's clock) passes through unchecked: the engine's constructor takes it or refuses it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from tui_lab.errors import InvalidInput
from tui_lab.params import MAX_REQUESTS, Param, env_name, url

ENGINE_NAMES = ("transformers", "vllm", "openai", "replay")
"""The engines a learner picks from, in the order the lab offers them (replay: a recorded trace played back)."""
TEST_ENGINES = ("scripted",)
"""Engines for tests and snapshots only: accepted, never offered."""

DEFAULT_MAX_NUM_SEQS = 256
"""vLLM's own default on GPUs; lower it to watch requests queue (lesson 04)."""
DEFAULT_GPU_MEMORY_UTILIZATION = 0.3
"""A 270M model needs a few hundred MB; vLLM would otherwise reserve 90% of the card for KV cache."""
DEFAULT_MAX_MODEL_LEN = 2048
"""Enough for every lesson; a shorter context keeps the KV cache reservation small."""
DEFAULT_CPU_KVCACHE_GIB = 2
"""KV cache space on CPU (``VLLM_CPU_KVCACHE_SPACE``): ~100k tokens of Gemma 3 270M."""

MODEL = Param("model", "text", "embedded", "'embedded', a hub id, a local dir, or arch:NAME")
DEVICE = Param("device", "choice", "auto", "where to run", choices=("auto", "cpu", "cuda"))
DTYPE = Param("dtype", "text", "auto", "weights dtype: auto, float32, bfloat16, float16")
CACHE_DIR = Param("cache_dir", "text", None, "model cache (default: $INFERENCE_LAB_CACHE or ~/.cache/inference-lab)",
                  optional=True)

_LOCAL = (MODEL, DEVICE, DTYPE, CACHE_DIR)

ENGINE_OPTIONS: dict[str, tuple[Param, ...]] = {
    "transformers": (
        *_LOCAL,
        Param("kv_cache", "bool", True, "decode with a KV cache, or recompute the whole sequence every step"),
        Param("cuda_graphs", "bool", True, "on CUDA, replay decode steps from CUDA graphs"),
    ),
    "vllm": (
        *_LOCAL,
        Param("max_num_seqs", "int", DEFAULT_MAX_NUM_SEQS, "most sequences scheduled at once", 1, MAX_REQUESTS),
        Param("gpu_memory_utilization", "number", DEFAULT_GPU_MEMORY_UTILIZATION,
              "fraction of GPU memory vLLM may use", 0, 1, above_min=True),
        Param("max_model_len", "int", DEFAULT_MAX_MODEL_LEN, "context length to reserve", 16),
        Param("enable_prefix_caching", "bool", True, "reuse the KV cache of shared prompt prefixes",
              flag="--prefix-caching"),
        Param("enforce_eager", "bool", None, "no CUDA graphs (none: vLLM decides)", optional=True),
        Param("tensor_parallel_size", "int", 1, "GPUs to shard the model over", 1, 64),
        Param("cpu_kvcache_gib", "int", DEFAULT_CPU_KVCACHE_GIB, "on CPU, GiB of RAM for the KV cache", 1, 1024),
    ),
    "openai": (
        Param("base_url", "text", None, "the server's URL, e.g. http://127.0.0.1:8000/v1", optional=True, extra=url),
        MODEL.but(default=None, optional=True, help="model name on the server (none: the server's first model)"),
        Param("api_key_env", "text", None, "NAME of the environment variable holding the API key (none: no key)",
              optional=True, extra=env_name, secret_name=True),
        Param("api", "choice", "completions", "endpoint", choices=("completions", "chat")),
    ),
    "replay": (
        Param("trace", "text", None, "a recorded trace (--record FILE) or the name of one shipped with the lab",
              optional=True),
    ),
    "scripted": (
        MODEL.but(default="scripted"),
        Param("fail_at_batch", "int", None, "fail with out-of-memory at this batch size or above", 1,
              optional=True, flag="--scripted-fail-at-batch"),
        Param("real_time", "bool", False, "sleep through the modelled step times", flag="--scripted-real-time"),
    ),
}
"""Engine name → the options it takes, in the order forms and help show them."""


def engine_options(engine: str) -> tuple[Param, ...]:
    """The options engine ``engine`` declares (``InvalidInput`` naming the engines for an unknown name)."""
    try:
        return ENGINE_OPTIONS[engine]
    except KeyError:
        raise InvalidInput(f"unknown engine {engine!r}; choose one of: {', '.join(ENGINE_NAMES)}") from None


def all_options() -> dict[str, Param]:
    """Every option any engine a learner picks declares, by name (one flag each on the command line)."""
    out: dict[str, Param] = {}
    for engine in ENGINE_NAMES + TEST_ENGINES:
        for option in ENGINE_OPTIONS[engine]:
            out.setdefault(option.name, option)
    return out


def check_options(engine: str, given: Mapping[str, object]) -> dict[str, object]:
    """``given`` with every option ``engine`` declares checked; None and empty text mean "not given".

    Options it does not declare pass through (a comparison's variant settings); the engine refuses what it
    cannot take. The openai engine needs ``base_url``: said here, before anything connects.
    """
    declared = {p.name: p for p in engine_options(engine)}
    out: dict[str, object] = {}
    for name, value in given.items():
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        option = declared.get(name)
        out[name] = option.check(value) if option is not None else value
    if engine == "replay" and not out.get("trace"):
        raise InvalidInput("the replay engine needs a trace: a file --record wrote, or a shipped trace's name",
                           "set --trace FILE")
    if engine == "openai" and not out.get("base_url"):
        raise InvalidInput("the openai engine needs a base URL (e.g. http://127.0.0.1:8000/v1)",
                           "set --base-url, or base url in Controls")
    return out


def declared_only(engine: str, given: Mapping[str, object]) -> dict[str, object]:
    """The options of ``given`` that ``engine`` declares (a variant on another engine keeps model, device, ...)."""
    names = {p.name for p in engine_options(engine)}
    return {k: v for k, v in given.items() if k in names}


def secret_present(option: Param, value: object) -> bool:
    """Whether the environment variable named by a ``secret_name`` option is set (its value is not returned)."""
    return bool(option.secret_name and isinstance(value, str) and value and os.environ.get(value))
