"""Experiments that drive an engine and keep results: runs, sweeps, comparisons, exports.

Nothing here imports Textual, torch or vLLM at module level; engines are passed in (or created
through ``tui_lab.engines.create_engine`` when an experiment runs). ``tui_lab.lab.inventory`` lists
every experiment in lesson order.
"""
