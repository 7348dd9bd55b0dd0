"""Sampling on hand-made logits: greedy, filters, penalty, seeded reproducibility."""

from __future__ import annotations

import math

import pytest
import torch

from tui_lab.engines.base import SamplingParams
from tui_lab.engines.sampling import apply_repetition_penalty, make_generator, sample_next, top_k_filter, top_p_filter

NEG = float("-inf")


def test_greedy_is_argmax_and_needs_no_generator() -> None:
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 2.9]])
    sp = SamplingParams(temperature=0.0)
    assert make_generator(sp, "cpu") is None
    assert sample_next(logits, sp, None).tolist() == [1, 0]


def test_top_k_keeps_the_k_largest() -> None:
    logits = torch.tensor([[1.0, 5.0, 3.0, 4.0, 2.0]])
    out = top_k_filter(logits, 2)
    assert out.tolist() == [[NEG, 5.0, NEG, 4.0, NEG]]
    assert torch.equal(top_k_filter(logits, 0), logits)


def test_top_p_keeps_smallest_set_reaching_p() -> None:
    # probabilities 0.5, 0.3, 0.15, 0.05 (in that order of likelihood)
    probs = torch.tensor([[0.15, 0.5, 0.05, 0.3]])
    logits = probs.log()
    kept = top_p_filter(logits, 0.75)
    assert [math.isinf(v) for v in kept[0].tolist()] == [True, False, True, False]
    kept = top_p_filter(logits, 0.85)
    assert [math.isinf(v) for v in kept[0].tolist()] == [False, False, True, False]
    # p tiny: the most likely token always survives
    kept = top_p_filter(logits, 1e-6)
    assert [math.isinf(v) for v in kept[0].tolist()] == [True, False, True, True]


def test_repetition_penalty_divides_positive_multiplies_negative() -> None:
    logits = torch.tensor([[2.0, -2.0, 1.0]])
    prev = torch.tensor([[0, 1, 0]])  # repeats count once
    out = apply_repetition_penalty(logits, prev, 2.0)
    assert out.tolist() == [[1.0, -4.0, 1.0]]
    assert logits.tolist() == [[2.0, -2.0, 1.0]]  # input untouched


def test_repetition_penalty_changes_greedy_choice() -> None:
    logits = torch.tensor([[2.0, 1.5]])
    sp = SamplingParams(temperature=0.0, repetition_penalty=2.0)
    assert sample_next(logits, sp, None, torch.tensor([[0]])).tolist() == [1]


def test_seeded_sampling_is_reproducible_and_seed_matters() -> None:
    logits = torch.randn(4, 1000, generator=torch.Generator().manual_seed(1))
    sp = SamplingParams(temperature=1.0, seed=123)

    def draw(seed: int) -> list[int]:
        gen = make_generator(sp.with_(seed=seed), "cpu")
        return [v for _ in range(20) for v in sample_next(logits, sp, gen).tolist()]

    assert draw(123) == draw(123)
    assert draw(123) != draw(124)


@pytest.mark.parametrize("top_k, top_p, expected", [(3, 1.0, {0, 1, 2}), (0, 0.5, {0, 1, 2}), (5, 0.6, {0, 1, 2})])
def test_sampling_only_draws_allowed_tokens(top_k: int, top_p: float, expected: set[int]) -> None:
    # probabilities fall by a factor e^-0.2 per token: 0.227, 0.186, 0.152, 0.125, ... (8 tokens)
    # top-p 0.5 keeps 3 (mass before the 4th is 0.565); top-k 5 renormalises to 0.287, 0.235, 0.192, ...
    # so top-p 0.6 then keeps 3 (mass before the 4th is 0.714).
    logits = torch.arange(8, dtype=torch.float32).mul(-0.2).repeat(400, 1)
    sp = SamplingParams(temperature=1.0, top_k=top_k, top_p=top_p, seed=0)
    seen = set(sample_next(logits, sp, make_generator(sp, "cpu")).tolist())
    assert seen == expected


def test_low_temperature_approaches_greedy() -> None:
    logits = torch.tensor([[1.0, 1.2, 0.9]]).repeat(200, 1)
    sp = SamplingParams(temperature=0.01, seed=3)
    assert set(sample_next(logits, sp, make_generator(sp, "cpu")).tolist()) == {1}
