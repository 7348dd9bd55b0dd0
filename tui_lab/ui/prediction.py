"""The measured answer to a "predict, then measure" step: the number its metric names in a result, for people."""

from __future__ import annotations

from tui_lab.formatting import number
from tui_lab.lab.experiment import Result
from tui_lab.lessons import Prediction, measure_metric


def measure(prediction: Prediction, result: Result) -> tuple[float | None, str]:
    """(value, what the learner reads beside their guess) for ``prediction.metric`` in ``result``.

    A missing value says why ("no batch met the budget", "the run was stopped before 128 tokens").
    """
    try:
        measured = measure_metric(result, prediction.metric)
    except ValueError as exc:
        return None, f"not measured ({exc})"
    if measured.value is None:
        return None, f"not measured ({measured.reason})"
    text = format_value(prediction, measured.value)
    return measured.value, f"{text} ({measured.reason})" if measured.reason else text


def format_value(prediction: Prediction, value: float) -> str:
    """``value`` in the prediction's unit (seconds shown as ms when the unit is ms)."""
    unit = (prediction.unit or "").strip()
    if unit in ("batch size", "batch"):
        return f"batch {number(value)}"
    if unit == "ms" and ("_s." in prediction.metric or prediction.metric.endswith("_s")):
        value *= 1000.0
    return number(value, unit)
