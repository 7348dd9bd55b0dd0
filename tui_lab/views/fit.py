"""Tables that fit the panel: bars sized to the room left, and a check for cells cut to "…".

The panel's width depends on the terminal and the layout (``l`` cycles lesson + panel, lesson
only, panel only), so views build their tables for the width they are given rather than a fixed one.
"""

from __future__ import annotations

import io
from collections.abc import Callable

from rich.console import Console, RenderableType
from rich.measure import Measurement

WIDE = 1000
"""A width no view needs: what a renderable looks like uncut."""


def _console(width: int) -> Console:
    return Console(width=width, file=io.StringIO(), color_system=None, legacy_windows=False)


def natural_width(renderable: RenderableType) -> int:
    """The cells ``renderable`` takes when nothing limits it."""
    console = _console(WIDE)
    return Measurement.get(console, console.options, renderable).maximum


def bar_cells(build: Callable[[int], RenderableType], width: int, most: int, least: int = 3) -> int:
    """The widest bar (``least``..``most`` cells) with which ``build(bar)`` still fits in ``width``
    (``least`` when none does). ``build`` makes the table with bars of the given width."""
    lo, hi = least, most
    if natural_width(build(hi)) <= width:
        return hi
    while lo < hi:  # the largest that fits: a table never narrows as its bars grow
        mid = (lo + hi + 1) // 2
        if natural_width(build(mid)) <= width:
            lo = mid
        else:
            hi = mid - 1
    return lo


def cut_cells(renderable: RenderableType, width: int) -> bool:
    """Whether drawing ``renderable`` at ``width`` cuts some cell to "…" that is whole when wide."""

    def ellipses(at: int) -> int:
        console = _console(at)
        with console.capture() as capture:
            console.print(renderable)
        return capture.get().count("…")

    return ellipses(width) > ellipses(WIDE)
