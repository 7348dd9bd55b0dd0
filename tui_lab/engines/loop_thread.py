"""An asyncio event loop running in a daemon thread, for engines whose clients are async.

The engines' ``stream`` methods are plain blocking iterators (called from worker
threads); the vLLM and OpenAI engines submit coroutines to this loop instead.
"""

from __future__ import annotations

import asyncio
import threading

LOOP_START_TIMEOUT_S = 10.0


def start_loop_thread(name: str) -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    """Start a new event loop in a daemon thread called ``name``; returns once it runs."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        loop.run_forever()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    ready.wait(timeout=LOOP_START_TIMEOUT_S)
    return loop, thread
