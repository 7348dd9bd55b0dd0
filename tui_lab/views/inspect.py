"""Views of the pipeline inspections (``tui_lab.lab.pipeline``, ``tui_lab.lab.modalities``).

Each takes the inspection's result as its ``asdict`` form (so a saved file draws the same) and returns
tables, a coloured grid for the attention mask, bars for probabilities.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, is_dataclass

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tui_lab import formatting
from tui_lab.formatting import milliseconds as ms
from tui_lab.formatting import size
from tui_lab.views.fit import bar_cells

TOKEN_COLOURS = ("on #264653", "on #2a6f4e", "on #6d597a", "on #8a5a24", "on #355070", "on #5f0f40")
"""Alternating backgrounds that tell neighbouring tokens apart (readable with light text)."""
REAL_STYLE = "bold white on #2a6f4e"
PAD_STYLE = "grey62 on #3a3a3a"
SPECIAL_STYLE = "bold #f4a261"
BAR_WIDTH = 24
CELL_WIDTH = 7


def _data(data: object) -> dict[str, object]:
    if is_dataclass(data) and not isinstance(data, type):
        return asdict(data)
    if isinstance(data, dict):
        return data
    raise TypeError(f"an inspection result is a dataclass or a dict, not {type(data).__name__}")


def _visible(text: str) -> str:
    """Whitespace made visible so a token's leading space or newline can be seen."""
    return text.replace(" ", "·").replace("\n", "⏎").replace("\t", "⇥") or "∅"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def bar(fraction: float, width: int = BAR_WIDTH) -> Text:
    """A horizontal bar of ``fraction`` (0..1) of ``width`` cells."""
    return Text(formatting.bar(fraction, width), style="#e9c46a")


# -- tokenize ------------------------------------------------------------------------------


def render_tokenize(d: dict) -> RenderableType:
    """Tokens as coloured chips, then a table of ids and pieces, then the round trip."""
    strip = Text()
    for i, (text, special) in enumerate(zip(d["texts"], d["special"], strict=True)):
        style = SPECIAL_STYLE + " on #3a3a3a" if special else TOKEN_COLOURS[i % len(TOKEN_COLOURS)]
        strip.append(_visible(text), style=style)
    head = Text.assemble(
        (f"{d['n_tokens']} tokens", "bold"), f" from {d['n_chars']} characters · vocabulary {d['vocab_size']:,}"
    )
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("#", justify="right", style="dim")
    table.add_column("id", justify="right")
    table.add_column("piece")
    table.add_column("text")
    for i, (tid, piece, text, special) in enumerate(zip(d["ids"], d["pieces"], d["texts"], d["special"], strict=True)):
        mark = Text(piece, style=SPECIAL_STYLE) if special else Text(_visible(piece))
        if special:
            mark.append("  special", style="dim")
        table.add_row(str(i), str(tid), mark, _visible(text))
    trip = Text.assemble(
        ("ids → text, special tokens kept:    ", "dim"), repr(d["decoded"]), "\n",
        ("ids → text, special tokens skipped: ", "dim"), repr(d["decoded_clean"]),
    )
    return Group(head, strip, Text(), table, Text(), trip)


# -- padding -------------------------------------------------------------------------------


LABEL_WIDTH = 12
"""The row label of the padding grids: ``"0:   6 real "``."""


def padding_columns(cols: int, width: int | None, least: int = 4) -> tuple[int, list[int]]:
    """(cell width, the columns shown) for a padded batch of ``cols`` positions in ``width`` cells:
    narrower cells first (down to ``least``, what the widest value needs), then the first and last positions
    with a gap between."""
    if width is None:
        return max(CELL_WIDTH, least), list(range(cols))
    room = max(least, width - LABEL_WIDTH)
    cell = max(least, min(max(CELL_WIDTH, least), room // max(1, cols)))
    fit = room // cell
    if fit >= cols:
        return cell, list(range(cols))
    head = (fit - 1) // 2
    tail = fit - 1 - head
    return cell, [*range(head), -1, *range(cols - tail, cols)]


def _grid_line(label: str, cells: list[Text], label_style: str = "dim") -> Text:
    """One line of a padding grid: the row's label, then its cells (each already its column's width)."""
    line = Text(label.ljust(LABEL_WIDTH)[:LABEL_WIDTH], style=label_style, no_wrap=True, overflow="crop")
    for cell in cells:
        line.append_text(cell)
    return line


def render_padding(d: dict, width: int | None = None) -> RenderableType:
    """The padded batch as three grids that share their columns: the pieces, the ids and the attention mask
    (1/0), each row labelled with its prompt's number and real length, the columns with their positions, in
    ``width`` cells (long batches show their first and last positions)."""
    rows, cols = d["shape"]
    widest_id = max((len(str(i)) for row in d["ids"] for i in row), default=1)
    cell, shown = padding_columns(cols, width, least=widest_id + 1)
    head = Text.assemble(
        ("batch tensor ", "bold"), f"shape ({rows}, {cols}) · padded on the {d['side']} with ",
        (d["pad_token"], SPECIAL_STYLE), f" (id {d['pad_token_id']}) · ",
        (f"{100 * d['padding_fraction']:.0f}% padding", "bold"),
    )
    gap = Text("…".center(cell - 1) + " ", style="dim")

    def positions() -> Text:
        return _grid_line("position", [gap if c < 0 else Text(str(c).rjust(cell - 1) + " ", style="dim")
                                       for c in shown])

    def label(r: int) -> str:
        return f"{r}: {d['lengths'][r]:>3} real "

    def piece(r: int, c: int) -> Text:
        real = d["mask"][r][c] == 1
        raw = _visible(d["pieces"][r][c])
        if len(raw) > cell - 1 and raw.startswith("<") and raw.endswith(">"):
            raw = raw[1:-1]  # <pad> → pad, <bos> → bos: the name stays readable in a narrow cell
        return Text(_clip(raw, cell - 1).rjust(cell - 1) + " ", style=REAL_STYLE if real else PAD_STYLE)

    def token_id(r: int, c: int) -> Text:
        return Text(str(d["ids"][r][c]).rjust(cell - 1) + " ", style="" if d["mask"][r][c] else "dim")

    def bit(r: int, c: int) -> Text:
        real = d["mask"][r][c] == 1
        return Text(("1" if real else "0").rjust(cell - 1) + " ", style=REAL_STYLE if real else PAD_STYLE)

    def grid(title: str, cell_of: Callable[[int, int], Text]) -> list[Text]:
        lines = [Text(title, style="bold"), positions()]
        lines += [_grid_line(label(r), [gap if c < 0 else cell_of(r, c) for c in shown]) for r in range(rows)]
        return [*lines, Text()]

    legend = Text.assemble(("  1  ", REAL_STYLE), " real token   ", ("  0  ", PAD_STYLE), " padding (masked out)")
    if len(shown) < cols:
        legend.append(f"\n… {cols - len(shown) + 1} positions in the middle left out at this width", style="dim")
    return Group(head, Text(), *grid("tokens", piece), *grid("input_ids", token_id),
                 *grid("attention_mask", bit), legend)


# -- logits --------------------------------------------------------------------------------


def render_logits(d: dict, width: int | None = None) -> RenderableType:
    """The logits' shape and size, then per prompt the top-k next tokens with probability bars (sized to
    ``width`` cells)."""
    b, s, v = d["logits_shape"]
    head = Text.assemble(
        ("logits ", "bold"), f"shape (batch={b}, seq_len={s}, vocab={v:,}) · {d['dtype']}",
        f" · {size(d['logits_bytes'])}",
        f" · forward pass {d['forward_ms']:.1f} ms on {d['device']}",
        (f" (first call {d['first_forward_ms']:.1f} ms)", "dim") if d.get("first_forward_ms") else "",
    )
    parts: list[RenderableType] = [head]
    top_prob = max((t["prob"] for row in d["top"] for t in row), default=1.0) or 1.0
    for prompt, row in zip(d["prompts"], d["top"], strict=True):
        parts.append(Text())
        parts.append(Text.assemble(("next token after ", "dim"), repr(_clip(prompt, 60))))
        def build(cells: int, row: list = row) -> Table:
            table = Table(box=None, pad_edge=False, header_style="bold")
            table.add_column("rank", justify="right", style="dim")
            table.add_column("token", no_wrap=True)
            table.add_column("id", justify="right", style="dim")
            table.add_column("probability", no_wrap=True)
            table.add_column("", justify="right")
            table.add_column("logit", justify="right", style="dim")
            for rank, tok in enumerate(row, start=1):
                label = Text(_visible(tok["text"]), style="bold #e9c46a" if rank == 1 else "")
                if rank == 1:
                    label.append("  ← greedy pick", style="dim")
                table.add_row(
                    str(rank), label, str(tok["id"]), bar(tok["prob"] / top_prob, cells), f"{100 * tok['prob']:.1f}%",
                    f"{tok['logit']:.2f}",
                )
            return table

        table = build(BAR_WIDTH if width is None else bar_cells(build, width, BAR_WIDTH, least=6))
        parts.append(table)
    return Group(*parts)


# -- roofline ------------------------------------------------------------------------------


def render_roofline(d: dict, width: int | None = None) -> RenderableType:
    """Measured decode step time against the bandwidth floor, prefill against the compute floor, and KV fits,
    laid out for ``width`` cells."""
    sliding = (
        f"; {d['sliding_layers']} of {d['layers']} layers keep only the last {d['sliding_window']} positions"
        if d.get("sliding_layers") else ""
    )
    head = Text.assemble(
        (f"{d['model']}", "bold"), f" · {d['params'] / 1e6:.0f} M parameters · {d['dtype']} · weights ",
        (size(d["weight_bytes"]), "bold"), f" · {d['layers']} layers, {d['kv_heads']} KV head(s) × {d['head_dim']}",
        f" · KV cache {size(d['kv_bytes_per_token'])} per token{sliding}",
    )
    sheet = f" (datasheet {d['datasheet_gb_s']:,.0f} GB/s)" if d.get("datasheet_gb_s") else ""
    bw = Text.assemble(
        ("memory bandwidth ", "bold"), f"{d['bandwidth_gb_s']:,.1f} GB/s on {d['device']}{sheet} — ",
        (d["bandwidth_method"], "dim"),
    )
    flops = Text.assemble(
        ("peak compute ", "bold"), f"{d['peak_tflops']:,.2f} TFLOP/s — ", (d["peak_tflops_method"], "dim"),
    ) if d.get("peak_tflops") else Text()
    from rich import box

    def decode_table(cells: int) -> Table:
        table = Table(title="decode step: measured vs bandwidth floor", title_justify="left", header_style="bold",
                      box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False)
        for name in ("batch", "ctx", "step\nms", "floor\nms", "floor /\nmeas.", "", "GB/s\nused",
                     f"floor @\n{d['seq_len']:,}", "tok/s"):
            table.add_column(name, justify="left" if name.startswith("floor /") else "right", no_wrap=True)
        for m in d["measurements"]:
            frac = m.get("floor_fraction")
            table.add_row(
                str(m["batch_size"]), str(m["context_tokens"]), ms(m["step_ms"]), ms(m["floor_ms"]),
                bar(frac or 0.0, cells), "—" if frac is None else f"{100 * frac:.0f}%",
                "—" if m.get("achieved_gb_s") is None else f"{m['achieved_gb_s']:,.1f}",
                ms(m.get("floor_at_seq_len_ms")),
                "—" if m.get("tokens_per_s") is None else f"{m['tokens_per_s']:,.1f}",
            )
        return table

    table = decode_table(12 if width is None else bar_cells(decode_table, width, 12))
    caption = Text(f"ctx: tokens in the KV cache while measuring · floor @{d['seq_len']:,}: the floor in ms if every "
                   f"sequence held {d['seq_len']:,} tokens", style="dim")
    prefill = Table(title="prefill: measured TTFT vs compute floor", title_justify="left", header_style="bold",
                    box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False)
    prefill.add_column("batch", justify="right")
    prefill.add_column("prompt tokens", justify="right")
    prefill.add_column("TTFT ms (p50)", justify="right")
    prefill.add_column("floor ms", justify="right")
    for m in d["measurements"]:
        prefill.add_row(str(m["batch_size"]), str(m["prompt_tokens"]), ms(m.get("ttft_ms")),
                        ms(m.get("prefill_floor_ms")))
    fits = Table(
        title=f"KV cache: sequences that fit in {size(d['free_bytes'])} free ({d['free_bytes_method']})",
        title_justify="left", header_style="bold", box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False,
    )
    fits.add_column("tokens per sequence", justify="right")
    fits.add_column("KV bytes per sequence", justify="right")
    fits.add_column("sequences that fit", justify="right")
    for f in d["kv_fits"]:
        fits.add_row(f"{f['seq_len']:,}", size(f["kv_bytes_per_sequence"]), f"{f['sequences']:,}")
    at_len = Text.assemble(
        f"one sequence of {d['seq_len']:,} tokens holds ", (size(d["kv_bytes_at_seq_len"]), "bold"),
        " of KV cache → ", (f"{d['sequences_at_seq_len']:,}", "bold #e9c46a"), " such sequences fit",
    )
    notes = [Text(f"• {n}", style="dim") for n in d.get("notes", [])]
    return Group(head, bw, flops, Text(), table, caption, Text(), prefill, Text(), fits, at_len, *notes)


# -- modalities ----------------------------------------------------------------------------


def render_modalities(d: dict) -> RenderableType:
    """The image, audio and video calculators side by side with their token counts."""
    img, aud, vid = d["image"], d["audio"], d["video"]
    image = Table(title=f"image · {img['recipe']}", title_justify="left", show_header=False, box=None)
    image.add_column(style="dim")
    image.add_column()
    resize = "keeps aspect ratio" if img["aspect_kept"] else "squashed to a square"
    image.add_row("input", f"{img['width']} × {img['height']} px")
    image.add_row("resize", f"{img['resized_width']} × {img['resized_height']} px ({resize})")
    pix = ", ".join(f"{k}→{v[0]:+.2f}" for k, v in img["normalized_examples"].items())
    image.add_row("normalize", f"pixel/255, then (x − mean) / std: {pix}")
    image.add_row("patches", f"{img['grid_cols']} × {img['grid_rows']} of {img['patch']} px = {img['patches']:,}")
    if img["pool"] > 1:
        image.add_row("merge", f"{img['pool']} × {img['pool']} patches → 1 token")
    image.add_row("tensor", f"{tuple(img['pixel_shape'])} float32, {size(img['pixel_values_bytes'])}")
    image.add_row(Text("tokens", style="bold"), Text(f"{img['tokens']:,}", style="bold #e9c46a"))
    image.add_row("source", Text(img["source"], style="dim"))

    audio = Table(title=f"audio · {aud['recipe']}", title_justify="left", show_header=False, box=None)
    audio.add_column(style="dim")
    audio.add_column()
    audio.add_row("input", f"{aud['duration_s']:g} s at {aud['sample_rate']:,} Hz = {aud['samples']:,} samples")
    audio.add_row("pad", f"+{aud['silence_s']:.1f} s of silence → {aud['chunks']} × 30 s chunk(s)")
    audio.add_row("frames", f"window {aud['window_ms']:.0f} ms, hop {aud['hop_ms']:.0f} ms → {aud['frames']:,} frames")
    audio.add_row("features", f"{aud['mel_bins']} mel bins × {aud['feature_shape'][1]:,} frames per chunk")
    audio.add_row(Text("encoder positions", style="bold"), Text(f"{aud['encoder_positions']:,}", style="bold #e9c46a"))
    audio.add_row("source", Text(aud["source"], style="dim"))

    video = Table(title="video · frame sampling", title_justify="left", show_header=False, box=None)
    video.add_column(style="dim")
    video.add_column()
    video.add_row("input", f"{vid['duration_s']:g} s at {vid['source_fps']:g} fps = {vid['source_frames']:,} frames")
    capped = f" (capped at {vid['max_frames']})" if vid.get("max_frames") else ""
    video.add_row("sample", f"{vid['sampled_frames']:,} frames{capped}, {vid['sample_fps']:.2f} per second")
    stamps = ", ".join(f"{t:g}" for t in vid["timestamps_s"])
    video.add_row("at (s)", stamps + (" …" if vid["sampled_frames"] > len(vid["timestamps_s"]) else ""))
    merge = f", {vid['temporal_patch']} frames merged" if vid["temporal_patch"] > 1 else ""
    video.add_row("per frame", f"{vid['tokens_per_frame']:,} tokens{merge}")
    video.add_row(Text("tokens", style="bold"), Text(f"{vid['tokens']:,}", style="bold #e9c46a"))
    return Group(image, Text(), audio, Text(), video)
