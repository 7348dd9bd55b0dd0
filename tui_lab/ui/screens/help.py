"""The ? screen: every key, and what the panels mean."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

from tui_lab.ui.keys import KeyAction
from tui_lab.ui.theme import BATCH_PRESETS, GAP_THRESHOLDS_S, TIMELINE_ROWS_MAX
from tui_lab.ui.widgets.timeline import legend_words


def help_text(keys: list[KeyAction]) -> str:
    """The help page as Markdown, built from the app's bindings."""
    rows = "\n".join(f"| `{k.keys}` | {k.does} |" for k in keys)
    green, yellow = GAP_THRESHOLDS_S[0][0] * 1000, GAP_THRESHOLDS_S[1][0] * 1000
    return f"""\
# inference-lab — keys

| key | action |
|---|---|
{rows}

Every action is also in the command palette (**ctrl+p**).

## The token panel
Each row is one output token. The bar is as long as the time since the previous
token (scaled to the longest gap shown). Colours: green ≤ {green:.0f} ms, yellow ≤
{yellow:.0f} ms, red slower. The **first** token's bar (magenta) is the **TTFT**:
queueing + prefill of the whole prompt, which is why it is usually the longest.

## The timeline
**t** shows it on the Run tab: one row per request over time (more than
{TIMELINE_ROWS_MAX} requests: one row per group, and the header says how many), in
phases: {legend_words()}. Idle is a decode stretch without a token, drawn once
the cells are fine enough (**z** / **Z** zoom, **<** / **>** move, **{{** / **}}** a page
of rows). Under the rows the selected request's phases add up to its E2E.

## Batch size
Quick picks with **b** / **B**: {", ".join(map(str, BATCH_PRESETS))}. With a batch
larger than one, **[** and **]** choose which request is shown and **a** shows
one progress row per request.

## Experiments
A lesson step loads an experiment and its settings; **r** runs it, **s** stops it
(partial results are kept and marked). The line under the step says what **r**
runs and about how long it takes here (timed on this machine's engine; "—" until
it is known). On a CPU a step takes its smaller CPU values. Sweeps fill the
charts point by point; **v** zooms a chart, **-** / **+** move the latency budget line.

## Results
One row per run and sweep point, named by its lesson step (`02.3`) and
experiment. Select a sweep point's row (↑ ↓ in the table) to see each of its
measured runs. Rows and the last sweep chart come back when the lab starts again.

Press **Escape** to close this page.
"""


class HelpScreen(ModalScreen[None]):
    """Keys and explanations."""

    BINDINGS = [
        Binding("escape,q,question_mark", "dismiss", "close"),
        # The page is longer than a small terminal: the keyboard scrolls it (a mouse is not always there).
        Binding("up,k", "scroll_help('up')", "scroll up", show=False),
        Binding("down,j", "scroll_help('down')", "scroll down", show=False),
        Binding("pageup", "scroll_help('page_up')", "page up", show=False),
        Binding("pagedown,space", "scroll_help('page_down')", "page down", show=False),
        Binding("home", "scroll_help('home')", "top", show=False),
        Binding("end", "scroll_help('end')", "bottom", show=False),
    ]

    def __init__(self, keys: list[KeyAction]) -> None:
        super().__init__()
        self._keys = keys

    def compose(self) -> ComposeResult:
        """One scrollable Markdown page."""
        with VerticalScroll(id="help-body"):
            yield Markdown(help_text(self._keys))

    def action_scroll_help(self, how: str) -> None:
        """Scroll the page: up, down, page_up, page_down, home or end."""
        body = self.query_one("#help-body", VerticalScroll)
        getattr(body, f"scroll_{how}")(animate=False)

    async def action_dismiss(self, result: None = None) -> None:
        """Close."""
        self.dismiss(result)
