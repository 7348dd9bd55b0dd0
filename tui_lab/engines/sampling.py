"""Choosing the next token from logits: greedy, or penalty → temperature → top-k → top-p → draw.

Shared by the transformers engine's backends on CPU and CUDA. On a GPU everything
stays on the device: no ``.item()``, no host syncs, so the only sync per step is
the engine's copy of the chosen ids to the host.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from tui_lab.engines.base import SamplingParams

if TYPE_CHECKING:
    import torch


def make_generator(sampling: SamplingParams, device: torch.device | str) -> torch.Generator | None:
    """A generator seeded from ``sampling.seed`` on ``device`` (None for greedy decoding).

    ``seed=None`` draws a fresh seed, so such runs are not reproducible by design.
    """
    import torch

    if sampling.greedy:
        return None
    gen = torch.Generator(device=device)
    gen.manual_seed(sampling.seed if sampling.seed is not None else random.getrandbits(63))
    return gen


def apply_repetition_penalty(logits: torch.Tensor, prev_tokens: torch.Tensor, penalty: float) -> torch.Tensor:
    """Make every token already in ``prev_tokens`` (B, T) less likely: positive logits / penalty, negative × penalty.

    The CTRL-paper rule, as in transformers and vLLM; ``penalty`` 1 is a no-op,
    below 1 it rewards repetition. Returns a new tensor.
    """
    import torch

    seen = torch.gather(logits, 1, prev_tokens)
    seen = torch.where(seen < 0, seen * penalty, seen / penalty)
    return logits.scatter(1, prev_tokens, seen)


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest logits of each row (ties at the k-th value kept too); others → -inf."""
    import torch

    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[:, -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probabilities sum to at least ``p``; others → -inf.

    The most likely token is always kept, so ``p`` close to 0 acts like greedy.
    """
    import torch

    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    # Mass strictly before each token: a token is dropped once the ones above it already reach p.
    before = torch.cumsum(probs, dim=-1) - probs
    drop_sorted = before >= p
    drop_sorted[:, 0] = False
    drop = torch.zeros_like(drop_sorted).scatter(1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


# On CPU, top-p first looks at this many of the most likely tokens: sorting 262k logits costs
# more than a decode step there, and the kept set is almost always far smaller.
_TOP_P_CANDIDATES = 4096


def _draw(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One index per row with probability proportional to ``probs`` (B, N), zeros never drawn.

    ``argmax(p / E)`` with E ~ Exponential(1) is an exact draw from ``p``; unlike
    ``torch.multinomial`` it is a single pass over the row (much faster on CPU for a 262k vocabulary).
    """
    import torch

    noise = torch.empty_like(probs).exponential_(1.0, generator=generator)
    return torch.argmax(probs / noise, dim=-1)


def _top_p_from_candidates(logits: torch.Tensor, p: float,
                           generator: torch.Generator | None) -> torch.Tensor | None:
    """Top-p draw using only the most likely candidates, or None when they hold less than ``p`` of the mass."""
    import torch

    probs = torch.softmax(logits, dim=-1)
    top, index = torch.topk(probs, min(_TOP_P_CANDIDATES, probs.shape[-1]), dim=-1)
    before = torch.cumsum(top, dim=-1) - top
    if not bool((before[:, -1] + top[:, -1] >= p).all()):  # a host check: fine on CPU, where this runs
        return None
    top = top.masked_fill(before >= p, 0.0)
    return index.gather(1, _draw(top, generator).unsqueeze(1)).squeeze(1)


def sample_next(
    logits: torch.Tensor,
    sampling: SamplingParams,
    generator: torch.Generator | None,
    prev_tokens: torch.Tensor | None = None,
) -> torch.Tensor:
    """The next token id of each row of ``logits`` (B, V) → (B,) int64, on the logits' device.

    Greedy (argmax) when ``sampling.temperature == 0`` — the repetition penalty
    still applies then, as in transformers. ``prev_tokens`` (B, T) are the ids the
    penalty looks at (prompt and output so far). Top-k comes before top-p, and
    top-p then works on the distribution renormalised over the k survivors.
    """
    import torch

    if sampling.repetition_penalty != 1.0 and prev_tokens is not None and prev_tokens.numel():
        logits = apply_repetition_penalty(logits, prev_tokens, sampling.repetition_penalty)
    if sampling.greedy:
        return torch.argmax(logits, dim=-1)
    logits = logits.float() / sampling.temperature
    if sampling.top_k > 0 and sampling.top_k < logits.shape[-1]:
        # Restrict to the k candidates first: top-p then sorts k values, not the whole vocabulary.
        values, index = torch.topk(logits, sampling.top_k, dim=-1)
        values = top_p_filter(values, sampling.top_p)
        choice = _draw(torch.softmax(values, dim=-1), generator)
        return index.gather(1, choice.unsqueeze(1)).squeeze(1)
    if sampling.top_p < 1.0:
        if logits.device.type == "cpu":
            drawn = _top_p_from_candidates(logits, sampling.top_p, generator)
            if drawn is not None:
                return drawn
        logits = top_p_filter(logits, sampling.top_p)
    return _draw(torch.softmax(logits, dim=-1), generator)
