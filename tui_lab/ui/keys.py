"""The app's keys as people read them: each action once, with its keys and what it does.

Built from the app's ``BINDINGS`` (their ``tooltip`` says what a key does), so the help page and the
command palette never drift from the keys themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from textual.binding import Binding, BindingType

from tui_lab.ui.widgets.timeline import TIMELINE_BINDINGS

LAB_BINDINGS: list[BindingType] = [
    Binding("r", "run", "run", tooltip="Run the loaded experiment with the current settings"),
    Binding("s", "stop", "stop", tooltip="Stop the run within one decode step (partial results are kept)"),
    Binding("n", "step(1)", "next", tooltip="Next lesson step (a step may load an experiment)"),
    Binding("p", "step(-1)", "back", tooltip="Previous lesson step"),
    Binding("N", "lesson(1)", "next lesson", show=False, tooltip="Next lesson"),
    Binding("P", "lesson(-1)", "prev lesson", show=False, tooltip="Previous lesson"),
    Binding("b", "batch(1)", "batch", tooltip="Batch size up to the next quick pick (1, 8, 32, …, 1024)"),
    Binding("B", "batch(-1)", "batch-", show=False, tooltip="Batch size down to the previous quick pick"),
    Binding("g", "toggle_greedy", "greedy", show=False, tooltip="Greedy decoding on / off"),
    Binding("l", "toggle_lesson", "layout", tooltip="Layout: lesson + panel → lesson only → panel only"),
    Binding("1", "tab('run')", "run tab", show=False, tooltip="Run tab: the token stream and live figures"),
    Binding("2", "tab('controls')", "controls", show=False, tooltip="Controls tab: the settings, the engine"),
    Binding("3", "tab('charts')", "charts", show=False, tooltip="Charts tab: sweeps and experiment results"),
    Binding("4", "tab('results')", "results", show=False, tooltip="Results tab: one row per run and point"),
    Binding("5", "tab('gpu')", "gpu", show=False, tooltip="GPU tab: NVML telemetry"),
    Binding("left_square_bracket", "request(-1)", "prev request", show=False, tooltip="Previous request"),
    Binding("right_square_bracket", "request(1)", "next request", show=False, tooltip="Next request"),
    Binding("a", "toggle_requests", "all requests", show=False, tooltip="All requests at once, one row each"),
    *TIMELINE_BINDINGS,
    Binding("v", "chart_view", "zoom chart", show=False, tooltip="Zoom a chart (all charts, or one of them)"),
    Binding("minus", "budget(-1)", "budget-", show=False, key_display="-", tooltip="Lower the latency budget line"),
    Binding("plus,equals_sign", "budget(1)", "budget+", show=False, key_display="+", tooltip="Raise the budget"),
    Binding("i", "guess", "guess", show=False, tooltip="Type your guess (predict, then measure)"),
    Binding("e", "export", "export", tooltip="Export the results (JSON + CSV) and the last experiment's trace"),
    Binding("w", "screenshot", "screenshot", show=False, tooltip="Save a screenshot (SVG)"),
    Binding("m", "reload_engine", "reload", show=False, tooltip="Reload the engine (after changing it)"),
    Binding("up", "scroll_lesson(-1)", show=False, tooltip="Scroll the lesson text"),
    Binding("down", "scroll_lesson(1)", show=False, tooltip="Scroll the lesson text"),
    Binding("pageup", "scroll_lesson(-10)", show=False, tooltip="Scroll the lesson text"),
    Binding("pagedown", "scroll_lesson(10)", show=False, tooltip="Scroll the lesson text"),
    Binding("escape", "focus_panel", "leave box", show=False,
            tooltip="Leave a text box (keys act again; in Controls a changed value is put back first)"),
    Binding("question_mark", "help", "help", tooltip="Help: every key, and what the panels mean"),
    Binding("q", "quit", "quit", tooltip="Quit"),
]
"""Every key of the app: ``description`` is its footer label, ``tooltip`` what it does (help and the palette)."""


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
