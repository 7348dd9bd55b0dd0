"""Memory arithmetic of lessons 04 and 05: bytes per weight, KV cache per token, fixed state, TP splits.

Pure functions of an architecture config (a dict like ``tui_lab.models.arch.ARCH_MODELS[..].config``),
so every figure exists for a model this machine could never load. Decode reads every weight
once per step and the KV cache of every sequence; these functions turn that into the floors a
learner predicts from before measuring.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from tui_lab.metrics.roofline import ModelShape, kv_bytes_per_sequence

DTYPE_BYTES: dict[str, float] = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5}
"""Bytes per stored number, by the names lessons use (int4 packs two weights per byte)."""

ATTENTION_DESIGNS = ("mha", "gqa", "mqa", "as shipped")


def dtype_bytes(name: str) -> float:
    """Bytes per element of ``name`` (bf16, fp8, int4, ...); ValueError for an unknown name."""
    key = name.lower().replace("bfloat16", "bf16").replace("float16", "fp16").replace("float32", "fp32")
    if key not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {name!r}; choose one of: {', '.join(DTYPE_BYTES)}")
    return DTYPE_BYTES[key]


def _shape(config: Mapping[str, Any], weight_dtype: str = "bf16", kv_dtype: str = "bf16") -> ModelShape:
    from dataclasses import replace

    from tui_lab.models.shape import model_shape

    shape = model_shape(dict(config), dtype_bytes(weight_dtype))
    return replace(shape, kv_bytes_per_elem=dtype_bytes(kv_dtype))


def weight_bytes(config: Mapping[str, Any], weight_dtype: str = "bf16") -> float:
    """Bytes of all weights stored as ``weight_dtype`` (every parameter at that width)."""
    return _shape(config, weight_dtype).weight_bytes


def decode_floor_s(total_bytes: float, bandwidth_bytes_s: float) -> float:
    """The shortest a decode step can take when it must read ``total_bytes`` at ``bandwidth_bytes_s``."""
    if bandwidth_bytes_s <= 0:
        raise ValueError("bandwidth must be positive")
    return total_bytes / bandwidth_bytes_s


def kv_bytes_per_token_layer(config: Mapping[str, Any], kv_dtype: str = "bf16") -> float:
    """Keys and values of one token in one attention layer: 2 · kv_heads · head_dim · bytes."""
    shape = _shape(config, kv_dtype=kv_dtype)
    return 2 * shape.kv_heads * shape.head_dim * shape.kv_bytes_per_elem


def mamba_state_bytes(config: Mapping[str, Any], state_dtype: str = "bf16", ssm_dtype: str | None = None) -> float:
    """Fixed state one sequence keeps in all Mamba-2 layers (conv window + SSM state), whatever its length.

    The conv window is stored as ``state_dtype``, the SSM state as ``ssm_dtype`` (default: the same).
    """
    pattern = str(config.get("hybrid_override_pattern") or "")
    layers = pattern.count("M")
    if not layers:
        return 0.0
    d_inner = int(config["mamba_num_heads"]) * int(config["mamba_head_dim"])
    state = int(config["ssm_state_size"])
    conv_dim = d_inner + 2 * int(config["n_groups"]) * state
    conv = (int(config["conv_kernel"]) - 1) * conv_dim
    ssm = int(config["mamba_num_heads"]) * int(config["mamba_head_dim"]) * state
    return layers * (conv * dtype_bytes(state_dtype) + ssm * dtype_bytes(ssm_dtype or state_dtype))


def vllm_state_dtypes(config: Mapping[str, Any]) -> tuple[str, str]:
    """(conv, SSM) dtypes in which vLLM keeps a hybrid's Mamba state when its cache settings are left on auto.

    vLLM sets them apart from the KV cache: ``mamba_cache_dtype`` (conv and SSM state) and
    ``mamba_ssm_cache_dtype`` (SSM state only), neither of which offers fp8, so ``kv_cache_dtype="fp8"``
    leaves the state as it is. Left on auto, the conv state takes the model's dtype and the SSM state
    what the config's ``mamba_ssm_cache_dtype`` says; vLLM 0.32 makes it float32 for Nemotron-H when
    the config says nothing (and its CPU backend resets it to float32 in any case).
    """
    model = str(config.get("dtype") or config.get("torch_dtype") or "bfloat16")
    ssm = config.get("mamba_ssm_cache_dtype")
    if ssm is None:
        ssm = "float32" if config.get("model_type") == "nemotron_h" else model
    return model, str(ssm)


@dataclass(frozen=True)
class KvDesign:
    """KV-cache footprint of one attention design of one model at one context length."""

    model: str
    design: str
    attention_layers: int
    sliding_layers: int
    kv_heads: int
    bytes_per_token_layer: float
    bytes_per_sequence: float
    bytes_per_token: float
    """``bytes_per_sequence / context``: the average cost of one more token of context."""
    fixed_state_bytes: float
    max_batch: int
    """Sequences of ``context`` tokens that fit in the memory left after the weights."""

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        return asdict(self)


def kv_design(model: str, config: Mapping[str, Any], design: str = "as shipped", context: int = 4096,
              kv_dtype: str = "bf16", free_bytes: float = 0.0) -> KvDesign:
    """The KV footprint of ``config`` as shipped or re-headed: ``mha`` (kv heads = query heads),
    ``gqa`` (as shipped, or 8 heads if it shipped with fewer), ``mqa`` (one KV head).

    Sliding-window layers hold at most ``sliding_window`` positions; Mamba layers hold a fixed state, in the
    dtypes vLLM keeps it in (``vllm_state_dtypes``), whatever ``kv_dtype`` is.
    """
    from dataclasses import replace

    if design not in ATTENTION_DESIGNS:
        raise ValueError(f"unknown attention design {design!r}; choose one of: {', '.join(ATTENTION_DESIGNS)}")
    if context < 1:
        raise ValueError("context must be at least 1 token")
    shape = _shape(config, kv_dtype=kv_dtype)
    heads = int(config["num_attention_heads"])
    if design == "mha":
        shape = replace(shape, kv_heads=heads)
    elif design == "mqa":
        shape = replace(shape, kv_heads=1)
    elif design == "gqa" and shape.kv_heads < 2:
        shape = replace(shape, kv_heads=min(8, heads))
    per_seq_kv = kv_bytes_per_sequence(shape, context)
    fixed = mamba_state_bytes(config, *vllm_state_dtypes(config))  # not the KV cache's dtype: set apart in vLLM
    per_seq = per_seq_kv + fixed
    return KvDesign(
        model=model, design=design, attention_layers=shape.layers, sliding_layers=shape.sliding_layers,
        kv_heads=shape.kv_heads, bytes_per_token_layer=2 * shape.kv_heads * shape.head_dim * shape.kv_bytes_per_elem,
        bytes_per_sequence=per_seq, bytes_per_token=per_seq_kv / context, fixed_state_bytes=fixed,
        max_batch=int(free_bytes // per_seq) if free_bytes > 0 and per_seq > 0 else 0,
    )


@dataclass(frozen=True)
class TpFigures:
    """What one GPU does per decode step when the model is split over ``tp`` GPUs."""

    tp: int
    batch: int
    weight_bytes_per_gpu: float
    kv_bytes_per_gpu: float
    memory_floor_s: float
    allreduces_per_step: int
    allreduce_bytes: float
    """Size of one all-reduce: batch · hidden · 2 bytes (bf16 activations)."""
    allreduce_s_per_step: float
    """Every all-reduce of a step at the link bandwidth (ring: 2·(tp−1)/tp of the size per GPU) plus latency."""
    kv_room_bytes_per_gpu: float
    max_batch: int
    """Sequences of ``context`` tokens the KV room of all GPUs holds."""

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        return asdict(self)


def tp_figures(config: Mapping[str, Any], tp: int, batch: int, context: int, gpu_memory_bytes: float,
               hbm_bytes_s: float, link_bytes_s: float, allreduce_latency_s: float,
               memory_utilization: float = 0.9) -> TpFigures:
    """Per-GPU bytes, all-reduce traffic and KV room for tensor parallelism over ``tp`` GPUs.

    Megatron-style splitting (what vLLM does): each attention and each MLP block ends with one
    all-reduce of the hidden states, so a dense layer costs two; a Mamba or MLP-only block of a
    hybrid costs one. Weights and KV heads divide by ``tp`` (KV heads cannot go below one per GPU).
    """
    if tp < 1 or batch < 1:
        raise ValueError("tp and batch must be at least 1")
    shape = _shape(config)
    w = shape.weight_bytes / tp
    kv_heads_per_gpu = max(1.0, shape.kv_heads / tp)
    per_seq_kv = kv_bytes_per_sequence(shape, context) * kv_heads_per_gpu / shape.kv_heads
    per_seq = per_seq_kv + mamba_state_bytes(config, *vllm_state_dtypes(config)) / tp
    kv = batch * per_seq
    pattern = str(config.get("hybrid_override_pattern") or "")
    allreduces = len(pattern) if pattern else 2 * int(config["num_hidden_layers"])
    size = batch * int(config["hidden_size"]) * 2.0
    per_gpu_traffic = 2 * (tp - 1) / tp * size
    ar_s = 0.0 if tp == 1 else allreduces * (per_gpu_traffic / link_bytes_s + allreduce_latency_s)
    room = max(0.0, gpu_memory_bytes * memory_utilization - w)
    return TpFigures(
        tp=tp, batch=batch, weight_bytes_per_gpu=w, kv_bytes_per_gpu=kv,
        memory_floor_s=(w + kv) / hbm_bytes_s, allreduces_per_step=0 if tp == 1 else allreduces,
        allreduce_bytes=size, allreduce_s_per_step=ar_s, kv_room_bytes_per_gpu=room,
        max_batch=int(room // per_seq) if per_seq > 0 else 0,
    )
