"""A fixed, seeded prompt schedule for runs and sweeps.

Benchmarks need prompts that are the same from one run of the lab to the next
(so numbers compare) yet varied (so a batch is not one prompt copied N times,
and a serving engine's prefix cache does not turn every request into a hit).
The prompts are built from a task template and a subject, both written for this
project; a seeded shuffle of all combinations fixes the order.

``prompt_schedule(n, seed)`` is a prefix of ``prompt_schedule(m, seed)`` for
``n < m``: a batch of 8 uses the first 8 prompts of the batch of 32, so the only
thing that changes along a batch-size sweep is how many requests run together.

``input_prompts(lengths, tokenizer, seed)`` builds prompts of an exact number of
tokens for a tokenizer (load modes with ``input_lens``), cut from the same text.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from tui_lab.errors import InvalidInput

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

# ------------------------------------------------------------------------------- prompts of a given length

COMMON_WORDS: tuple[str, ...] = tuple(
    "the a of and to in is it that for on with as was at by be this from or but not are have one all were they "
    "we when your can said there use each which she do how their if will up other about out many then them these "
    "so some her would make like him into time has look two more write go see number no way could people my than "
    "first water been call who its now find long down day did get come made may part".split()
)
"""Short English words that are one token each in common vocabularies (Gemma's, with or without a leading
space; Llama's and GPT's byte-level BPE alike): the text of approximate prompts."""

APPROXIMATE_NOTE = (
    "input lengths are approximate: this engine has no local tokenizer (a remote server), so a prompt of N "
    "tokens is a BOS plus N - 1 common one-token English words (exact for Gemma and Llama vocabularies); "
    "the server's own count is each request's prompt_tokens"
)
EXACT_NOTE = "input lengths are exact: counted with the loaded engine's tokenizer, special tokens included"


APPROXIMATE_SPECIAL_TOKENS = 1
"""The BOS a server adds before an approximate prompt's words."""


def prompt_of_tokens(n: int, tokenizer: Any, source: str) -> str:
    """The start of ``source`` that ``tokenizer`` encodes to exactly ``n`` tokens, its special tokens included.

    ``tokenizer`` needs ``encode(text) -> ids`` (adding the special tokens the engine adds, e.g. BOS) and
    ``decode(ids) -> text``. The text's own tokens are cut after ``n`` minus the special ones and decoded;
    when decoding and encoding again does not give back exactly ``n`` (a cut inside a word that merges
    differently), the cut moves a token at a time, then a character at a time.
    """
    special = len(tokenizer.encode(""))
    need = n - special
    if need < 1:
        raise InvalidInput(f"an input length of {n} tokens leaves no room for text: the tokenizer adds "
                           f"{special} special token(s) to every prompt; give at least {special + 1}")
    full = list(tokenizer.encode(source))
    body = full[special:] if full[:special] == list(tokenizer.encode("")) else full
    if len(body) < need + 2:
        raise InvalidInput(f"the prompt text is too short for {n} tokens")

    def count(text: str) -> int:
        return len(tokenizer.encode(text))

    for step in range(0, 9):
        for k in ((need,) if step == 0 else (need - step, need + step)):
            if 1 <= k <= len(body):
                text = tokenizer.decode(body[:k]).strip()
                if count(text) == n:
                    return text
    # Character by character: the shortest start of the text that reaches n tokens, then a few either side.
    text = tokenizer.decode(body[:need + 8]).strip()
    lo, hi = 1, len(text)
    while lo < hi:
        mid = (lo + hi) // 2
        if count(text[:mid]) < n:
            lo = mid + 1
        else:
            hi = mid
    for end in range(lo, min(len(text), lo + 8) + 1):
        candidate = text[:end].rstrip()
        if candidate and count(candidate) == n:
            return candidate
    raise InvalidInput(f"no prompt of exactly {n} tokens could be cut from the lab's text with this tokenizer",
                       hint="pick a neighbouring length")


def input_prompts(lengths: Sequence[int], tokenizer: Any | None, seed: int = 0) -> tuple[list[str], str]:
    """One prompt per length (seeded, no two alike from the first words), and the note saying how exact.

    With the engine's tokenizer each prompt encodes to exactly its length (``prompt_of_tokens``), cut
    from the lab's prompt schedule shuffled by ``seed`` and its index, so every request starts differently
    (a prefix cache sees only the BOS in common). Without one (a remote server): length - 1 seeded common
    words after the BOS the server adds (``APPROXIMATE_NOTE``).
    """
    prompts: list[str] = []
    if tokenizer is None:
        for i, n in enumerate(lengths):
            words = n - APPROXIMATE_SPECIAL_TOKENS
            if words < 1:
                raise InvalidInput(f"an input length of {n} tokens leaves no room for text after the BOS; "
                                   f"give at least {APPROXIMATE_SPECIAL_TOKENS + 1}")
            rng = random.Random(f"input-{seed}-{i}")
            prompts.append(" ".join(rng.choice(COMMON_WORDS) for _ in range(words)))
        return prompts, APPROXIMATE_NOTE
    for i, n in enumerate(lengths):
        # About 10 tokens per schedule prompt: start with enough for n and double until the text is long enough.
        count = n // 6 + 4
        source = " ".join(prompt_schedule(count, seed * 100_003 + i))
        while len(tokenizer.encode(source)) < n + 10:
            count *= 2
            source = " ".join(prompt_schedule(count, seed * 100_003 + i))
        prompts.append(prompt_of_tokens(n, tokenizer, source))
    return prompts, EXACT_NOTE
