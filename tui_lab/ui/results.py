"""What the session measured: one row per run and per sweep point, and the last result whole (what ``e`` exports).

A row is flat (a CSV line, a line of the Results table) and names what produced it: when, the lesson step
(``02.3 The knee``) and the experiment, so several "batch 1" rows are told apart. A sweep point's row also
lists its measured runs (``runs``). The last result is kept as its object and turned into JSON only when
exported, since a long run holds many tokens.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from tui_lab.lab.experiment import Result
from tui_lab.lab.export import write_csv, write_json
from tui_lab.lab.sweep import SweepPoint
from tui_lab.lessons import Lesson, Step
from tui_lab.metrics import RunSummary
from tui_lab.ui.live import LiveFigures
from tui_lab.ui.widgets.charts import ChartPoint

Row = dict[str, object]
"""One line of the Results table and of the CSV export."""
Document = dict[str, object]
"""A plain-JSON document."""


def step_label(lesson: Lesson | None, step: Step | None) -> str:
    """``02.3 The knee``: the lesson, the step's number in it and its title ("" for no step)."""
    if lesson is None or step is None:
        return ""
    number = next((i + 1 for i, s in enumerate(lesson.steps) if s is step or s.key == step.key), 0)
    return f"{lesson.id}.{number} {step.title}"


def provenance(experiment: str, lesson: Lesson | None, step: Step | None) -> Row:
    """The fields that say what a row comes from: when, the step and the experiment (they lead the row)."""
    now = time.time()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"
    return {"time": stamp, "step": step_label(lesson, step), "experiment": experiment}


def run_figures(point: SweepPoint) -> list[Row]:
    """Each measured run of a sweep point (the warm-ups are not kept), numbered from 1."""
    return [{"run": i + 1, "output_tokens_per_s": r.output_tokens_per_s, "ttft_p50": r.ttft_p50_s,
             "e2e_p50": r.e2e_p50_s, "tpot_p50": r.tpot_p50_s, "wall_s": r.wall_s, "requests": r.requests,
             "partial": r.partial} for i, r in enumerate(point.runs)]


def run_row(label: str, batch_size: int, summary: RunSummary, state: str) -> Row:
    """The row of a finished (or stopped) run."""
    return {
        "label": label, "kind": "run", "batch_size": batch_size,
        "output_tokens_per_s": summary.output_tokens_per_s,
        "ttft_p50": summary.ttft_s.p50, "ttft_p90": summary.ttft_s.p90,
        "e2e_p50": summary.e2e_s.p50, "e2e_p90": summary.e2e_s.p90,
        "tpot_p50": summary.tpot_s.p50, "tpot_p90": summary.tpot_s.p90,
        "itl_p50": summary.itl_s.p50, "itl_p90": summary.itl_s.p90,
        "n": summary.requests, "output_tokens": summary.output_tokens, "state": state,
    }


def cut_run_row(label: str, batch_size: int, figures: LiveFigures) -> Row:
    """The row of a run cut short before its result came (the engine process died): what the panel saw, partial."""
    return {
        "label": label, "kind": "run", "batch_size": batch_size,
        "output_tokens_per_s": figures.system_tokens_per_s,
        "ttft_p50": figures.ttft.p50, "ttft_p90": figures.ttft.p90,
        "tpot_p50": figures.tpot.p50, "tpot_p90": figures.tpot.p90,
        "itl_p50": figures.itl.p50, "itl_p90": figures.itl.p90,
        "n": figures.requests, "output_tokens": figures.tokens_done, "state": "partial",
    }


def point_row(experiment: str, point: ChartPoint, runs: list[Row] | None = None) -> Row:
    """The row of one sweep or load point (``runs``: its measured runs' figures, ``run_figures``)."""
    return {
        "label": point.label, "kind": experiment, "batch_size": point.batch_size,
        "output_tokens_per_s": point.throughput,
        "ttft_p50": point.ttft_p50, "ttft_p90": point.ttft_p90, "e2e_p50": point.e2e_p50, "e2e_p90": point.e2e_p90,
        "tpot_p50": point.tpot_p50, "tpot_p90": point.tpot_p90,
        "n": point.requests, "state": point.status, "error": point.error, "noise": point.noise or None,
        "runs": runs or [],
    }


@dataclass(frozen=True)
class Kept:
    """The last result: what produced it (``kind``: "run" or the experiment's name) and with which settings."""

    kind: str
    settings: Document
    result: Result


class ResultsStore:
    """Every row of the session, in order, and the last result."""

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.last: Kept | None = None

    def add(self, row: Row) -> None:
        """One more run or sweep point (or one kept from an earlier session)."""
        self.rows.append(row)

    def keep(self, kind: str, settings: Document, result: Result) -> None:
        """Keep ``result`` as the last one."""
        self.last = Kept(kind, settings, result)

    def last_document(self) -> Document | None:
        """The last result's JSON form with its kind and settings (None before any)."""
        if self.last is None:
            return None
        data = self.last.result.to_dict()
        if self.last.kind == "run":
            return {"kind": "run", "settings": self.last.settings, **data}
        return {"kind": self.last.kind, "settings": self.last.settings, "result": data}

    @property
    def empty(self) -> bool:
        """Nothing measured yet."""
        return not self.rows and self.last is None

    def export(self, folder: Path, settings: Document, engine: Document | None) -> list[Path]:
        """Write ``results-<time>.json`` (everything) and ``.csv`` (one row per run and point) into ``folder``.

        ``LabError`` in one line when a file cannot be written.
        """
        stamp = time.strftime("%Y%m%d-%H%M%S")
        doc = {"settings": settings, "engine": engine, "results": self.rows, "last": self.last_document()}
        written = [write_json(folder / f"results-{stamp}.json", doc)]
        if self.rows:
            written.append(write_csv(folder / f"results-{stamp}.csv", self.rows))
        return written
