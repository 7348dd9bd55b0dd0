"""GPU telemetry from NVML (the GPU engineer's ``GpuSampler``), or why there is none."""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from typing import Any

from rich.table import Table
from rich.text import Text
from textual.widgets import Static


def gpu_status() -> tuple[bool, str]:
    """(available, reason) from ``tui_lab.telemetry``; import problems count as unavailable."""
    try:
        from tui_lab.telemetry import gpu_available
    except Exception as exc:  # a missing or broken telemetry module must not break the lab
        return False, f"telemetry unavailable ({exc})"
    try:
        return gpu_available()
    except Exception as exc:
        return False, str(exc)


def sample_fields(sample: Any) -> dict[str, Any]:
    """A sample as name → value, whatever its class looks like."""
    if is_dataclass(sample):
        return asdict(sample)
    if isinstance(sample, dict):
        return dict(sample)
    return {k: v for k, v in vars(sample).items() if not k.startswith("_")}


class GpuPanel(Static):
    """Latest NVML sample; the sampler runs only while this panel exists and a GPU is present."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._sampler: Any = None
        self._reason = ""

    def on_mount(self) -> None:
        """Start sampling if there is a GPU, else say why not."""
        ok, reason = gpu_status()
        if not ok:
            self._reason = reason
            self.update(Text(f"no GPU: {reason}", style="yellow"))
            return
        try:
            from tui_lab.telemetry import GpuSampler

            self._sampler = GpuSampler(interval=0.25)
            self._sampler.start()
        except Exception as exc:
            self._sampler = None
            self.update(Text(f"no GPU: sampler failed to start ({exc})", style="yellow"))

    def on_unmount(self) -> None:
        """Stop the sampler thread."""
        if self._sampler is not None:
            self._sampler.stop()

    def refresh_sample(self) -> None:
        """Draw the latest sample (called from the app's chart timer)."""
        if self._sampler is None:
            return
        sample = self._sampler.latest()
        if sample is None:
            self.update(Text("waiting for the first GPU sample…", style="dim"))
            return
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        for name, value in sample_fields(sample).items():
            table.add_row(name, f"{value:.1f}" if isinstance(value, float) else str(value))
        self.update(table)
