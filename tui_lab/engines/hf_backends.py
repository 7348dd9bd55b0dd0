"""Decode backends: how the transformers engine runs prefill and each decode step.

A backend holds one generation's KV state. The engine builds one per run through
a factory ``(model, batch_size, max_total_len) -> DecodeBackend`` and releases it
afterwards. Inputs are left-padded; a sequence's position ids count only its real
tokens (``cumsum(mask) - 1``), so a prompt gets the same positions alone and in a
padded batch. Finished sequences stay in the batch and keep being computed (the
engine drops their tokens), so the batch shape never changes.

* ``DynamicCacheBackend`` — eager forward with transformers' own cache, grown by
  one position per step. Works for any causal LM (the cache is whatever the
  model returns, e.g. NemotronH's hybrid Mamba/attention cache).
* ``NoCacheBackend`` — no cache at all: every step runs the whole sequence again.
  The naive loop of the KV-cache lesson; its cost grows with the length.
* ``StaticGraphBackend`` (CUDA only, ``tui_lab.engines.hf_graphs``) — static cache + CUDA graphs, for
  Gemma 3, Llama, Qwen 3 and Nemotron-H (its Mamba layers' conv/SSM states are static buffers too).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch


@runtime_checkable
class DecodeBackend(Protocol):
    """One generation's KV state. Built per run by a factory, released after."""

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, L) left-padded ids + mask → logits at the last position, (B, V), on the model's device."""
        ...

    def step(self, next_tokens: torch.Tensor) -> torch.Tensor:
        """(B, 1) ids of the tokens just chosen → next logits (B, V). Keeps mask/positions itself."""
        ...

    def release(self) -> None:
        """Free cache memory."""
        ...


BackendFactory = Callable[[Any, int, int], DecodeBackend]
"""``factory(model, batch_size, max_total_len) -> DecodeBackend``."""


def last_position(length: int, device: torch.device) -> torch.Tensor:
    """``logits_to_keep`` for "only the last position", as an index tensor.

    An index (rather than the int 1) makes the model gather the last hidden state
    into a contiguous tensor; the int's strided slice sends the output projection
    (262k × 640 for Gemma) down a much slower batched-matmul path on CPU.
    """
    import torch

    return torch.tensor([length - 1], device=device)


def position_ids_for(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that count only real tokens: ``cumsum(mask) - 1``, pads clamped to 0."""
    return (attention_mask.long().cumsum(-1) - 1).clamp_(min=0)


class DynamicCacheBackend:
    """Eager decoding with the model's dynamic KV cache (transformers' ``past_key_values``)."""

    def __init__(self, model: Any, batch_size: int, max_total_len: int) -> None:
        import torch

        self.model = model
        self.batch_size = batch_size
        self.max_total_len = max_total_len
        device = next(model.parameters()).device
        # One mask buffer for the whole run; each step passes a longer view of it instead of
        # concatenating a new tensor.
        self._mask = torch.zeros((batch_size, max_total_len), dtype=torch.long, device=device)
        self._len = 0
        self._padded = True
        self._next_pos: torch.Tensor | None = None
        self._cache: Any = None

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Run the prompts, keep their cache, return the last position's logits."""
        length = input_ids.shape[1]
        self._mask[:, :length] = attention_mask
        self._len = length
        # Without padding the mask is all ones for the whole run: passing None lets attention use its
        # causal fast path and skips building (and, on CUDA, checking) a mask every step.
        self._padded = not bool(attention_mask.all())
        positions = position_ids_for(attention_mask)
        out = self.model(
            input_ids=input_ids,
            attention_mask=self._mask[:, :length] if self._padded else None,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=last_position(length, input_ids.device),
        )
        self._cache = out.past_key_values
        self._next_pos = positions[:, -1:] + 1
        return out.logits[:, -1, :]

    def step(self, next_tokens: torch.Tensor) -> torch.Tensor:
        """Feed one token per sequence, return the next logits."""
        self._mask[:, self._len] = 1
        self._len += 1
        assert self._next_pos is not None, "step() before prefill()"
        out = self.model(
            input_ids=next_tokens,
            attention_mask=self._mask[:, : self._len] if self._padded else None,
            position_ids=self._next_pos,
            past_key_values=self._cache,
            use_cache=True,
            logits_to_keep=1,
        )
        self._cache = out.past_key_values
        self._next_pos = self._next_pos + 1
        return out.logits[:, -1, :]

    def release(self) -> None:
        """Drop the cache (its memory goes back to the allocator)."""
        self._cache = None
        self._next_pos = None


class NoCacheBackend:
    """Recompute the whole sequence every step (no KV cache): the naive loop, for the lesson."""

    def __init__(self, model: Any, batch_size: int, max_total_len: int) -> None:
        import torch

        self.model = model
        device = next(model.parameters()).device
        self._ids = torch.zeros((batch_size, max_total_len), dtype=torch.long, device=device)
        self._mask = torch.zeros((batch_size, max_total_len), dtype=torch.long, device=device)
        self._len = 0

    def _forward(self) -> torch.Tensor:
        mask = self._mask[:, : self._len]
        out = self.model(
            input_ids=self._ids[:, : self._len],
            attention_mask=mask,
            position_ids=position_ids_for(mask),
            use_cache=False,
            logits_to_keep=last_position(self._len, mask.device),
        )
        return out.logits[:, -1, :]

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Run the prompts; nothing is kept but the ids."""
        length = input_ids.shape[1]
        self._ids[:, :length] = input_ids
        self._mask[:, :length] = attention_mask
        self._len = length
        return self._forward()

    def step(self, next_tokens: torch.Tensor) -> torch.Tensor:
        """Append the tokens and run everything again."""
        self._ids[:, self._len] = next_tokens[:, 0]
        self._mask[:, self._len] = 1
        self._len += 1
        return self._forward()

    def release(self) -> None:
        """Nothing to free beyond the id buffers, which go with the object."""
        self._len = 0
