"""Every experiment the lab has, in the order the lessons introduce them: the one list.

Each entry names the class that describes and runs the experiment. The modules are imported only when
an experiment is asked for (nothing registers itself on import), and none of them imports this list.
"""

from __future__ import annotations

from functools import cache
from importlib import import_module

from tui_lab.errors import InvalidInput
from tui_lab.lab.experiment import Experiment

INVENTORY: tuple[tuple[str, str], ...] = (
    # 01 foundations
    ("generate", "tui_lab.lab.run:Generate"),
    ("cpu_vs_gpu", "tui_lab.lab.compare:CpuVsGpu"),
    ("tokenize", "tui_lab.lab.pipeline:Tokenize"),
    ("padding", "tui_lab.lab.pipeline:Padding"),
    ("logits", "tui_lab.lab.pipeline:Logits"),
    ("kv_cache_compare", "tui_lab.lab.compare:KVCache"),
    ("modalities", "tui_lab.lab.modalities:Modalities"),
    # 02 performance metrics
    ("batch_sweep", "tui_lab.lab.sweep:BatchSweep"),
    ("length_sweep", "tui_lab.lab.sweep:LengthSweep"),
    ("sampling_grid", "tui_lab.lab.sweep:SamplingGrid"),
    ("answer_latency", "tui_lab.lab.traffic:AnswerLatency"),
    # 03 where the time goes
    ("roofline", "tui_lab.lab.pipeline:Roofline"),
    ("graphs_compare", "tui_lab.lab.serving:Graphs"),
    ("lm_head_share", "tui_lab.lab.concepts:LmHeadShare"),
    # 04 serving
    ("static_vs_continuous", "tui_lab.lab.serving:StaticVsContinuous"),
    ("prefix_cache", "tui_lab.lab.serving:PrefixCache"),
    ("queueing", "tui_lab.lab.serving:Queueing"),
    ("load_run", "tui_lab.lab.load:LoadRunExperiment"),
    ("load_sweep", "tui_lab.lab.load:LoadSweepExperiment"),
    ("one_gpu_or_two", "tui_lab.lab.tensor_parallel:OneGpuOrTwo"),
    # 05 memory and precision
    ("weight_precision", "tui_lab.lab.memory:WeightPrecision"),
    ("kv_capacity", "tui_lab.lab.memory:KvCapacity"),
    ("preemption", "tui_lab.lab.memory:Preemption"),
    # 06 load, interference, speculation, metrics, energy
    ("load_loop", "tui_lab.lab.traffic:LoadLoop"),
    ("interference", "tui_lab.lab.traffic:Interference"),
    ("speculation", "tui_lab.lab.traffic:Speculation"),
    ("structured_output", "tui_lab.lab.concepts:StructuredOutput"),
    ("disaggregation", "tui_lab.lab.concepts:Disaggregation"),
    ("lora_adapters", "tui_lab.lab.concepts:LoraAdapters"),
    ("tool_metrics", "tui_lab.lab.traffic:ToolMetrics"),
    ("energy_cost", "tui_lab.lab.traffic:EnergyCost"),
)
"""(name, "module:Class") of every experiment, in lesson order."""

_WHERE = dict(INVENTORY)


def names() -> list[str]:
    """Every experiment's name, in lesson order."""
    return [name for name, _ in INVENTORY]


@cache
def get(name: str) -> Experiment:
    """The experiment called ``name`` (``InvalidInput`` listing the names otherwise)."""
    where = _WHERE.get(name)
    if where is None:
        raise InvalidInput(f"unknown experiment {name!r}; choose one of: {', '.join(names())}")
    module, _, cls = where.partition(":")
    experiment = getattr(import_module(module), cls)()
    if not isinstance(experiment, Experiment) or experiment.name != name:
        raise RuntimeError(f"{where} describes {experiment.name!r}, not {name!r}")
    return experiment


def experiments() -> list[Experiment]:
    """Every experiment, in lesson order (each module imported once)."""
    return [get(name) for name in names()]
