"""Pure functions on timestamps: latency figures, percentiles, trade-offs and rooflines.

No torch, no Textual: everything here is plain Python and unit-tested on hand-made traces.
"""

from tui_lab.metrics.latency import (
    SLO,
    RequestTrace,
    decode_speed,
    e2e,
    goodput,
    itl_samples,
    output_throughput,
    prefill_speed,
    tpot,
    ttft,
)
from tui_lab.metrics.percentiles import METHOD, Percentiles, percentile, summarize
from tui_lab.metrics.roofline import (
    ModelShape,
    decode_step_floor_s,
    kv_bytes_per_sequence,
    max_sequences,
    prefill_floor_s,
)
from tui_lab.metrics.summary import RunSummary, percentile_dicts, summarize_run
from tui_lab.metrics.tradeoff import (
    BUDGET_PRESETS,
    KNEE_GAIN_PCT,
    BudgetPreset,
    Knee,
    TradeoffPoint,
    budget_note,
    budget_pick,
    knee_by_balance,
    knee_by_gain,
    knee_note,
)

__all__ = [
    "BUDGET_PRESETS", "KNEE_GAIN_PCT", "METHOD", "SLO", "BudgetPreset", "Knee", "ModelShape", "Percentiles",
    "RequestTrace", "RunSummary", "TradeoffPoint", "budget_note", "budget_pick", "knee_note", "decode_speed",
    "decode_step_floor_s", "e2e", "goodput", "itl_samples", "knee_by_balance", "knee_by_gain",
    "kv_bytes_per_sequence", "max_sequences", "output_throughput", "percentile", "percentile_dicts", "prefill_floor_s",
    "prefill_speed",
    "summarize", "summarize_run", "tpot", "ttft",
]
