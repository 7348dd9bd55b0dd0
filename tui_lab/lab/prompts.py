"""A fixed, seeded prompt schedule for runs and sweeps.

Benchmarks need prompts that are the same from one run of the lab to the next
(so numbers compare) yet varied (so a batch is not one prompt copied N times,
and a serving engine's prefix cache does not turn every request into a hit).
The prompts are built from a task template and a subject, both written for this
project; a seeded shuffle of all combinations fixes the order.

``prompt_schedule(n, seed)`` is a prefix of ``prompt_schedule(m, seed)`` for
``n < m``: a batch of 8 uses the first 8 prompts of the batch of 32, so the only
thing that changes along a batch-size sweep is how many requests run together.
"""

from __future__ import annotations

import random

TEMPLATES: tuple[str, ...] = (
    "Explain to a curious teenager how {s} works.",
    "Write a short story that begins with {s}.",
    "List three surprising facts about {s}.",
    "What would change in daily life without {s}?",
    "Describe {s} in the style of a travel guide.",
    "Give a step-by-step plan for learning about {s}.",
    "Summarize the history of {s} in a few sentences.",
    "Write a friendly letter to a neighbour about {s}.",
    "What are the common misconceptions about {s}?",
    "Compare {s} with something most people already know.",
    "Draft a product announcement that mentions {s}.",
    "Ask and answer five quiz questions about {s}.",
)

SUBJECTS: tuple[str, ...] = (
    "the water cycle", "a lighthouse keeper", "public libraries", "bread baking", "migrating birds",
    "electric bicycles", "the night sky", "a small mountain village", "coral reefs", "the printing press",
    "volcanoes", "a jazz quartet", "recycling plastic", "the human heart", "old railway stations",
    "honeybees", "solar panels", "chess openings", "a rainy harbour town", "paper money",
    "glaciers", "street markets", "the violin", "weather forecasts", "deep sea creatures",
    "a forgotten diary", "compound interest", "wind turbines", "origami", "the first telescope",
    "tea ceremonies", "city parks", "sourdough starters", "northern lights", "an abandoned observatory",
    "spices of the world", "the postal service", "rock climbing", "memory and sleep", "a robot gardener",
)

_ALL: tuple[str, ...] = tuple(t.format(s=s) for t in TEMPLATES for s in SUBJECTS)
"""Every template × subject combination (480 distinct prompts)."""


def all_prompts() -> tuple[str, ...]:
    """Every prompt the schedule can draw from, in a fixed (unshuffled) order."""
    return _ALL


def prompt_schedule(n: int, seed: int = 0) -> list[str]:
    """``n`` prompts in a deterministic, seeded order.

    The first ``len(all_prompts())`` prompts are distinct; beyond that the list
    continues with a fresh seeded shuffle (so very large schedules repeat
    prompts, but never back to back in the same order).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < n:
        block = list(_ALL)
        rng.shuffle(block)
        out.extend(block[: n - len(out)])
    return out


def batch_prompts(given: list[str], batch_size: int, seed: int = 0) -> list[str]:
    """A batch of ``batch_size`` prompts: the ``given`` ones first, then the seeded schedule (a real batch varies)."""
    if batch_size <= len(given):
        return list(given[:batch_size])
    return [*given, *prompt_schedule(batch_size - len(given), seed)]


def varied_prompts(n: int, seed: int = 0) -> list[str]:
    """``n`` different prompts from the seeded schedule (no prefix-cache flattery)."""
    return prompt_schedule(n, seed)
