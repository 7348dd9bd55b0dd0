"""The one place numbers are written for people: durations, counts and fixed table cells."""

from __future__ import annotations

from tui_lab.formatting import MISSING, fixed, number, seconds


def test_a_fixed_cell_keeps_its_format_and_says_what_is_missing() -> None:
    assert fixed(0.12345, "{:.3f}") == "0.123" and fixed(3.0, "{:9.3f}") == "    3.000"
    assert fixed(None) == MISSING and fixed(None, "{:.1f} ms", "n/a") == "n/a"
    assert fixed("vllm", "{:.2f}") == "vllm"  # a value the format does not fit is shown as it is


def test_durations_and_counts_carry_their_units() -> None:
    assert seconds(0.0123) == "12.3 ms" and seconds(None) == MISSING
    assert number(262144, "scores") == "262,144 scores"
