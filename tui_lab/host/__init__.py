"""The engine host: a child process that owns the engine (torch, CUDA, transformers, vLLM).

Why a process: the UI and a CUDA engine in one interpreter share the GIL, so every redraw
delays the host thread that must queue the next kernel, and the GPU waits. In its own
process the engine runs at headless speed and the UI only folds token frames.

Transport: a ``multiprocessing`` ``Pipe`` from the ``spawn`` context, pickle protocol 5.
Spawn, because fork would copy CUDA or Textual state into the child; a pipe, because it
needs no extra dependency, detects a dead peer as EOF at once, and pickles the typed,
picklable results of ``tui_lab.lab.experiment`` as they are. Its per-message cost is a few
microseconds; token frames are columnar and sent at most ~30 times a second, so the cost
per token is far below one microsecond (``benchmarks/bench_ui.py --transport`` prints it).

``client.EngineHost`` is the UI side (never imports torch); ``server.main`` is the child.
"""

from tui_lab.host.protocol import Frame, HostDied, HostError, Loaded, LoadProgress, Pong, RunDone

__all__ = ["Frame", "HostDied", "HostError", "LoadProgress", "Loaded", "Pong", "RunDone"]
