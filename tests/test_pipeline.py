"""Pipeline inspections and their views.

The inspections that need a model run on the real embedded Gemma 3 270M on CPU
(``hf_engine`` session fixture from conftest); they are kept to a few short
forward passes. The views are also checked on hand-made data.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from tui_lab.engines.base import Request, SamplingParams
from tui_lab.errors import InvalidInput
from tui_lab.lab.experiment import RunContext
from tui_lab.lab.inventory import get
from tui_lab.lab.modalities import calculate
from tui_lab.lab.pipeline import datasheet_bandwidth, logits_view, padding_view, roofline_view, tokenize_view
from tui_lab.lab.run import execute_run
from tui_lab.lessons import load_lessons, resolve_metric
from tui_lab.views import render as view
from tui_lab.views import to_text
from tui_lab.views.inspect import bar, render_modalities, render_padding


def render(result: object, width: int = 140) -> str:
    """Render to plain text the way a terminal of ``width`` columns would show it."""
    return to_text(view(result, width), width)  # type: ignore[arg-type]


def run_inspection(name: str, engine: object, params: dict) -> object:
    """Inspection ``name`` with ``params`` checked, as the runner runs it."""
    exp = get(name)
    return exp.run(exp.validate(params), RunContext(engine=engine))  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ no model needed


def test_inspections_accept_their_defaults_without_a_model() -> None:
    assert run_inspection("modalities", None, {}).image.tokens == 256  # type: ignore[attr-defined]


def test_user_errors() -> None:
    with pytest.raises(InvalidInput, match="transformers engine"):
        tokenize_view(object(), "hi")
    with pytest.raises(InvalidInput, match="has no parameter"):
        run_inspection("tokenize", object(), {"txt": "hi"})
    with pytest.raises(InvalidInput, match="has no parameter"):
        run_inspection("padding", object(), {"prompts": ["a", "b"], "k": 3})


def test_the_prompt_box_sets_the_text_to_tokenize() -> None:
    assert get("tokenize").controls == {"text": "prompt"}


class _EchoTokenizer:
    """Just enough of a tokenizer to see which text the tokenize inspection was given."""

    all_special_ids: list[int] = []
    bos_token = eos_token = pad_token = unk_token = None

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict:
        return {"input_ids": [ord(c) for c in text]}

    def convert_ids_to_tokens(self, ids: list[int]) -> list[str]:
        return [chr(i) for i in ids]

    def decode(self, ids: list[int], **kwargs: object) -> str:
        return "".join(chr(i) for i in ids)

    def __len__(self) -> int:
        return 0x110000


def test_tokenize_takes_its_text_and_defaults_to_the_lab_prompt() -> None:
    class Engine:
        tokenizer = _EchoTokenizer()

    assert run_inspection("tokenize", Engine(), {"text": "xy"}).text == "xy"  # type: ignore[attr-defined]
    assert run_inspection("tokenize", Engine(), {}).n_tokens == len("The future of AI is")  # type: ignore[attr-defined]


def test_modalities_view_renders() -> None:
    out = render(calculate({"image_width": 1280, "image_height": 720}))
    assert "256" in out and "3,000 frames" in out and "1,500" in out and "15,360" in out
    # The same from plain data (as read back from a JSON export).
    plain = to_text(render_modalities(json.loads(json.dumps(asdict(calculate({}))))), 140)
    assert plain == render(calculate({}))


def test_bar_and_unknown_view() -> None:
    assert bar(1.0, 8).plain == "█" * 8
    assert bar(0.0, 8).plain == " " * 8
    assert bar(0.5, 8).plain == "████    "
    assert len(bar(0.33, 10).plain) == 10
    with pytest.raises(TypeError, match="no view"):
        view(42, 80)  # type: ignore[arg-type]


def test_datasheet_lookup() -> None:
    assert datasheet_bandwidth("NVIDIA H100 80GB HBM3") == 3350.0
    assert datasheet_bandwidth("NVIDIA H100 PCIe") == 2000.0
    assert datasheet_bandwidth("NVIDIA H200") == 4800.0
    assert datasheet_bandwidth("NVIDIA L4") == 300.0
    assert datasheet_bandwidth("Some Future GPU") is None


PADDING_DATA = {
    "prompts": ["a b c", "a"], "side": "left", "pad_token": "<pad>", "pad_token_id": 0,
    "ids": [[2, 5, 6, 7], [0, 0, 2, 5]], "pieces": [["<bos>", "a", "▁b", "▁c"], ["<pad>", "<pad>", "<bos>", "a"]],
    "mask": [[1, 1, 1, 1], [0, 0, 1, 1]], "lengths": [4, 2], "shape": [2, 4], "padding_fraction": 0.25,
}


def test_padding_view_draws_the_mask_grid() -> None:
    out = to_text(render_padding(PADDING_DATA, 140), 140)
    assert "shape (2, 4)" in out and "25% padding" in out
    mask = out.split("attention_mask")[1].splitlines()
    assert mask[1].split() == ["position", "0", "1", "2", "3"]
    assert mask[2].split() == ["0:", "4", "real", "1", "1", "1", "1"]
    assert mask[3].split() == ["1:", "2", "real", "0", "0", "1", "1"]


def test_the_padding_grids_label_their_rows_and_share_their_columns() -> None:
    """The input_ids grid had no row labels, and its columns did not line up with the pieces' and the mask's."""
    data = {**PADDING_DATA, "ids": [[2, 5, 6, 262100], [0, 0, 2, 5]]}
    for width in (140, 60):
        lines = to_text(render_padding(data, width), width).splitlines()
        grids = {}
        for title in ("tokens", "input_ids", "attention_mask"):
            start = lines.index(title)
            grids[title] = lines[start + 1:start + 4]
        for title, (positions, first, second) in grids.items():
            assert positions.startswith("position") and first.startswith("0:   4 real") and \
                second.startswith("1:   2 real"), title
        # every grid ends each column at the same place as its position number
        ends = [i for i, ch in enumerate(grids["tokens"][0]) if ch != " " and (i + 1 == len(grids["tokens"][0])
                                                                            or grids["tokens"][0][i + 1] == " ")]
        for title, rows in grids.items():
            for row in rows[1:]:
                assert all(row[i] != " " for i in ends[1:]), (title, row)
        assert "262100" in grids["input_ids"][1]  # an id is never cut


# ------------------------------------------------------------------------------------------ the real model


@pytest.fixture(scope="module")
def engine(hf_engine):  # noqa: ANN001, ANN201 - the session fixture from conftest
    """The loaded embedded model (transformers engine on CPU)."""
    return hf_engine


@pytest.mark.real_model
def test_tokenize_real(engine) -> None:  # noqa: ANN001
    text = "The future of AI is\nbright."
    view = tokenize_view(engine, text)
    tok = engine.tokenizer
    assert view.ids == tok(text)["input_ids"]
    assert view.n_tokens == len(view.ids) and view.vocab_size == 262_144
    # Gemma's tokenizer puts <bos> in front; it is marked special and skipped when decoding for users.
    assert view.pieces[0] == "<bos>" and view.special[0] and not any(view.special[1:])
    assert view.pieces[1:4] == ["The", "▁future", "▁of"]
    assert view.texts[2] == " future"
    assert view.decoded == "<bos>" + text and view.decoded_clean == text
    assert view.special_tokens["<bos>"] == 2 and view.special_tokens["<eos>"] == 1
    json.dumps(asdict(view))
    out = render(view)
    assert "special" in out and "▁future" in out and repr(text) in out


@pytest.mark.real_model
def test_padding_real(engine) -> None:  # noqa: ANN001
    prompts = ["The future of AI is", "Hello"]
    lens = [len(engine.tokenizer(p)["input_ids"]) for p in prompts]
    view = padding_view(engine, prompts)
    width = max(lens)
    assert view.shape == (2, width) and view.lengths == lens
    short = view.mask[1]
    assert short == [0] * (width - lens[1]) + [1] * lens[1]  # left padding: zeros first
    assert all(i == view.pad_token_id for i, m in zip(view.ids[1], short, strict=True) if m == 0)
    assert view.pad_token == "<pad>" and view.pad_token_id == 0
    assert view.padding_fraction == pytest.approx((width - lens[1]) / (2 * width))
    right = padding_view(engine, prompts, side="right")
    assert right.mask[1] == [1] * lens[1] + [0] * (width - lens[1])
    assert right.ids[0] == view.ids[0]
    with pytest.raises(InvalidInput):
        padding_view(engine, ["only one"])
    with pytest.raises(InvalidInput):
        padding_view(engine, prompts, side="middle")
    assert "attention_mask" in render(view)


@pytest.mark.real_model
def test_logits_real_and_greedy_matches_the_engine(engine) -> None:  # noqa: ANN001
    prompt = "The future of AI is"
    view = logits_view(engine, prompt, k=5)
    n = len(engine.tokenizer(prompt)["input_ids"])
    assert view.logits_shape == (1, n, 262_144) and view.input_shape == (1, n)
    assert view.logits_bytes == n * 262_144 * 4  # float32 on CPU
    probs = [t.prob for t in view.top[0]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1
    assert view.greedy[0].id == view.top[0][0].id and view.greedy[0].text == " in"
    # Greedy decoding appends exactly the top bar: the engine's first token is the same id.
    result = execute_run(engine, [Request("r0", prompt)], SamplingParams(max_new_tokens=1, temperature=0.0))
    assert result.requests[0].tokens[0].token_id == view.greedy[0].id
    batch = logits_view(engine, [prompt, "Hello"], k=3)
    assert batch.logits_shape[:2] == (2, n) and len(batch.top) == 2
    # Left padding keeps the first prompt's last-position distribution (up to float noise).
    assert batch.top[0][0].id == view.top[0][0].id
    assert batch.top[0][0].prob == pytest.approx(view.top[0][0].prob, abs=1e-3)
    out = render(view)
    assert "vocab=262,144" in out and "greedy pick" in out
    assert resolve_metric(view, "logits_shape[2]") == 262_144
    with pytest.raises(InvalidInput):
        logits_view(engine, prompt, k=0)


@pytest.mark.real_model
def test_roofline_real(engine) -> None:  # noqa: ANN001
    """Given bandwidth and FLOP/s (so nothing slow is measured), the floor is the arithmetic of the loaded model."""
    view = roofline_view(engine, batch_sizes=(1,), seq_len=8192, bandwidth_gb_s=10.0, peak_tflops=0.1, new_tokens=4)
    assert (view.layers, view.kv_heads, view.head_dim) == (18, 1, 256)
    assert (view.sliding_layers, view.sliding_window) == (15, 512)
    assert view.dtype == "float32" and 260e6 < view.params < 280e6
    assert view.weight_bytes == pytest.approx(view.params * 4)
    assert view.kv_bytes_per_token == 2 * 1 * 256 * 4 * 3  # 3 full-attention layers, float32
    assert view.bandwidth_method == "given" and view.peak_tflops_method == "given"
    (m,) = view.measurements
    assert m.step_ms is not None and m.step_ms > 0 and m.ttft_ms
    assert m.tokens_per_s == pytest.approx(1000.0 / m.step_ms)  # batch 1: one token per step
    assert m.floor_ms == pytest.approx(1000 * m.bytes_per_step / 10e9)
    assert m.floor_ms == pytest.approx(1000 * view.weight_bytes / 10e9, rel=0.01)  # weights dominate at batch 1
    assert m.prefill_floor_ms == pytest.approx(1000 * 2 * view.params * m.prompt_tokens / 0.1e12)
    # 8192 tokens: 3 layers × 8192 + 15 layers × 512 positions, 2 KiB per layer-position in float32.
    assert view.kv_bytes_at_seq_len == 2048 * (3 * 8192 + 15 * 512)
    assert view.sequences_at_seq_len == int(view.free_bytes // view.kv_bytes_at_seq_len)
    fit_lengths = [f.seq_len for f in view.kv_fits]
    assert fit_lengths == [2048, 8192, 32768]  # 131,072 is past Gemma 3 270M's 32k context
    assert all(f.kv_bytes_per_sequence > 0 for f in view.kv_fits)
    json.dumps(asdict(view))
    out = render(view)
    assert "floor" in out and "given" in out and "such sequences fit" in out
    with pytest.raises(InvalidInput, match="batch_sizes"):
        get("roofline").validate({"batch_sizes": [0]})


@pytest.mark.real_model
def test_lesson_inspections_run_on_the_real_model(engine) -> None:  # noqa: ANN001
    """Every tokenize/padding/logits step of the lessons runs with its preset and renders."""
    for lesson in load_lessons():
        for step in lesson.steps:
            if step.experiment not in ("tokenize", "padding", "logits", "modalities"):
                continue
            result = run_inspection(step.experiment, engine, step.params)
            assert render(result)
            if step.predict:
                assert resolve_metric(result, step.predict.metric) is not None, (lesson.id, step.title)
