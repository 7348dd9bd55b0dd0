"""Parameters: the ``Param`` type and the value checks every layer shares (pure: no torch, no Textual).

Experiments declare their parameters with these checks and limits, and engines may declare their
options with them, so the CLI, the Controls form and lesson presets refuse the same bad values with
the same one-line message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tui_lab.errors import InvalidInput

MAX_NEW_TOKENS = 32768
"""A sanity cap on new tokens per request; the model's own context is checked when a run starts."""
MAX_REQUESTS = 1024
"""Most requests (batch size, serving request count, max_num_seqs): the engines' ``MAX_BATCH_SIZE``."""
MAX_RUNS = 100
MAX_WARMUP = 20

Check = Callable[[str, Any], Any]


@dataclass(frozen=True)
class Param:
    """One parameter: its name, check, default, help text and limits (for forms and flags)."""

    name: str
    check: Check
    default: Any = None
    help: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None

    def __call__(self, value: Any) -> Any:
        """The checked, normalised value (``InvalidInput`` with a one-line message otherwise)."""
        return self.check(self.name, value)


def whole(name: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    """A whole number within [lo, hi] (either bound optional); strings like "8" are accepted."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidInput(f"{name} must be a whole number (got {value!r})")
    try:
        x = float(value)
    except ValueError:
        raise InvalidInput(f"{name} must be a whole number (got {value!r})") from None
    if x != int(x):
        raise InvalidInput(f"{name} must be a whole number (got {value!r})")
    n = int(x)
    if lo is not None and hi is not None and not lo <= n <= hi:
        raise InvalidInput(f"{name} must be from {lo} to {hi} (got {n})")
    if lo is not None and n < lo:
        raise InvalidInput(f"{name} must be at least {lo} (got {n})")
    if hi is not None and n > hi:
        raise InvalidInput(f"{name} must be at most {hi} (got {n})")
    return n


def number(name: str, value: Any) -> float:
    """A finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidInput(f"{name} must be a number (got {value!r})")
    try:
        x = float(value)
    except ValueError:
        raise InvalidInput(f"{name} must be a number (got {value!r})") from None
    if x != x or x in (float("inf"), float("-inf")):
        raise InvalidInput(f"{name} must be a finite number (got {value!r})")
    return x


def listed(name: str, value: Any, item: Callable[[str, Any], Any], max_items: int = 64) -> list:
    """A non-empty list (or "a,b,c") of at most ``max_items`` values, each checked by ``item``."""
    if isinstance(value, str):
        value = [v for v in value.replace(" ", "").split(",") if v]
    if not isinstance(value, (list, tuple)) or not value:
        raise InvalidInput(f"{name} must be a non-empty list (got {value!r})")
    if len(value) > max_items:
        raise InvalidInput(f"{name} may hold at most {max_items} values (got {len(value)})")
    return [item(name, v) for v in value]


