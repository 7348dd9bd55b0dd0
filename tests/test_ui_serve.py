"""textual-serve start-up: the lab's page is served on loopback."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx
import pytest

from tui_lab.errors import InvalidInput
from tui_lab.host.client import end_session
from tui_lab.ui.serve import app_command

pytestmark = pytest.mark.timeout(60)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_page_on_loopback():
    port = _free_port()
    code = f"from tui_lab.ui.serve import serve; serve('127.0.0.1', {port}, ['--engine', 'transformers'])"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 40
        response = None
        while time.monotonic() < deadline:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read().decode()
                time.sleep(0.3)
        assert response is not None, "the server did not answer"
        assert response.status_code == 200
        assert "inference-lab" in response.text
    finally:
        end_session(proc.pid)
        proc.wait(timeout=5)


def test_app_command_runs_the_same_app():
    command = app_command(["--lesson", "02"])
    assert command.endswith("-m tui_lab --lesson 02")
    assert command.startswith(sys.executable)
    with pytest.raises(InvalidInput):
        app_command(["serve"])
