"""Results of runs and sweep points, one row each, updated in place."""

from __future__ import annotations

from textual.widgets import DataTable

from tui_lab.formatting import rate, seconds
from tui_lab.ui.results import Row

COLUMNS = ("label", "batch", "tok/s", "TTFT p50", "TTFT p90", "E2E p50", "E2E p90", "TPOT p50", "TPOT p90",
           "n", "state")


class ResultsTable(DataTable):
    """The results store as a table (what JSON/CSV export writes)."""

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
            str(row.get("label", key)), str(row.get("batch_size") or ""),
            rate(_number(row, "output_tokens_per_s"), "").strip(),
            *(seconds(_number(row, name)) for name in ("ttft_p50", "ttft_p90", "e2e_p50", "e2e_p90", "tpot_p50",
                                                       "tpot_p90")),
            str(row.get("n", "")), f"{state} · noisy" if row.get("noise") else state,
        ]
        if key in self.rows:
            for name, value in zip(COLUMNS, values, strict=True):
                self.update_cell(key, name, value)
        else:
            self.add_row(*values, key=key)
            self.move_cursor(row=self.row_count - 1)


def _number(row: Row, name: str) -> float | None:
    """A figure of ``row`` (None when it was not measured)."""
    value = row.get(name)
    return float(value) if isinstance(value, int | float) else None
