"""Command palette entries for every lab action."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

LAB_COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("Run", "run the loaded experiment with the current settings", "run"),
    ("Stop", "stop the run in progress (partial results are kept)", "stop"),
    ("Next step", "show the next lesson step", "next_step"),
    ("Previous step", "show the previous lesson step", "prev_step"),
    ("Next lesson", "jump to the next lesson", "next_lesson"),
    ("Previous lesson", "jump to the previous lesson", "prev_lesson"),
    ("Batch size up", "next batch-size quick pick (1, 8, 32, ..., 1024)", "batch_up"),
    ("Batch size down", "previous batch-size quick pick", "batch_down"),
    ("Toggle greedy", "switch between greedy decoding and sampling", "toggle_greedy"),
    ("Export results", "write results as JSON and CSV", "export"),
    ("Save screenshot", "save an SVG screenshot of the screen", "screenshot"),
    ("Reload engine", "reload the model with the current model/engine/device", "reload_engine"),
    ("Show run panel", "the token stream and live figures", "tab('run')"),
    ("Show controls", "batch size, sampling, model, engine, device", "tab('controls')"),
    ("Show charts", "sweep charts", "tab('charts')"),
    ("Show results", "the results table", "tab('results')"),
    ("Show GPU", "GPU telemetry", "tab('gpu')"),
    ("Toggle all requests", "one progress row per request", "toggle_requests"),
    ("Next request", "show the next request's tokens", "request(1)"),
    ("Previous request", "show the previous request's tokens", "request(-1)"),
    ("Change layout", "lesson + panel → lesson only → panel only", "toggle_lesson"),
    ("Zoom chart", "cycle: all charts or one of them", "chart_view"),
    ("Raise latency budget", "move the budget line right", "budget(1)"),
    ("Lower latency budget", "move the budget line left", "budget(-1)"),
    ("Type a guess", "predict, then measure: put the cursor in the guess box", "guess"),
    ("Help", "keys and what the panels mean", "help"),
)
"""(title, help, action) for the palette; actions are the app's ``action_*`` methods."""


class LabCommands(Provider):
    """Every lab action, searchable by name."""

    async def discover(self) -> Hits:
        """All commands, shown when the palette opens."""
        for title, help_text, action in LAB_COMMANDS:
            yield DiscoveryHit(title, partial(self.app.run_action, action), help=help_text)

    async def search(self, query: str) -> Hits:
        """Commands whose title matches ``query``."""
        matcher = self.matcher(query)
        for title, help_text, action in LAB_COMMANDS:
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), partial(self.app.run_action, action), help=help_text)
