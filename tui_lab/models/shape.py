"""``model_shape``: the numbers the roofline and KV-cache arithmetic need, read from a config.

Parameter counts are computed from the config (no weights needed), so the
figures exist for a 9B model on a machine that could never load it.
"""

from __future__ import annotations

from typing import Any

from tui_lab.metrics import ModelShape

_DTYPE_BYTES = {"float32": 4.0, "float16": 2.0, "bfloat16": 2.0, "float8_e4m3fn": 1.0}


def _get(config: Any, key: str, default: Any = None) -> Any:
    if isinstance(config, dict):
        return config.get(key, default)
    return getattr(config, key, default)


def _layer_types(config: Any) -> list[str]:
    """Per-layer kinds, normalised to 'attention', 'sliding', 'mamba', 'mlp', 'moe'."""
    pattern = _get(config, "hybrid_override_pattern")
    types = _get(config, "layers_block_type") or _get(config, "layer_types")
    if pattern and not types:
        types = [{"M": "mamba", "*": "attention", "-": "mlp", "E": "moe"}[c] for c in pattern]
    n = int(_get(config, "num_hidden_layers") or (len(types) if types else 0))
    if not types:
        return ["attention"] * n
    norm = {
        "full_attention": "attention", "attention": "attention", "sliding_attention": "sliding",
        "mamba": "mamba", "linear_attention": "mamba", "mlp": "mlp", "moe": "moe",
    }
    return [norm.get(str(t), "attention") for t in types]


def _text_config(config: Any) -> Any:
    """The language-model part of a multimodal config (e.g. Gemma 3 4B's ``text_config``), else the config."""
    if isinstance(config, dict):
        return config.get("text_config") or config
    if hasattr(config, "get_text_config"):
        return config.get_text_config()
    return config


def count_params(config: Any) -> int:
    """Parameter count of a decoder-only LM (dense transformer or NemotronH hybrid) from its config.

    Exact for the architecture models here; an estimate for other layouts (MoE counts one expert).
    """
    config = _text_config(config)
    h = int(_get(config, "hidden_size"))
    vocab = int(_get(config, "vocab_size"))
    heads = int(_get(config, "num_attention_heads"))
    kv = int(_get(config, "num_key_value_heads") or heads)
    hd = int(_get(config, "head_dim") or h // heads)
    inter = int(_get(config, "intermediate_size") or 4 * h)
    types = _layer_types(config)
    hybrid = any(t in ("mamba", "mlp", "moe") for t in types)

    attn = h * heads * hd + 2 * h * kv * hd + heads * hd * h
    if _get(config, "attention_bias"):
        attn += heads * hd + 2 * kv * hd + h
    if _get(config, "model_type", "").startswith("gemma3"):
        attn += 2 * hd  # q_norm and k_norm
    total = vocab * h * (1 if _get(config, "tie_word_embeddings", False) else 2) + h  # + final norm
    if not hybrid:
        # Dense transformer: attention + gated MLP (3 matrices) + 2 norms per layer (Gemma 3 has 4).
        norms = 4 * h if str(_get(config, "model_type", "")).startswith("gemma") else 2 * h
        return total + len(types) * (attn + 3 * h * inter + norms)
    mamba_heads = int(_get(config, "mamba_num_heads"))
    mamba_hd = int(_get(config, "mamba_head_dim"))
    groups = int(_get(config, "n_groups"))
    state = int(_get(config, "ssm_state_size"))
    kernel = int(_get(config, "conv_kernel"))
    d_inner = mamba_heads * mamba_hd
    conv_dim = d_inner + 2 * groups * state
    mamba = (
        h * (d_inner + conv_dim + mamba_heads)  # in_proj: gate z, x/B/C, dt
        + conv_dim * kernel + (conv_dim if _get(config, "use_conv_bias", True) else 0)
        + 3 * mamba_heads  # dt_bias, A_log, D
        + d_inner  # gated norm
        + d_inner * h  # out_proj
    )
    per_type = {"mamba": mamba, "attention": attn, "sliding": attn, "mlp": 2 * h * inter, "moe": 2 * h * inter}
    return total + sum(per_type[t] + h for t in types)  # + one norm per block


def model_shape(config: Any, dtype_bytes: float | None = None) -> ModelShape:
    """The ``ModelShape`` of a transformers config (object or dict).

    ``layers`` counts the layers that hold a KV cache (the attention layers: all 18 of
    Gemma 3 270M, 4 of Nemotron Nano 9B v2's 56 — its Mamba-2 layers keep a fixed-size
    state per sequence instead, which does not grow with length).
    ``dtype_bytes`` defaults to the config's dtype (2 for bf16).
    """
    config = _text_config(config)
    if dtype_bytes is None:
        dtype = _get(config, "dtype") or _get(config, "torch_dtype") or "bfloat16"
        dtype_bytes = _DTYPE_BYTES.get(str(dtype).replace("torch.", ""), 2.0)
    types = _layer_types(config)
    heads = int(_get(config, "num_attention_heads"))
    head_dim = int(_get(config, "head_dim") or int(_get(config, "hidden_size")) // heads)
    sliding = sum(1 for t in types if t == "sliding")
    return ModelShape(
        params=count_params(config),
        bytes_per_param=dtype_bytes,
        layers=sum(1 for t in types if t in ("attention", "sliding")),
        kv_heads=int(_get(config, "num_key_value_heads") or heads),
        head_dim=head_dim,
        kv_bytes_per_elem=dtype_bytes,
        sliding_window=_get(config, "sliding_window") if sliding else None,
        sliding_layers=sliding,
    )
