"""Views of every experiment result type, registered with ``@renders`` (the UI looks them up by type).

Token runs (``RunResult``) and sweeps (``SweepResult``) have their own live panel and charts; the views
here draw the comparisons and inspections. Only Rich is imported (through the renderers).
"""

from __future__ import annotations

from typing import Any

from rich.console import RenderableType

from tui_lab.lab.compare import DeviceComparison, KVCacheComparison
from tui_lab.lab.modalities import ModalitiesView
from tui_lab.lab.pipeline import LogitsView, PaddingView, RooflineView, TokenizeView
from tui_lab.lab.serving import BatchingComparison, GraphsComparison, PrefixCacheComparison, QueueingResult
from tui_lab.ui.experiments import render_device_comparison, render_kv_comparison
from tui_lab.ui.serving_views import render_batching, render_graphs, render_prefix, render_queueing
from tui_lab.ui.views import (
    _data,
    render_logits,
    render_modalities,
    render_padding,
    render_roofline,
    render_tokenize,
)
from tui_lab.ui.views.registry import renders


@renders(DeviceComparison)
def device_comparison_view(result: Any, width: int) -> RenderableType:
    """CPU vs GPU: per-run bars and medians."""
    return render_device_comparison(result, width)


@renders(KVCacheComparison)
def kv_view(result: Any, width: int) -> RenderableType:
    """KV cache off and on: step times side by side."""
    return render_kv_comparison(result, width)


@renders(GraphsComparison)
def graphs_view(result: Any, width: int) -> RenderableType:
    """CUDA graphs off and on."""
    return render_graphs(result, width)


@renders(PrefixCacheComparison)
def prefix_view(result: Any, width: int) -> RenderableType:
    """Prefix cache off and on."""
    return render_prefix(result, width)


@renders(QueueingResult)
def queueing_view(result: Any, width: int) -> RenderableType:
    """Waiting, prefill and decode per request."""
    return render_queueing(result)


@renders(BatchingComparison)
def batching_view(result: Any, width: int) -> RenderableType:
    """Static against continuous batching."""
    return render_batching(result, width)


@renders(TokenizeView)
def tokenize_view(result: Any, width: int) -> RenderableType:
    """Token ids and pieces."""
    return render_tokenize(_data(result))


@renders(PaddingView)
def padding_view(result: Any, width: int) -> RenderableType:
    """The padded batch and its mask."""
    return render_padding(_data(result), width)


@renders(LogitsView)
def logits_view(result: Any, width: int) -> RenderableType:
    """The most likely next tokens."""
    return render_logits(_data(result), width)


@renders(RooflineView)
def roofline_view(result: Any, width: int) -> RenderableType:
    """Measured decode steps against the bandwidth floor."""
    return render_roofline(_data(result), width)


@renders(ModalitiesView)
def modalities_view(result: Any, width: int) -> RenderableType:
    """Tokens per image, clip and video."""
    return render_modalities(_data(result))

# Views of the load and lesson 04–06 experiments live in their own modules; importing them registers them.
import tui_lab.ui.views.lesson_views  # noqa: E402, F401
import tui_lab.ui.views.load  # noqa: E402, F401
