"""Lesson 04's "one GPU or two": the same workload at tensor-parallel size 1 and 2 on vLLM.

Measured when the loaded engine is vLLM and two GPUs are visible: decode step at batch 1 and 32,
TTFT, a batch sweep, and the KV-cache room each GPU has left. Otherwise the result says so in one
line and carries modelled figures to predict from: bytes each GPU reads per step, the size and cost
of the all-reduces, and the KV room per GPU (``tui_lab.metrics.memory.tp_figures``), for a card it
names (an H200 by default) and with the all-reduce's fixed cost as a stated assumption. The result
lists which of its figures are modelled (``modelled``), so views and predictions can say so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from tui_lab.errors import LabError
from tui_lab.lab.experiment import Experiment, Params, RunContext
from tui_lab.lab.measure import ms, run_batch, variant
from tui_lab.lab.memory import ARCH_MODEL
from tui_lab.lab.planned import PlannedRun
from tui_lab.lab.prompts import varied_prompts
from tui_lab.metrics import percentile, tpot, ttft
from tui_lab.metrics.memory import kv_bytes_per_token_layer, tp_figures
from tui_lab.params import MAX_NEW_TOKENS_PARAM, MAX_REQUESTS, Param

H200_NVLINK_GBS = 450.0
"""NVLink on an H200 SXM: 900 GB/s in both directions together, so 450 GB/s each way (NVIDIA datasheet)."""
H200_MEMORY_GIB = 141e9 / 2**30
H200_HBM_GBS = 4800.0


def card_words(memory_gib: float, hbm_gbs: float, link_gbs: float) -> str:
    """The card the modelled figures assume: the H200 SXM by its datasheet, or the figures given."""
    if (abs(memory_gib - H200_MEMORY_GIB) < 1e-6 and hbm_gbs == H200_HBM_GBS and link_gbs == H200_NVLINK_GBS):
        return ("NVIDIA H200 SXM, datasheet figures: 141 GB of HBM3e at 4.8 TB/s, NVLink 450 GB/s each way")
    return (f"a card with {memory_gib:.0f} GiB at {hbm_gbs:g} GB/s, a link of {link_gbs:g} GB/s each way "
            "(the figures given)")


def visible_gpus() -> int:
    """How many CUDA GPUs torch sees (0 without CUDA or torch)."""
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:
        return 0


@dataclass
class TpMeasured:
    """One tensor-parallel size, measured."""

    tp: int
    step_ms: dict[str, float | None]
    """Decode step (TPOT p50) by batch size."""
    ttft_ms: float | None
    sweep: list[dict]
    """``{"batch_size", "tokens_per_s", "tpot_ms"}`` per batch."""
    kv_tokens_per_gpu: int | None
    kv_gib_per_gpu: float | None


@dataclass
class TpResult:
    """TP=1 against TP=2: the prediction figures always, the measurements where two GPUs exist."""

    model: str
    gpus: int
    predicted: list[dict]
    """``TpFigures`` (as dicts, with ms) for tp 1 and 2 at each batch size."""
    measured: list[TpMeasured] = field(default_factory=list)
    tp2_over_tp1_batch1: float | None = None
    """Step time at TP=2 over TP=1 at batch 1: measured, or modelled (floor + all-reduce) without two GPUs."""
    source: str = ""
    """Where ``tp2_over_tp1_batch1`` comes from: "measured" or "modelled"."""
    note: str = ""
    card: str = ""
    """The card the modelled figures assume (memory, bandwidth, link), in words."""
    assumptions: list[str] = field(default_factory=list)
    """What the model takes as given rather than measured (the all-reduce's fixed cost, ...)."""
    modelled: dict[str, str] = field(default_factory=dict)
    """Metric path → what the figure there is modelled on (a figure not listed is measured)."""

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        return asdict(self)


class OneGpuOrTwo(Experiment):
    """Tensor-parallel size 1 against 2 on vLLM."""

    name = "one_gpu_or_two"
    title = "One GPU or two"
    description = "Tensor parallelism 1 vs 2: decode step at batch 1 and 32, TTFT, batch sweep, KV room per GPU."
    kind = "compare"
    result_type = TpResult
    params = (
        ARCH_MODEL,
        Param("batch_sizes", "int list", [1, 32], "batch sizes of the step-time rows", 1, MAX_REQUESTS),
        Param("sweep", "int list", [1, 8, 32, 64, 128, 256], "batch sizes of the modelled sweep", 1, MAX_REQUESTS),
        Param("context", "int", 1024, "tokens per sequence", 16, 131072),
        MAX_NEW_TOKENS_PARAM.but(min=2),
        Param("gpu_memory_gib", "number", H200_MEMORY_GIB, "memory per GPU, GiB (modelled card)", 1, 4096),
        Param("hbm_gbs", "number", H200_HBM_GBS, "memory bandwidth per GPU, GB/s (modelled card)", 1, 100000),
        Param("link_gbs", "number", H200_NVLINK_GBS, "GPU-to-GPU link bandwidth each way, GB/s", 1, 100000),
        Param("allreduce_latency_us", "number", 10.0, "fixed cost of one all-reduce, µs (an assumption)", 0, 10000),
        Param("memory_utilization", "number", 0.5, "share of GPU memory the engine may use", 0.05, 1.0),
    )

    def planned_work(self, params: Params, engine: str = "transformers") -> list[PlannedRun] | None:
        """Modelled only, except on vLLM (variants of another model on one or two GPUs: not known)."""
        return None if engine == "vllm" else []

    def run(self, params: Params, ctx: RunContext) -> TpResult:
        """Figures for both sizes; measurements when vLLM sees two GPUs."""
        from tui_lab.models.arch import ARCH_MODELS

        config = ARCH_MODELS[params["model"]].config
        predicted = []
        for b in sorted(set(params["batch_sizes"]) | {1}):
            for tp in (1, 2):
                f = tp_figures(config, tp, b, params["context"], params["gpu_memory_gib"] * 2**30,
                               params["hbm_gbs"] * 1e9, params["link_gbs"] * 1e9,
                               params["allreduce_latency_us"] * 1e-6, params["memory_utilization"])
                d = f.to_dict()
                d.update(memory_floor_ms=f.memory_floor_s * 1000, allreduce_ms=f.allreduce_s_per_step * 1000,
                         modelled_step_ms=(f.memory_floor_s + f.allreduce_s_per_step) * 1000,
                         weight_gib_per_gpu=f.weight_bytes_per_gpu / 2**30,
                         kv_room_gib_per_gpu=f.kv_room_bytes_per_gpu / 2**30)
                predicted.append(d)
        b1 = [d for d in predicted if d["batch"] == 1]
        modelled = b1[1]["modelled_step_ms"] / b1[0]["modelled_step_ms"]
        card = card_words(params["gpu_memory_gib"], params["hbm_gbs"], params["link_gbs"])
        assumptions = [
            f"each all-reduce has a fixed cost of {params['allreduce_latency_us']:g} µs (allreduce_latency_us: "
            "an assumption; nccl-tests on your machine measures it)",
            "a decode step takes its memory floor (weights + KV cache ÷ bandwidth) plus its all-reduces; "
            "launches, sampling and the host are left out",
            f"the engine may use {params['memory_utilization']:.0%} of each GPU's memory (memory_utilization)",
        ]
        basis = (f"modelled as memory floor + all-reduces on {card}, "
                 f"{params['allreduce_latency_us']:g} µs per all-reduce assumed")
        model_paths = {"predicted": f"modelled for {card}", "tp2_over_tp1_batch1": basis}
        gpus = visible_gpus()
        if ctx.engine_name != "vllm" or gpus < 1:
            why = "tensor parallelism needs the vLLM engine" if ctx.engine_name != "vllm" else "this machine has no GPU"
            return TpResult(params["model"], gpus, predicted, [], modelled, "modelled",
                            f"{why}: nothing was measured; the figures shown are modelled", card, assumptions,
                            model_paths)
        measured, note = [], ""
        if gpus < 2:
            note = "this machine has 1 GPU: TP=1 measured, TP=2 modelled"
        for tp in (1, 2) if gpus >= 2 else (1,):
            if ctx.stopped():
                break
            try:
                measured.append(self._measure(ctx, params, tp, config))
            except LabError as exc:
                note = f"TP={tp} could not run: {exc.message}"
                break
        ratio = None
        if len(measured) == 2:
            a, b = measured[0].step_ms.get("1"), measured[1].step_ms.get("1")
            ratio = b / a if a and b else None
        if ratio:
            model_paths.pop("tp2_over_tp1_batch1")
        return TpResult(params["model"], gpus, predicted, measured, ratio if ratio else modelled,
                        "measured" if ratio else "modelled", note, card, assumptions, model_paths)

    def _measure(self, ctx: RunContext, params: Params, tp: int, config: dict[str, object]) -> TpMeasured:
        changes = {"tensor_parallel_size": tp, "model": f"arch:{params['model']}",
                   "gpu_memory_utilization": params["memory_utilization"],
                   "max_model_len": max(params["context"], 64) + params["max_new_tokens"],
                   "max_num_seqs": max([*params["sweep"], *params["batch_sizes"]])}
        n = params["max_new_tokens"]
        with variant(ctx, f"TP={tp}", **changes) as eng:
            steps: dict[str, float | None] = {}
            first = None
            for b in params["batch_sizes"]:
                run = run_batch(ctx, eng, varied_prompts(b), n, f"TP={tp} · batch {b}")
                steps[str(b)] = ms(percentile([t for t in (tpot(tr) for tr in run.traces) if t is not None], 50))
                if first is None:
                    first = ms(percentile([t for t in (ttft(tr) for tr in run.traces) if t is not None], 50))
            sweep = []
            for b in params["sweep"]:
                if ctx.stopped():
                    break
                run = run_batch(ctx, eng, varied_prompts(b), n, f"TP={tp} · sweep batch {b}")
                s = run.summary()
                sweep.append({"batch_size": b, "tokens_per_s": s.output_tokens_per_s,
                              "tpot_ms": ms(s.tpot_s.p50 if s.tpot_s is not None else None)})
            snap = eng.scheduler_stats() if hasattr(eng, "scheduler_stats") else {}
        tokens = int(snap.get("kv_blocks", 0)) * int(snap.get("block_size", 0)) or None
        layers = int(str(config["num_hidden_layers"]))
        attn_layers = str(config.get("hybrid_override_pattern") or "").count("*") or layers
        per_tok_gpu = kv_bytes_per_token_layer(config) * attn_layers / tp
        return TpMeasured(tp, steps, first, sweep, tokens, tokens * per_tok_gpu / 2**30 if tokens else None)


