"""Shorthands the tests use to reach experiments of the inventory by name."""

from __future__ import annotations

from collections.abc import Mapping

from tui_lab.lab.experiment import Params
from tui_lab.lab.inventory import get
from tui_lab.lab.sweep import SweepExperiment, SweepPlan


def validate_params(name: str, params: Mapping[str, object] | None = None) -> Params:
    """Experiment ``name``'s defaults overlaid with ``params``, checked."""
    return get(name).validate(params)


def sweep_plan(name: str, params: Mapping[str, object] | None = None) -> SweepPlan:
    """The plan of sweep experiment ``name`` for ``params``."""
    exp = get(name)
    assert isinstance(exp, SweepExperiment), f"{name} is not a sweep"
    return exp.plan(exp.validate(params))
