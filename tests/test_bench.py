"""``inference-lab bench`` on CPU with a tiny model: the modes run, the result file has the agreed shape."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from tui_lab import bench  # noqa: E402

ARGS = ["--model", "tiny", "--device", "cpu", "--batch-sizes", "1,3", "--prompt-tokens", "5", "--new-tokens", "6",
        "--repeats", "1", "--loads", "1"]


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
    # Each row of the padded batch also ran alone on both paths: in float32 nothing differs.
    for row in data["greedy_check"]["cases"][1]["sequences"]:
        assert row["fast_batched_vs_alone_first_difference"] is None
        assert row["ref_batched_vs_alone_first_difference"] is None
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


def test_modes_take_fast_path_options_after_a_plus():
    assert bench._modes("lab-direct,lab-direct+v5,lab+tuning=pdl") == ["lab-direct", "lab-direct+v5", "lab+tuning=pdl"]
    assert bench.base_mode("lab-direct+v5+linear=reduce") == "lab-direct"
    opts = bench.mode_options("lab-direct+v5+linear=reduce")
    assert opts.boundary is False and opts.linear == "reduce"
    for bad in ("hf-generate+v5", "lab-direct+warp", "lab-direct,lab-direct", "lab-direct+linear=fast"):
        with pytest.raises(bench.argparse.ArgumentTypeError):
            bench._modes(bad)


def test_interleaved_loads_order_and_spread_with_a_fake_runner(tmp_path, monkeypatch, capsys):
    # Each mode runs once per load, the modes taking turns (A B A B A B); the bare modes get a fresh model
    # per load. The fake runner hands out fixed figures: the statistics are checked, never a clock.
    figures = {"lab-direct": [1000.0, 1100.0, 1050.0], "lab-direct+v5": [900.0, 800.0, 850.0]}
    calls, models = [], []

    def fake(mode, spec, model, sizes, args, device, budget, record, sampler):
        load = sum(1 for m, _ in calls if m == mode)
        calls.append((mode, load))
        models.append(id(model))
        for b in sizes:
            tps = figures[mode][load] * b
            record(bench.Run(mode, b, 1e3 * b / tps, tps, model=spec, decode_ms_per_step=1e3 * b / tps))
        return 0

    monkeypatch.setattr(bench, "_run_mode", fake)
    out = tmp_path / "r.json"
    rc = bench.main([*ARGS[:-2], "--loads", "3", "--modes", "lab-direct,lab-direct+v5", "--batch-sizes", "1",
                     "--out", str(out)])
    assert rc == 0
    assert calls == [("lab-direct", 0), ("lab-direct+v5", 0), ("lab-direct", 1), ("lab-direct+v5", 1),
                     ("lab-direct", 2), ("lab-direct+v5", 2)]
    assert models[0] == models[1] and len({models[0], models[2], models[4]}) == 3  # a fresh model per load
    data = json.loads(out.read_text())
    assert [r["load"] for r in data["runs"]] == [0, 0, 1, 1, 2, 2]
    summary = {row["mode"]: row for row in data["summary"]}
    t = summary["lab-direct"]["tokens_per_s"]
    assert (t["median"], t["min"], t["max"], summary["lab-direct"]["loads"]) == (1050.0, 1000.0, 1100.0, 3)
    (pair,) = data["comparisons"]
    assert (pair["a"], pair["b"]) == ("lab-direct", "lab-direct+v5")
    assert pair["ratio"] == pytest.approx(1050 / 850)
    assert pair["low"] == pytest.approx(1000 / 900) and pair["high"] == pytest.approx(1100 / 800)
    assert pair["measurable"] is True and pair["pairings"] == 9
    text = capsys.readouterr().out
    assert "across 3 loads" in text and "lab-direct / lab-direct+v5 = 1.235" in text
    assert "not measurable" not in text


def test_ratio_whose_range_covers_one_is_not_measurable():
    runs = [{"model": "m", "mode": m, "batch_size": 1, "tokens_per_s": v}
            for m, vs in (("a", (100.0, 104.0, 98.0)), ("b", (101.0, 97.0, 99.0))) for v in vs]
    runs.append({"model": "m", "mode": "b", "batch_size": 1, "tokens_per_s": None, "error": "boom"})
    summary = bench.summarize_loads(runs)
    assert [r["failed"] for r in summary] == [0, 1]
    (pair,) = bench.compare_modes(summary)
    assert pair["ratio"] == pytest.approx(100 / 99) and pair["measurable"] is False
    assert pair["low"] == pytest.approx(98 / 101) and pair["high"] == pytest.approx(104 / 97)
    result = {"loads": 3, "summary": summary, "comparisons": [pair]}
    import io

    buf = io.StringIO()
    bench.print_spread(result, buf)
    assert "not measurable here" in buf.getvalue()
    (med_a, med_b) = bench.median_runs(summary)
    assert med_a.tokens_per_s == 100.0 and med_b.tokens_per_s == 99.0
    assert bench.interleave(["a", "b"], 2) == [(0, "a"), (0, "b"), (1, "a"), (1, "b")]


def test_launch_cost_is_the_slope_over_kernel_counts():
    # 2 µs fixed + 1.5 µs per kernel, exactly on a line; then with noise the least-squares slope.
    fit = bench.fit_launch_cost({64: 2e-6 + 64 * 1.5e-6, 256: 2e-6 + 256 * 1.5e-6, 1024: 2e-6 + 1024 * 1.5e-6})
    assert fit["per_kernel_us"] == pytest.approx(1.5) and fit["graph_fixed_us"] == pytest.approx(2.0)
    noisy = bench.fit_launch_cost({100: 152e-6, 200: 298e-6, 300: 451e-6})
    assert noisy["per_kernel_us"] == pytest.approx(1.495, abs=1e-3)
    with pytest.raises(ValueError):
        bench.fit_launch_cost({100: 1e-4})


def test_per_kernel_cost_is_read_at_the_steps_kernel_count():
    launch = {"per_kernel_us": 1.25, "replay_us_per_kernel": {"128": 1.0, "256": 1.0, "512": 1.2}}
    assert bench.per_kernel_s_at(launch, 100) == pytest.approx(1.0e-6)
    assert bench.per_kernel_s_at(launch, 249) == pytest.approx(1.0e-6)
    assert bench.per_kernel_s_at(launch, 384) == pytest.approx(1.1e-6)
    assert bench.per_kernel_s_at(launch, 2000) == pytest.approx(1.2e-6)
    assert bench.per_kernel_s_at({"per_kernel_us": 1.25}, 300) == pytest.approx(1.25e-6)
    assert bench.per_kernel_s_at(None, 300) is None and bench.per_kernel_s_at(launch, None) is None


def test_floor_report_names_the_floor_a_step_sits_on():
    # A small model: 267 kernels at 1.2 µs = 0.32 ms of launches against a 0.126 ms copy: launch-bound.
    small = bench.floor_report(0.80e-3, 267, 1.2e-6, 0.126e-3)
    assert small["bound"] == "launch" and small["launch_floor_ms"] == pytest.approx(0.3204)
    assert small["floor_share"] == pytest.approx(0.3204 / 0.80) and small["copy_share"] == pytest.approx(0.126 / 0.8)
    assert small["both_floors_ms"] == pytest.approx(0.4464)
    # A big one: 420 kernels (0.5 ms) under a 3.76 ms copy: memory-bound.
    big = bench.floor_report(4.7e-3, 420, 1.2e-6, 3.76e-3)
    assert big["bound"] == "copy" and big["floor_share"] == pytest.approx(0.8)
    # Kernels not counted: only the copy floor.
    assert bench.floor_report(1e-3, None, 1.2e-6, 0.5e-3)["launch_floor_ms"] is None


def test_kernels_counted_in_a_graph_dump():
    dot = """digraph dot {
subgraph cluster_1 {
"graph_1_node_0"[style="solid" shape="record" label="{KERNEL\n| {ID | 0 | triton_per_fused_add_0}"];
"graph_1_node_1"[style="solid" shape="record" label="{MEMSET\n| {ID | 1}"];
"graph_1_node_2"[style="solid" shape="record" label="{KERNEL\n| {ID | 2 | nvjet_sm90_tst}"];
"graph_1_node_0" -> "graph_1_node_1";
}
}"""
    assert bench.count_dot_kernels(dot) == 2


def test_floors_need_a_gpu_and_say_so(tmp_path):
    out = tmp_path / "r.json"
    assert bench.main([*ARGS, "--modes", "lab-direct", "--batch-sizes", "1", "--floors", "--out", str(out)]) == 0
    assert "GPU" in json.loads(out.read_text())["floors"]["error"]
