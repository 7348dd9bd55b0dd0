"""``benchmarks/bench_ui.py --device``: headless and in-app runs over fresh loads, taking turns, with a fake runner.

The figures are made up; the order of the loads and the statistics are checked, never a clock.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("textual")


def _bench_ui():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_ui.py"
    spec = importlib.util.spec_from_file_location("bench_ui_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sides_take_turns_over_fresh_loads_and_the_ratio_has_its_range(tmp_path, monkeypatch):
    ui = _bench_ui()
    calls = []
    headless = iter([1000.0, 1040.0, 980.0])
    app = iter([990.0, 1010.0, 1000.0])

    def fake_headless(engine, model, device, batches, tokens, repeats):
        calls.append("headless")
        value = next(headless)
        return {b: value * b for b in batches}

    async def fake_app(engine, model, device, batches, tokens, repeats):
        calls.append("app")
        value = next(app)
        return {b: {"tokens_per_s": value * b, "key_ms_p50": 3.0, "key_ms_p99": 9.0 + len(calls), "keys": 5,
                    "ui_rss_mb": [100.0, 101.0]} for b in batches}

    monkeypatch.setattr(ui, "headless_figures", fake_headless)
    monkeypatch.setattr(ui, "app_figures", fake_app)
    doc = ui.engine_in_app(["transformers"], "m", "cpu", [1, 4], 8, 1, str(tmp_path), loads=3)
    assert calls == ["headless", "app"] * 3
    assert [r["load"] for r in doc["per_load"]] == [0, 0, 1, 1, 2, 2]
    (one, four) = doc["runs"]
    assert one["batch_size"] == 1 and one["loads"] == 3
    assert one["headless_tokens_per_s"] == 1000.0 and one["app_tokens_per_s"] == 1000.0
    assert one["ratio"] == pytest.approx(1.0)
    assert one["ratio_range"] == pytest.approx([990 / 1040, 1010 / 980])
    assert one["measurable"] is False  # the range covers 1.0
    assert one["key_ms_p99"] == 15.0 and one["keys"] == 15
    assert four["app_tokens_per_s"] == 4000.0
    saved = json.loads(next(tmp_path.glob("ui-*.json")).read_text())
    assert saved["loads"] == 3 and len(saved["runs"]) == 2
