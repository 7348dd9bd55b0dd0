"""The work an experiment plans for its parameters, in the shapes an engine's pace can price.

``Experiment.planned_work`` describes a run before it starts as a list of ``PlannedRun``s: so many
generations of a batch of this size, this many new tokens after a prompt of about this many tokens, and
the engine loads a comparison's variants need. ``tui_lab.lab.pace`` turns such a list into seconds on the
loaded engine. Pure: nothing here runs anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

RunsOn = Literal["loaded", "cpu", "gpu"]
"""Where a planned run happens: on the loaded engine's device, or on the CPU or a GPU whatever is loaded
(a comparison's variant; a GPU variant does not run where there is no GPU)."""

CHARS_PER_TOKEN = 4
"""About how many characters of English text make one token (the estimate needs no tokenizer)."""


@dataclass(frozen=True)
class PlannedRun:
    """``repeats`` generations of ``batch_size`` requests, each ``new_tokens`` after ``prompt_tokens``.

    ``loads`` engines are loaded first (a comparison's variants). ``recompute`` marks the naive loop that
    keeps no KV cache: each of its steps runs the whole sequence again, as a prefill does. ``at_least_s`` is
    how long the runs take whatever the engine's pace (an open loop's arrivals span ``requests / rate``).
    """

    batch_size: int
    new_tokens: int
    prompt_tokens: int
    repeats: int = 1
    loads: int = 0
    recompute: bool = False
    runs_on: RunsOn = "loaded"
    at_least_s: float = 0.0


def reload(runs_on: RunsOn = "loaded") -> PlannedRun:
    """The lab's engine loaded again: a vLLM variant beside a loaded vLLM takes its place while it runs."""
    return PlannedRun(1, 0, 0, repeats=0, loads=1, runs_on=runs_on)


def prompt_tokens(prompts: Sequence[str]) -> int:
    """About how many tokens the longest of ``prompts`` takes (one per ``CHARS_PER_TOKEN`` characters and a BOS).

    A static batch is padded to its longest prompt, so that is the length every request's prefill pays.
    """
    longest = max((len(p) for p in prompts), default=0)
    return 1 + max(1, round(longest / CHARS_PER_TOKEN))
