"""The colours the views draw with (the TUI's theme takes them from here, so both agree)."""

from __future__ import annotations

TTFT_STYLE = "bold magenta"
"""The first token's bar: its gap is TTFT (queueing + prefill), not a decode step."""
PARTIAL_STYLE = "bold yellow"
"""Something was cut short or cannot be trusted: said in this colour."""
ERROR_STYLE = "bold red"
OK_STYLE = "bold green"
NOTE_STYLE = "dim"
