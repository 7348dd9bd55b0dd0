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
    path = bench._out_path(None, "NVIDIA H200")
    assert path.parent.as_posix() == "benchmarks/results" and path.name.startswith("nvidia-h200-")
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
