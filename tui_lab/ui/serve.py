"""Serve the lab in a browser tab through textual-serve, on loopback by default.

textual-serve starts one ``inference-lab`` process per browser tab (the same
app as in the terminal) and relays it over a websocket. Listening on
127.0.0.1 keeps it private to the machine: reach it from a laptop with
``ssh -L 8000:127.0.0.1:8000 VM`` and open http://127.0.0.1:8000.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence

from tui_lab.errors import EngineUnavailable, InvalidInput


def app_command(argv: Sequence[str] = ()) -> str:
    """The shell command textual-serve runs per tab: this Python, the lab module, the TUI flags."""
    if "serve" in argv or "--serve" in argv:
        raise InvalidInput("the served app cannot itself serve; drop 'serve' from its arguments")
    return " ".join(shlex.quote(part) for part in (sys.executable, "-m", "tui_lab", *argv))


def serve(host: str = "127.0.0.1", port: int = 8000, argv: Sequence[str] = ()) -> int:
    """Serve ``inference-lab <argv>`` at http://host:port until Ctrl-C; returns the exit status."""
    if not 0 < port < 65536:
        raise InvalidInput(f"port must be 1..65535 (got {port})")
    try:
        from textual_serve.server import Server
    except ImportError as exc:
        raise EngineUnavailable(f"textual-serve is not installed ({exc})", "pip install textual-serve") from None
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {host} makes the lab reachable from other machines", file=sys.stderr)
    print(f"inference-lab served at http://{host}:{port}  (Ctrl-C stops)", file=sys.stderr)
    Server(app_command(argv), host=host, port=port, title="inference-lab").serve()
    return 0
