"""The Results tab: one row per run and sweep point, updated in place, and the selected row's measured runs.

Each row names its lesson step (``02.3``) and experiment, so several "batch 1" rows are told apart. Selecting
a sweep point's row lists its measured runs under the table (tokens/s, TTFT, E2E, TPOT of each), so a first
run slower than the others shows.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from tui_lab.formatting import MISSING, rate, ratio, seconds
from tui_lab.ui.results import ResultsStore, Row
from tui_lab.views.style import NOTE_STYLE, PARTIAL_STYLE

COLUMNS = ("step", "experiment", "label", "batch", "tok/s", "TTFT p50", "TTFT p90", "E2E p50", "E2E p90",
           "TPOT p50", "TPOT p90", "n", "state")
SLOW_FIRST_RUN = 1.1
"""A first run taking this many times the others' median E2E (or more) is pointed out."""


def short_step(row: Row) -> str:
    """The step's number in the table ("02.3"; "—" for a run that answered no step)."""
    step = str(row.get("step") or "")
    return step.split(" ", 1)[0] if step else MISSING


def _number(row: Row, name: str) -> float | None:
    """A figure of ``row`` (None when it was not measured)."""
    value = row.get(name)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def row_detail(row: Row) -> RenderableType:
    """What the selected row is (step, experiment, when) and, for a sweep point, each of its measured runs."""
    head = Text()
    head.append(str(row.get("step") or "no lesson step"), "bold")
    head.append(f" · {row.get('experiment') or row.get('kind') or ''} · {row.get('label', '')}")
    if row.get("time"):
        head.append(f" · {str(row['time']).split('.')[0]}", NOTE_STYLE)
    raw = row.get("runs")
    runs = [r for r in raw if isinstance(r, dict)] if isinstance(raw, list) else []
    if not runs:
        return head
    table = Table(box=None, padding=(0, 2, 0, 0), header_style="bold")
    for name in ("run", "tok/s", "TTFT p50", "E2E p50", "TPOT p50", "wall"):
        table.add_column(name, justify="right", no_wrap=True)
    for r in runs:
        cells = [str(r.get("run", "")), rate(_number(r, "output_tokens_per_s")), seconds(_number(r, "ttft_p50")),
                 seconds(_number(r, "e2e_p50")), seconds(_number(r, "tpot_p50")), seconds(_number(r, "wall_s"))]
        table.add_row(*cells, style=PARTIAL_STYLE if r.get("partial") else "")
    parts: list[RenderableType] = [head, Text(f"{len(runs)} measured runs of this point (warm-up runs are not kept):",
                                              NOTE_STYLE), table]
    first, others = _number(runs[0], "e2e_p50"), sorted(v for r in runs[1:] if (v := _number(r, "e2e_p50")))
    if first and others:
        median = others[len(others) // 2] if len(others) % 2 else (others[len(others) // 2 - 1] +
                                                                    others[len(others) // 2]) / 2
        if median and first / median >= SLOW_FIRST_RUN:
            parts.append(Text(f"run 1 took {ratio(first / median)} the others' median E2E: it paid one-time work",
                              PARTIAL_STYLE))
    return Group(*parts)


class ResultsTable(DataTable):
    """The results store as a table (what JSON/CSV export writes)."""

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.by_key: dict[str, Row] = {}
        """Each row as recorded, by its key (what the detail under the table shows)."""

    def on_mount(self) -> None:
        """Columns keyed by name so cells can be updated in place."""
        self.cursor_type = "row"
        self.zebra_stripes = True
        for name in COLUMNS:
            self.add_column(name, key=name)

    def upsert(self, key: str, row: Row) -> None:
        """Add the row ``key`` or update its cells in place."""
        state = str(row.get("state", ""))
        values = [
            short_step(row), str(row.get("experiment") or row.get("kind") or ""),
            str(row.get("label", key)), str(row.get("batch_size") or ""),
            rate(_number(row, "output_tokens_per_s"), "").strip(),
            *(seconds(_number(row, name)) for name in ("ttft_p50", "ttft_p90", "e2e_p50", "e2e_p90", "tpot_p50",
                                                       "tpot_p90")),
            str(row.get("n", "")), f"{state} · noisy" if row.get("noise") else state,
        ]
        self.by_key[key] = row
        if key in self.rows:
            for name, value in zip(COLUMNS, values, strict=True):
                self.update_cell(key, name, value)
        else:
            self.add_row(*values, key=key)
            self.move_cursor(row=self.row_count - 1)


class ResultsTab(Vertical):
    """The table, and under it the selected row's step and measured runs."""

    def compose(self) -> ComposeResult:
        """The table over the detail."""
        yield ResultsTable(id="results-table")
        yield Static(Text("Run something (r): each run and sweep point adds a row. Select a sweep point's row "
                          "(↑ ↓ in the table) to see each of its measured runs here.", NOTE_STYLE),
                     id="result-detail")

    def restore(self, saved: Sequence[tuple[str, str, Row]], store: ResultsStore) -> None:
        """Rows kept from earlier sessions (step, experiment, row), in the order they were measured."""
        table = self.query_one(ResultsTable)
        for i, (_, _, row) in enumerate(saved):
            store.add(row)
            table.upsert(f"saved-{i}", row)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """Show the highlighted row's step and runs."""
        key = event.row_key.value
        row = self.query_one(ResultsTable).by_key.get(key or "")
        if row is not None:
            self.query_one("#result-detail", Static).update(row_detail(row))
