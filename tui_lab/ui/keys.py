"""The app's keys as people read them: each action once, with its keys and what it does.

Built from the app's ``BINDINGS`` (their ``tooltip`` says what a key does), so the help page and the
command palette never drift from the keys themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from textual.binding import Binding, BindingType


@dataclass(frozen=True)
class KeyAction:
    """What one or more keys do: the keys as shown, what it does, and the action the first key runs."""

    keys: str
    does: str
    action: str


def key_actions(bindings: Iterable[BindingType], display: Callable[[Binding], str]) -> list[KeyAction]:
    """One entry per distinct ``tooltip``, in the bindings' order; keys of the same tooltip shown together."""
    keys: dict[str, list[str]] = {}
    action: dict[str, str] = {}
    for binding in bindings:
        if isinstance(binding, Binding) and binding.tooltip:
            keys.setdefault(binding.tooltip, []).append(display(binding))
            action.setdefault(binding.tooltip, binding.action)
    return [KeyAction(" ".join(shown), does, action[does]) for does, shown in keys.items()]
