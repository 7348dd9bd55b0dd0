"""How fast the loaded engine works here, and so how long planned work will take on it.

A ``Pace`` holds what was measured on the loaded engine: how long it took to load, prefill times against
the prompt tokens of the batch, and decode step times per batch size. ``calibrate`` measures a first one
right after a load (a short prefill and a few decode steps at batch 1, 2, 8 and 32); every finished run refines
it (``observe_run``, ``observe_step``). ``Pace.seconds`` prices an experiment's ``PlannedRun``s, or says
it cannot (None). Plain data: a ``Pace`` crosses from the engine host to the UI.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from tui_lab.engines.base import is_cuda
from tui_lab.formatting import MISSING
from tui_lab.lab.planned import PlannedRun

if TYPE_CHECKING:
    from tui_lab.engines.base import Engine
    from tui_lab.lab.run import RunResult

CALIBRATION_BATCHES: tuple[int, ...] = (1, 2, 8, 32)
"""Batch sizes the calibration times. A CPU's step is not a straight line: on a 2-core machine the
transformers engine's step took 0.11 s at batch 1, 0.21–0.22 s at both 2 and 8, and 0.4 s at 32. Batch 2
catches the first jump; batch 32 keeps the steps of larger batches measured rather than drawn (drawn from
batch 8 in proportion, a 32-request step came out twice too long)."""
CALIBRATION_TOKENS = 4
"""New tokens per calibration run: one prefill and three decode steps (the four batches took 4.4 s on a 2-core
CPU with the embedded model)."""
KEPT_SAMPLES = 8
"""Prefill samples kept (the newest); decode steps keep one figure per batch size."""


def runs_on_cpu(device: str) -> bool:
    """Whether an engine that reports ``device`` (``cpu``, ``cuda:0 (NVIDIA H100)``, ``remote host``) runs on a CPU."""
    return str(device).strip().lower().split(" ")[0].split(":")[0] == "cpu"


@dataclass(frozen=True)
class Pace:
    """The loaded engine's measured speed on ``device``.

    ``steps`` are (batch size, seconds per decode step), one per batch size, sorted; ``prefills`` are
    (prompt tokens of the whole batch, seconds to the first token), newest last; ``load_s`` is how long
    loading the engine took (what each variant of a comparison pays again).
    """

    device: str
    load_s: float | None = None
    steps: tuple[tuple[int, float], ...] = ()
    prefills: tuple[tuple[int, float], ...] = ()

    @property
    def known(self) -> bool:
        """Whether anything was measured to price a generation with."""
        return bool(self.steps) and bool(self.prefills)

    # ----------------------------------------------------------------------------------------- refining

    def with_step(self, batch_size: int, step_s: float) -> Pace:
        """The pace with the decode step at ``batch_size`` measured as ``step_s`` (the newest figure wins)."""
        if batch_size < 1 or not step_s > 0:
            return self
        steps = dict(self.steps)
        steps[batch_size] = step_s
        return replace(self, steps=tuple(sorted(steps.items())))

    def with_prefill(self, tokens: int, seconds: float) -> Pace:
        """The pace with a prefill of ``tokens`` prompt tokens (the whole batch) measured as ``seconds``."""
        if tokens < 1 or not seconds > 0:
            return self
        kept = [(t, s) for t, s in self.prefills if t != tokens]
        return replace(self, prefills=(*kept, (tokens, seconds))[-KEPT_SAMPLES:])

    # ----------------------------------------------------------------------------------------- pricing

    def step_s(self, batch_size: int) -> float | None:
        """Seconds per decode step at ``batch_size``: measured, or drawn between (and beyond) the measured ones.

        Beyond the largest measured batch the last slope goes on; on a CPU, whose cores are out of arithmetic
        there, the step grows at least in proportion to the batch.
        """
        if not self.steps:
            return None
        steps = self.steps
        for (b0, s0), (b1, s1) in zip(steps, steps[1:], strict=False):
            if b0 <= batch_size <= b1:
                return s0 + (s1 - s0) * (batch_size - b0) / (b1 - b0)
        if batch_size <= steps[0][0]:
            return steps[0][1]
        b1, s1 = steps[-1]
        slope = max(0.0, (s1 - steps[-2][1]) / (b1 - steps[-2][0])) if len(steps) > 1 else 0.0
        drawn = s1 + slope * (batch_size - b1)
        return max(drawn, s1 * batch_size / b1) if self.on_cpu else drawn

    @property
    def on_cpu(self) -> bool:
        """Whether the pace was measured on a CPU."""
        return runs_on_cpu(self.device)

    def prefill_s(self, tokens: int) -> float | None:
        """Seconds to prefill ``tokens`` prompt tokens (the whole batch): a fixed cost plus a cost per token,
        fitted to the measured prefills (a straight line through one of them when there is only one)."""
        if not self.prefills:
            return None
        xs = [float(t) for t, _ in self.prefills]
        ys = [s for _, s in self.prefills]
        if len(set(xs)) < 2:
            return max(ys) * tokens / xs[0] if tokens > xs[0] else max(ys)
        mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / \
            sum((x - mean_x) ** 2 for x in xs)
        slope = max(0.0, slope)
        base = max(0.0, mean_y - slope * mean_x)
        return base + slope * tokens

    def run_s(self, run: PlannedRun) -> float | None:
        """Seconds one generation of ``run`` takes (its prefill, then a decode step per further token)."""
        step = self.step_s(run.batch_size)
        prefill = self.prefill_s(run.batch_size * run.prompt_tokens)
        if step is None or prefill is None:
            return None
        if not run.recompute:
            return prefill + max(0, run.new_tokens - 1) * step
        # Without a KV cache every step is a prefill of the sequence so far.
        total = prefill
        for i in range(1, run.new_tokens):
            total += self.prefill_s(run.batch_size * (run.prompt_tokens + i)) or 0.0
        return total

    def seconds(self, plan: Sequence[PlannedRun] | None) -> float | None:
        """How long ``plan`` takes here (None when the plan is unknown or this pace cannot price part of it)."""
        if plan is None or not self.known:
            return None
        on_gpu = is_cuda(self.device)
        total = 0.0
        for run in plan:
            if run.runs_on == "gpu" and not on_gpu:
                continue  # no GPU here: that variant is named, not run
            if run.runs_on == "cpu" and on_gpu:
                return None  # a CPU variant beside a GPU: nothing here measured the CPU's pace
            if run.loads:
                if self.load_s is None:
                    return None
                total += run.loads * self.load_s
            if not run.repeats:
                continue
            once = self.run_s(run)
            if once is None:
                return None
            total += max(run.repeats * once, run.at_least_s)
        return total


def about(seconds: float | None) -> str:
    """How long, for people: "about 70 s here", "about 4 min here" ("—" when it cannot be told)."""
    if seconds is None:
        return MISSING
    if seconds < 1:
        return "under a second here"
    if seconds < 100:
        return f"about {max(1, round(seconds / 5) * 5 if seconds >= 20 else round(seconds))} s here"
    return f"about {round(seconds / 60)} min here"


# ------------------------------------------------------------------------------------------ measuring


def observe_run(pace: Pace, result: RunResult) -> Pace:
    """``pace`` refined by a finished batch run: its median decode step at its batch size, and its median
    time to first token against the batch's (padded) prompt tokens."""
    from tui_lab.metrics import percentile, tpot, ttft

    sent = [r.trace for r in result.sent()]
    if not sent:
        return pace
    step = percentile([v for v in (tpot(t) for t in sent) if v is not None], 50)
    first = percentile([v for v in (ttft(t) for t in sent) if v is not None], 50)
    if step is not None:
        pace = pace.with_step(len(sent), step)
    longest = max(int(t.prompt_tokens or 0) for t in sent)
    if first is not None and longest > 0:
        pace = pace.with_prefill(len(sent) * longest, first)
    return pace


def observe_step(pace: Pace, batch_size: int, step_s: float | None) -> Pace:
    """``pace`` refined by a decode step measured elsewhere (a sweep point's median TPOT)."""
    return pace if step_s is None else pace.with_step(batch_size, step_s)


def calibrate(engine: Engine, load_s: float | None = None, stop: threading.Event | None = None) -> Pace:
    """Measure ``engine``'s pace: greedy runs of ``CALIBRATION_TOKENS`` tokens at each ``CALIBRATION_BATCHES``
    size on the sweeps' seeded prompts. A batch the engine refuses is left out; ``stop`` ends it early."""
    from tui_lab.engines.base import Request, SamplingParams
    from tui_lab.errors import LabError
    from tui_lab.lab.prompts import prompt_schedule
    from tui_lab.lab.run import execute_run

    pace = Pace(device=str(engine.info.device), load_s=load_s)
    sampling = SamplingParams(max_new_tokens=CALIBRATION_TOKENS, temperature=0.0, ignore_eos=True)
    for batch in CALIBRATION_BATCHES:
        if stop is not None and stop.is_set():
            break
        requests = [Request(f"pace-{i}", text) for i, text in enumerate(prompt_schedule(batch))]
        try:
            result = execute_run(engine, requests, sampling, stop)
        except LabError:
            continue
        if not result.error:
            pace = observe_run(pace, result)
    return pace
