"""Figures the lessons quote must mean what the text says: think tokens, modelled TP figures,
speculation counters, the Mamba state under an fp8 KV cache."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace

import pytest

from tui_lab.engines.base import Request, SamplingParams
from tui_lab.engines.events import StreamEvent, TokenStep
from tui_lab.engines.scripted import ScriptedEngine
from tui_lab.lab.experiment import RunContext
from tui_lab.lab.inventory import get
from tui_lab.metrics.latency import RequestTrace
from tui_lab.metrics.memory import kv_design, mamba_state_bytes, vllm_state_dtypes
from tui_lab.metrics.toolmetrics import answer_start, think_section, time_to_first_answer
from tui_lab.models.arch import ARCH_MODELS

NEMO = ARCH_MODELS["nemotron-nano-9b-v2"].config


class TextEngine(ScriptedEngine):
    """The scripted engine, writing the given pieces (one per step) instead of its own words."""

    def __init__(self, pieces: Sequence[str]) -> None:
        super().__init__()
        self.pieces = list(pieces)

    def stream(self, requests: Sequence[Request], sampling: SamplingParams,
               stop: object = None) -> Iterator[StreamEvent]:
        step = 0
        for event in super().stream(requests, sampling, stop):  # type: ignore[arg-type]
            if isinstance(event, TokenStep):
                piece = self.pieces[min(step, len(self.pieces) - 1)]
                event = replace(event, texts=[piece] * len(event.texts))
                step += 1
            yield event


def _answer_latency(pieces: Sequence[str], max_new_tokens: int = 6):
    engine = TextEngine(pieces)
    engine.load()
    exp = get("answer_latency")
    return exp.run(exp.validate({"max_new_tokens": max_new_tokens}), RunContext(engine=engine,
                                                                                 engine_name="scripted"))


# ----------------------------------------------------------------------------------- think sections


def test_whitespace_before_the_answer_is_not_thinking() -> None:
    """A base model's reply that starts with "\\n\\n" was counted as one think token, TTFA one step late."""
    assert answer_start(["\n\n", "The", " answer"]) == 0
    assert think_section(["\n\n", "The", " answer"]) == (0, 0, 0)
    tr = RequestTrace("r", 0.0, [0.1, 0.2, 0.3], [1, 1, 1])
    assert time_to_first_answer(tr, ["\n\n", "The", " answer"]) == (pytest.approx(0.1), 0)


def test_a_tagged_think_section_counts_up_to_its_closing_tag() -> None:
    tr = RequestTrace("r", 0.0, [0.1, 0.2, 0.3, 0.4, 0.5], [1, 1, 1, 1, 1])
    texts = ["<think>", "hmm", "</think>", "\n\n", "391"]
    assert think_section(texts) == (4, 0, 3)
    assert time_to_first_answer(tr, texts) == (pytest.approx(0.5), 3)
    # A chat template that opened the section in the prompt: only the closing tag is in the reply.
    assert think_section(["so", " 17·23", "</think>", "391"]) == (3, 0, 3)
    # Whitespace before the opening tag is neither thinking nor answer.
    assert think_section([" ", "<think>", "a", "</think>", "b"]) == (4, 1, 4)
    # A tag that comes after answer text has begun is not a think section.
    assert think_section(["Sure", " <think>", "x", "</think>"]) == (0, 0, 0)
    assert think_section(["<think>", "still"]) == (None, 0, 2)


def test_answer_latency_of_a_reply_without_think_tags_says_so() -> None:
    result = _answer_latency(["\n\n", "391", " is", " the", " answer", "."])
    row = result.requests[0]
    assert row["think_tokens"] == 0 and row["thinks"] is False
    assert row["ttfa_ms"] == row["ttft_ms"] and result.ttfa_ms_p50 == result.ttft_ms_p50
    assert "no think section" in result.note


def test_answer_latency_counts_a_real_think_section() -> None:
    result = _answer_latency(["<think>", "17·23", "</think>", "\n", "391", "."])
    row = result.requests[0]
    assert row["think_tokens"] == 3 and row["thinks"] is True
    assert row["ttfa_ms"] > row["ttft_ms"] and result.note == ""


# ----------------------------------------------------------------------------------- one GPU or two


def _tp(params: dict | None = None):
    engine = ScriptedEngine()
    engine.load()
    exp = get("one_gpu_or_two")
    return exp.run(exp.validate(params or {"sweep": [1]}), RunContext(engine=engine, engine_name="scripted"))


def test_tp_figures_say_they_are_modelled_and_on_which_card() -> None:
    from tui_lab.lessons import measure_metric
    from tui_lab.views import render, to_text

    result = _tp()
    assert result.source == "modelled" and "H200" in result.card
    assert any("10 µs" in a and "assumption" in a for a in result.assumptions)
    assert set(result.modelled) == {"predicted", "tp2_over_tp1_batch1"}
    measured = measure_metric(result, "tp2_over_tp1_batch1")
    assert measured.value is not None and measured.reason.startswith("modelled as memory floor + all-reduces")
    assert measured.reason.endswith("not measured")
    assert "H200" in measured.reason and "10 µs" in measured.reason
    text = " ".join(to_text(render(result, 100), 100).split())
    assert "modelled (memory floor + all-reduces), not measured" in text and "modelled card: NVIDIA H200" in text


def test_a_card_other_than_the_h200_is_named_by_its_figures() -> None:
    result = _tp({"sweep": [1], "hbm_gbs": 3350, "allreduce_latency_us": 5})
    assert "H200" not in result.card and "3350 GB/s" in result.card
    assert "5 µs" in result.modelled["tp2_over_tp1_batch1"]


def test_a_measured_figure_carries_no_modelled_reason() -> None:
    from tui_lab.lessons import measure_metric

    assert measure_metric({"x": 2.0, "modelled": {"y": "computed"}}, "x").reason == ""
    assert measure_metric({"y": 2.0, "modelled": {"y": "computed"}}, "y").reason == "computed, not measured"


# ----------------------------------------------------------------------------------- speculation


class _Run:
    def __init__(self, traces: list[RequestTrace]) -> None:
        self.traces = traces

    def summary(self):
        from tui_lab.metrics import summarize_run

        return summarize_run(self.traces)


def test_speculation_tells_mean_acceptance_length_from_tokens_per_step() -> None:
    """vLLM's 1 + accepted/drafts (4.79) was shown as tokens per step beside 2.13 tokens per chunk."""
    from tui_lab.lab.traffic import _spec_row

    # 96 tokens: the prefill's token, 14 drafted steps (64 tokens), 31 steps with no draft (one token each).
    counts = [1] + [5] * 8 + [4] * 6 + [1] * 31
    assert sum(counts) == 96
    trace = RequestTrace("r0", 0.0, [0.01 * (i + 1) for i in range(len(counts))], counts)
    before = {"drafts": 3, "draft_tokens": 12, "accepted_tokens": 12, "steps": 10}
    after = {"drafts": 3 + 14, "draft_tokens": 12 + 56, "accepted_tokens": 12 + 50, "steps": 10 + 46}
    row = _spec_row("n-gram k=4", "repetitive", _Run([trace]), before, after)
    assert row.drafted_steps == 14 and row.steps == 46
    assert row.mean_acceptance_length == pytest.approx(1 + 50 / 14)
    assert row.tokens_per_step == pytest.approx(96 / 46)
    assert row.tokens_per_event == pytest.approx(96 / 46)  # one chunk per step here
    assert row.acceptance == pytest.approx(50 / 56)
    # Steps without a draft make one token and are left out of vLLM's mean: it is the larger number.
    assert row.mean_acceptance_length > row.tokens_per_step


def test_speculation_view_names_what_each_number_counts() -> None:
    from tui_lab.lab.traffic import SpecRow, SpeculationResult
    from tui_lab.views import render, to_text

    row = SpecRow("n-gram k=4", "repetitive", 23.0, 42.0, 2.13, 0.95, 2.09, 49.6, 4.79, 14, 46, 45, 96)
    text = " ".join(to_text(render(SpeculationResult(4, [row], 2.0, None, 2.13), 100), 100).split())
    assert "14/46" in text and "4.79" in text and "2.09" in text
    assert "over drafted steps only" in text


# ----------------------------------------------------------------------------------- Mamba state


def test_an_fp8_kv_cache_leaves_the_mamba_state_alone() -> None:
    """The fp8 row halved Nemotron's Mamba state; vLLM sets the state's dtype apart from the KV cache's."""
    bf16 = kv_design("nemotron-nano-9b-v2", NEMO, "as shipped", 4096, "bf16", 100e9)
    fp8 = kv_design("nemotron-nano-9b-v2", NEMO, "as shipped", 4096, "fp8", 100e9)
    assert fp8.fixed_state_bytes == bf16.fixed_state_bytes
    assert fp8.bytes_per_token == bf16.bytes_per_token / 2


def test_the_mamba_state_is_kept_as_vllm_keeps_it() -> None:
    # vLLM keeps Nemotron-H's conv state in the model's dtype and its SSM state in float32 unless told otherwise.
    assert vllm_state_dtypes(NEMO) == ("bfloat16", "float32")
    conv, ssm = 27 * 3 * (10240 + 2048), 27 * 10240 * 128
    assert mamba_state_bytes(NEMO, *vllm_state_dtypes(NEMO)) == conv * 2 + ssm * 4
    assert kv_design("nemotron-nano-9b-v2", NEMO).fixed_state_bytes == conv * 2 + ssm * 4
    assert vllm_state_dtypes({**NEMO, "mamba_ssm_cache_dtype": "bfloat16"}) == ("bfloat16", "bfloat16")
