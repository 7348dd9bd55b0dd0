"""One view per result type: what the TUI's result pane draws and what ``inference-lab experiment`` prints.

A view is a function ``(result, width) -> RenderableType`` (Rich only: no Textual, no torch). ``view_for``
finds a result's view by its type in the one table below; ``render`` adds the caveats (measurements that
cannot be trusted for what they show, with the reason); ``to_text`` draws it as text at a width.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import cache

from rich.console import Console, Group, RenderableType
from rich.text import Text

from tui_lab.lab.experiment import Result
from tui_lab.views.style import PARTIAL_STYLE

View = Callable[[Result, int], RenderableType]
"""Draws a result for a width."""


@cache
def _table() -> dict[type, View]:
    """Result type → its view (built on first use: the result modules load with it)."""
    from tui_lab.lab.modalities import ModalitiesView
    from tui_lab.lab.pipeline import LogitsView, PaddingView, RooflineView, TokenizeView
    from tui_lab.lab.serving import BatchingComparison, GraphsComparison, PrefixCacheComparison, QueueingResult
    from tui_lab.views import compare, concepts, inspect, lessons, load, runs, serving

    table: dict[type, Callable[..., RenderableType]] = {
        **runs.VIEWS,
        **compare.VIEWS,
        **load.VIEWS,
        **lessons.VIEWS,
        **concepts.VIEWS,
        TokenizeView: lambda r, w: inspect.render_tokenize(r.to_dict()),
        PaddingView: lambda r, w: inspect.render_padding(r.to_dict(), w),
        LogitsView: lambda r, w: inspect.render_logits(r.to_dict(), w),
        RooflineView: lambda r, w: inspect.render_roofline(r.to_dict(), w),
        ModalitiesView: lambda r, w: inspect.render_modalities(r.to_dict()),
        GraphsComparison: serving.render_graphs,
        PrefixCacheComparison: serving.render_prefix,
        QueueingResult: lambda r, w: serving.render_queueing(r),
        BatchingComparison: serving.render_batching,
    }
    return table


def view_for(result_type: type) -> View | None:
    """The view of ``result_type`` (or of its nearest base class that has one); None if there is none."""
    table = _table()
    for cls in result_type.__mro__:
        if cls in table:
            return table[cls]
    return None


def render(result: Result, width: int) -> RenderableType:
    """``result``'s view laid out for ``width`` cells, with its caveats under it."""
    from tui_lab.lab.caveats import caveats

    view = view_for(type(result))
    if view is None:
        raise TypeError(f"no view draws a {type(result).__name__}")
    shown = view(result, width)
    warnings = caveats(result)
    if not warnings:
        return shown
    return Group(shown, Text(), *(Text.assemble(("⚠ can't trust: ", PARTIAL_STYLE), line) for line in warnings))


def to_text(renderable: RenderableType, width: int, colour: bool = False) -> str:
    """``renderable`` drawn as text ``width`` cells wide (ANSI colours when ``colour``)."""
    console = Console(width=width, file=io.StringIO(), color_system="standard" if colour else None,
                      force_terminal=colour, legacy_windows=False, soft_wrap=False)
    with console.capture() as capture:
        console.print(renderable)
    return capture.get()
