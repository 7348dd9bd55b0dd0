"""Runs at start-up of Python subprocesses the lab starts (vLLM's model inspection and engine core).

``tui_lab.torch_extras`` puts this folder on ``PYTHONPATH`` when it hides an extension, so a child
interpreter hides the same ones before vLLM imports transformers there. Then it hands over to any
other ``sitecustomize`` further down the path, so nothing the environment set up is lost.
"""

import importlib
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
try:
    from tui_lab.torch_extras import hide_unloadable

    hide_unloadable()
except Exception:  # noqa: BLE001 - start-up must never fail because of this hook
    pass
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
del sys.modules["sitecustomize"]
try:
    importlib.import_module("sitecustomize")
except ImportError:
    pass
