"""Results a graduate can take to vLLM's own tools: a ``vllm bench serve``-compatible JSON and ``--goodput``.

``inference-lab run --vllm-bench-json FILE [--goodput ttft:500,tpot:50]`` writes the run's trace with
vLLM bench's field names (``tui_lab.metrics.toolmetrics.vllm_bench_json``), so its numbers can be
compared with a ``vllm bench serve --save-result`` file under the same definitions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tui_lab.metrics.latency import RequestTrace
from tui_lab.metrics.toolmetrics import vllm_bench_json


def bench_document(traces: Sequence[RequestTrace], info: Mapping[str, object] | None = None,
                   goodput_ms: Mapping[str, float] | None = None) -> dict[str, object]:
    """The vLLM-bench-compatible document, with the engine facts vLLM puts beside its metrics."""
    doc = vllm_bench_json(traces, goodput_ms)
    if info:
        doc = {"backend": info.get("engine"), "model_id": info.get("model"), **doc}
    if goodput_ms:
        doc["goodput"] = dict(goodput_ms)
    return doc
