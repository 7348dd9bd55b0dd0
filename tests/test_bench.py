"""``inference-lab bench`` on CPU with a tiny model: the modes run, the result file has the agreed shape."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from tui_lab import bench  # noqa: E402

ARGS = ["--model", "tiny", "--device", "cpu", "--batch-sizes", "1,3", "--prompt-tokens", "5", "--new-tokens", "6",
        "--repeats", "1"]


def test_bench_runs_on_cpu_and_writes_results(tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = bench.main([*ARGS, "--modes", "hf-generate,hf-generate-compiled,lab-direct,lab-direct-sync,"
                     "lab-direct-sync-serial", "--check-greedy",
                     "--out", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert {"gpu", "versions", "bandwidth_GBps", "runs"} <= set(data)
    assert data["bandwidth_GBps"] > 0 and "torch" in data["versions"]
    by = {(r["mode"], r["batch_size"]): r for r in data["runs"]}
    for mode in ("hf-generate", "lab-direct", "lab-direct-sync", "lab-direct-sync-serial"):
        for b in (1, 3):
            r = by[(mode, b)]
            assert "error" not in r and r["ms_per_step"] > 0
            # tokens/s and ms/step describe the same measurement
            assert r["tokens_per_s"] == pytest.approx(b * 1e3 / r["ms_per_step"], rel=1e-6)
            assert 0 < r["roofline_share"]
    assert by[("hf-generate-compiled", 1)]["error"].startswith("skipped")  # CUDA only
    assert data["greedy_check"]["all_equal"] is True
    ratio = next(q for q in data["ratios"] if q["mode"] == "lab-direct-sync" and q["batch_size"] == 3)
    assert ratio["vs_hf-generate"] > 0 and "host_sync_cost_pct" in ratio
    text = capsys.readouterr().out
    assert "ratios (tokens/s)" in text and "lab-direct-sync" in text


def test_engine_mode_failure_is_reported_not_raised(tmp_path, monkeypatch):
    import tui_lab.engines as engines

    def broken(name, **kw):
        raise RuntimeError("no engine here")

    monkeypatch.setattr(engines, "create_engine", broken)
    out = tmp_path / "r.json"
    rc = bench.main([*ARGS, "--modes", "lab", "--batch-sizes", "2", "--out", str(out)])
    assert rc == 1
    (run,) = json.loads(out.read_text())["runs"]
    assert run["mode"] == "lab" and run["ms_per_step"] is None and "no engine here" in run["error"]


def test_bad_arguments_exit_with_usage_error():
    with pytest.raises(SystemExit):
        bench.main(["--modes", "warp-drive"])
    with pytest.raises(SystemExit):
        bench.main(["--batch-sizes", "0,2"])


def test_card_slug_and_default_path():
    assert bench.card_slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    path = bench._out_path(None, "NVIDIA H200", cache_dir="/tmp/labcache")
    assert path.parent.as_posix() == "/tmp/labcache/bench" and path.name.startswith("nvidia-h200-")
    assert bench._out_path("-", "x") is None


def test_ratios_and_sync_cost():
    runs = [bench.Run("hf-generate", 1, 20.0, 50.0, model="m"),
            bench.Run("hf-generate-compiled", 1, 2.5, 400.0, model="m"),
            bench.Run("lab-direct", 1, 1.0, 1000.0, model="m"),
            bench.Run("lab-direct-sync", 1, 1.02, 980.0, model="m"),
            bench.Run("lab-direct-sync-serial", 1, 1.10, 909.0, model="m"),
            bench.Run("lab", 1, 1.05, 952.0, model="m")]
    rows = {r["mode"]: r for r in bench.ratios(runs)}
    assert rows["lab-direct"]["vs_hf-generate"] == pytest.approx(20.0)
    assert rows["lab-direct"]["vs_hf-generate-compiled"] == pytest.approx(2.5)
    assert rows["lab-direct-sync"]["host_sync_cost_pct"] == pytest.approx(2.0)
    assert rows["lab-direct-sync-serial"]["host_sync_cost_pct"] == pytest.approx(10.0)
    assert rows["lab"]["engine_cost_pct"] == pytest.approx(5.0) and "host_sync_cost_pct" not in rows["lab"]
    assert "engine_cost_pct" not in rows["lab-direct"] and "host_sync_cost_pct" not in rows["lab-direct"]
    # per decode step when both runs have it (the prefill's noise stays out of a per-token cost)
    runs[2].decode_ms_per_step, runs[3].decode_ms_per_step = 0.8, 0.804
    rows = {r["mode"]: r for r in bench.ratios(runs)}
    assert rows["lab-direct-sync"]["host_sync_cost_pct"] == pytest.approx(0.5)


def test_direct_loop_refuses_an_unknown_sync_mode():
    with pytest.raises(ValueError, match="unknown sync"):
        bench.run_direct(None, 1, 1, 1, 1, sync="sometimes")


def test_engine_prompts_hit_the_token_count():
    class Tok:
        def __call__(self, text):
            return {"input_ids": [2] + text.split()}

    class Eng:
        tokenizer = Tok()

    (p,) = bench._engine_prompts(Eng(), 1, 16)
    assert len(Tok()(p)["input_ids"]) == 16


@pytest.mark.real_model
def test_overlap_check_compares_the_engine_both_ways(embedded_checkpoint):
    import torch

    report = bench.check_overlap("embedded", torch.device("cpu"), "auto", None, new_tokens=6)
    assert report["all_equal"] is True
    assert report["greedy"]["events"] == 3 + 6 + 3 + 3 + 3  # submitted, tokens (6 + 3 + 3), finished
    assert report["sampled"]["equal"] is True


def _word_tokenizer(text):
    return {"input_ids": text.split()}


def test_lab_vllm_mode_streams_through_the_vllm_engine_options(tmp_path, monkeypatch):
    """lab-vllm builds the vLLM engine with every batch in one wave and counts the streamed tokens."""
    import tui_lab.engines as engines
    from tui_lab.engines.scripted import ScriptedEngine

    seen = {}

    def fake(name, **kw):
        seen[name] = kw
        return ScriptedEngine()

    monkeypatch.setattr(engines, "create_engine", fake)
    monkeypatch.setattr(bench, "_tokenizer_for", lambda spec, cache_dir: _word_tokenizer)
    out = tmp_path / "r.json"
    rc = bench.main([*ARGS, "--modes", "lab-vllm", "--batch-sizes", "1,4", "--out", str(out)])
    assert rc == 0
    assert seen["vllm"]["max_num_seqs"] == 4 and seen["vllm"]["max_model_len"] >= 5 + 6
    runs = {r["batch_size"]: r for r in json.loads(out.read_text())["runs"]}
    assert runs[4]["mode"] == "lab-vllm" and runs[4]["tokens_per_s"] > 0 and "error" not in runs[4]


def test_offline_runner_counts_tokens_and_refuses_short_outputs():
    pytest.importorskip("vllm")

    class Out:
        def __init__(self, n):
            self.outputs = [type("C", (), {"token_ids": list(range(n))})()]

    class LLM:
        def __init__(self, n):
            self.n, self.calls = n, 0

        def generate(self, prompts, params, use_tqdm=False):
            assert params.max_tokens == 6 and params.ignore_eos and use_tqdm is False
            self.calls += 1
            return [Out(self.n) for _ in prompts]

    llm = LLM(6)
    m = bench.run_vllm_offline(llm, ["a b"] * 3, 6, repeats=2)
    assert llm.calls == 3 and m["total_s"] > 0 and m["first_run_s"] > 0
    with pytest.raises(RuntimeError, match="produced 9 tokens, expected 18"):
        bench.run_vllm_offline(LLM(3), ["a b"] * 3, 6, repeats=1)


def test_vs_vllm_ratios_and_file_name():
    runs = [bench.Run("vllm-offline", 8, 1.0, 1000.0, model="m"), bench.Run("lab-vllm", 8, 1.2, 900.0, model="m"),
            bench.Run("lab", 8, 0.5, 2000.0, model="m")]
    by = {q["mode"]: q for q in bench.ratios(runs)}
    assert by["lab-vllm"]["vs_vllm-offline"] == pytest.approx(0.9)
    assert by["lab"]["vs_vllm-offline"] == pytest.approx(2.0)
    assert bench._out_path(None, "NVIDIA H200", "-vs-vllm").name.endswith("-vs-vllm.json")


def test_cpu_run_says_what_it_shows_runs_lab_first_and_stops_inside_a_point(tmp_path, monkeypatch, capsys):
    """A spent budget stops a generate() call mid-way; the lab's mode ran first; the file is named for the CPU."""
    monkeypatch.setenv("INFERENCE_LAB_CACHE", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    calls = {"n": 0}
    real_left = bench._Budget.left

    def left(self):
        # Plenty of budget until hf-generate has taken a few steps, then none.
        calls["n"] += 1
        return real_left(self) and calls["n"] < 40

    monkeypatch.setattr(bench._Budget, "left", left)
    rc = bench.main([*ARGS, "--modes", "hf-generate,lab-direct", "--batch-sizes", "1", "--new-tokens", "64",
                     "--time-budget", "600"])
    text = capsys.readouterr().out
    assert text.startswith("On a CPU this compares")
    saved = list((tmp_path / "bench").glob("*.json"))
    assert len(saved) == 1 and saved[0].name.startswith("cpu-") and not saved[0].name.startswith("cpu-cpu")
    assert not (tmp_path / "benchmarks").exists()
    runs = json.loads(saved[0].read_text())["runs"]
    assert [r["mode"] for r in runs] == ["lab-direct", "hf-generate"]
    assert runs[0]["tokens_per_s"] > 0
    assert runs[1]["error"] == "skipped: time budget spent during this point"
    assert rc == 0


def test_stream_runner_steps_the_engine_with_delta_outputs_and_counts_tokens():
    pytest.importorskip("vllm")
    from vllm.sampling_params import RequestOutputKind

    class Engine:
        def __init__(self, per_step: int, steps: int) -> None:
            self.per_step, self.steps, self.live = per_step, steps, {}

        def add_request(self, request_id, prompt, params):
            assert params.output_kind == RequestOutputKind.DELTA and params.max_tokens == 6
            self.live[request_id] = self.steps

        def has_unfinished_requests(self):
            return bool(self.live)

        def step(self):
            outs = []
            for rid in list(self.live):
                self.live[rid] -= 1
                if not self.live[rid]:
                    del self.live[rid]
                outs.append(type("O", (), {"outputs": [type("C", (), {"token_ids": [1] * self.per_step})()]})())
            return outs

    llm = type("LLM", (), {})()
    llm.llm_engine = Engine(2, 3)  # 3 steps of 2 tokens: 6 per request
    m = bench.run_vllm_stream(llm, ["a b"] * 4, 6, repeats=1)
    assert m["total_s"] > 0 and m["first_run_s"] > 0
    llm.llm_engine = Engine(1, 3)
    with pytest.raises(RuntimeError, match="produced 12 tokens, expected 24"):
        bench.run_vllm_stream(llm, ["a b"] * 4, 6, repeats=1)
