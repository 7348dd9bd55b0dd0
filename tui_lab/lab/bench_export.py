"""Results a graduate can take to vLLM's own tools: a ``vllm bench serve``-compatible JSON and ``--goodput``.

``inference-lab run --vllm-bench-json FILE [--goodput ttft:500,tpot:50]`` writes the run's trace with
vLLM bench's field names (``tui_lab.metrics.toolmetrics.vllm_bench_json``), so its numbers can be
compared with a ``vllm bench serve --save-result`` file under the same definitions.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tui_lab.metrics.latency import RequestTrace
from tui_lab.metrics.toolmetrics import parse_goodput, vllm_bench_json


def goodput_arg(text: str) -> dict[str, float]:
    """argparse type for ``--goodput``: vLLM's ``KEY:MS`` pairs (spaces or commas between them)."""
    try:
        return parse_goodput(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--vllm-bench-json`` and ``--goodput`` to a run parser."""
    parser.add_argument("--vllm-bench-json", default=None, metavar="FILE",
                        help="also write the run as a vllm-bench-serve result JSON (its field names)")
    parser.add_argument("--goodput", type=goodput_arg, default=None, metavar="SLOS",
                        help="SLOs for request_goodput in vLLM's syntax, e.g. ttft:500,tpot:50,e2el:2000 (ms)")


def bench_document(traces: Sequence[RequestTrace], info: Mapping[str, Any] | None = None,
                   goodput_ms: Mapping[str, float] | None = None) -> dict:
    """The vLLM-bench-compatible document, with the engine facts vLLM puts beside its metrics."""
    doc = vllm_bench_json(traces, goodput_ms)
    if info:
        doc = {"backend": info.get("engine"), "model_id": info.get("model"), **doc}
    if goodput_ms:
        doc["goodput"] = dict(goodput_ms)
    return doc


def write_from_args(args: argparse.Namespace, traces: Sequence[RequestTrace], info: Mapping[str, Any]) -> Path | None:
    """Write the file ``--vllm-bench-json`` names (None when not asked)."""
    path = getattr(args, "vllm_bench_json", None)
    if not path:
        return None
    from tui_lab.lab.export import write_json

    return write_json(os.fspath(path), bench_document(traces, info, getattr(args, "goodput", None)))
