"""Which view draws which result: the UI renders an experiment's result by its type.

A view module declares ``@renders(SomeResult)`` on a function ``(result, width) -> RenderableType``;
``view_for(result)`` finds the function for the result's class (or a base class), so the app never
switches on experiment names. Only Rich is needed here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import RenderableType

View = Callable[[Any, int], RenderableType]
_VIEWS: dict[type, View] = {}


def renders(*result_types: type) -> Callable[[View], View]:
    """Register the decorated function as the view of ``result_types``."""

    def register(view: View) -> View:
        for t in result_types:
            _VIEWS[t] = view
        return view

    return register


def view_for(result: Any) -> View | None:
    """The view registered for ``type(result)`` or its nearest base class; None if there is none."""
    for cls in type(result).__mro__:
        view = _VIEWS.get(cls)
        if view is not None:
            return view
    return None
