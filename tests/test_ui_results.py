"""The Results tab and what comes back after a restart: rows that name their step and experiment, each
measured run of a sweep point, and the rows and the last sweep chart kept with their steps (scripted engine)."""

from __future__ import annotations

import csv
import json

import pytest
from rich.console import Console

from tests.test_ui_app import ready, run_and_wait, saving_app, settled, wait_until
from tui_lab.ui.app import LabApp
from tui_lab.ui.testing import make_test_app
from tui_lab.ui.widgets.charts_pane import ChartsPane
from tui_lab.ui.widgets.results_table import COLUMNS, ResultsTable, row_detail

pytestmark = pytest.mark.timeout(60)


def cells(app: LabApp) -> list[dict[str, str]]:
    table = app.query_one(ResultsTable)
    return [dict(zip(COLUMNS, (str(c) for c in table.get_row_at(i)), strict=True)) for i in range(table.row_count)]


def plain(renderable) -> str:
    console = Console(width=100, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(renderable)
    return console.export_text()


async def run_the_run_and_the_sweep(pilot, app: LabApp) -> None:
    await run_and_wait(pilot, app)  # step 1: generate, batch 1
    await pilot.press("n")
    await run_and_wait(pilot, app)  # step 2: a batch sweep whose first point is batch 1 too


async def test_rows_name_their_step_and_experiment_in_the_table_and_the_csv(tmp_path):
    app = make_test_app(export_dir=str(tmp_path))
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot, app)
        await run_the_run_and_the_sweep(pilot, app)
        shown = cells(app)
        batch_one = [row for row in shown if row["batch"] == "1"]
        assert len(batch_one) == 2
        assert {(row["step"], row["experiment"]) for row in batch_one} == {("01.1", "generate"),
                                                                            ("01.2", "batch_sweep")}
        await pilot.press("e")
        await wait_until(pilot, lambda: app.last_export)
    written = next(p for p in app.last_export if p.suffix == ".csv")
    rows = list(csv.DictReader(written.open()))
    assert [(r["step"], r["experiment"]) for r in rows] == [("01.1 One request", "generate")] + \
        [("01.2 A batch sweep", "batch_sweep")] * 4
    assert list(rows[0])[:3] == ["time", "step", "experiment"]


async def test_selecting_a_sweep_point_lists_each_of_its_measured_runs():
    app = make_test_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot, app)
        await pilot.press("n")
        app.load_experiment(app.loaded.with_value("runs", 3))
        await run_and_wait(pilot, app)
        point = app.results[0]
        assert [r["run"] for r in point["runs"]] == [1, 2, 3]
        assert all(r["output_tokens_per_s"] and r["e2e_p50"] and r["tpot_p50"] for r in point["runs"])
        await pilot.press("4")
        table = app.query_one(ResultsTable)
        table.focus()
        table.move_cursor(row=0)
        await settled(pilot)
        detail = plain(app.query_one("#result-detail").content)
        assert "01.2 A batch sweep · batch_sweep · batch 1" in detail
        assert "3 measured runs of this point" in detail and detail.count("tok/s") >= 3


def test_a_first_run_slower_than_the_others_is_pointed_out():
    row = {"step": "04.9 Benchmarking pitfalls", "experiment": "batch_sweep", "label": "batch 1",
           "runs": [{"run": 1, "e2e_p50": 3.0}, {"run": 2, "e2e_p50": 1.0}, {"run": 3, "e2e_p50": 1.2}]}
    assert "run 1 took ×2.73 the others' median E2E" in plain(row_detail(row))
    steady = {**row, "runs": [{"run": 1, "e2e_p50": 1.0}, {"run": 2, "e2e_p50": 1.0}]}
    assert "run 1 took" not in plain(row_detail(steady))


async def test_results_and_the_last_sweep_chart_come_back_after_a_restart(tmp_path):
    path = tmp_path / "progress.json"
    app = saving_app(path)
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot, app)
        await run_the_run_and_the_sweep(pilot, app)
        before = cells(app)
        points = [p.label for p in app.query_one(ChartsPane).charts.points]
    saved = json.loads(path.read_text())["lessons"]["01"]["steps"]
    assert len(saved["one-request"]["rows"]) == 1 and len(saved["a-batch-sweep"]["rows"]) == 4
    again = saving_app(path)
    async with again.run_test(size=(160, 48)) as pilot:
        await ready(pilot, again)
        await settled(pilot)
        assert cells(again) == before and len(again.results) == 5
        charts = again.query_one(ChartsPane)
        assert [p.label for p in charts.charts.points] == points and charts.holds == "batch_sweep"
        assert "points from the last session" in str(charts.query_one("#charts-note").content)
