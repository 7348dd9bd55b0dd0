"""A finished experiment's result, drawn by its type's one view (``tui_lab.views.render``) for the panel's width."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.text import Text
from textual.widgets import Static

from tui_lab.lab.experiment import Result
from tui_lab.ui.theme import NARROW_WIDTH
from tui_lab.views import render
from tui_lab.views.fit import cut_cells
from tui_lab.views.style import PARTIAL_STYLE

CUT_NOTE = "Some cells are cut (…) at this width: {todo} to see them whole."
BESIDE_THE_LESSON = "press l until the panel is alone"
"""What widens the panel while the lesson stands beside it."""
ALONE = "widen the terminal"
"""What widens the panel once it has the whole width."""


def draw(result: Result, width: int, beside_lesson: bool = True) -> RenderableType:
    """``result``'s view laid out for ``width`` cells (with its caveats); a note when cells are still cut, saying
    what widens the panel (``l`` while the lesson stands beside it, else a wider terminal).

    A view that fails must not cost the result: the result is shown raw, with the view's error.
    """
    try:
        shown = render(result, width)
    except Exception as exc:  # a view's bug (or a type without a view): the raw result, and why
        return Text(f"{result!r}\n(no view could draw it: {exc})")
    if cut_cells(shown, width):
        todo = BESIDE_THE_LESSON if beside_lesson else ALONE
        return Group(shown, Text(CUT_NOTE.format(todo=todo), style=PARTIAL_STYLE))
    return shown


class ResultPane(Static):
    """The result of the last comparison, inspection or lesson experiment; laid out again when resized."""

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.result: Result | None = None

    def show(self, result: Result) -> None:
        """Draw ``result`` for the pane's width."""
        self.result = result
        self.display = True
        self._draw()

    def waiting(self, text: str) -> None:
        """Say what is running until its result comes (the last result must not pass for this one's)."""
        self.result = None
        self.display = True
        self.update(Text(text, "dim"))

    def _draw(self) -> None:
        if self.result is not None:
            width = max(20, self.size.width or self.app.size.width // 2)
            self.update(draw(self.result, width, self._beside_lesson()))

    def _beside_lesson(self) -> bool:
        """Whether the lesson takes part of the panel's width (a narrow terminal stacks them: it does not)."""
        if self.app.size.width < NARROW_WIDTH:
            return False
        main = self.app.query("#main")
        return not (main and main.first().has_class("-no-lesson"))

    def on_resize(self) -> None:
        """Lay the result out again for the new width (a terminal resize, ``l``)."""
        self._draw()
