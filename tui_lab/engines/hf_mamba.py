"""The Mamba-2 mixer in plain torch ops, for the fast decode path of hybrid models (Nemotron-H).

A Mamba-2 layer keeps, per sequence, two fixed-size states instead of a KV cache that grows:

* a **conv window**: the last ``conv_kernel`` inputs of its causal depthwise convolution,
  ``(conv_dim, K)`` with ``conv_dim = d_inner + 2 · groups · state``;
* an **SSM state** ``h``: ``(heads, head_dim, state)`` per sequence, updated each token as
  ``h ← exp(dt·A) · h + dt · B ⊗ x`` and read out as ``y = C · h + D · x``.

``decode_step`` advances both by one token (what a CUDA graph captures); ``prefill`` runs a whole
prompt through the chunked scan (the "state space duality" form: attention-like products inside a
chunk, the recurrence only between chunks) and leaves the final states in the buffers. Both follow
transformers' own PyTorch path op for op (dtypes included), so tokens match its eager decoding.

Left padding: the padded positions' inputs are zeroed before the projection and after the
convolution (as transformers does), so they add nothing to the SSM state, which starts at zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch


@dataclass(frozen=True)
class MambaCfg:
    """Constants of one Mamba-2 mixer (the same for every Mamba layer of a model)."""

    heads: int
    head_dim: int
    groups: int
    state: int
    conv_kernel: int
    chunk: int
    dt_min: float
    """Prefill clamps ``dt`` from below at this (the decode step does not, like transformers)."""
    eps: float
    fit_chunk: bool = False
    """Run the prefill scan in chunks no longer than the prompt needs (``scan_chunk``), not always ``chunk``."""

    @property
    def d_inner(self) -> int:
        return self.heads * self.head_dim

    @property
    def conv_dim(self) -> int:
        return self.d_inner + 2 * self.groups * self.state

    def state_bytes(self, conv_elem: int, ssm_elem: int) -> int:
        """Bytes one sequence keeps in one Mamba layer (conv window + SSM state)."""
        return self.conv_dim * self.conv_kernel * conv_elem + self.heads * self.head_dim * self.state * ssm_elem


def gated_rms_norm(y: torch.Tensor, z: torch.Tensor, w: torch.Tensor, groups: int, eps: float) -> torch.Tensor:
    """``y · silu(z)``, RMS-normalised per group of channels, times ``w`` (the gate comes first)."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    in_dtype = y.dtype
    yf = y.float() * F.silu(z.float())
    g = yf.view(*yf.shape[:-1], groups, yf.shape[-1] // groups)
    g = g * torch.rsqrt(g.pow(2).mean(-1, keepdim=True) + eps)
    return w * g.view(yf.shape).to(in_dtype)


def _split(zxbcdt: torch.Tensor, cfg: MambaCfg) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The input projection's output → gate z, conv input x/B/C, time step dt."""
    return zxbcdt.split([cfg.d_inner, cfg.conv_dim, cfg.heads], dim=-1)


def decode_step(x: torch.Tensor, w: tuple, conv: torch.Tensor, ssm: torch.Tensor, cfg: MambaCfg) -> torch.Tensor:
    """One token through the mixer: ``x`` (B, 1, hidden), already normalised → (B, 1, hidden).

    Updates in place ``conv`` (B, conv_dim, K), the last K inputs, and ``ssm`` (B, heads, head_dim, state).
    ``w`` = (in_proj w, b, conv w (conv_dim, K), conv b, dt_bias, A = -exp(A_log) in float32, D,
    gated-norm w, out_proj w, b).
    """
    import torch
    import torch.nn.functional as F  # noqa: N812

    w_in, b_in, w_conv, b_conv, dt_bias, a, d, w_gn, w_out, b_out = w
    b = x.shape[0]
    dtype = x.dtype
    z, xbc, dt = _split(F.linear(x, w_in, b_in), cfg)
    # Causal depthwise convolution: roll the window by one and take its dot product with the kernel.
    window = torch.cat([conv[:, :, 1:], xbc.transpose(1, 2).to(conv.dtype)], dim=-1)
    conv.copy_(window)
    acc = (window.float() * w_conv.float()).sum(-1)
    if b_conv is not None:
        acc = acc + b_conv.float()
    xbc = F.silu(acc.to(w_conv.dtype)).to(dtype)
    xs, bm, cm = xbc.split([cfg.d_inner, cfg.groups * cfg.state, cfg.groups * cfg.state], dim=-1)
    xs = xs.view(b, cfg.heads, cfg.head_dim)
    per_group = cfg.heads // cfg.groups
    bm = bm.view(b, cfg.groups, 1, cfg.state).expand(b, cfg.groups, per_group, cfg.state).reshape(
        b, cfg.heads, 1, cfg.state)
    cm = cm.view(b, cfg.groups, 1, cfg.state).expand(b, cfg.groups, per_group, cfg.state).reshape(
        b, cfg.heads, 1, cfg.state)
    # Discretise: dt > 0 per head, decay exp(dt·A) in (0, 1), input dt·B ⊗ x.
    dt = F.softplus(dt.view(b, cfg.heads) + dt_bias.to(dt.dtype))[:, :, None, None]
    decay = torch.exp(dt.float() * a.float()[:, None, None])
    dbx = (dt * bm) * xs[..., None]
    h = ssm * decay + dbx
    ssm.copy_(h.to(ssm.dtype))
    # y = C·h as a product and a sum over the state (not a batched matmul): the compiler fuses the update,
    # the write-back and this read-out into one kernel, so the state is read and written once per token.
    # h is rounded to the model dtype first, as transformers does before its matmul.
    y = (h.to(cm.dtype).float() * cm.float()).sum(-1).to(cm.dtype)
    y = (y + xs * d[:, None]).to(y.dtype).to(dtype).view(b, 1, cfg.d_inner)
    y = gated_rms_norm(y, z, w_gn, cfg.groups, cfg.eps)
    return F.linear(y.to(dtype), w_out, b_out)


def prefill(x: torch.Tensor, w: tuple, conv: torch.Tensor, ssm: torch.Tensor, tok_mask: torch.Tensor,
            cfg: MambaCfg) -> torch.Tensor:
    """A left-padded prompt ``x`` (B, S, hidden), already normalised, through the mixer from zero states.

    ``tok_mask`` (B, S) marks real tokens. Leaves the last K conv inputs in ``conv`` and the final SSM
    state in ``ssm`` (both overwritten), returns (B, S, hidden).
    """
    import torch.nn.functional as F  # noqa: N812

    w_in, b_in, w_conv, b_conv, dt_bias, a, d, w_gn, w_out, b_out = w
    b, s, _ = x.shape
    dtype = x.dtype
    keep = tok_mask[:, :, None].to(dtype)
    z, xbc, dt = _split(F.linear(x * keep, w_in, b_in), cfg)
    k = cfg.conv_kernel
    padded = F.pad(xbc.transpose(1, 2), (k - 1, 0))  # zeros stand for the inputs before the prompt
    conv.copy_(padded[:, :, -k:].to(conv.dtype))
    xbc = F.conv1d(padded.to(w_conv.dtype), w_conv[:, None, :], b_conv, groups=cfg.conv_dim)
    xbc = F.silu(xbc).to(dtype).transpose(1, 2) * keep
    xs, bm, cm = xbc.split([cfg.d_inner, cfg.groups * cfg.state, cfg.groups * cfg.state], dim=-1)
    y, final = chunk_scan(xs.reshape(b, s, cfg.heads, cfg.head_dim), dt, a,
                          bm.reshape(b, s, cfg.groups, cfg.state), cm.reshape(b, s, cfg.groups, cfg.state),
                          d, dt_bias, cfg)
    ssm.copy_(final.to(ssm.dtype))
    y = gated_rms_norm(y.reshape(b, s, cfg.d_inner), z, w_gn, cfg.groups, cfg.eps)
    return F.linear(y.to(dtype), w_out, b_out)


def scan_chunk(s: int, cfg: MambaCfg) -> int:
    """The chunk length a scan over ``s`` positions runs in: ``cfg.chunk``, or with ``cfg.fit_chunk`` the
    smallest power of two ≥ ``s`` from 16 up to ``cfg.chunk``. The chunked scan is exact for any chunk
    length; a prompt far shorter than the model's chunk would otherwise be padded to it, and the blocks
    computed inside a chunk grow with its square."""
    if not cfg.fit_chunk:
        return cfg.chunk
    c = min(16, cfg.chunk)
    while c < cfg.chunk and c < s:
        c *= 2
    return min(c, cfg.chunk)


def _segment_sum(x: torch.Tensor) -> torch.Tensor:
    """``out[..., i, j] = x[..., j+1] + … + x[..., i]`` for j ≤ i, −inf above the diagonal (log decays)."""
    import torch

    n = x.shape[-1]
    x = x[..., None].expand(*x.shape, n)
    below = torch.tril(torch.ones(n, n, device=x.device, dtype=torch.bool), diagonal=-1)
    x = x.masked_fill(~below, 0)
    out = torch.cumsum(x, dim=-2)
    on_or_below = torch.tril(torch.ones(n, n, device=x.device, dtype=torch.bool), diagonal=0)
    return out.masked_fill(~on_or_below, -torch.inf)


def chunk_scan(xs: torch.Tensor, dt: torch.Tensor, a: torch.Tensor, bm: torch.Tensor, cm: torch.Tensor,
               d: torch.Tensor, dt_bias: torch.Tensor, cfg: MambaCfg) -> tuple[torch.Tensor, torch.Tensor]:
    """The SSM over a whole sequence from a zero state, in chunks of ``cfg.chunk`` (float32 throughout).

    ``xs`` (B, S, H, P), ``dt`` (B, S, H) before softplus, ``bm``/``cm`` (B, S, G, N) →
    outputs (B, S, H, P) and the final state (B, H, P, N). Inside a chunk the outputs are an
    attention-like product ``(C·Bᵀ ∘ decay) · x``; across chunks only the states are carried.
    """
    import torch
    import torch.nn.functional as F  # noqa: N812

    b, s, h, p = xs.shape
    per_group = h // cfg.groups
    dt = F.softplus(dt + dt_bias.to(dt.dtype)).clamp(min=cfg.dt_min)
    xs = xs.float()
    # Head i reads group i // per_group (an expand, not repeat_interleave: no size to read back from the GPU).
    bm = bm.float()[:, :, :, None].expand(b, s, cfg.groups, per_group, bm.shape[-1]).reshape(b, s, h, -1)
    cm = cm.float()[:, :, :, None].expand(b, s, cfg.groups, per_group, cm.shape[-1]).reshape(b, s, h, -1)
    c = scan_chunk(s, cfg)
    pad = (c - s % c) % c
    skip = d[..., None] * F.pad(xs, (0, 0, 0, 0, 0, pad))
    xs = xs * dt[..., None].float()
    a_dt = a.to(xs.dtype) * dt.float()

    def chunks(t: torch.Tensor) -> torch.Tensor:
        t = F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad))
        return t.reshape(t.shape[0], -1, c, *t.shape[2:])

    xs, a_dt, bm, cm = chunks(xs), chunks(a_dt), chunks(bm), chunks(cm)
    a_dt = a_dt.permute(0, 3, 1, 2)  # (B, H, chunks, c)
    a_cum = torch.cumsum(a_dt, dim=-1)
    # 1. Within each chunk: attention-like scores C·B, weighted by the decay between the two positions.
    decay_in = torch.exp(_segment_sum(a_dt))
    scores = torch.einsum("bclhn,bcshn->bclsh", cm, bm)
    y_diag = torch.einsum("bclsh,bcshp->bclhp", scores * decay_in.permute(0, 2, 3, 4, 1), xs)
    # 2. Each chunk's contribution to the state at its end.
    decay_to_end = torch.exp(a_cum[:, :, :, -1:] - a_cum)
    states = torch.einsum("bclhn,bclhp->bchpn", bm * decay_to_end.permute(0, 2, 3, 1)[..., None], xs)
    if xs.shape[1] == 1:
        # One chunk (every prompt up to the chunk length, with ``fit_chunk`` every prompt up to the model's
        # chunk): from a zero state its end state is the final state and nothing is read from before it.
        # Steps 3 and 4 would add exact zeros, through a batched product with two terms and a copy of all
        # states (a float32 state of 5 MiB per sequence and layer for Nemotron Nano 9B v2).
        return (y_diag.reshape(b, -1, h, p) + skip)[:, :s], states[:, 0]
    # 3. The recurrence between chunks (from a zero state): each chunk's starting state.
    states = torch.cat([torch.zeros_like(states[:, :1]), states], dim=1)
    decay_chunks = torch.exp(_segment_sum(F.pad(a_cum[:, :, :, -1], (1, 0)))).transpose(1, 3)
    new_states = torch.einsum("bzch,bzhpn->bchpn", decay_chunks, states)
    states, final = new_states[:, :-1], new_states[:, -1]
    # 4. What each position reads from its chunk's starting state.
    y_off = torch.einsum("bclhn,bchpn->bclhp", cm, states) * torch.exp(a_cum).permute(0, 2, 3, 1)[..., None]
    y = (y_diag + y_off).reshape(b, -1, h, p) + skip
    return y[:, :s], final
