"""The selected request's tokens, each with a bar as long as the gap before it."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.text import Text
from textual.widgets import Static

from tui_lab.formatting import rate, seconds
from tui_lab.ui.live import LiveRequest, ShownToken
from tui_lab.ui.theme import BAR_WIDTH, TOKEN_ROWS_SHOWN, gap_style
from tui_lab.views.style import ERROR_STYLE, PARTIAL_STYLE, TTFT_STYLE


def timing_bar(gap_s: float, scale_s: float, style: str, width: int = BAR_WIDTH) -> Text:
    """A bar of ``gap_s / scale_s`` of ``width`` cells; longer gaps are clipped with '»'."""
    cells = 0.0 if scale_s <= 0 else gap_s / scale_s * width
    full = int(cells)
    bar = Text()
    if cells > width + 1e-9:
        bar.append("█" * (width - 1) + "»", style)
        return bar
    full = min(full, width)
    bar.append("█" * full, style)
    if cells - full >= 0.5 or (full == 0 and gap_s > 0):
        bar.append("▌", style)
    return bar


TOKEN_WIDTH = 10
"""Cells for a token's text in the token rows (longer tokens end in '…')."""


def _token_label(text: str) -> str:
    """Token text with whitespace made visible (a leading space matters to a tokenizer)."""
    return repr(text)[1:-1].replace(" ", "·") or "∅"


def render_tokens(
    req: LiveRequest | None, tokens: list[ShownToken], rows: int, width: int, text_lines: int = 3
) -> RenderableType:
    """The header, the text so far coloured by gap, and the newest ``rows`` tokens with bars."""
    if req is None:
        return Text("No run yet. Press r to run the current settings.", style="dim")
    head = Text()
    head.append(f"{req.request_id}", "bold")
    head.append(f" · {req.produced}/{req.budget} tokens · TTFT {seconds(req.ttft_s)}")
    head.append(f" · {rate(req.tokens_per_s)}")
    if req.finish_reason in ("cancelled", "error"):
        head.append(f"  [{req.finish_reason}]", ERROR_STYLE if req.finish_reason == "error" else PARTIAL_STYLE)
    elif req.finish_reason:
        head.append(f"  [{req.finish_reason}]", "dim")
    body = Text(no_wrap=False)
    body.append(req.prompt, "dim")
    shown_chars = sum(len(t.text) for t in tokens)
    if req.produced and shown_chars and tokens and tokens[0].index > 0:
        body.append(" …", "dim")
    for tok in tokens:
        # Newlines shown as ↵ keep the paragraph to its few lines and make the token boundary visible.
        body.append(tok.text.replace("\n", "↵"), TTFT_STYLE if tok.first else gap_style(tok.gap_s))
    # Keep the paragraph to a few lines so the token rows stay visible on small terminals.
    limit = max(20, width * text_lines - 2)
    if len(body) > limit:
        body = body[len(body) - limit:]
        body = Text("…", "dim") + body
    if req.error:
        body.append(f"\n{req.error}", ERROR_STYLE)
    # index, token, gap label, three gutters: what is left is the bar.
    bar_width = max(4, min(BAR_WIDTH, width - 3 - TOKEN_WIDTH - 12 - 4))
    newest = tokens[-min(rows, TOKEN_ROWS_SHOWN):] if rows > 0 else []
    decode_gaps = [t.gap_s for t in newest if not t.first]
    scale = max(decode_gaps, default=0.0)
    if scale <= 0:
        scale = max((t.gap_s for t in newest), default=1.0) or 1.0
    # The rows are laid out by hand in fixed columns (a Rich table measures every cell on every redraw,
    # and this view is redrawn for each frame of tokens: on a 2-core CPU that cost was taken from the engine).
    labels = [("TTFT " if t.first else "") + seconds(t.gap_s) for t in newest]
    index_width = max([3, *(len(str(t.index)) for t in newest)])
    label_width = max([12, *(len(label) for label in labels)])
    table = Text(no_wrap=True, overflow="crop", end="")
    for n, (tok, label) in enumerate(zip(newest, labels, strict=True)):
        style = TTFT_STYLE if tok.first else gap_style(tok.gap_s)
        token = Text(_token_label(tok.text))
        token.truncate(TOKEN_WIDTH, overflow="ellipsis", pad=True)
        if n:
            table.append("\n")
        table.append(str(tok.index).rjust(index_width), "dim")
        table.append(" ")
        table.append_text(token)
        table.append(" ")
        table.append(label.rjust(label_width), style)
        table.append(" ")
        table.append_text(timing_bar(tok.gap_s, scale, style, bar_width))
    return Group(head, body, table) if newest else Group(head, body)


class TokenStream(Static):
    """Token-by-token view of one request (redrawn by the app's token timer, ≤ 20 Hz)."""

    DEFAULT_CSS = """
    TokenStream { height: 1fr; }
    """

    _shown: tuple[LiveRequest | None, list[ShownToken]] | None = None

    def show(self, req: LiveRequest | None, tokens: list[ShownToken]) -> None:
        """Draw ``req`` with its newest tokens, fitting the rows to the widget's height."""
        self._shown = (req, tokens)
        self._draw(req, tokens)

    def on_resize(self) -> None:
        """Bars and rows are laid out for a size: draw again when it changes (e.g. the all-requests view opens)."""
        if self._shown is not None:
            self._draw(*self._shown)

    def _draw(self, req: LiveRequest | None, tokens: list[ShownToken]) -> None:
        height = self.size.height or 20
        width = self.size.width or 80
        # A short panel (80×24) gets one line of text so that token rows still fit.
        text_lines = 3 if height >= 16 else 1
        rows = max(0, height - text_lines - 2)
        # The widget's size never depends on its content (1fr × 1fr): no layout pass per redraw, which would
        # lay out the whole screen again for every frame of tokens.
        self.update(render_tokens(req, tokens, rows, width, text_lines), layout=False)
