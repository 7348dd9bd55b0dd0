"""The registered experiments (see ``tui_lab.lab.experiment``), in the order lessons introduce them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tui_lab.engines.base import Request
from tui_lab.lab.experiment import Experiment, RunContext, register
from tui_lab.lab.experiments import get_experiment, sampling_from


class SpecExperiment(Experiment):
    """An experiment whose schema is an ``ExperimentSpec`` of ``tui_lab.lab.experiments``."""

    def validate(self, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults overlaid with ``params``, checked by the spec."""
        return get_experiment(self.name).validate_params(params)


def prompts_for(prompt: str, batch_size: int, seed: int | None) -> list[str]:
    """The given prompt first, then the lab's seeded schedule (varied prompts, as a real batch has)."""
    if batch_size <= 1:
        return [prompt]
    from tui_lab.lab.prompts import prompt_schedule

    return [prompt, *prompt_schedule(batch_size - 1, seed or 0)]


class Generate(SpecExperiment):
    """One batch streamed token by token."""

    name = "generate"
    title = "Generate"
    description = "One batch streamed token by token, with TTFT, TPOT and throughput."
    kind = "run"

    def run(self, params: Mapping[str, Any], ctx: RunContext) -> Any:
        """Generate one batch; the ``RunResult`` (partial if stopped)."""
        from tui_lab.lab.run import execute_run

        sampling = sampling_from(params)
        prompts = prompts_for(params["prompt"], int(params["batch_size"]), params.get("seed"))
        requests = [Request(f"r{i}", p) for i, p in enumerate(prompts)]
        ctx.report(f"batch {len(requests)} · {sampling.max_new_tokens} tokens", 0.0, new_run=True)
        return execute_run(ctx.engine, requests, sampling, ctx.stop, ctx.sink)


register(Generate())

import tui_lab.lab.load  # noqa: E402, F401  (registers load_run and load_sweep)
import tui_lab.lab.memory  # noqa: E402,F401  (lesson 05: weight_precision, kv_capacity, preemption)
import tui_lab.lab.tensor_parallel  # noqa: E402,F401  (lesson 04: one_gpu_or_two)
import tui_lab.lab.traffic  # noqa: E402,F401  (lesson 06: load_loop, interference, speculation, ...)
