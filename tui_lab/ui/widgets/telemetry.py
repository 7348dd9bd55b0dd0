"""GPU telemetry from NVML (``tui_lab.telemetry.GpuSampler``), or why there is none."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from tui_lab.formatting import number, percent, size
from tui_lab.telemetry import GpuSample, GpuSampler, gpu_available
from tui_lab.ui.theme import CHART_REFRESH_S


def sample_rows(sample: GpuSample) -> list[tuple[str, str]]:
    """A sample as (what, value) rows for people."""
    return [
        ("utilization", percent(sample.util_pct)),
        ("memory used", f"{size(sample.mem_used_bytes)} of {size(sample.mem_total_bytes)}"),
        ("power", number(sample.power_w, "W")),
        ("SM clock", number(sample.sm_clock_mhz, "MHz")),
    ]


class GpuPanel(Static):
    """Latest NVML sample; the sampler runs only while this panel exists and a GPU is present."""

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self._sampler: GpuSampler | None = None

    def on_mount(self) -> None:
        """Start sampling if there is a GPU, else say why not."""
        ok, reason = gpu_available()
        if not ok:
            self.update(Text(f"no GPU: {reason}", style="yellow"))
            return
        sampler = GpuSampler(interval=0.25)
        if not sampler.start():  # NVML that answers the probe but not the sampler
            self.update(Text(f"no GPU: {sampler.reason}", style="yellow"))
            return
        self._sampler = sampler
        self.set_interval(CHART_REFRESH_S, self.refresh_sample, name="gpu")

    def on_unmount(self) -> None:
        """Stop the sampler thread."""
        if self._sampler is not None:
            self._sampler.stop()

    def refresh_sample(self) -> None:
        """Draw the latest sample (≤ 4 Hz)."""
        if self._sampler is None:
            return
        sample = self._sampler.latest()
        if sample is None:
            self.update(Text("waiting for the first GPU sample…", style="dim"))
            return
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        for name, value in sample_rows(sample):
            table.add_row(name, value)
        self.update(table)
