"""The Textual lab: lessons beside a live token panel, controls and charts.

Public surface: ``AppOptions``, ``LabApp``, ``run_app`` (from ``tui_lab.ui.app``)
and ``serve`` (``tui_lab.ui.serve``). Importing this package imports Textual but
never torch: engines live in the engine host process (``tui_lab.host``).
"""
