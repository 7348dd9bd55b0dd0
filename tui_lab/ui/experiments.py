"""The bridge between the lab's experiment registry and the panel.

``tui_lab.lab.experiments`` says what each experiment is and which parameters
it takes; this module turns a step's preset into control values, builds sweep
plans from the learner's current settings, and turns results into table rows and
renderables. Experiments themselves run in the engine host, by name.
"""

from __future__ import annotations

import json
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.pretty import Pretty
from rich.table import Table
from rich.text import Text

from tui_lab.ui.theme import BAR_WIDTH, TTFT_STYLE, format_rate, format_seconds

SETTING_KEYS = ("prompt", "batch_size", "max_new_tokens", "top_p", "top_k", "repetition_penalty", "seed")
"""Experiment parameters that are also controls (temperature is handled with greedy)."""


def validate(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """The experiment's defaults overlaid with ``params``, checked by the registered experiment object
    (``InvalidInput`` if bad): every experiment a lesson names, the lesson 04–06 ones included."""
    from tui_lab.lab.experiment import get

    return get(name).validate(params)


def settings_changes(params: dict[str, Any]) -> dict[str, Any]:
    """Control values a step preset sets (only keys the controls know)."""
    changes = {k: params[k] for k in SETTING_KEYS if params.get(k) is not None}
    if "num_requests" in params and "batch_size" not in changes:
        from tui_lab.engines.base import MAX_BATCH_SIZE

        changes["batch_size"] = min(int(params["num_requests"]), MAX_BATCH_SIZE)
    if "temperature" in params and params["temperature"] is not None:
        temperature = float(params["temperature"])
        changes["greedy"] = temperature == 0.0
        if temperature > 0:
            changes["temperature"] = temperature
    if "prompts" in params and params["prompts"] and "prompt" not in changes:
        changes["prompt"] = params["prompts"][0]
    if "text" in params and params["text"] and "prompt" not in changes:
        changes["prompt"] = params["text"]
    return changes


def _overlay_settings(name: str, params: dict[str, Any], settings: Any) -> dict[str, Any]:
    """The step's parameters with the learner's current control values on top (where the experiment takes them)."""
    from tui_lab.lab.experiments import get_experiment

    allowed = set(get_experiment(name).allowed_keys)
    sampling = settings.sampling()
    current = {
        "prompt": settings.prompt, "batch_size": settings.batch_size, "max_new_tokens": settings.max_new_tokens,
        "temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": sampling.top_k,
        "repetition_penalty": sampling.repetition_penalty, "seed": sampling.seed,
    }
    merged = dict(params)
    for key, value in current.items():
        if key in allowed:
            merged[key] = value
    for key in ("model", "engine", "device"):
        merged.pop(key, None)
    return merged


def build_sweep_plan(name: str, params: dict[str, Any], settings: Any) -> Any:
    """The lab's ``SweepPlan`` for ``name`` with the current controls applied."""
    from tui_lab.lab.experiments import sweep_plan

    return sweep_plan(name, _overlay_settings(name, params, settings))


def budget_line_s(params: dict[str, Any], default: float) -> float:
    """Where the trade-off chart's budget line starts for a sweep with ``params``: its budget's E2E p90
    limit (a preset's or one given), else ``default``."""
    from tui_lab.metrics import BUDGET_PRESETS

    budget = params.get("latency_budget")
    limits = BUDGET_PRESETS[budget].limits if isinstance(budget, str) and budget in BUDGET_PRESETS else budget
    if isinstance(limits, dict):
        for key in ("e2e_p90", "e2e_p50"):
            if isinstance(limits.get(key), (int, float)):
                return float(limits[key])
    return default


def sweep_kind(name: str) -> str:
    """Chart axis kind of a sweep experiment."""
    return {"batch_sweep": "batch", "length_sweep": "length", "sampling_grid": "sampling"}.get(name, "batch")


def prompts_for(prompt: str, batch_size: int, seed: int) -> list[str]:
    """The learner's prompt first, then the lab's seeded schedule (varied prompts, as a real batch has)."""
    if batch_size <= 1:
        return [prompt]
    from tui_lab.lab.prompts import prompt_schedule

    return [prompt, *prompt_schedule(batch_size - 1, seed)]


def summary_row(label: str, batch_size: int, summary: Any, state: str) -> dict[str, Any]:
    """A results-table / CSV row from a ``RunSummary``."""
    return {
        "label": label, "kind": "run", "batch_size": batch_size,
        "output_tokens_per_s": summary.output_tokens_per_s,
        "ttft_p50": summary.ttft_s.p50, "ttft_p90": summary.ttft_s.p90,
        "e2e_p50": summary.e2e_s.p50, "e2e_p90": summary.e2e_s.p90,
        "tpot_p50": summary.tpot_s.p50, "tpot_p90": summary.tpot_s.p90,
        "itl_p50": summary.itl_s.p50, "itl_p90": summary.itl_s.p90,
        "n": summary.requests, "output_tokens": summary.output_tokens, "state": state,
    }


def point_row(name: str, point: Any, cp: Any) -> dict[str, Any]:
    """A results-table / CSV row from a sweep point."""
    status = getattr(point, "status", "partial" if cp.partial else "ok")
    return {
        "label": cp.label, "kind": name, "batch_size": getattr(point, "batch_size", ""),
        "output_tokens_per_s": cp.throughput,
        "ttft_p50": cp.ttft_p50, "ttft_p90": cp.ttft_p90, "e2e_p50": cp.e2e_p50, "e2e_p90": cp.e2e_p90,
        "tpot_p50": cp.tpot_p50, "tpot_p90": cp.tpot_p90,
        "n": getattr(getattr(point, "e2e_s", None), "n", ""), "state": status,
        "error": getattr(point, "error", None), "noise": cp.noise or None,
    }


def measured_value(prediction: Any, result: Any) -> float | None:
    """The number ``prediction.metric`` names in ``result`` (None when not measured)."""
    return measure(prediction, result)[0]


def measure(prediction: Any, result: Any) -> tuple[float | None, str]:
    """(value, what the learner reads beside their guess) for ``prediction.metric`` in ``result``.

    A missing value says why ("no batch met the budget", "the run was stopped before 128 tokens").
    """
    from tui_lab.lessons import measure_metric

    try:
        measured = measure_metric(result, prediction.metric)
    except ValueError as exc:
        return None, f"not measured ({exc})"
    if measured.value is None:
        return None, f"not measured ({measured.reason})"
    text = format_value(prediction, measured.value)
    return measured.value, f"{text} ({measured.reason})" if measured.reason else text


def format_measured(prediction: Any, result: Any) -> str:
    """The measured value named by ``prediction.metric`` in ``result``, in the prediction's unit, or why not."""
    return measure(prediction, result)[1]


def format_value(prediction: Any, value: float) -> str:
    """``value`` in the prediction's unit (seconds shown as ms when the unit is ms)."""
    unit = (getattr(prediction, "unit", "") or "").strip()
    if unit in ("batch size", "batch"):
        return f"batch {value:g}"
    seconds_metric = "_s." in prediction.metric or prediction.metric.endswith("_s")
    if unit == "ms" and seconds_metric:
        value *= 1000.0
    return f"{value:,.3g} {unit}".strip()


def _sized_bar(value: float | None, scale: float, style: str, cells: int) -> Text:
    """A bar of at most ``cells`` cells for ``value`` on a ``scale`` that fills them."""
    if value is None or scale <= 0:
        return Text("")
    n = max(1, round(value / scale * cells))
    return Text("█" * min(n, cells), style)


def render_device_comparison(result: Any, width: int | None = None) -> RenderableType:
    """Per-run E2E bars for each device, with the median and spread, sized to ``width`` cells."""
    from tui_lab.ui.fit import bar_cells

    devices = list(getattr(result, "devices", []))
    scale = max((r.e2e_s or 0.0 for d in devices for r in d.runs), default=0.0)

    def build(cells: int) -> Table:
        table = Table(title="CPU vs GPU · E2E per run (same prompt, greedy)", expand=False,
                      box=box.SIMPLE_HEAD, padding=(0, 1))
        for col in ("device", "run", "E2E", "", "tok/s", "spread"):
            table.add_column(col, no_wrap=True)
        for d in devices:
            if not d.available:
                table.add_row(d.device, "—", Text(f"not run: {d.reason}", "yellow"), "", "", "")
                continue
            style = "green" if d.device == "cuda" else "cyan"
            for r in d.runs:
                table.add_row(d.device, str(r.run_index), format_seconds(r.e2e_s),
                              _sized_bar(r.e2e_s, scale, style, cells), format_rate(r.tokens_per_s), "")
            table.add_row(Text(d.device, "bold"), "median", Text(format_seconds(d.median_e2e_s), "bold"),
                          _sized_bar(d.median_e2e_s, scale, "bold " + style, cells),
                          Text(format_rate(d.median_tokens_per_s), "bold"),
                          f"{d.spread_pct:.0f}%" if d.spread_pct is not None else "—")
        return table

    cells = BAR_WIDTH if width is None else bar_cells(build, width, BAR_WIDTH)
    return Group(build(cells), Text(getattr(result, "note", ""), "bold"))


def render_kv_comparison(result: Any, width: int | None = None) -> RenderableType:
    """Step times of the naive loop against the KV-cache loop, sized to ``width`` cells."""
    from tui_lab.ui.fit import bar_cells

    modes = list(getattr(result, "modes", []))
    scale = max((t for m in modes for t in m.step_times_s[1:]), default=0.0)

    def build(cells: int) -> Table:
        table = Table(title="decoding without and with a KV cache (same prompt, greedy)", box=box.SIMPLE_HEAD,
                      padding=(0, 1))
        for col in ("mode", "E2E", "tok/s", "step growth", "last steps"):
            table.add_column(col, no_wrap=True)
        for m in modes:
            name = "no cache" if m.kv_cache is False else m.mode
            if m.error:
                table.add_row(name, Text(m.error, "red"), "", "", "")
                continue
            growth = m.growth()
            spark = Text()
            for t in m.step_times_s[1:][-cells:]:
                level = 0 if scale <= 0 else min(7, int(t / scale * 7))
                spark.append("▁▂▃▄▅▆▇█"[level], TTFT_STYLE if m.kv_cache is False else "green")
            table.add_row(name, format_seconds(m.e2e_s), format_rate(m.tokens_per_s),
                          "—" if growth is None else f"×{growth:.2f}", spark)
        return table

    cells = BAR_WIDTH if width is None else bar_cells(build, width, BAR_WIDTH)
    foot = Text()
    if any(m.kv_cache is False for m in modes):
        foot.append("no cache: every step recomputes the whole sequence. ", "dim")
    if getattr(result, "speedup", None):
        foot.append(f"KV cache is {result.speedup:.1f}x faster end to end. ", "bold")
    if getattr(result, "same_text", None) is not None:
        foot.append("Same text from both loops." if result.same_text else "The texts differ (they should not).")
    return Group(build(cells), foot)


def render_result(name: str, result: Any) -> RenderableType:
    """A renderable for a comparison or other experiment result."""
    if name == "cpu_vs_gpu":
        return render_device_comparison(result)
    if name == "kv_cache_compare":
        return render_kv_comparison(result)
    try:
        from tui_lab.ui.serving_views import SERVING_EXPERIMENTS, render_serving
    except ImportError:
        pass
    else:
        if name in SERVING_EXPERIMENTS:
            return render_serving(name, result)
    to_dict = getattr(result, "to_dict", None)
    data = to_dict() if callable(to_dict) else result
    try:
        return Pretty(json.loads(json.dumps(data, default=str)))
    except (TypeError, ValueError):
        return Text(repr(data))
