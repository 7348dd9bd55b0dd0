"""Results of runs and sweep points, one row each, updated in place."""

from __future__ import annotations

from textual.widgets import DataTable

from tui_lab.ui.theme import format_seconds

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

    def upsert(self, key: str, row: dict) -> None:
        """Add the row ``key`` or update its cells in place."""
        values = [
            row.get("label", key), row.get("batch_size", ""),
            "—" if row.get("output_tokens_per_s") is None else f"{row['output_tokens_per_s']:.1f}",
            format_seconds(row.get("ttft_p50")), format_seconds(row.get("ttft_p90")),
            format_seconds(row.get("e2e_p50")), format_seconds(row.get("e2e_p90")),
            format_seconds(row.get("tpot_p50")), format_seconds(row.get("tpot_p90")),
            row.get("n", ""), f"{row.get('state', '')} · noisy" if row.get("noise") else row.get("state", ""),
        ]
        if key in self.rows:
            for name, value in zip(COLUMNS, values, strict=True):
                self.update_cell(key, name, value)
        else:
            self.add_row(*values, key=key)
            self.move_cursor(row=self.row_count - 1)
