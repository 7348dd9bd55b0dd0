"""Lower bounds on step time from hardware limits (the roofline), and KV-cache arithmetic.

Decode is memory-bound: every step reads all weights once plus the KV cache of
every sequence in the batch. Prefill is compute-bound: about 2 FLOPs per
parameter per prompt token.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelShape:
    """What the arithmetic needs to know about a decoder-only model."""

    params: int
    bytes_per_param: float
    layers: int
    kv_heads: int
    head_dim: int
    kv_bytes_per_elem: float = 2.0
    sliding_window: int | None = None
    sliding_layers: int = 0
    """How many of ``layers`` keep only ``sliding_window`` positions (e.g. Gemma 3: 5 of 6)."""

    @property
    def weight_bytes(self) -> float:
        """Bytes read to touch every weight once."""
        return self.params * self.bytes_per_param


def kv_bytes_per_sequence(shape: ModelShape, seq_len: int) -> float:
    """KV-cache bytes held by one sequence of ``seq_len`` tokens (keys and values, all layers)."""
    per_pos_per_layer = 2 * shape.kv_heads * shape.head_dim * shape.kv_bytes_per_elem
    full_layers = shape.layers - shape.sliding_layers
    total = full_layers * seq_len * per_pos_per_layer
    if shape.sliding_layers:
        window = min(seq_len, shape.sliding_window or seq_len)
        total += shape.sliding_layers * window * per_pos_per_layer
    return total


def decode_step_floor_s(shape: ModelShape, seq_lens: list[int], bandwidth_bytes_s: float) -> float:
    """``t_step >= (weight_bytes + Σ kv_bytes) / bandwidth`` for one decode step."""
    kv = sum(kv_bytes_per_sequence(shape, n) for n in seq_lens)
    return (shape.weight_bytes + kv) / bandwidth_bytes_s


def prefill_floor_s(shape: ModelShape, prompt_tokens: int, peak_flops: float) -> float:
    """``t >= 2 · params · prompt_tokens / peak_flops`` for a prefill."""
    return 2.0 * shape.params * prompt_tokens / peak_flops


def max_sequences(shape: ModelShape, seq_len: int, free_bytes: float) -> int:
    """How many sequences of ``seq_len`` tokens fit in ``free_bytes`` of KV cache."""
    per_seq = kv_bytes_per_sequence(shape, seq_len)
    return int(free_bytes // per_seq) if per_seq > 0 else 0
