"""The registered experiments (see ``tui_lab.lab.experiment``), in the order lessons introduce them.

Every experiment takes params checked by its ``ExperimentSpec`` schema and a ``RunContext``;
comparisons build their variants with ``ctx.make_engine``. The scripted test engine stands in for
every engine a comparison asks for (it takes none of their options), as it does in the app's tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tui_lab.engines.base import Engine, Request
from tui_lab.lab.experiment import Experiment, RunContext, register
from tui_lab.lab.experiments import EXPERIMENTS, get_experiment, sampling_from, schema, sweep_plan
from tui_lab.params import Param


class SpecExperiment(Experiment):
    """An experiment whose schema is an ``ExperimentSpec`` of ``tui_lab.lab.experiments``."""

    def parameters(self) -> tuple[Param, ...]:
        """The spec's parameters (``tui_lab.lab.experiments.schema``)."""
        return tuple(schema(self.name))

    def validate(self, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults overlaid with ``params``, checked by the spec."""
        return get_experiment(self.name).validate_params(params)


def prompts_for(prompt: str, batch_size: int, seed: int | None) -> list[str]:
    """The given prompt first, then the lab's seeded schedule (varied prompts, as a real batch has)."""
    if batch_size <= 1:
        return [prompt]
    from tui_lab.lab.prompts import prompt_schedule

    return [prompt, *prompt_schedule(batch_size - 1, seed or 0)]


def _scripted(ctx: RunContext) -> bool:
    return ctx.engine_name == "scripted"


def variant(ctx: RunContext, engine_name: str, **changes: Any) -> Engine:
    """A comparison variant: ``engine_name`` with ``changes`` (the scripted engine stands in for any)."""
    if _scripted(ctx):
        if ctx.engine_factory is None:
            return ctx.make_engine("scripted")
        # A test's factory stands in for every engine but sees the options the comparison sets.
        return ctx.make_engine("scripted", **changes)
    return ctx.make_engine(engine_name, **changes)


def _loading(ctx: RunContext) -> Any:
    """A load-progress callback that puts each loading stage of a variant on the run's progress line."""
    return lambda stage, fraction: ctx.report(f"loading: {stage}", fraction)


def _gpu_check(ctx: RunContext) -> Any:
    if _scripted(ctx):
        return None
    from tui_lab.lab.compare import default_gpu_check

    return default_gpu_check


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


class Sweep(SpecExperiment):
    """A sweep over batch sizes, output lengths or sampling settings; each point goes to ``ctx.emit``."""

    kind = "sweep"

    def __init__(self, name: str) -> None:
        spec = EXPERIMENTS[name]
        self.name, self.title, self.description = name, spec.title, spec.description  # type: ignore[misc]

    def run(self, params: Mapping[str, Any], ctx: RunContext) -> Any:
        """Run the plan on the loaded engine; the ``SweepResult`` (points so far if stopped)."""
        from tui_lab.lab.sweep import run_sweep

        plan = sweep_plan(self.name, params)
        total = max(1, len(plan.configurations()) * (plan.runs + plan.warmup))
        done = [0]

        def on_run(configuration: Any, index: int, warmup: bool) -> None:
            # ``index`` counts the warm-ups too; the line counts the measured runs from 1.
            what = "warm-up" if warmup else f"run {index - plan.warmup + 1}/{plan.runs}"
            ctx.report(f"{configuration.label} · {what}", done[0] / total, new_run=True)
            done[0] += 1

        return run_sweep(ctx.engine, plan, stop=ctx.stop, on_point=ctx.emit, sink=ctx.sink, on_run=on_run)


class Inspection(SpecExperiment):
    """A look inside the pipeline (tokens, padding, logits, modalities, roofline)."""

    kind = "inspect"

    def __init__(self, name: str) -> None:
        spec = EXPERIMENTS[name]
        self.name, self.title, self.description = name, spec.title, spec.description  # type: ignore[misc]
        self.needs_engine = spec.engine_driven  # type: ignore[misc]

    def run(self, params: Mapping[str, Any], ctx: RunContext) -> Any:
        """The inspection's view dataclass."""
        from tui_lab.lab.pipeline import run_inspection

        ctx.report(self.title, None)
        return run_inspection(self.name, ctx.engine, dict(params))


class Comparison(SpecExperiment):
    """Variants of one engine side by side; subclasses say which."""

    kind = "compare"

    def __init__(self, name: str) -> None:
        spec = EXPERIMENTS[name]
        self.name, self.title, self.description = name, spec.title, spec.description  # type: ignore[misc]


class CpuVsGpu(Comparison):
    """The same prompt on each device."""

    def run(self, params: Mapping[str, Any], ctx: RunContext) -> Any:
        """One engine per device, loaded one at a time."""
        from tui_lab.lab.compare import cpu_vs_gpu

        runs, devices = int(params["runs"]), list(params["devices"])
        loading = [""]

        def make(device: str) -> Engine:
            loading[0] = device
            ctx.report(f"{device}: loading the engine", None)
            return variant(ctx, ctx.engine_name, device=device)

        def on_run(device: str, run: Any) -> None:
            done = devices.index(device) * runs + run.run_index + 1 if device in devices else None
            ctx.report(f"{device} · run {run.run_index + 1}/{runs} done",
                       done / (runs * len(devices)) if done is not None else None)

        return cpu_vs_gpu(
            make, prompt=params["prompt"], max_new_tokens=int(params["max_new_tokens"]),
            runs=runs, warmup=int(params["warmup"]), devices=devices,
            gpu_check=_gpu_check(ctx), stop=ctx.stop, sink=ctx.sink, on_run=on_run,
            progress=lambda stage, fraction: ctx.report(f"{loading[0]}: {stage}", fraction),
        )


class KVCache(Comparison):
    """The naive loop beside the KV-cache loop (transformers only)."""

    def run(self, params: Mapping[str, Any], ctx: RunContext) -> Any:
        """Both modes; the loaded engine stands for both when it takes no ``kv_cache`` option."""
        from tui_lab.errors import InvalidInput
        from tui_lab.lab.compare import kv_cache_compare

        def on_mode(mode: Any) -> None:
            ctx.report(f"{mode.mode} done", None)

        if _scripted(ctx):
            return kv_cache_compare(engines={False: ctx.engine, True: ctx.engine}, prompt=params["prompt"],
                                    max_new_tokens=int(params["max_new_tokens"]), stop=ctx.stop, sink=ctx.sink,
                                    on_mode=on_mode)
        if ctx.engine_name != "transformers":
            raise InvalidInput("the KV-cache comparison needs the transformers engine",
                               "set engine to transformers")
        return kv_cache_compare(lambda kv: ctx.make_engine("transformers", kv_cache=kv), prompt=params["prompt"],
                                max_new_tokens=int(params["max_new_tokens"]), stop=ctx.stop, sink=ctx.sink,
                                progress=_loading(ctx), on_mode=on_mode)


class Graphs(Comparison):
    """CUDA graphs off and on."""

    def run(self, params: Mapping[str, Any], ctx: RunContext) -> Any:
        """Eager and graph-replayed decode (eager CPU only without a GPU)."""
        from tui_lab.lab.serving import graphs_compare

        base = _gpu_check(ctx)

        def gpu_check() -> tuple[bool, str]:
            if ctx.engine_options.get("device") == "cpu":
                return False, "the device is set to cpu"
            return base()

        return graphs_compare(
            lambda graphs, device: variant(ctx, "transformers", device=device, cuda_graphs=graphs),
            prompt=params["prompt"], batch_size=int(params["batch_size"]),
            max_new_tokens=int(params["max_new_tokens"]), runs=int(params["runs"]),
            gpu_check=None if base is None else gpu_check, stop=ctx.stop, sink=ctx.sink, progress=_loading(ctx),
        )


class PrefixCache(Comparison):
    """vLLM's prefix cache off and on."""

    def run(self, params: Mapping[str, Any], ctx: RunContext) -> Any:
        """One vLLM load per mode."""
        from tui_lab.lab.serving import prefix_cache_compare

        return prefix_cache_compare(
            lambda on: variant(ctx, "vllm", enable_prefix_caching=on),
            num_requests=int(params["num_requests"]), shared_prefix_words=int(params["shared_prefix_words"]),
            max_new_tokens=int(params["max_new_tokens"]), runs=int(params["runs"]),
            seed=int(params.get("seed") or 0), stop=ctx.stop, sink=ctx.sink, progress=_loading(ctx),
        )


class Queueing(Comparison):
    """More requests than vLLM runs at once."""

    def run(self, params: Mapping[str, Any], ctx: RunContext) -> Any:
        """Waiting shows up in TTFT."""
        from tui_lab.lab.serving import queueing_run

        sampling = sampling_from({"ignore_eos": True, **params})
        return queueing_run(
            lambda n: variant(ctx, "vllm", max_num_seqs=n),
            num_requests=int(params["num_requests"]), max_num_seqs=int(params["max_num_seqs"]),
            max_new_tokens=sampling.max_new_tokens, sampling=sampling, seed=int(params.get("seed") or 0),
            stop=ctx.stop, sink=ctx.sink, progress=_loading(ctx),
        )


class StaticVsContinuous(Comparison):
    """Static batches (transformers, vLLM) and continuous batching (vLLM)."""

    def run(self, params: Mapping[str, Any], ctx: RunContext) -> Any:
        """Replies of very different lengths, three ways."""
        from tui_lab.lab.serving import default_lengths, static_vs_continuous

        lengths = params.get("lengths") or default_lengths()
        return static_vs_continuous(
            lambda: variant(ctx, "transformers"),
            lambda n: variant(ctx, "vllm", max_num_seqs=n),
            lengths=[int(n) for n in lengths], slots=int(params["max_num_seqs"]),
            seed=int(params.get("seed") or 0), stop=ctx.stop, sink=ctx.sink, progress=_loading(ctx),
        )


register(Generate())
for _name in ("batch_sweep", "length_sweep", "sampling_grid"):
    register(Sweep(_name))
register(CpuVsGpu("cpu_vs_gpu"))
register(KVCache("kv_cache_compare"))
for _name in ("tokenize", "padding", "logits", "modalities", "roofline"):
    register(Inspection(_name))
register(Graphs("graphs_compare"))
register(PrefixCache("prefix_cache"))
register(Queueing("queueing"))
register(StaticVsContinuous("static_vs_continuous"))

import tui_lab.lab.load  # noqa: E402, F401  (registers load_run and load_sweep)
import tui_lab.lab.memory  # noqa: E402,F401  (lesson 05: weight_precision, kv_capacity, preemption)
import tui_lab.lab.tensor_parallel  # noqa: E402,F401  (lesson 04: one_gpu_or_two)
import tui_lab.lab.traffic  # noqa: E402,F401  (lesson 06: load_loop, interference, speculation, ...)
