"""Runs at start-up of Python subprocesses the lab starts (vLLM's model inspection and engine core).

``tui_lab.torch_extras`` puts this folder on ``PYTHONPATH`` when it hides an extension, so a child
interpreter hides the same ones before vLLM imports transformers there. Then it hands over to any
other ``sitecustomize`` further down the path, so nothing the environment set up is lost.
"""

import importlib
import importlib.machinery
import importlib.util
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
try:
    from tui_lab.torch_extras import hide_unloadable

    hide_unloadable()
except Exception:  # noqa: BLE001 - start-up must never fail because of this hook
    pass
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
# Run the next sitecustomize on the path too. It is executed as a module object of its own: taking this one
# out of sys.modules during its own import would break the import machinery (it re-files the module after).
_next = importlib.machinery.PathFinder.find_spec("sitecustomize", sys.path)
if _next is not None and _next.loader is not None:
    try:
        _next.loader.exec_module(importlib.util.module_from_spec(_next))
    except Exception:  # noqa: BLE001 - as Python's own start-up does, a failing hook must not stop the child
        pass
