"""Every threshold and period the lab UI draws timings with, in one place.

Widgets never hard-code a threshold: they ask this module. Changing what counts
as a "slow" token, how many tokens stay on screen or how often charts redraw is
a one-line edit here. Colours of states (TTFT, partial, error, ok) are the views'
(``tui_lab.views.style``); numbers are written by ``tui_lab.formatting``.
"""

from __future__ import annotations

BATCH_PRESETS: tuple[int, ...] = (1, 8, 32, 64, 128, 256, 512, 1024)
"""Quick picks for batch size (the seed's sweep values)."""

GAP_THRESHOLDS_S: tuple[tuple[float, str], ...] = (
    (0.030, "green"),
    (0.100, "yellow"),
    (float("inf"), "red"),
)
"""Inter-token gap → colour: up to 30 ms reads as fluent, up to 100 ms as visible stutter, beyond as slow."""

MAX_TOKENS_ON_SCREEN = 400
"""Tokens kept per request for display; the full record stays in the run result."""

MAX_RECENT_GAPS = 4096
"""Pooled inter-token gaps kept for the live ITL percentiles (the final figures use every gap)."""

TOKEN_ROWS_SHOWN = 200
"""How many token rows the token list renders at most (the newest)."""

TOKEN_REFRESH_S = 1 / 20
"""Token panel redraw period: at most ~20 Hz, whatever the token rate."""

CHART_REFRESH_S = 1 / 4
"""Chart and figures redraw period: at most 4 Hz."""

BAR_WIDTH = 24
"""Cells of the longest timing bar; the other bars scale to the largest gap shown."""

LATENCY_BUDGET_STEP = 1.25
"""Factor by which - and + move the latency-budget line on the trade-off chart."""

DEFAULT_LATENCY_BUDGET_S = 2.0
"""Initial E2E p90 budget drawn on the throughput-vs-latency chart."""

NARROW_WIDTH = 110
"""Below this many columns the lesson pane stacks above the live panel."""

TIMELINE_ROWS_MAX = 64
"""The timeline's rows: one per request up to this many (scrolled), beyond it one per group of requests."""

TIMELINE_ZOOM_MAX = 1024
"""How far z zooms the timeline's time axis in (× the whole run)."""


def gap_style(gap_s: float) -> str:
    """The colour of a decode gap of ``gap_s`` seconds."""
    for limit, style in GAP_THRESHOLDS_S:
        if gap_s <= limit:
            return style
    return GAP_THRESHOLDS_S[-1][1]

