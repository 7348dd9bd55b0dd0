"""The fast CUDA decode path of the transformers engine: a static KV cache and a captured decode step.

Why this exists: plain transformers decoding on a GPU is bound by Python and kernel launches, not by
the GPU (about 20 ms per step for Gemma 3 270M at any batch size, while reading the weights once takes
~0.13 ms). Here one decode step is

* written out per layer from the model's own modules (norms, projections, MLP, rotary embedding), so
  the KV cache is ours: one static ``(bucket, kv_heads, max_len, head_dim)`` tensor per layer, written
  at a device-side position, attended with one mask per layer type (full / sliding window);
* fused by ``torch.compile`` (default Inductor mode, no autotuning, dynamic shapes so that one
  compilation serves every batch bucket and length), then
* captured as a CUDA graph per (batch bucket, cache length) and replayed each step. The graph also
  advances the write position and the position ids on the device, so a step costs the host one input
  copy and one ``replay()``.

Prefill runs the same layer code over the whole prompt, writing the static cache directly. Called from
Python it costs ~8 ms of dispatch at any size, so short prefills are captured too: prompts are
left-padded to a multiple of 16 tokens (the mask hides the padding) and replayed from a graph per
padded length.

Batches are padded up to a bucket (1, 2, 4, ..., 1024); graphs and caches are kept per bucket and
length, so once the step is compiled a new batch size is ready in a fraction of a second.

Supported model families: Gemma 3 (text), Llama, Qwen 3 (their decoder layers are written out below),
and the hybrid Mamba-2/attention Nemotron-H (Nemotron Nano 9B v2): its blocks are of three kinds, each
one compiled function (Mamba-2 mixer, attention without positional encoding, MLP). Its Mamba layers
keep a fixed-size conv window and SSM state per sequence (``tui_lab.engines.hf_mamba``), allocated per
batch bucket next to the attention layers' static KV cache; prefill runs the chunked scan and leaves the
final states in them. Anything else raises ``NotImplementedError`` and the engine falls back to eager
decoding.
"""

from __future__ import annotations

import inspect
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tui_lab.engines import hf_mamba
from tui_lab.engines.hf_mamba import MambaCfg
from tui_lab.errors import OutOfMemory
from tui_lab.metrics import ModelShape, kv_bytes_per_sequence

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

SUPPORTED_MODEL_TYPES = ("gemma3_text", "llama", "qwen3", "nemotron_h")
BATCH_BUCKETS = (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
"""Batch 1 runs as 2: the step costs the same (it is bound by launches and weight reads), and a size-1
dimension would make torch.compile specialise — one more compilation for nothing."""
LENGTH_ALIGN = 32
"""Cache lengths are rounded up to this, so nearby run lengths share a graph."""

PREFILL_ALIGN = 16
"""Prompts are left-padded to a multiple of this for a captured prefill, so nearby lengths share a graph."""
PREFILL_GRAPH_MAX_TOKENS = 8192
"""Prefills of at most this many tokens (batch bucket × padded prompt) are captured as CUDA graphs. Called
from Python a prefill costs ~8 ms of dispatch whatever its size: more than the GPU work of a few thousand
tokens, so a short prompt's TTFT would show Python, not the GPU. Longer prefills run uncaptured."""

CACHE_BUDGET_FRACTION = 0.35
"""Cached graphs (their KV caches) may hold at most this share of the GPU's memory; older ones are evicted."""


@dataclass(frozen=True)
class GraphOptions:
    """How the fast path is built (the defaults are what was measured fastest; see benchmarks/GPU_NOTES.md).

    ``compile``: ``"default"`` (Inductor, no autotune), ``"max-autotune-no-cudagraphs"``, ``"none"``
    (the eager step captured as is: shows what fusion buys), or ``"reduce-overhead"`` (torch.compile's
    own CUDA graphs, called from Python each step instead of our captured graph).
    ``attention``: ``"matmul"`` (two batched matmuls and a softmax that Inductor fuses with the mask;
    measured fastest for decode on H200), ``"sdpa"`` (the library's fused kernel, which tiles for long
    queries: 17 µs a layer at batch 1, most of it wasted) or ``"reduce"`` (products and sums left to
    Inductor; slow at large batch). ``graphs``: capture CUDA graphs (on CUDA only).
    ``boundary``: end each layer after its last projection and finish it (norm, residual add) at the start
    of the next one, where it fuses with that layer's input norm: one kernel fewer per layer, same arithmetic.
    ``tuning``: Inductor knobs joined by ``/``: ``coordinate`` (coordinate-descent tuning of block sizes),
    ``pdl`` (programmatic dependent launch: a kernel starts while its predecessor finishes; Hopper and
    later), ``autotune`` (GEMM templates benchmarked against cuBLAS, with their epilogues fused). Knobs the
    installed torch lacks are skipped and named in ``describe()``.
    ``linear``: ``"mm"`` (cuBLAS) or ``"reduce"``: at most ``REDUCE_LINEAR_MAX_ROWS`` rows (a small decode
    batch) the layers' projections are products and sums that Inductor writes as one reduction kernel each.
    ``scan_chunk``: ``"fit"`` runs a hybrid model's prefill scan in chunks no longer than the prompt
    (rounded up to a power of two, at least 16, at most the model's chunk), ``"model"`` always in the
    model's own chunk (128 for Nemotron-H: a 16-token prompt then computes 128 × 128 blocks per head).
    """

    compile: str = "default"
    attention: str = "matmul"
    graphs: bool = True
    boundary: bool = True
    tuning: str = ""
    linear: str = "mm"
    scan_chunk: str = "fit"

    @classmethod
    def from_env(cls) -> GraphOptions:
        """Defaults, overridden by ``INFERENCE_LAB_GRAPH_COMPILE`` / ``INFERENCE_LAB_GRAPH_ATTENTION`` and by
        ``INFERENCE_LAB_GRAPH_OPTIONS`` (``+``-separated ``field=value`` items or preset names, as ``with_``)."""
        base = cls(
            compile=os.environ.get("INFERENCE_LAB_GRAPH_COMPILE", cls.compile),
            attention=os.environ.get("INFERENCE_LAB_GRAPH_ATTENTION", cls.attention),
        )
        extra = os.environ.get("INFERENCE_LAB_GRAPH_OPTIONS", "")
        return base.with_(extra) if extra else base

    def with_(self, spec: str) -> GraphOptions:
        """These options changed by ``spec``: ``+``-separated items, each a preset name (``PRESETS``) or
        ``field=value`` (booleans as 0/1), e.g. ``"v5"`` or ``"tuning=pdl/coordinate+linear=reduce"``."""
        import dataclasses

        changes: dict[str, Any] = {}
        fields = {f.name: f for f in dataclasses.fields(self)}
        for item in (x.strip() for x in spec.split("+")):
            if not item:
                continue
            if "=" not in item:
                if item not in PRESETS:
                    raise ValueError(f"unknown fast-path preset {item!r}; choose from {', '.join(PRESETS)}")
                changes.update(PRESETS[item])
                continue
            key, value = (x.strip() for x in item.split("=", 1))
            if key not in fields:
                raise ValueError(f"unknown fast-path option {key!r}; choose from {', '.join(fields)}")
            default = fields[key].default
            if isinstance(default, bool):
                if value.lower() not in ("0", "1", "true", "false", "on", "off"):
                    raise ValueError(f"{key} takes 0 or 1, not {value!r}")
                changes[key] = value.lower() in ("1", "true", "on")
            else:
                changes[key] = value
        opts = dataclasses.replace(self, **changes)
        opts.validate()
        return opts

    def validate(self) -> None:
        """Raise ``ValueError`` for a value no code path knows."""
        for name, value, allowed in (
            ("compile", self.compile, ("default", "max-autotune-no-cudagraphs", "none", "reduce-overhead")),
            ("attention", self.attention, ("matmul", "sdpa", "reduce")),
            ("linear", self.linear, ("mm", "reduce")),
            ("scan_chunk", self.scan_chunk, ("fit", "model")),
        ):
            if value not in allowed:
                raise ValueError(f"fast-path {name} {value!r} is not one of {', '.join(allowed)}")
        bad = [k for k in self.tuning_knobs() if k not in TUNING_KNOBS]
        if bad:
            raise ValueError(f"unknown tuning knob(s) {', '.join(bad)}; choose from {', '.join(TUNING_KNOBS)}")

    def tuning_knobs(self) -> list[str]:
        return [k for k in self.tuning.split("/") if k]


PRESETS: dict[str, dict[str, Any]] = {
    # The fast path as it was before layer boundaries moved and the scan chunk fitted the prompt.
    "v5": {"boundary": False, "scan_chunk": "model", "tuning": "", "linear": "mm"},
}
TUNING_KNOBS: dict[str, dict[str, Any]] = {
    "coordinate": {"coordinate_descent_tuning": True},
    "pdl": {"triton.enable_pdl": True},
    "autotune": {"max_autotune": True},
}
"""What each ``GraphOptions.tuning`` knob sets in Inductor's configuration."""
REDUCE_LINEAR_MAX_ROWS = 4
"""``linear="reduce"`` applies up to this many rows (batch × tokens); larger products stay on cuBLAS."""


def batch_bucket(batch_size: int) -> int:
    """The captured batch size a batch of ``batch_size`` runs as (padded up)."""
    for b in BATCH_BUCKETS:
        if batch_size <= b:
            return b
    return batch_size


def length_bucket(max_total_len: int) -> int:
    """The static cache length for a run of at most ``max_total_len`` tokens (rounded up)."""
    return max(LENGTH_ALIGN, -(-max_total_len // LENGTH_ALIGN) * LENGTH_ALIGN)


# --------------------------------------------------------------------------------------------------
# The architecture, read off the model's modules


class _Arch:
    """The pieces of a supported decoder-only model that one decode step needs, as plain tensors.

    Building it fuses each layer's q/k/v and gate/up weights into one matrix (the model's own
    parameters become views into it, so no memory is duplicated and eager code is unaffected): two
    GEMMs fewer per layer, which matters when each launch costs as much as the work.
    """

    def __init__(self, model: Any) -> None:
        import torch

        config = model.config
        model_type = getattr(config, "model_type", None)
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise NotImplementedError(
                f"the CUDA-graph decode path supports {', '.join(SUPPORTED_MODEL_TYPES)}, not {model_type!r}"
            )
        self.hybrid = model_type == "nemotron_h"
        self.kinds: list[str] = []
        """Hybrid models: each layer's kind, ``"mamba"``, ``"attention"`` or ``"mlp"`` (empty otherwise)."""
        self.mamba: MambaCfg | None = None
        if self.hybrid:
            self._init_hybrid(model)
            return
        if getattr(config, "attn_logit_softcapping", None):
            raise NotImplementedError("attention logit soft-capping is not supported by the CUDA-graph path")
        act = getattr(config, "hidden_activation", None) or getattr(config, "hidden_act", None)
        if act not in _ACTIVATIONS:
            raise NotImplementedError(f"activation {act!r} is not supported by the CUDA-graph path")
        self.model = model
        self.config = config
        self.body = model.model
        self.layers = list(self.body.layers[: config.num_hidden_layers])
        attn0 = self.layers[0].self_attn
        self.gemma = model_type.startswith("gemma")
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        scalings = {float(layer.self_attn.scaling) for layer in self.layers}
        if len(scalings) != 1:
            raise NotImplementedError("layers with different attention scalings are not supported")
        self.layer_types = list(getattr(config, "layer_types", None) or ["full_attention"] * len(self.layers))
        self.rope_types = sorted(set(self.layer_types))
        # A layer's window: keys at cache index j are seen from index p only when j > p - window.
        windows = [getattr(layer.self_attn, "sliding_window", None) for layer in self.layers]
        self.window_list = sorted({w for w in windows if w is not None})
        self.layer_rope = [self.rope_types.index(t) for t in self.layer_types]
        self.layer_mask = [0 if w is None else 1 + self.window_list.index(w) for w in windows]
        self.cfg: _LayerCfg | _HybridCfg = _LayerCfg(
            heads=self.num_heads, kv_heads=self.num_kv_heads, head_dim=self.head_dim, scale=scalings.pop(),
            eps=float(config.rms_norm_eps), gemma=self.gemma,
            sandwich=hasattr(self.layers[0], "pre_feedforward_layernorm"), qk_norm=hasattr(attn0, "q_norm"),
            act=act, attention="sdpa",
        )
        self.final_softcap = getattr(config, "final_logit_softcapping", None)
        self.rotary = self.body.rotary_emb
        self.rotary_by_type = "layer_type" in inspect.signature(self.rotary.forward).parameters
        self.dtype = next(model.parameters()).dtype
        self.vocab_size = model.lm_head.out_features
        with torch.no_grad():
            self.weights = [self._layer_weights(layer) for layer in self.layers]
        self.final_norm = self.body.norm.weight
        self.lm_head = model.lm_head.weight
        self.zero_norm = torch.zeros_like(self.weights[0][11]) if self.cfg.sandwich else None
        """A post-MLP norm weight for the zero "previous layer" of layer 0 (``GraphOptions.boundary``)."""

    def _init_hybrid(self, model: Any) -> None:
        """Nemotron-H: blocks of one mixer each (Mamba-2, attention or MLP), pre-norm, residual."""
        import torch

        config = model.config
        names = {"linear_attention": "mamba", "full_attention": "attention", "mlp": "mlp",
                 "mamba": "mamba", "attention": "attention"}  # the second row: older transformers' names
        block_types = list(config.layers_block_type)
        unknown = sorted({t for t in block_types if t not in names})
        if unknown:
            raise NotImplementedError(f"layers of type {', '.join(unknown)} are not supported by the CUDA-graph path")
        for what, act, ok in (("MLP", config.mlp_hidden_act, "relu2"), ("Mamba", config.mamba_hidden_act, "silu")):
            if act != ok:
                raise NotImplementedError(f"{what} activation {act!r} is not supported by the CUDA-graph path")
        self.model = model
        self.config = config
        self.body = model.model
        self.layers = list(self.body.layers)
        self.kinds = [names[t] for t in block_types]
        self.gemma = False
        self.final_softcap = None
        self.window_list = []
        self.dtype = next(model.parameters()).dtype
        self.vocab_size = model.lm_head.out_features
        attn = [layer.mixer for layer, k in zip(self.layers, self.kinds, strict=True) if k == "attention"]
        mixers = [layer.mixer for layer, k in zip(self.layers, self.kinds, strict=True) if k == "mamba"]
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = attn[0].head_dim if attn else int(config.head_dim)
        scale = float(attn[0].scaling) if attn else 1.0
        m0 = mixers[0] if mixers else None
        self.mamba = MambaCfg(
            heads=m0.num_heads, head_dim=m0.head_dim, groups=m0.n_groups, state=m0.ssm_state_size,
            conv_kernel=m0.conv_kernel_size, chunk=m0.chunk_size, dt_min=float(m0.time_step_limit[0]),
            eps=float(m0.norm.variance_epsilon),
        ) if m0 is not None else None
        self.cfg = _HybridCfg(
            heads=self.num_heads, kv_heads=self.num_kv_heads, head_dim=self.head_dim, scale=scale,
            eps=float(config.layer_norm_epsilon), attention="sdpa", mamba=self.mamba,
        )
        with torch.no_grad():
            self.weights = [self._hybrid_weights(layer, kind) for layer, kind in zip(self.layers, self.kinds,
                                                                                      strict=True)]
        self.final_norm = self.body.norm_f.weight
        self.lm_head = model.lm_head.weight

    @staticmethod
    def _hybrid_weights(layer: Any, kind: str) -> tuple:
        import torch

        mixer = layer.mixer
        if kind == "attention":
            w_qkv, b_qkv = _fuse_rows([mixer.q_proj, mixer.k_proj, mixer.v_proj])
            return (layer.norm.weight, w_qkv, b_qkv, mixer.o_proj.weight, mixer.o_proj.bias)
        if kind == "mlp":
            return (layer.norm.weight, mixer.up_proj.weight, mixer.up_proj.bias, mixer.down_proj.weight,
                    mixer.down_proj.bias)
        a = -torch.exp(mixer.A_log.float())
        return (layer.norm.weight, (
            mixer.in_proj.weight, mixer.in_proj.bias, mixer.conv1d.weight.squeeze(1), mixer.conv1d.bias,
            mixer.dt_bias, a, mixer.D, mixer.norm.weight, mixer.out_proj.weight, mixer.out_proj.bias,
        ))

    @property
    def kv_layers(self) -> int:
        """Layers that keep keys and values (every layer, or a hybrid model's attention layers)."""
        return self.kinds.count("attention") if self.hybrid else len(self.layers)

    def state_bytes_per_sequence(self) -> int:
        """Fixed bytes one sequence keeps whatever its length (a hybrid model's Mamba conv windows and
        float32 SSM states; 0 for pure attention models)."""
        if self.mamba is None:
            return 0
        elem = self.dtype.itemsize if hasattr(self.dtype, "itemsize") else 2
        return self.kinds.count("mamba") * self.mamba.state_bytes(elem, 4)

    def cache_bytes_per_sequence(self, length: int) -> float:
        """Static cache bytes of one sequence of ``length`` positions: KV plus fixed Mamba state."""
        return kv_bytes_per_sequence(self.shape(), length) + self.state_bytes_per_sequence()

    def _layer_weights(self, layer: Any) -> tuple:
        attn, mlp = layer.self_attn, layer.mlp
        w_qkv, b_qkv = _fuse_rows([attn.q_proj, attn.k_proj, attn.v_proj])
        w_gu, _ = _fuse_rows([mlp.gate_proj, mlp.up_proj])
        assert isinstance(self.cfg, _LayerCfg)  # a decoder layer's weights (hybrid blocks have their own)
        g = self.cfg.sandwich
        return (
            layer.input_layernorm.weight, w_qkv, b_qkv,
            attn.q_norm.weight if self.cfg.qk_norm else None, attn.k_norm.weight if self.cfg.qk_norm else None,
            attn.o_proj.weight, attn.o_proj.bias, layer.post_attention_layernorm.weight,
            layer.pre_feedforward_layernorm.weight if g else None, w_gu, mlp.down_proj.weight,
            layer.post_feedforward_layernorm.weight if g else None,
        )

    def shape(self) -> ModelShape:
        """KV arithmetic for the static cache (every layer keeps the full length here)."""
        params = sum(p.numel() for p in self.model.parameters())
        elem = self.dtype.itemsize if hasattr(self.dtype, "itemsize") else 2
        return ModelShape(params=params, bytes_per_param=elem, layers=self.kv_layers,
                          kv_heads=self.num_kv_heads, head_dim=self.head_dim, kv_bytes_per_elem=elem)


_ACTIVATIONS = ("gelu_pytorch_tanh", "silu")


@dataclass(frozen=True)
class _HybridCfg:
    """Constants of a hybrid model's blocks (one compilation per block kind serves every layer)."""

    heads: int
    kv_heads: int
    head_dim: int
    scale: float
    eps: float
    attention: str
    mamba: MambaCfg | None
    boundary: bool = False
    """Blocks take the previous block's output (``delta``) and add it first: see ``GraphOptions.boundary``."""


@dataclass(frozen=True)
class _LayerCfg:
    """Constants of one decoder layer (the same for every layer, so one compilation serves all)."""

    heads: int
    kv_heads: int
    head_dim: int
    scale: float
    eps: float
    gemma: bool
    sandwich: bool
    qk_norm: bool
    act: str
    attention: str
    boundary: bool = False
    """Layers take the previous layer's MLP output (``delta``) and finish it first: ``GraphOptions.boundary``."""
    linear: str = "mm"


def _fuse_rows(linears: list[Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Stack the weights of Linear layers that read the same input; the layers keep views into it."""
    import torch

    fused = torch.cat([lin.weight.data for lin in linears], dim=0)
    start = 0
    for lin in linears:
        n = lin.weight.shape[0]
        lin.weight.data = fused[start:start + n]
        start += n
    biases = [lin.bias for lin in linears]
    if all(b is None for b in biases):
        return fused, None
    return fused, torch.cat([b.data if b is not None else torch.zeros(lin.weight.shape[0], dtype=fused.dtype,
                                                                     device=fused.device)
                             for b, lin in zip(biases, linears, strict=True)])


def _rms_norm(x: torch.Tensor, w: torch.Tensor, eps: float, gemma: bool) -> torch.Tensor:
    """The models' RMSNorm, op for op (Gemma scales by 1 + w in float32; Llama casts back, then scales)."""
    import torch

    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    if gemma:
        return (xf * (1.0 + w.float())).type_as(x)
    return w * xf.to(x.dtype)


def _linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, impl: str) -> torch.Tensor:
    """``F.linear``; with ``impl="reduce"`` and few rows, products and a float32 sum over the input features,
    which Inductor writes as one reduction kernel (cuBLAS spends ~4 µs on a product this small)."""
    import torch.nn.functional as F  # noqa: N812

    if impl == "reduce" and x.numel() <= REDUCE_LINEAR_MAX_ROWS * x.shape[-1]:
        y = (x.float()[..., None, :] * w.float()).sum(-1)
        if b is not None:
            y = y + b.float()
        return y.to(x.dtype)
    return F.linear(x, w, b)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    import torch

    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def _attend(q: torch.Tensor, kc: torch.Tensor, vc: torch.Tensor, mask: torch.Tensor, scale: float,
            impl: str) -> torch.Tensor:
    """Queries (B, H, S, D) against the whole static cache (B, Hkv, L, D) → (B, S, H·D).

    The query heads that share a KV head are laid along the "query length" axis, so each KV head is
    read once (no ``repeat_kv`` copy of the cache) and one fused kernel serves grouped-query attention.
    ``mask`` is additive, (B, 1, S, L).
    """
    import torch

    b, h, s, d = q.shape
    hkv = kc.shape[1]
    g = h // hkv
    q4 = q.reshape(b, hkv, g * s, d)
    m4 = mask[:, :, None].expand(b, 1, g, s, mask.shape[-1]).reshape(b, 1, g * s, mask.shape[-1]) if g > 1 else mask
    if impl == "reduce" and s == 1:
        # Decode: a handful of query rows against L keys, as broadcast products and sums for Inductor to
        # fuse (fine at batch 1, poor at 128: see benchmarks/GPU_NOTES.md).
        scores = (q4[:, :, :, None, :].float() * kc[:, :, None, :, :].float()).sum(-1) * scale + m4.float()
        probs = torch.softmax(scores, dim=-1).to(q.dtype)
        out = (probs[..., None].float() * vc[:, :, None, :, :].float()).sum(-2).to(q.dtype)
    elif impl == "sdpa":
        out = torch.nn.functional.scaled_dot_product_attention(q4, kc, vc, attn_mask=m4, scale=scale)
    else:
        scores = torch.matmul(q4, kc.transpose(-1, -2)) * scale + m4
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.matmul(probs, vc)
    return out.reshape(b, h, s, d).transpose(1, 2).reshape(b, s, h * d)


def layer_step(h: torch.Tensor, delta: torch.Tensor | None, w_delta: torch.Tensor | None, w: tuple,
               kc: torch.Tensor, vc: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor,
               wpos: torch.Tensor, cfg: _LayerCfg) -> Any:
    """One decoder layer on ``h`` (B, S, hidden); writes K/V at cache indices ``wpos`` (S,). Pure tensors in,
    so one compiled graph serves every layer (sliding and full layers differ only in the mask passed).

    With ``cfg.boundary`` the layer first finishes the previous one (``h + norm(delta)`` with that layer's
    post-MLP norm ``w_delta``, or ``h + delta``) and returns ``(h, its own MLP output)`` unfinished, so the
    last residual add of one layer and the input norm of the next are one fused kernel. Without, ``delta``
    and ``w_delta`` are None and it returns the finished ``h``."""
    import torch.nn.functional as F  # noqa: N812

    (w_in, w_qkv, b_qkv, w_qn, w_kn, w_o, b_o, w_post_attn, w_pre_ff, w_gu, w_down, w_post_ff) = w
    if cfg.boundary:
        h = h + (_rms_norm(delta, w_delta, cfg.eps, cfg.gemma) if cfg.sandwich else delta)
    b, s, _ = h.shape
    nq, nkv = cfg.heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim
    x = _rms_norm(h, w_in, cfg.eps, cfg.gemma)
    q, k, v = _linear(x, w_qkv, b_qkv, cfg.linear).split([nq, nkv, nkv], dim=-1)
    q = q.view(b, s, cfg.heads, cfg.head_dim)
    k = k.view(b, s, cfg.kv_heads, cfg.head_dim)
    if cfg.qk_norm:
        q = _rms_norm(q, w_qn, cfg.eps, cfg.gemma)
        k = _rms_norm(k, w_kn, cfg.eps, cfg.gemma)
    cos, sin = cos[:, None], sin[:, None]
    q = _rotate(q.transpose(1, 2), cos, sin)
    k = _rotate(k.transpose(1, 2), cos, sin)
    v = v.reshape(b, s, cfg.kv_heads, cfg.head_dim).transpose(1, 2)
    kc.index_copy_(2, wpos, k)
    vc.index_copy_(2, wpos, v)
    o = _linear(_attend(q, kc, vc, mask, cfg.scale, cfg.attention), w_o, b_o, cfg.linear)
    if cfg.sandwich:
        h = h + _rms_norm(o, w_post_attn, cfg.eps, cfg.gemma)
        x = _rms_norm(h, w_pre_ff, cfg.eps, cfg.gemma)
    else:
        h = h + o
        x = _rms_norm(h, w_post_attn, cfg.eps, cfg.gemma)
    gate, up = _linear(x, w_gu, None, cfg.linear).chunk(2, dim=-1)
    act = F.gelu(gate, approximate="tanh") if cfg.act == "gelu_pytorch_tanh" else F.silu(gate)
    x = _linear(act * up, w_down, None, cfg.linear)
    if cfg.boundary:
        return h, x
    if cfg.sandwich:
        x = _rms_norm(x, w_post_ff, cfg.eps, cfg.gemma)
    return h + x


def _masks(arch: _Arch, valid: torch.Tensor, q_index: torch.Tensor) -> list[torch.Tensor]:
    """Additive masks (B, 1, S, L): [full, one per sliding window]. ``q_index`` (S,) are the queries' cache
    indices; a key at index j is seen when it is valid, j ≤ the query's index, and inside the window."""
    import torch

    length = valid.shape[1]
    j = torch.arange(length, device=valid.device)
    seen = valid[:, None, :] & (j[None, None, :] <= q_index[None, :, None])
    zero = torch.zeros((), dtype=arch.dtype, device=valid.device)
    neg = torch.finfo(arch.dtype).min
    out = [torch.where(seen, zero, neg)[:, None]]
    for window in arch.window_list:
        inside = seen & (j[None, None, :] > (q_index[None, :, None] - window))
        out.append(torch.where(inside, zero, neg)[:, None])
    return out


def prologue(arch: _Arch, ids: torch.Tensor, pos: torch.Tensor, q_index: torch.Tensor,
             valid: torch.Tensor, zeros: bool = False) -> tuple:
    """Embeddings, rotary cos/sin per layer type, and the attention masks of one step; with ``zeros``,
    also a zero tensor shaped like the embeddings (the first layer's ``delta`` with layer boundaries moved)."""
    import torch

    h = arch.body.embed_tokens(ids)
    rope = [arch.rotary(h, pos, t) if arch.rotary_by_type else arch.rotary(h, pos) for t in arch.rope_types]
    return (h, [c for c, _ in rope], [s for _, s in rope], _masks(arch, valid, q_index),
            torch.zeros_like(h) if zeros else None)


def epilogue(h: torch.Tensor, w_norm: torch.Tensor, w_lm: torch.Tensor, eps: float, gemma: bool,
             softcap: float | None, delta: torch.Tensor | None = None, w_delta: torch.Tensor | None = None,
             ) -> torch.Tensor:
    """Final norm and the vocabulary projection of the last position: (B, hidden) → (B, V). With ``delta``
    (layer boundaries moved) the last layer is finished first: ``h + norm(delta)`` (``w_delta`` given) or
    ``h + delta``."""
    import torch

    if delta is not None:
        h = h + (_rms_norm(delta, w_delta, eps, gemma) if w_delta is not None else delta)
    logits = torch.nn.functional.linear(_rms_norm(h, w_norm, eps, gemma), w_lm)
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return logits


def forward_tokens(fns: _Fns, arch: _Arch, ids: torch.Tensor, pos: torch.Tensor, q_index: torch.Tensor,
                   valid: torch.Tensor, ks: list[torch.Tensor], vs: list[torch.Tensor]) -> torch.Tensor:
    """Tokens ``ids`` (B, S) at ``pos`` written at cache indices ``q_index`` (S,) → last-position logits."""
    # A prompt's length varies too; a decode step has one token (dims of size 1 get specialised anyway).
    bs = (0, 1) if ids.shape[1] > 1 else (0,)
    _mark(ids, *bs)
    _mark(pos, *bs)
    if len(bs) > 1:
        _mark(q_index, 0)
    _mark(valid, 0, 1)
    cfg = fns.cfg
    h, cos, sin, masks, delta = fns.prologue(arch, ids, pos, q_index, valid, cfg.boundary)
    # Moved boundaries: the first layer finishes a "previous layer" whose output is zero, with a zero norm
    # weight of its own (the same tensor twice in one call would make dynamo compile that call apart).
    w_delta = arch.zero_norm if cfg.boundary and isinstance(cfg, _LayerCfg) and cfg.sandwich else None
    for i, w in enumerate(arch.weights):
        r, m = arch.layer_rope[i], arch.layer_mask[i]
        _mark(h, *bs)
        if delta is not None:
            _mark(delta, *bs)
        _mark(cos[r], *bs)
        _mark(sin[r], *bs)
        _mark(masks[m], 0, 3, *bs[1:] and (2,))
        _mark(ks[i], 0, 2)
        _mark(vs[i], 0, 2)
        out = fns.layer(h, delta, w_delta, w, ks[i], vs[i], cos[r], sin[r], masks[m], q_index, cfg)
        if cfg.boundary:
            h, delta = out
            w_delta = w[11] if isinstance(cfg, _LayerCfg) and cfg.sandwich else None
        else:
            h = out
    last = h[:, -1]
    _mark(last, 0)
    if delta is None:
        return fns.epilogue(last, arch.final_norm, arch.lm_head, arch.cfg.eps, arch.gemma, arch.final_softcap)
    last_delta = delta[:, -1]
    _mark(last_delta, 0)
    return fns.epilogue(last, arch.final_norm, arch.lm_head, arch.cfg.eps, arch.gemma, arch.final_softcap,
                        last_delta, w_delta)


# --------------------------------------------------------------------------------------------------
# Hybrid Mamba-2/attention models (Nemotron-H): one function per block kind


def _norm_f32_weight(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    """Nemotron-H's RMSNorm: normalise and scale in float32, then cast back."""
    import torch

    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (w.float() * xf).to(x.dtype)


def hybrid_prologue(arch: _Arch, ids: torch.Tensor, q_index: torch.Tensor, valid: torch.Tensor,
                    zeros: bool = False) -> tuple:
    """Embeddings and the attention mask (the model has no positional encoding: no rotary tables); with
    ``zeros``, also the zero ``delta`` the first block starts from (``GraphOptions.boundary``)."""
    import torch

    h = arch.body.embeddings(ids)
    return h, _masks(arch, valid, q_index)[0], torch.zeros_like(h) if zeros else None


def _block_out(h: torch.Tensor, out: torch.Tensor, cfg: _HybridCfg) -> Any:
    """A block's result: ``(h, out)`` left for the next block to add (moved boundaries), or ``h + out``."""
    return (h, out) if cfg.boundary else h + out


def _block_in(h: torch.Tensor, delta: torch.Tensor | None) -> torch.Tensor:
    """Finish the previous block (its residual add) where it fuses with this block's input norm."""
    return h if delta is None else h + delta


def hybrid_mamba_step(h: torch.Tensor, delta: torch.Tensor | None, w: tuple, conv: torch.Tensor,
                      ssm: torch.Tensor, cfg: _HybridCfg) -> Any:
    """A Mamba block on one token per sequence (B, 1, hidden); advances ``conv`` and ``ssm`` in place."""
    assert cfg.mamba is not None  # a hybrid model has Mamba blocks
    h = _block_in(h, delta)
    return _block_out(h, hf_mamba.decode_step(_norm_f32_weight(h, w[0], cfg.eps), w[1], conv, ssm, cfg.mamba), cfg)


def hybrid_mamba_prefill(h: torch.Tensor, delta: torch.Tensor | None, w: tuple, conv: torch.Tensor,
                         ssm: torch.Tensor, tok_mask: torch.Tensor, cfg: _HybridCfg) -> Any:
    """A Mamba block on left-padded prompts (B, S, hidden); sets ``conv`` and ``ssm`` to their final states."""
    assert cfg.mamba is not None  # a hybrid model has Mamba blocks
    h = _block_in(h, delta)
    return _block_out(h, hf_mamba.prefill(_norm_f32_weight(h, w[0], cfg.eps), w[1], conv, ssm, tok_mask,
                                          cfg.mamba), cfg)


def hybrid_attention(h: torch.Tensor, delta: torch.Tensor | None, w: tuple, kc: torch.Tensor, vc: torch.Tensor,
                     mask: torch.Tensor, wpos: torch.Tensor, cfg: _HybridCfg) -> Any:
    """An attention block (no rotary embedding in this family); writes K/V at cache indices ``wpos``."""
    import torch.nn.functional as F  # noqa: N812

    h = _block_in(h, delta)
    w_norm, w_qkv, b_qkv, w_o, b_o = w
    b, s, _ = h.shape
    nq, nkv = cfg.heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim
    q, k, v = F.linear(_norm_f32_weight(h, w_norm, cfg.eps), w_qkv, b_qkv).split([nq, nkv, nkv], dim=-1)
    q = q.view(b, s, cfg.heads, cfg.head_dim).transpose(1, 2)
    kc.index_copy_(2, wpos, k.view(b, s, cfg.kv_heads, cfg.head_dim).transpose(1, 2))
    vc.index_copy_(2, wpos, v.reshape(b, s, cfg.kv_heads, cfg.head_dim).transpose(1, 2))
    return _block_out(h, F.linear(_attend(q, kc, vc, mask, cfg.scale, cfg.attention), w_o, b_o), cfg)


def hybrid_mlp(h: torch.Tensor, delta: torch.Tensor | None, w: tuple, cfg: _HybridCfg) -> Any:
    """An MLP block: up, squared ReLU, down (no gate)."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    h = _block_in(h, delta)
    w_norm, w_up, b_up, w_down, b_down = w
    x = F.linear(_norm_f32_weight(h, w_norm, cfg.eps), w_up, b_up)
    return _block_out(h, F.linear(torch.square(F.relu(x)), w_down, b_down), cfg)


def hybrid_epilogue(h: torch.Tensor, w_norm: torch.Tensor, w_lm: torch.Tensor, eps: float,
                    delta: torch.Tensor | None = None) -> torch.Tensor:
    """Final norm and the vocabulary projection of the last position: (B, hidden) → (B, V)."""
    import torch

    return torch.nn.functional.linear(_norm_f32_weight(_block_in(h, delta), w_norm, eps), w_lm)


def forward_hybrid(fns: _Fns, arch: _Arch, ids: torch.Tensor, q_index: torch.Tensor, valid: torch.Tensor,
                   ks: list[torch.Tensor], vs: list[torch.Tensor], convs: list[torch.Tensor],
                   ssms: list[torch.Tensor], tok_mask: torch.Tensor | None) -> torch.Tensor:
    """A hybrid model's tokens ``ids`` (B, S) → last-position logits. With ``tok_mask`` (B, S) it is a
    prefill from zero Mamba states (any S, 1 included); without, a decode step of one token that
    continues the states. Attention layers write K/V at cache indices ``q_index``."""
    prefill = tok_mask is not None
    bs = (0, 1) if prefill else (0,)
    _mark(ids, *bs)
    _mark(valid, 0, 1)
    if prefill:
        _mark(q_index, 0)
        _mark(tok_mask, 0, 1)
    cfg = fns.cfg
    h, mask, delta = fns.prologue(arch, ids, q_index, valid, cfg.boundary)
    a = m = 0
    for kind, w in zip(arch.kinds, arch.weights, strict=True):
        _mark(h, *bs)
        if delta is not None:
            _mark(delta, *bs)
        if kind == "mamba":
            _mark(convs[m], 0)
            _mark(ssms[m], 0)
            if prefill:
                out = fns.mamba_prefill(h, delta, w, convs[m], ssms[m], tok_mask, cfg)
            else:
                out = fns.mamba_step(h, delta, w, convs[m], ssms[m], cfg)
            m += 1
        elif kind == "attention":
            _mark(mask, 0, 3, *bs[1:] and (2,))
            _mark(ks[a], 0, 2)
            _mark(vs[a], 0, 2)
            out = fns.layer(h, delta, w, ks[a], vs[a], mask, q_index, cfg)
            a += 1
        else:
            out = fns.mlp(h, delta, w, cfg)
        if cfg.boundary:
            h, delta = out
        else:
            h = out
    last = h[:, -1]
    _mark(last, 0)
    if delta is None:
        return fns.epilogue(last, arch.final_norm, arch.lm_head, cfg.eps)
    last_delta = delta[:, -1]
    _mark(last_delta, 0)
    return fns.epilogue(last, arch.final_norm, arch.lm_head, cfg.eps, last_delta)


def _mark(t: torch.Tensor, *dims: int) -> None:
    """Tell dynamo these dims vary (batch, cache length), so the first compilation is already general."""
    import torch

    for d in dims:
        torch._dynamo.maybe_mark_dynamic(t, d)


# --------------------------------------------------------------------------------------------------
# Per-model runtime: the compiled step and the cached graphs


@dataclass
class _Fns:
    """The three functions of a step, compiled or plain."""

    prologue: Any
    layer: Any
    """The decoder layer (a hybrid model's attention block)."""
    epilogue: Any
    cfg: _LayerCfg | _HybridCfg
    mamba_step: Any = None
    """Hybrid models only: the Mamba block's decode step, its prefill, and the MLP block."""
    mamba_prefill: Any = None
    mlp: Any = None


@dataclass
class _Entry:
    """Static buffers (and, on CUDA, the captured graph) for one (bucket, length)."""

    bucket: int
    length: int
    ids: torch.Tensor
    pos: torch.Tensor
    wp: torch.Tensor
    valid: torch.Tensor
    ks: list[torch.Tensor]
    vs: list[torch.Tensor]
    convs: list[torch.Tensor] = field(default_factory=list)
    """Hybrid models: per Mamba layer, the conv windows (bucket, conv_dim, K) and SSM states
    (bucket, heads, head_dim, state), float32 like transformers keeps them. Their size does not
    depend on the length."""
    ssms: list[torch.Tensor] = field(default_factory=list)
    graph: Any = None
    out: torch.Tensor | None = None
    prefill: dict = field(default_factory=dict)
    """Captured prefills by padded prompt length: ``_Prefill``, or None where capture failed."""
    nbytes: int = 0
    in_use: bool = False
    capture_s: float = 0.0


@dataclass
class _Runtime:
    """Everything kept per loaded model between runs."""

    arch: _Arch
    options: GraphOptions
    fns: _Fns
    eager: _Fns
    entries: OrderedDict = field(default_factory=OrderedDict)
    pool: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    fallback: str | None = None
    prefill_fallback: str | None = None


@dataclass
class _Prefill:
    """A captured prefill of one padded prompt length for an entry: static inputs, graph, logits."""

    ids: torch.Tensor
    mask: torch.Tensor
    graph: Any
    out: torch.Tensor


_RUNTIMES_ATTR = "_inference_lab_graph_runtimes"
"""Runtimes live on the model object itself, so they go away with it (a weak-keyed map would keep it alive)."""
_RUNTIMES_LOCK = threading.Lock()


def _runtime(model: Any, options: GraphOptions) -> _Runtime:
    import dataclasses

    with _RUNTIMES_LOCK:
        per_model = model.__dict__.setdefault(_RUNTIMES_ATTR, {})
        rt = per_model.get(options)
        if rt is None:
            arch = per_model.get("arch") or _Arch(model)
            per_model["arch"] = arch
            rt = _Runtime(arch=arch, options=options, fns=_make_fns(arch, options),
                          eager=_make_fns(arch, dataclasses.replace(options, compile="none", tuning="")))
            per_model[options] = rt
        return rt


def _make_fns(arch: _Arch, options: GraphOptions) -> _Fns:
    import dataclasses

    import torch

    options.validate()
    cfg = dataclasses.replace(arch.cfg, attention=options.attention, boundary=options.boundary)
    if isinstance(cfg, _HybridCfg):
        if cfg.mamba is not None:
            cfg = dataclasses.replace(cfg, mamba=dataclasses.replace(cfg.mamba,
                                                                     fit_chunk=options.scan_chunk == "fit"))
    else:
        cfg = dataclasses.replace(cfg, linear=options.linear)
    device = next(arch.model.parameters()).device
    fns = (_Fns(hybrid_prologue, hybrid_attention, hybrid_epilogue, cfg, hybrid_mamba_step, hybrid_mamba_prefill,
                hybrid_mlp) if arch.hybrid else _Fns(prologue, layer_step, epilogue, cfg))
    if options.compile == "none" or device.type != "cuda":
        return fns
    inductor_options, _skipped = compile_options(options)
    # Every runtime (model, options) shares these three functions' code objects, and dynamo counts
    # compilations per code object: 8 by default, which a session that loads a few models (or the
    # benchmark) exceeds. Each model needs about four (decode and prefill, per function).
    for name in ("recompile_limit", "cache_size_limit"):
        if getattr(torch._dynamo.config, name, 0) < 64:
            setattr(torch._dynamo.config, name, 64)
    if getattr(torch._dynamo.config, "accumulated_recompile_limit", 1 << 30) < 512:
        torch._dynamo.config.accumulated_recompile_limit = 512
    def compiled(fn: Any) -> Any:
        return None if fn is None else torch.compile(fn, fullgraph=True, options=dict(inductor_options))

    return _Fns(compiled(fns.prologue), compiled(fns.layer), compiled(fns.epilogue), cfg,
                compiled(fns.mamba_step), compiled(fns.mamba_prefill), compiled(fns.mlp))


def compile_options(options: GraphOptions) -> tuple[dict[str, Any], list[str]]:
    """Inductor's options for ``options`` (its compile mode's, then the tuning knobs'), and the knobs that
    this torch does not have (skipped)."""
    from torch._inductor import config as inductor_config
    from torch._inductor import list_mode_options

    mode = None if options.compile in ("default", "none") else options.compile
    out: dict[str, Any] = dict(list_mode_options(mode)) if mode else {}
    skipped = []
    for knob in options.tuning_knobs():
        for key, value in TUNING_KNOBS[knob].items():
            owner: Any = inductor_config
            *path, leaf = key.split(".")
            for part in path:
                owner = getattr(owner, part, None)
            if owner is None or not hasattr(owner, leaf):
                skipped.append(knob)
                continue
            out[key] = value
    if hasattr(inductor_config, "emulate_precision_casts"):
        out["emulate_precision_casts"] = True
    return out, sorted(set(skipped))


def _inductor_patch() -> Any:
    """Make Inductor round bf16 intermediates where eager would, so fused kernels give eager's numbers."""
    import contextlib

    try:
        from torch._inductor import config as inductor_config
    except Exception:  # pragma: no cover - torch without inductor
        return contextlib.nullcontext()
    if hasattr(inductor_config, "emulate_precision_casts"):
        return inductor_config.patch(emulate_precision_casts=True)
    return contextlib.nullcontext()


def _run_step(rt: _Runtime, e: _Entry, fns: _Fns | None = None) -> torch.Tensor:
    """The captured region: mark the new cache slot valid, run the step, advance positions."""
    e.valid.index_fill_(1, e.wp, True)
    if rt.arch.hybrid:
        out = forward_hybrid(fns or rt.fns, rt.arch, e.ids, e.wp, e.valid, e.ks, e.vs, e.convs, e.ssms, None)
    else:
        out = forward_tokens(fns or rt.fns, rt.arch, e.ids, e.pos, e.wp, e.valid, e.ks, e.vs)
    e.wp.add_(1)
    e.pos.add_(1)
    return out


def _run_prefill(rt: _Runtime, e: _Entry, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Prompts ``ids`` (R, P), left-padded per ``mask``, into the first R rows of the cache → logits (R, V).

    Also sets what the decode steps start from: positions, the write index (P) and the valid slots.
    Rows of the bucket past R (and rows whose mask is empty) get one valid slot so they attend to
    something (no NaN rows). Stale keys and values past P need no clearing: they are never valid.
    """
    import torch

    rows, plen = ids.shape
    e.valid.zero_()
    e.valid[:rows, :plen].copy_(mask)
    pos = (mask.long().cumsum(-1) - 1).clamp(min=0)
    q_index = torch.arange(plen, device=ids.device)
    if rt.arch.hybrid:
        for t in (*e.convs, *e.ssms):  # rows past R are computed too: start them from zero states
            t[rows:].zero_()
        logits = forward_hybrid(rt.fns, rt.arch, ids, q_index, e.valid[:rows], [k[:rows] for k in e.ks],
                                [v[:rows] for v in e.vs], [c[:rows] for c in e.convs], [s[:rows] for s in e.ssms],
                                mask)
    else:
        logits = forward_tokens(rt.fns, rt.arch, ids, pos, q_index, e.valid[:rows],
                                [k[:rows] for k in e.ks], [v[:rows] for v in e.vs])
    e.pos.zero_()
    e.pos[:rows, 0].copy_(mask.long().sum(-1))
    e.valid[:, 0].logical_or_(e.pos[:, 0] == 0)
    e.wp.fill_(plen)
    e.ids.zero_()
    return logits


def prefill_bucket(plen: int) -> int:
    """The padded prompt length a captured prefill of ``plen`` tokens runs at."""
    return -(-plen // PREFILL_ALIGN) * PREFILL_ALIGN


def _capture_prefill(rt: _Runtime, e: _Entry, padded: int) -> _Prefill:
    """Compile (if needed) and capture the prefill of ``padded`` tokens for every row of ``e``'s bucket."""
    import torch

    device = e.ids.device
    ids = torch.zeros((e.bucket, padded), dtype=torch.long, device=device)
    mask = torch.zeros((e.bucket, padded), dtype=torch.bool, device=device)
    mask[:, -1] = True
    graph, out = _capture(rt, device, lambda: _run_prefill(rt, e, ids, mask), warmups=2)
    return _Prefill(ids, mask, graph, out)


def _capture(rt: _Runtime, device: Any, fn: Any, warmups: int) -> tuple[Any, Any]:
    """Run ``fn`` ``warmups`` times on a side stream (compiling on first use, warming cuBLAS and the
    allocator), then capture it as a CUDA graph in the runtime's shared pool: (graph, fn's output)."""
    import torch

    with _inductor_patch():
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(warmups):
                fn()
        torch.cuda.current_stream(device).wait_stream(side)
        torch.cuda.synchronize(device)
        if rt.pool is None:
            rt.pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=rt.pool):
            out = fn()
        torch.cuda.synchronize(device)
    return graph, out


def _first_line(error: BaseException) -> str:
    """``Type: first line of the message`` (at most 160 characters of it), for a one-line note."""
    text = str(error).splitlines()[0][:160] if str(error) else ""
    return f"{type(error).__name__}: {text}"


def _free_bytes(device: Any) -> int:
    import torch

    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


def _evict(rt: _Runtime, keep_bytes: int = 0) -> None:
    """Drop unused cached entries, oldest first, until at most ``keep_bytes`` are held."""
    import torch

    held = sum(e.nbytes for e in rt.entries.values())
    for key in list(rt.entries):
        if held <= keep_bytes:
            break
        e = rt.entries[key]
        if e.in_use:
            continue
        held -= e.nbytes
        del rt.entries[key]
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def largest_batch_that_fits(arch: _Arch, length: int, free_bytes: float) -> int:
    """The largest batch whose static cache, logits and sampling buffers fit in ``free_bytes``."""
    per_seq = arch.cache_bytes_per_sequence(length) + arch.vocab_size * (2 + 4 * 3)
    fits = int(0.9 * free_bytes // per_seq)
    best = 0
    for b in BATCH_BUCKETS:
        if b <= fits:
            best = b
    return best if best else fits


def _build_entry(rt: _Runtime, bucket: int, length: int, device: Any) -> _Entry:
    import torch

    arch = rt.arch
    kv_shape = (bucket, arch.num_kv_heads, length, arch.head_dim)
    ks = [torch.zeros(kv_shape, dtype=arch.dtype, device=device) for _ in range(arch.kv_layers)]
    vs = [torch.zeros(kv_shape, dtype=arch.dtype, device=device) for _ in range(arch.kv_layers)]
    convs: list[torch.Tensor] = []
    ssms: list[torch.Tensor] = []
    mc = arch.mamba
    if mc is not None:
        for _ in range(arch.kinds.count("mamba")):
            convs.append(torch.zeros((bucket, mc.conv_dim, mc.conv_kernel), dtype=arch.dtype, device=device))
            ssms.append(torch.zeros((bucket, mc.heads, mc.head_dim, mc.state), dtype=torch.float32, device=device))
    e = _Entry(
        bucket=bucket, length=length,
        ids=torch.zeros((bucket, 1), dtype=torch.long, device=device),
        pos=torch.zeros((bucket, 1), dtype=torch.long, device=device),
        wp=torch.zeros((1,), dtype=torch.long, device=device),
        valid=torch.zeros((bucket, length), dtype=torch.bool, device=device),
        ks=ks, vs=vs, convs=convs, ssms=ssms,
        nbytes=sum(t.numel() * t.element_size() for t in (*ks, *vs, *convs, *ssms)) + bucket * arch.vocab_size * 2,
    )
    if device.type != "cuda" or not rt.options.graphs:
        return e
    if rt.options.compile == "reduce-overhead":
        # torch.compile records and replays its own CUDA graphs; it needs the buffers at fixed addresses.
        for t in (e.ids, e.pos, e.wp, e.valid, *e.ks, *e.vs, *e.convs, *e.ssms):
            torch._dynamo.mark_static_address(t)
        t0 = time.perf_counter()
        with _inductor_patch():
            for _ in range(3):
                _run_step(rt, e)
        torch.cuda.synchronize(device)
        e.capture_s = time.perf_counter() - t0
        return e
    t0 = time.perf_counter()
    e.graph, e.out = _capture(rt, device, lambda: _run_step(rt, e), warmups=3)
    e.capture_s = time.perf_counter() - t0
    return e


def _acquire(rt: _Runtime, bucket: int, length: int, device: Any) -> tuple[_Entry, bool]:
    """A free entry for (bucket, length): cached, or built now. Returns (entry, cached?)."""
    import torch

    key = (bucket, length)
    with rt.lock:
        e = rt.entries.get(key)
        if e is not None and not e.in_use:
            rt.entries.move_to_end(key)
            e.in_use = True
            return e, True
    need = int(bucket * rt.arch.cache_bytes_per_sequence(length))
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        _evict(rt, keep_bytes=max(0, int(CACHE_BUDGET_FRACTION * total) - need))
        free = _free_bytes(device)
        if need > 0.9 * free:
            _evict(rt, 0)
            free = _free_bytes(device)
        if need > 0.9 * free:
            raise _oom(rt, bucket, length, free)
    try:
        e = _build_entry(rt, bucket, length, device)
    except torch.OutOfMemoryError as exc:
        _evict(rt, 0)
        raise _oom(rt, bucket, length, _free_bytes(device)) from exc
    except Exception as exc:
        if rt.options.compile == "none" or rt.fallback is not None:
            raise
        # A compiler problem must not cost the learner the fast path: capture the eager step instead.
        rt.fallback = f"torch.compile failed ({_first_line(exc)}); captured the uncompiled step"
        rt.fns = rt.eager
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        e = _build_entry(rt, bucket, length, device)
    e.in_use = True
    with rt.lock:
        if key not in rt.entries:
            rt.entries[key] = e
    return e, False


def _oom(rt: _Runtime, bucket: int, length: int, free: int) -> OutOfMemory:
    largest = largest_batch_that_fits(rt.arch, length, free)
    what = "KV cache and Mamba states" if rt.arch.hybrid else "KV cache"
    return OutOfMemory(
        f"out of GPU memory for a batch of {bucket} × {length} tokens ({what} "
        f"{rt.arch.cache_bytes_per_sequence(length) * bucket / 2**30:.1f} GiB)",
        hint=f"largest batch that fits now: {largest}; lower the batch size or the number of new tokens.",
        largest_batch=largest,
    )


# --------------------------------------------------------------------------------------------------
# The backend (DecodeBackend contract of tui_lab.engines.hf_backends)


class StaticGraphBackend:
    """One generation's KV state on the fast path: eager prefill, then replayed CUDA-graph steps.

    ``StaticGraphBackend(model, batch_size, max_total_len)`` follows the ``BackendFactory`` signature.
    The logits returned by ``step`` live in the graph's output buffer: they stay valid until the next
    ``step`` (the engine samples from them at once). On CPU the same step runs eagerly (used by tests).
    """

    def __init__(self, model: Any, batch_size: int, max_total_len: int, options: GraphOptions | None = None) -> None:
        import torch

        self.model = model
        self.batch_size = int(batch_size)
        self.device = next(model.parameters()).device
        self.options = options or GraphOptions.from_env()
        self.rt = _runtime(model, self.options)
        self.bucket = batch_bucket(self.batch_size)
        self.max_total_len = int(max_total_len)
        self.length = length_bucket(self.max_total_len)
        with torch.inference_mode():
            self.entry, self.cached = _acquire(self.rt, self.bucket, self.length, self.device)
        self.setup_s = self.entry.capture_s if not self.cached else 0.0
        self._ids_in = self.entry.ids[: self.batch_size]
        self._out = self.entry.out[: self.batch_size] if self.entry.out is not None else None
        self.capture_prefill = self.entry.graph is not None
        """Capture short prefills as CUDA graphs (on whenever decode steps are captured)."""
        self._written = 0
        self._released = False

    @property
    def uses_graphs(self) -> bool:
        """True when steps replay a captured CUDA graph."""
        return self.entry.graph is not None

    @property
    def cheap_launch(self) -> bool:
        """A step costs the host one copy and one replay: the engine may queue the next before waiting."""
        return self.uses_graphs

    def describe(self) -> str:
        """One line for EngineInfo.notes / result files."""
        how = "CUDA graph" if self.uses_graphs else "eager step"
        cache = f"static KV cache {self.bucket}×{self.length}"
        if self.rt.arch.hybrid:
            state = self.rt.arch.state_bytes_per_sequence() * self.bucket / 2**20
            cache = f"{cache} + Mamba conv/SSM states {state:.0f} MiB"
        text = f"{cache}, {how}, compile={self.options.compile}, attention={self.options.attention}"
        o = self.options
        text += f", boundary={'moved' if o.boundary else 'kept'}, linear={o.linear}"
        if self.rt.arch.hybrid:
            text += f", scan chunk={o.scan_chunk}"
        if o.tuning:
            _opts, skipped = compile_options(o) if self.device.type == "cuda" else ({}, [])
            text += f", tuning={o.tuning}" + (f" (not in this torch: {', '.join(skipped)})" if skipped else "")
        for note in (self.rt.fallback, self.rt.prefill_fallback):
            if note:
                text = f"{text}; {note}"
        return text

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The prompts (B, P), left-padded, through the same layer code; fills the static cache and
        returns the last position's logits (B, V).

        With CUDA graphs a short prefill is padded on the left to a multiple of ``PREFILL_ALIGN`` and
        replayed from a graph captured for that length (once per cached entry); otherwise it runs
        compiled from Python (prompt length marked dynamic: one compilation serves every length).
        """
        import torch

        e = self.entry
        b, plen = input_ids.shape
        if b != self.batch_size:
            raise ValueError(f"prefill got {b} sequences, backend was built for {self.batch_size}")
        if plen >= e.length:
            raise ValueError(f"prompt of {plen} tokens does not fit a cache of {e.length}")
        with torch.inference_mode():
            mask = attention_mask.to(self.device).bool()
            ids = input_ids.to(self.device)
            captured = self._captured_prefill(plen)
            if captured is not None:
                padded = captured.ids.shape[1]
                captured.mask.zero_()
                captured.mask[:b, padded - plen:].copy_(mask)
                captured.ids[:b, padded - plen:].copy_(ids)
                captured.graph.replay()
                self._written = padded
                return captured.out[:b]
            # .clone() inside inference mode: the compiled code then sees the same kind of tensor (an
            # inference tensor) as the static buffers, not a second kind that would cost a recompilation.
            logits = _run_prefill(self.rt, e, ids.clone(), mask)
            self._written = plen
            return logits

    def warm(self, plen: int) -> float:
        """Capture the prefill of prompts of ``plen`` tokens now, if that is the captured path and it is not
        captured yet; the seconds it took (0.0 when there was nothing to do)."""
        if prefill_bucket(plen) in self.entry.prefill:
            return 0.0
        t0 = time.perf_counter()
        self._captured_prefill(plen)
        return time.perf_counter() - t0 if prefill_bucket(plen) in self.entry.prefill else 0.0

    def _captured_prefill(self, plen: int) -> _Prefill | None:
        """The entry's captured prefill for prompts of ``plen`` tokens, capturing it now if needed; None
        where prefills are not captured (no graphs, too many tokens, no room left for the new tokens)."""
        import torch

        e = self.entry
        padded = prefill_bucket(plen)
        if not self.capture_prefill or e.bucket * padded > PREFILL_GRAPH_MAX_TOKENS:
            return None
        if padded - plen + self.max_total_len > e.length:  # the padding must leave room for every new token
            return None
        if padded not in e.prefill:
            try:
                e.prefill[padded] = _capture_prefill(self.rt, e, padded)
            except Exception as error:  # a graph is an optimisation: fall back to the uncaptured prefill
                e.prefill[padded] = None
                self.rt.prefill_fallback = f"prefill capture failed ({_first_line(error)})"
                torch.cuda.synchronize(self.device)
        return e.prefill[padded]

    def step(self, next_tokens: torch.Tensor) -> torch.Tensor:
        """Feed the chosen tokens (B, 1); returns the next logits (B, V) (valid until the next step)."""
        import torch

        e = self.entry
        if self._written >= e.length:
            raise ValueError(f"the static cache of {e.length} positions is full")
        # Kept lean: with a host sync per token, every microsecond here is a microsecond the GPU waits.
        with torch.inference_mode():
            self._ids_in.copy_(next_tokens.view(self.batch_size, 1))
            if e.graph is not None:
                e.graph.replay()
                out = self._out
            else:
                out = _run_step(self.rt, e)[: self.batch_size]
        self._written += 1
        return out

    def release(self) -> None:
        """Hand the cache back: it stays cached for the next run of this shape (evicted under pressure)."""
        if self._released:
            return
        self._released = True
        self.entry.in_use = False
        if self.entry.graph is None and self.device.type == "cuda" and self.options.compile != "reduce-overhead":
            # Not captured: nothing to reuse cheaply, so drop the memory now.
            with self.rt.lock:
                self.rt.entries.pop((self.bucket, self.length), None)

    def __del__(self) -> None:  # a run that raised still returns its cache to the pool
        try:
            self.release()
        except Exception:
            pass


def release_all(model: Any) -> None:
    """Free every cached graph and KV cache kept for ``model`` (e.g. on unload)."""
    with _RUNTIMES_LOCK:
        per_model = model.__dict__.pop(_RUNTIMES_ATTR, None)
    if per_model:
        for rt in per_model.values():
            if isinstance(rt, _Runtime):
                rt.entries.clear()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:
        pass


def warmup(model: Any, max_total_len: int = 256, batch_sizes: tuple[int, ...] = (1,),
           options: GraphOptions | None = None) -> float:
    """Compile and capture the buckets of ``batch_sizes`` ahead of the first run; returns seconds spent.

    The first bucket compiles the step (a few seconds; ~1 s with Inductor's on-disk cache); every
    other bucket or length is then a capture of a few tens of milliseconds. Prompts compile once more
    at the first prefill.
    """
    t0 = time.perf_counter()
    for b in batch_sizes:
        StaticGraphBackend(model, b, max_total_len, options).release()
    return time.perf_counter() - t0
