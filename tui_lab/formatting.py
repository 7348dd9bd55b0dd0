"""How the lab writes numbers for people: the one place for seconds, rates, counts, bytes and bars (pure).

Every figure the TUI and the CLI show goes through here, so the same measurement reads the same on
both: three significant figures, thousands separated, a unit always, "—" for a figure that was not
measured.
"""

from __future__ import annotations

import math

MISSING = "—"
"""A figure that was not measured (or cannot be, e.g. p99 of 5 samples)."""

_EIGHTHS = " ▏▎▍▌▋▊▉"


def significant(x: float, digits: int = 3) -> str:
    """``x`` with ``digits`` significant figures, thousands separated, no exponent (262,144 → "262,000")."""
    if x == 0:
        return "0"
    if not math.isfinite(x):
        return str(x)
    decimals = digits - 1 - math.floor(math.log10(abs(x)))
    if decimals > 0:
        return f"{x:,.{decimals}f}"
    return f"{int(round(x, decimals)):,}"


def fixed(value: object, spec: str = "{:.2f}", missing: str = MISSING) -> str:
    """A figure in a fixed format, for a table column whose header carries the unit and whose rows line up
    (``fixed(0.1234, "{:.3f}")`` → "0.123"); ``missing`` for None, the value as text if the format does not fit."""
    if value is None:
        return missing
    try:
        return spec.format(value)
    except (TypeError, ValueError):
        return str(value)


def number(x: float | None, unit: str = "", digits: int = 3) -> str:
    """A count or measure with its unit: whole numbers exactly ("262,144 scores"), others to ``digits`` figures."""
    if x is None:
        return MISSING
    text = f"{int(x):,}" if float(x).is_integer() else significant(x, digits)
    return f"{text} {unit}".rstrip()


def seconds(value: float | None) -> str:
    """A duration: µs below a millisecond, ms below a second, s below two minutes, then min and s."""
    if value is None:
        return MISSING
    if value < 0:
        return "-" + seconds(-value)
    if value < 1e-3:
        return f"{significant(value * 1e6)} µs"
    if value < 1:
        return f"{significant(value * 1e3)} ms"
    if value < 120:
        return f"{significant(value)} s"
    minutes, rest = divmod(value, 60)
    return f"{int(minutes)} min {rest:.0f} s"


def milliseconds(value_ms: float | None) -> str:
    """A duration already in milliseconds (step times kept in ms)."""
    return MISSING if value_ms is None else seconds(value_ms / 1e3)


def rate(value: float | None, unit: str = "tok/s") -> str:
    """A rate: "1,234 tok/s", "12.3 tok/s"."""
    if value is None:
        return MISSING
    text = f"{value:,.0f}" if abs(value) >= 100 else significant(value)
    return f"{text} {unit}"


def percent(value: float | None, digits: int = 0) -> str:
    """A share given in percent ("37 %")."""
    return MISSING if value is None else f"{value:.{digits}f} %"


def ratio(value: float | None) -> str:
    """How many times: "×2.31"."""
    return MISSING if value is None else f"×{significant(value)}"


def size(n: float | None) -> str:
    """Bytes in binary units: "512 B", "1.5 KiB", "570 MiB", "16.0 GiB"."""
    if n is None:
        return MISSING
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{significant(n)} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def bar(fraction: float, width: int) -> str:
    """A horizontal bar of ``fraction`` (0..1) of ``width`` cells, with eighth-cell resolution, padded to ``width``."""
    fraction = min(max(fraction, 0.0), 1.0)
    full, rest = divmod(round(fraction * width * 8), 8)
    partial = _EIGHTHS[rest] if rest else ""
    return ("█" * full + partial).ljust(width)


def blocks(value: float | None, scale: float, width: int) -> str:
    """Whole blocks for ``value`` on a ``scale`` that fills ``width`` (at least one block for any value > 0)."""
    if value is None or scale <= 0:
        return ""
    return "█" * min(width, max(1, round(value / scale * width)))
