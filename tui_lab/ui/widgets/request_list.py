"""All requests of a batch at a glance: one progress row per request."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from tui_lab.formatting import rate, seconds
from tui_lab.views.style import ERROR_STYLE, OK_STYLE, PARTIAL_STYLE

Row = tuple[str, int, int, str | None, float | None, float | None]


def progress_cells(done: int, total: int, width: int) -> str:
    """A text progress bar of ``width`` cells."""
    if total <= 0:
        return " " * width
    filled = min(width, round(width * done / total))
    return "━" * filled + "╌" * (width - filled)


def render_rows(rows: list[Row], selected: int, bar_width: int = 12) -> Table:
    """One row per request: marker, id, bar, count, TTFT, tokens/s, state."""
    table = Table.grid(padding=(0, 1))
    for _ in range(7):
        table.add_column(no_wrap=True)
    table.add_row(*(Text(h, "dim") for h in ("", "id", "progress", "tokens", "TTFT", "speed", "state")))
    for i, (rid, done, total, reason, ttft, speed) in enumerate(rows):
        style = {"cancelled": PARTIAL_STYLE, "error": ERROR_STYLE}.get(reason or "", OK_STYLE if reason else "")
        table.add_row(
            "▶" if i == selected else " ",
            Text(rid, "bold" if i == selected else ""),
            Text(progress_cells(done, total, bar_width), style or "cyan"),
            f"{done}/{total}",
            seconds(ttft),
            rate(speed),
            Text(reason or "running", style or "dim"),
        )
    return table


class RequestList(Static):
    """Compact view of every request in the run (toggle with a; choose with [ and ])."""

    def show(self, rows: list[Row], selected: int) -> None:
        """Redraw with ``rows`` and the selected request marked."""
        if not rows:
            self.update(Text("No requests yet.", style="dim"))
            return
        self.update(render_rows(rows, selected))
