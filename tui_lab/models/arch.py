"""Architecture models: a real model's config with random weights.

Decode speed depends on the shapes (weights read per step, KV cache per token),
not on the weight values, so a random-weight model with the real config times
like the real one without a download. Its text is noise, and everything that
shows it says so (``ModelSpec.text_is_meaningful`` is False).

The materialized directory holds ``config.json`` and tokenizer files only; the
transformers engine initialises random weights on the target device, vLLM uses
``load_format="dummy"``. The tokenizer is the embedded Gemma 3 one; for a model
with a smaller vocabulary it is cut down to that many tokens (all single characters
and byte-fallback tokens kept, so every text still encodes), so every token id it
produces is valid for the model.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tui_lab.engines.base import ProgressCallback, is_cuda
from tui_lab.errors import InvalidInput
from tui_lab.models import cache

# The embedded tokenizer's special tokens; architecture configs use them so that padding and
# EOS handling work the same as for the embedded model.
_PAD, _EOS, _BOS = 0, 1, 2


@dataclass(frozen=True)
class ArchModel:
    """A named architecture: display name, one-line description and the HF config dict."""

    display_name: str
    description: str
    config: dict[str, Any] = field(default_factory=dict)


_GEMMA3_270M_LAYERS = (["sliding_attention"] * 5 + ["full_attention"]) * 3

ARCH_MODELS: dict[str, ArchModel] = {
    "gemma-3-270m": ArchModel(
        "Gemma 3 270M",
        "Gemma 3 270M shapes: 18 layers (5 of 6 sliding-window), 1 KV head, 262k vocabulary",
        {
            "architectures": ["Gemma3ForCausalLM"],
            "model_type": "gemma3_text",
            "vocab_size": 262144,
            "hidden_size": 640,
            "intermediate_size": 2048,
            "num_hidden_layers": 18,
            "num_attention_heads": 4,
            "num_key_value_heads": 1,
            "head_dim": 256,
            "hidden_activation": "gelu_pytorch_tanh",
            "max_position_embeddings": 32768,
            "rms_norm_eps": 1e-06,
            "query_pre_attn_scalar": 256,
            "sliding_window": 512,
            "layer_types": _GEMMA3_270M_LAYERS,
            "rope_parameters": {
                "full_attention": {"rope_theta": 1000000.0, "rope_type": "default"},
                "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"},
            },
            "attention_bias": False,
            "attention_dropout": 0.0,
            "attn_logit_softcapping": None,
            "final_logit_softcapping": None,
            "use_bidirectional_attention": False,
            "tie_word_embeddings": True,
            "initializer_range": 0.02,
            "use_cache": True,
            "dtype": "bfloat16",
        },
    ),
    "nemotron-nano-9b-v2": ArchModel(
        "NVIDIA Nemotron Nano 9B v2",
        "hybrid Mamba-2/attention: 56 layers = 27 Mamba-2 + 25 MLP + 4 attention (8 KV heads); 131k vocabulary",
        {
            "architectures": ["NemotronHForCausalLM"],
            "model_type": "nemotron_h",
            "vocab_size": 131072,
            "hidden_size": 4480,
            "intermediate_size": 15680,
            "num_hidden_layers": 56,
            "hybrid_override_pattern": "M-M-M-MM-M-M-M*-M-M-M*-M-M-M-M*-M-M-M-M*-M-MM-M-M-M-M-M-",
            "num_attention_heads": 40,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "max_position_embeddings": 131072,
            "mamba_num_heads": 128,
            "mamba_head_dim": 80,
            "n_groups": 8,
            "ssm_state_size": 128,
            "conv_kernel": 4,
            "expand": 2,
            "chunk_size": 128,
            "use_conv_bias": True,
            "mamba_proj_bias": False,
            "mamba_hidden_act": "silu",
            "mlp_hidden_act": "relu2",
            "mlp_bias": False,
            "attention_bias": False,
            "layer_norm_epsilon": 1e-05,
            "residual_in_fp32": False,
            "rescale_prenorm_residual": True,
            "tie_word_embeddings": False,
            "initializer_range": 0.02,
            "use_cache": True,
            "dtype": "bfloat16",
        },
    ),
    "llama-3-8b": ArchModel(
        "Llama 3 8B",
        "Llama 3 8B shapes: 32 layers, 8 KV heads (GQA), 128k vocabulary",
        {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": 128256,
            "hidden_size": 4096,
            "intermediate_size": 14336,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "hidden_act": "silu",
            "max_position_embeddings": 8192,
            "rms_norm_eps": 1e-05,
            "rope_parameters": {"rope_theta": 500000.0, "rope_type": "default"},
            "attention_bias": False,
            "mlp_bias": False,
            "tie_word_embeddings": False,
            "initializer_range": 0.02,
            "use_cache": True,
            "dtype": "bfloat16",
        },
    ),
}
"""Architecture models by name (``--model arch:NAME``)."""


def arch_config_dict(name: str) -> dict[str, Any]:
    """The config dict of ``arch:name``, with the embedded tokenizer's special token ids."""
    config = dict(ARCH_MODELS[name].config)
    config.update(pad_token_id=_PAD, eos_token_id=_EOS, bos_token_id=_BOS)
    return config


def _cut_tokenizer(src: Path, dst: Path, vocab_size: int) -> None:
    """Write a ``vocab_size``-token version of the tokenizer at ``src`` into ``dst``.

    Gemma's vocabulary puts single characters at its very end, so a plain cut would
    lose them. Kept instead: every byte-fallback token and single character (so any
    text still encodes), then the lowest ids until ``vocab_size``; kept tokens are
    renumbered in their original order (special tokens 0..2 stay where they are).
    Merges survive when both halves and the result are kept.
    """
    data = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
    model = data["model"]
    vocab: dict[str, int] = model["vocab"]
    keep = {i for tok, i in vocab.items() if len(tok) == 1 or (tok.startswith("<0x") and len(tok) == 6)}
    for i in sorted(vocab.values()):
        if len(keep) >= vocab_size:
            break
        keep.add(i)
    new_id = {old: new for new, old in enumerate(sorted(keep)[:vocab_size])}
    model["vocab"] = {tok: new_id[i] for tok, i in vocab.items() if i in new_id}
    kept = model["vocab"]
    model["merges"] = [
        m for m in model["merges"]
        if (pair := (m if isinstance(m, list) else m.split(" ", 1)))[0] in kept
        and pair[1] in kept and pair[0] + pair[1] in kept
    ]
    data["added_tokens"] = [
        {**t, "id": new_id[t["id"]]} for t in data.get("added_tokens", []) if t["id"] in new_id
    ]
    (dst / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    tok_cfg = json.loads((src / "tokenizer_config.json").read_text(encoding="utf-8"))
    # Extra special tokens may have been dropped by the cut.
    tok_cfg.pop("extra_special_tokens", None)
    tok_cfg.pop("additional_special_tokens", None)
    (dst / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2), encoding="utf-8")


def materialize_arch(name: str, cache_dir: str | os.PathLike[str] | None = None,
                     progress: ProgressCallback | None = None) -> Path:
    """``<cache>/models/arch-<name>/`` with config.json + tokenizer files (no weights)."""
    from tui_lab.models.embedded import TOKENIZER_BYTES, TOKENIZER_FILES, tokenizer_dir

    report = progress or (lambda stage, fraction: None)
    config = arch_config_dict(name)
    # The config is part of the cache key, so editing ARCH_MODELS rebuilds the entry.
    version = "config-" + _digest(json.dumps(config, sort_keys=True))
    final = cache.entry_dir(f"arch-{name}", cache_dir)
    if cache.is_valid(final, version):
        report("architecture config ready", 1.0)
        return final
    report("preparing the tokenizer", 0.1)
    tok_src = tokenizer_dir(cache_dir, report)

    def build(tmp: Path) -> dict:
        import transformers

        # Without "transformers_version" transformers takes a local tokenizer for an old Mistral one
        # and rewrites its pre-tokenizer.
        written = {**config, "transformers_version": transformers.__version__}
        (tmp / "config.json").write_text(json.dumps(written, indent=2) + "\n")
        vocab = config["vocab_size"]
        if vocab < 262144:
            report(f"cutting the tokenizer down to {vocab} tokens", 0.6)
            _cut_tokenizer(tok_src, tmp, vocab)
        else:
            for f in TOKENIZER_FILES:
                (tmp / f).write_bytes((tok_src / f).read_bytes())
        return {"source": f"arch:{name}", "weights": "random"}

    # Room: the tokenizer (cut down or copied) and a config; the tokenizer source is built on its own above.
    path = cache.build_entry(f"arch-{name}", build, cache_dir, version, need_bytes=TOKENIZER_BYTES + 1_000_000)
    report("architecture config ready", 1.0)
    return path


def _digest(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _available_memory_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def random_model(path: Path, device: Any, dtype: Any, spec_name: str) -> Any:
    """Build the model of ``path/config.json`` with random weights, directly on ``device`` in ``dtype``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from tui_lab.models.shape import model_shape

    config = AutoConfig.from_pretrained(path)
    shape = model_shape(config)
    need = shape.params * torch.empty((), dtype=dtype).element_size()
    if torch.device(device).type == "cpu":
        avail = _available_memory_bytes()
        if avail is not None and need > 0.6 * avail:
            raise InvalidInput(
                f"{spec_name} needs about {need / 2**30:.0f} GiB for its weights and this machine has "
                f"{avail / 2**30:.0f} GiB free",
                hint="run it on a GPU (--device cuda) or pick arch:gemma-3-270m",
            )
    elif is_cuda(torch.device(device)):
        free, _total = torch.cuda.mem_get_info(torch.device(device))
        if need > 0.9 * free:
            raise InvalidInput(
                f"{spec_name} needs about {need / 2**30:.0f} GiB for its weights and the GPU has "
                f"{free / 2**30:.0f} GiB free",
                hint="pick a smaller model or a larger GPU",
            )
    # Allocating on the target device skips a CPU copy; the default init (normal, std 0.02)
    # runs there too, which takes well under a second on a GPU.
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model
