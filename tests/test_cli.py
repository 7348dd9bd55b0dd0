"""The headless CLI: ``run``, ``sweep``, ``models``, dispatch to the TUI/bench/serve, and user errors.

Most tests drive ``main([...])`` in-process with the hidden ``scripted`` engine; a
few run the real command in a subprocess to check exit statuses, stderr and what
gets imported. One test runs the embedded Gemma 3 270M on CPU (``real_model``).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import types
from pathlib import Path

import pytest

from tui_lab import cli
from tui_lab.cli import main

SCRIPTED = ["--engine", "scripted", "-q"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict, str]:
    code = main(["run", *SCRIPTED, "--json", *args])
    out, err = capsys.readouterr()
    return code, json.loads(out), err


def cli_subprocess(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tui_lab", *args], capture_output=True, text=True, timeout=timeout, env=ENV
    )


# --------------------------------------------------------------------------------------------------------- run


def test_run_json_document_shape_and_consistency(capsys: pytest.CaptureFixture[str]) -> None:
    code, doc, _ = run_json(capsys, "--prompt", "Hello there", "--max-tokens", "6")
    assert code == 0
    for key in ("model", "engine", "device", "dtype", "versions", "sampling", "requests", "summary"):
        assert key in doc
    assert doc["engine"] == "scripted" and doc["sampling"]["max_new_tokens"] == 6 and doc["partial"] is False
    (req,) = doc["requests"]
    assert req["prompt"] == "Hello there"
    assert req["output_tokens"] == len(req["tokens"]) == 6
    assert req["text"] == "".join(t["text"] for t in req["tokens"])
    assert set(req["tokens"][0]) >= {"id", "text", "t"}
    # Every figure comes from the same per-token timestamps (t = seconds since the request was sent).
    times = [t["t"] for t in req["tokens"]]
    assert times == sorted(times)
    assert req["ttft_s"] == times[0]
    assert req["e2e_s"] == times[-1]
    assert req["tpot_s"] == pytest.approx((times[-1] - times[0]) / 5)
    summary = doc["summary"]
    for key in ("ttft_s", "e2e_s", "tpot_s", "itl_s"):
        assert set(summary[key]) >= {"p50", "p90", "p99", "n"}
    assert summary["ttft_s"]["p50"] == req["ttft_s"] and summary["ttft_s"]["n"] == 1
    assert summary["ttft_s"]["p90"] is None  # one sample: no p90
    assert summary["itl_s"]["n"] == 5
    gaps = sorted(b - a for a, b in zip(times, times[1:], strict=False))
    assert summary["itl_s"]["p50"] == pytest.approx(gaps[2])
    assert summary["output_tokens_per_s"] == pytest.approx(6 / req["e2e_s"])


def test_run_batch_takes_the_prompts_then_the_seeded_schedule(capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI and the TUI fill a batch the same way: the prompts given first, then varied prompts."""
    from tui_lab.lab.prompts import prompt_schedule

    code, doc, _ = run_json(capsys, "--prompt", "a b", "--prompt", "c", "--batch-size", "5", "--max-tokens", "3")
    assert code == 0
    assert [r["prompt"] for r in doc["requests"]] == ["a b", "c", *prompt_schedule(3, 0)]
    assert doc["batch_size"] == 5 and doc["summary"]["ttft_s"]["n"] == 5
    assert doc["summary"]["ttft_s"]["p90"] is not None  # 5 samples: p90 reported, p99 not
    assert doc["summary"]["ttft_s"]["p99"] is None


def test_run_sampling_flags_reach_the_engine(capsys: pytest.CaptureFixture[str]) -> None:
    code, doc, _ = run_json(capsys, "--max-tokens", "3", "--temperature", "0.8", "--top-p", "0.9", "--top-k", "40",
                            "--repetition-penalty", "1.1", "--seed", "5", "--ignore-eos")
    assert code == 0
    assert doc["sampling"] == {"max_new_tokens": 3, "temperature": 0.8, "top_p": 0.9, "top_k": 40,
                               "repetition_penalty": 1.1, "seed": 5, "ignore_eos": True}


def test_run_streams_text_then_prints_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", *SCRIPTED, "--prompt", "Once upon", "--max-tokens", "4"]) == 0
    out, err = capsys.readouterr()
    first_line = out.splitlines()[0]
    assert first_line == "Once upon the quick brown fox"
    for label in ("TTFT", "E2E", "TPOT", "ITL", "output throughput", "n too small"):
        assert label in out
    assert err == ""  # -q: no loading lines


def test_run_batch_text_shows_r0_and_the_others(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", *SCRIPTED, "--prompt", "x", "--batch-size", "12", "--max-tokens", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("[r0 of 12] x")
    assert "[r1] " in out and "[r8] " in out and "[r9]" not in out
    assert "... and 3 more requests" in out


def test_loading_progress_goes_to_stderr_never_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--engine", "scripted", "--json", "--max-tokens", "2"]) == 0
    out, err = capsys.readouterr()
    json.loads(out)  # stdout is exactly one JSON document
    assert "loading: reading weights" in err and "loaded scripted" in err


def test_json_stdout_survives_engines_that_print(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    from tui_lab.engines.scripted import ScriptedEngine

    original = ScriptedEngine.load

    def chatty_load(self, progress=None):  # noqa: ANN001, ANN202
        print("INFO engine log line on stdout")  # what vLLM does
        os.write(1, b"child process writes to fd 1\n")
        return original(self, progress)

    monkeypatch.setattr(ScriptedEngine, "load", chatty_load)
    assert main(["run", *SCRIPTED, "--json", "--max-tokens", "2"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["engine"] == "scripted"
    assert "INFO engine log line" in err


def test_ctrl_c_mid_run_prints_partial_results_and_exits_130(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    from tui_lab.engines.events import TokenEvent, TokenStep
    from tui_lab.engines.scripted import ScriptedEngine

    original = ScriptedEngine.stream

    def interrupted(self, requests, sampling, stop=None):  # noqa: ANN001, ANN202
        count = 0
        for event in original(self, requests, sampling, stop):
            yield event
            count += isinstance(event, (TokenEvent, TokenStep))
            if count == 3:
                raise KeyboardInterrupt

    monkeypatch.setattr(ScriptedEngine, "stream", interrupted)
    assert main(["run", *SCRIPTED, "--json", "--max-tokens", "50"]) == 130
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["partial"] is True and doc["error"] == "interrupted"
    assert doc["requests"][0]["output_tokens"] == 3
    assert "interrupted" in err and "Traceback" not in err
    assert main(["run", *SCRIPTED, "--max-tokens", "50"]) == 130
    out, err = capsys.readouterr()
    assert "PARTIAL RESULTS (interrupted)" in out and "TTFT" in out


def test_sigint_in_a_real_process_exits_130_without_traceback() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui_lab", "run", *SCRIPTED, "--scripted-real-time", "--max-tokens", "3000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.read(len("The future of AI is"))  # the prompt is echoed before tokens stream
        assert first == "The future of AI is"
        assert proc.stdout.read(1)  # the first token's text: the run is streaming now
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert "PARTIAL RESULTS" in out and "Traceback" not in err
    assert "interrupted" in err


# ------------------------------------------------------------------------------------------------- user errors


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-size", "0"], "--batch-size must be in 1..1024 (got 0)"),
        (["--batch-size", "1025"], "--batch-size must be in 1..1024 (got 1025)"),
        (["--max-tokens", "0"], "--max-tokens must be in 1..32768 (got 0)"),
        (["--max-tokens", "5000"], "beyond the model's context of 4096"),
        (["--top-p", "0"], "--top-p must be in (0, 1] (got 0)"),
        (["--top-p", "1.5"], "--top-p must be in (0, 1] (got 1.5)"),
        (["--temperature", "-0.5"], "--temperature must be >= 0"),
        (["--temperature", "nan"], "--temperature must be a finite number"),
        (["--temperature", "inf"], "--temperature must be a finite number"),
        (["--top-k", "-1"], "--top-k must be >= 0"),
        (["--batch-size", "two"], "--batch-size must be a whole number (got 'two')"),
        (["--prompt", "  "], "--prompt must be some text"),
        (["--max-num-seqs", "4"], "--max-num-seqs applies only to --engine vllm"),
        (["--base-url", "http://x/v1"], "--base-url applies only to --engine openai"),
        (["--no-such-flag"], "unrecognized arguments"),
    ],
)
def test_bad_input_is_one_line_and_status_2(capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    assert main(["run", *SCRIPTED, *args]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("inference-lab: error: ")
    assert message in lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--engine", "tgi"], "unknown engine 'tgi'; choose one of: transformers, vllm, openai"),
        (["run", "--model", "arch:no-such-model"], "unknown architecture model"),
        (["run", "--model", "./definitely/not/here"], "no checkpoint directory"),
        (["run", "--engine", "openai"], "needs a base URL"),
        (["sweep", *SCRIPTED, "--batch-sizes", "1,0"], "--batch-sizes must be in 1..1024 (got 0)"),
        (["sweep", *SCRIPTED, "--batch-sizes", "1,x"], "--batch-sizes must be a whole number (got 'x')"),
        (["sweep", *SCRIPTED, "--runs", "0"], "--runs must be in 1..100 (got 0)"),
        (["sweep", *SCRIPTED, "--out", "results.txt"], "must end in .json or .csv"),
        (["sweep", *SCRIPTED, "--lengths", "8", "--batch-sizes", "1"], "one thing at a time"),
        (["sweep", *SCRIPTED, "--budget-preset", "fast"], "--latency-budget must be one of: chat"),
        (["sweep", *SCRIPTED, "--latency-budget", "1", "--budget-metric", "e2e_p77"], "unknown latency metric"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_more_user_errors(capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("inference-lab: error: ") and message in err


def test_missing_engine_module_is_a_clear_error(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    from tui_lab import engines

    monkeypatch.setitem(engines.ENGINES, "vllm", "tui_lab.engines.not_installed_here:VLLMEngine")
    assert main(["run", "--engine", "vllm", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("inference-lab: error: the vllm engine cannot be used") and err.count("\n") == 1
    assert "install vLLM" in err


def test_subprocess_exit_status_and_stderr_for_bad_input() -> None:
    res = cli_subprocess("run", *SCRIPTED, "--top-p", "2")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == ["inference-lab: error: --top-p must be in (0, 1] (got 2)"]
    assert res.stdout == ""
    res = cli_subprocess("run", "--engine", "nope")
    assert res.returncode == 2 and "Traceback" not in res.stderr and res.stderr.count("\n") == 1


def test_help_does_not_import_torch_or_textual() -> None:
    code = (
        "import sys\n"
        "from tui_lab.cli import main\n"
        "codes = [main(['--help']), main(['run', '--help']), main(['sweep', '--help'])]\n"
        "heavy = [m for m in ('torch', 'transformers', 'vllm', 'textual') if m in sys.modules]\n"
        "print('RESULT', codes, heavy)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=ENV)
    assert res.returncode == 0, res.stderr
    assert "RESULT [0, 0, 0] []" in res.stdout
    assert "--batch-size" in res.stdout and "--latency-budget" in res.stdout
    assert "scripted" not in res.stdout.split("RESULT")[0].replace("--scripted", "")  # hidden test engine


# ------------------------------------------------------------------------------------------------------- sweep


def test_sweep_prints_a_table_and_writes_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_file = tmp_path / "sweep.json"
    code = main(["sweep", *SCRIPTED, "--batch-sizes", "1,4,16", "--runs", "2", "--warmup", "1", "--max-tokens", "6",
                 "--latency-budget", "0.5", "--out", str(out_file)])
    assert code == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[1].split()[:3] == ["config", "TTFT", "p50"]
    assert [ln.split()[1] for ln in lines[2:5]] == ["1", "4", "16"]
    assert any(ln.startswith("knee:") and "10%" in ln for ln in lines)
    assert any("budget e2e_p50 <= 500 ms: pick batch" in ln for ln in lines)
    assert f"wrote {out_file}" in out
    data = json.loads(out_file.read_text())
    assert [p["batch_size"] for p in data["points"]] == [1, 4, 16]
    assert set(data["points"][0]) >= {"batch_size", "ttft_s", "e2e_s", "tpot_s", "output_tokens_per_s"}
    assert data["plan"]["runs"] == 2 and data["plan"]["warmup"] == 1
    assert data["knee"] is not None and "budget_pick" in data
    assert data["budget_pick"]["batch_size"] in (1, 4, 16)
    assert data["plan"]["sampling"]["ignore_eos"] is True  # sweeps do equal work per request by default


def test_sweep_csv_one_row_per_point_and_oom(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_file = tmp_path / "s.csv"
    code = main(["sweep", *SCRIPTED, "--batch-sizes", "1,8,64,128", "--runs", "1", "--warmup", "0",
                 "--max-tokens", "4", "--scripted-fail-at-batch", "64", "--out", str(out_file)])
    assert code == 0
    out = capsys.readouterr().out
    assert "out of memory at batch size 64" in out and "skipped" in out
    assert "chat budget (rule of thumb" in out  # the default budget
    rows = list(csv.DictReader(out_file.open()))
    assert [r["batch_size"] for r in rows] == ["1", "8", "64", "128"]
    assert [r["status"] for r in rows] == ["ok", "ok", "error", "skipped"]
    assert float(rows[1]["output_tokens_per_s"]) > float(rows[0]["output_tokens_per_s"])


def test_sweep_json_on_stdout_and_other_kinds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", *SCRIPTED, "--lengths", "4,8", "--batch-size", "2", "--runs", "1", "--json"]) == 0
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert data["kind"] == "length" and [p["max_new_tokens"] for p in data["points"]] == [4, 8]
    assert "config" in err and "4 tokens" in err  # the table went to stderr
    assert main(["sweep", *SCRIPTED, "--temperatures", "0,1", "--top-ps", "0.5,1", "--runs", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [p["label"] for p in data["points"]] == ["T=0 top-p=0.5", "T=0 top-p=1", "T=1 top-p=0.5", "T=1 top-p=1"]


def test_sweep_ctrl_c_keeps_measured_points(capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch) -> None:
    from tui_lab.engines.scripted import ScriptedEngine

    original = ScriptedEngine.stream

    def interrupt_at_batch_8(self, requests, sampling, stop=None):  # noqa: ANN001, ANN202
        for event in original(self, requests, sampling, stop):
            yield event
            if len(requests) == 8:
                raise KeyboardInterrupt

    monkeypatch.setattr(ScriptedEngine, "stream", interrupt_at_batch_8)
    out_file = tmp_path / "partial.json"
    code = main(["sweep", *SCRIPTED, "--batch-sizes", "1,8,32", "--runs", "1", "--warmup", "0",
                 "--max-tokens", "4", "--out", str(out_file)])
    assert code == 130
    captured = capsys.readouterr()
    data = json.loads(out_file.read_text())
    assert data["partial"] is True and data["interrupted"] is True
    assert [p["batch_size"] for p in data["points"]] == [1, 8]
    assert data["points"][1]["status"] == "partial"
    assert "interrupted" in captured.err and "Traceback" not in captured.err


# ----------------------------------------------------------------------------------------- models and dispatch


def test_models_lists_known_models_and_cache_state(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["models", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["name", "source", "cached"]
    assert "embedded" in out and "arch:gemma-3-270m" in out and "google/gemma-3-270m-it" in out
    assert str(tmp_path) in out
    assert main(["models", "--cache-dir", str(tmp_path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    embedded = next(r for r in rows if r["name"] == "embedded")
    assert embedded["cached"] == "no"  # an empty cache dir
    assert next(r for r in rows if r["name"] == "arch:gemma-3-270m")["text_is_meaningful"] is False


@pytest.fixture
def app_options(monkeypatch) -> dict:
    """What the command line hands the app (its ``AppOptions`` keywords), with the app itself faked."""
    seen: dict = {}

    class AppOptions:
        def __init__(self, **kw: object) -> None:
            seen.update(kw)

    fake = types.ModuleType("tui_lab.ui.app")
    fake.AppOptions = AppOptions
    fake.run_app = lambda options: 0
    monkeypatch.setitem(sys.modules, "tui_lab.ui.app", fake)
    return seen


def test_no_command_opens_the_tui_with_options(app_options) -> None:
    seen = app_options
    assert main(["--lesson", "02", "--model", "arch:gemma-3-270m", "--device", "cpu", "--cache-dir", "/tmp/c"]) == 0
    assert seen == {"engine": "transformers", "lesson": "02",
                    "engine_options": {"model": "arch:gemma-3-270m", "device": "cpu", "cache_dir": "/tmp/c"}}


def test_the_lab_opens_on_an_openai_server_from_its_own_command_line(app_options) -> None:
    """``inference-lab --engine openai --base-url URL`` stopped with "invalid choice": the lab had no engine flags."""
    seen = app_options
    assert main(["--engine", "openai", "--base-url", "http://127.0.0.1:8000/v1", "--api-key-env", "MY_KEY"]) == 0
    assert seen["engine"] == "openai"
    assert seen["engine_options"] == {"base_url": "http://127.0.0.1:8000/v1", "api_key_env": "MY_KEY"}


def test_bench_and_serve_are_dispatched_with_their_arguments(monkeypatch) -> None:
    calls = []
    bench = types.ModuleType("tui_lab.bench")
    bench.main = lambda argv: calls.append(("bench", argv)) or 0
    serve = types.ModuleType("tui_lab.ui.serve")
    serve.serve = lambda host, port, argv: calls.append(("serve", host, port, argv)) or 0
    monkeypatch.setitem(sys.modules, "tui_lab.bench", bench)
    monkeypatch.setitem(sys.modules, "tui_lab.ui.serve", serve)
    import tui_lab
    import tui_lab.ui

    monkeypatch.setattr(tui_lab, "bench", bench, raising=False)
    monkeypatch.setattr(tui_lab.ui, "serve", serve, raising=False)
    assert main(["bench", "--batch-sizes", "1,8"]) == 0
    assert main(["serve", "--port", "8123", "--lesson", "01"]) == 0
    assert main(["--serve", "--lesson", "02"]) == 0
    assert calls == [
        ("bench", ["--batch-sizes", "1,8"]),
        ("serve", "127.0.0.1", 8123, ["--lesson", "01"]),
        ("serve", "127.0.0.1", 8000, ["--lesson", "02"]),
    ]


def test_engine_options_are_passed_only_to_their_engine() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["run", "--engine", "vllm", "--max-num-seqs", "8", "--no-prefix-caching",
                              "--enforce-eager", "--gpu-memory-utilization", "0.5", "--max-model-len", "1024",
                              "--tensor-parallel-size", "2", "--cache-dir", "/c", "--device", "cuda"])
    assert cli.engine_flags(args) == ("vllm", {
        "device": "cuda", "cache_dir": "/c", "max_num_seqs": 8, "enable_prefix_caching": False,
        "enforce_eager": True, "gpu_memory_utilization": 0.5, "max_model_len": 1024, "tensor_parallel_size": 2,
    })
    args = parser.parse_args(["run", "--model", "arch:gemma-3-270m", "--no-kv-cache"])
    assert cli.engine_flags(args) == ("transformers", {"model": "arch:gemma-3-270m", "kv_cache": False})
    args = parser.parse_args(["run", "--engine", "openai", "--base-url", "http://h:8000/v1", "--api-key-env", "K",
                              "--api", "chat"])
    assert cli.engine_flags(args) == ("openai", {"base_url": "http://h:8000/v1", "api_key_env": "K", "api": "chat"})
    # Every engine's every option has a flag, on every command and on the lab's own command line.
    from tui_lab.engines.options import all_options

    for command in ([], ["run"], ["sweep"], ["experiment"]):
        text = (parser if not command else parser._subparsers._group_actions[0].choices[command[0]]).format_help()
        for option in all_options().values():
            if option.name not in ("fail_at_batch", "real_time"):
                assert option.cli_flag in text, (command, option.cli_flag)


# -------------------------------------------------------------------------------------------------- real model


@pytest.mark.real_model
def test_real_embedded_model_run_json() -> None:
    """The embedded Gemma 3 270M on CPU, through the real command: the known greedy continuation."""
    res = cli_subprocess("run", "--prompt", "The future of AI is", "--max-tokens", "16", "--json", "--device", "cpu",
                         timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    doc = json.loads(res.stdout)
    assert doc["engine"] == "transformers" and doc["device"] == "cpu" and doc["text_is_meaningful"] is True
    (req,) = doc["requests"]
    assert req["text"].startswith(" in the hands of the people")
    assert req["output_tokens"] == len(req["tokens"]) <= 16
    assert req["text"] == "".join(t["text"] for t in req["tokens"])
    assert all(isinstance(t["id"], int) and t["id"] >= 0 for t in req["tokens"])
    times = [t["t"] for t in req["tokens"]]
    assert times == sorted(times) and times[0] > 0
    assert req["ttft_s"] == times[0] and req["e2e_s"] == times[-1]
    assert req["tpot_s"] == pytest.approx((times[-1] - times[0]) / (len(times) - 1))
    assert doc["summary"]["ttft_s"]["p50"] == req["ttft_s"]
    assert doc["summary"]["output_tokens_per_s"] == pytest.approx(len(times) / req["e2e_s"])
    assert "torch" in doc["versions"] or "transformers" in doc["versions"]
    assert "loading" in res.stderr or "loaded" in res.stderr  # progress on stderr, not in the JSON


# ---------------------------------------------------------------------------------- what could not be measured


def test_a_broken_stream_prints_its_cause_and_exits_1(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    """A stream that broke ended as PARTIAL RESULTS with exit 0; the cause was only in --json."""
    from tui_lab.engines.events import RequestFinished
    from tui_lab.engines.scripted import ScriptedEngine

    original = ScriptedEngine.stream

    def broken(self, requests, sampling, stop=None):  # noqa: ANN001, ANN202
        for event in original(self, requests, sampling, stop):
            if isinstance(event, RequestFinished) and event.request_id == "r1":
                yield RequestFinished("r1", event.t, "error", error="the server closed the stream")
            else:
                yield event

    monkeypatch.setattr(ScriptedEngine, "stream", broken)
    assert main(["run", *SCRIPTED, "--batch-size", "3", "--max-tokens", "4"]) == cli.EXIT_INCOMPLETE
    out, err = capsys.readouterr()
    assert "TTFT" in out
    assert "not measured: 1 request: the server closed the stream" in err
    assert main(["run", *SCRIPTED, "--batch-size", "3", "--max-tokens", "4", "--json"]) == cli.EXIT_INCOMPLETE
    doc = json.loads(capsys.readouterr().out)
    assert [r["error"] for r in doc["requests"]].count("the server closed the stream") == 1


def test_an_experiment_whose_variant_cannot_run_exits_1_and_says_why(capsys: pytest.CaptureFixture[str],
                                                                      monkeypatch) -> None:
    """prefix_cache without vLLM exited 0 with the failure only inside its JSON."""
    from tui_lab.engines.scripted import ScriptedEngine
    from tui_lab.errors import EngineUnavailable

    loads = []
    original = ScriptedEngine.load

    def only_the_first(self, progress=None):  # noqa: ANN001, ANN202
        loads.append(self)
        if len(loads) > 1:
            raise EngineUnavailable("vLLM is not installed", "pip install vllm")
        return original(self, progress)

    monkeypatch.setattr(ScriptedEngine, "load", only_the_first)
    argv = ["experiment", "prefix_cache", *SCRIPTED, "--param", "num_requests=2", "--param", "runs=1"]
    assert main(argv) == cli.EXIT_INCOMPLETE
    out, err = capsys.readouterr()
    assert "not measured:" in err and "vLLM is not installed" in err
    assert "not run" in out  # the view names the mode that could not run


def test_vllm_bench_json_is_written_in_the_load_modes_too(tmp_path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch) -> None:
    """`run --vllm-bench-json FILE` was ignored without a word with --concurrency / --request-rate."""
    from tests.test_load import ThreadedEngine
    from tui_lab.engines import scripted

    class Loadable(ThreadedEngine):
        def load(self, progress=None):  # noqa: ANN001, ANN202
            return self.info

        def unload(self) -> None:
            pass

    monkeypatch.setattr(scripted, "ScriptedEngine", lambda **kw: Loadable())
    monkeypatch.setattr(cli, "_require_serving_engine", lambda args: None)
    out = tmp_path / "bench.json"
    assert main(["run", *SCRIPTED, "--concurrency", "2", "--num-requests", "4", "--max-tokens", "3",
                 "--vllm-bench-json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["completed"] == 4 and len(doc["ttfts"]) == 4
