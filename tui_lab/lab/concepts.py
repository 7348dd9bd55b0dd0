"""Concepts of lessons 03 to 06 that the other experiments leave out, each measured where this machine allows.

- ``lm_head_share`` (03): the LM head's part of a small model's decode step, timed on the loaded model
  (transformers engine) and computed for every shipped architecture.
- ``structured_output`` (06): guided decoding with a JSON schema or a regular expression on vLLM, TPOT with
  and without the constraint on the same prompts.
- ``disaggregation`` (06): prefill and decode timed on the loaded engine; what moving a prompt's KV cache
  to another worker, or back from host memory, would cost against recomputing it (computed, and said so).
- ``lora_adapters`` (06): two LoRA adapters served beside the base model on vLLM; the extra bytes and
  FLOPs per step for rank r computed for every engine.

torch and vLLM are imported inside the functions that need them.
"""

from __future__ import annotations

import json
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from tui_lab.errors import InvalidInput, LabError
from tui_lab.lab.experiment import Experiment, Params, RunContext
from tui_lab.lab.measure import ms, run_batch, variant
from tui_lab.lab.planned import PlannedRun, prompt_tokens
from tui_lab.params import BATCH_SIZE, MAX_NEW_TOKENS_PARAM, PROMPT, Param

# ----------------------------------------------------------------------------------------- the LM head


@dataclass
class HeadShareRow:
    """One architecture's LM head against the weights a decode step reads (computed from its config)."""

    model: str
    vocab: int
    hidden: int
    params: int
    head_params: int
    tied: bool
    """Input embedding and LM head share one matrix (read once per step, by the head)."""
    read_per_step: int
    """Parameters a decode step reads: all of them, less an untied input embedding (only its rows are looked up)."""
    head_share_pct: float


def head_share(name: str, config: dict[str, Any], vocab: int | None = None) -> HeadShareRow:
    """The LM head's share of the weights one decode step reads, for ``config`` (``vocab`` replaces its own)."""
    from tui_lab.models.shape import count_params

    cfg = dict(config) if vocab is None else {**config, "vocab_size": vocab}
    v, h = int(cfg["vocab_size"]), int(cfg["hidden_size"])
    params = count_params(cfg)
    tied = bool(cfg.get("tie_word_embeddings", False))
    read = params - (0 if tied else v * h)
    return HeadShareRow(name, v, h, params, v * h, tied, read, 100.0 * v * h / read)


@dataclass
class LmHeadResult:
    """A decode step split into the body (every layer) and the LM head, timed on the loaded model."""

    model: str
    engine: str
    device: str
    dtype: str
    batch_size: int
    steps: int
    rows: list[HeadShareRow]
    """Computed for every shipped architecture, and for the loaded shapes with ``small_vocab`` entries."""
    vocab: int | None = None
    hidden: int | None = None
    params: int | None = None
    head_bytes: float | None = None
    """The LM head matrix in the loaded dtype: read in full at every step."""
    bytes_per_step: float | None = None
    """Weights one step reads in the loaded dtype (the KV cache left out)."""
    head_share_bytes_pct: float | None = None
    step_ms: float | None = None
    """Median decode step (body + head + picking the token), measured."""
    body_ms: float | None = None
    head_ms: float | None = None
    pick_ms: float | None = None
    head_time_pct: float | None = None
    """The head's median time as a share of the median step, measured."""
    head_gb_s: float | None = None
    """LM head bytes / head time: the memory speed the head's matrix product reached."""
    small_vocab: int = 32000
    full_matmul_ms: float | None = None
    """The LM head's matrix product alone (same hidden state), repeated: measured."""
    small_matmul_ms: float | None = None
    """The same product with only the first ``small_vocab`` rows of the matrix: measured."""
    note: str = ""
    modelled: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """Plain-JSON form."""
        return asdict(self)


def _sync(device: Any) -> None:
    import torch

    if getattr(device, "type", str(device)).startswith("cuda"):
        torch.cuda.synchronize(device)


def _median_ms(times: Sequence[float]) -> float | None:
    return 1000.0 * statistics.median(times) if times else None


def time_head(engine: Any, prompt: str, batch: int, steps: int, small_vocab: int,
              stop: Callable[[], bool] = lambda: False) -> dict[str, Any]:
    """Greedy decode steps on the loaded transformers model, each timed as body, LM head and pick.

    The body (``get_decoder()``) runs the layers on the new token with the KV cache; the head
    (``get_output_embeddings()``) turns the last hidden state into one score per vocabulary entry; the
    pick is the argmax. Then the head's product alone, on the full matrix and on its first
    ``small_vocab`` rows (what a model with that vocabulary would read).
    """
    import torch

    model, tok = engine.model, engine.tokenizer
    device = getattr(engine, "torch_device", None) or next(model.parameters()).device
    body, head = model.get_decoder(), model.get_output_embeddings()
    if body is None or head is None or not hasattr(head, "weight"):
        raise InvalidInput("this model has no separate decoder and LM head to time",
                           "load a decoder-only model such as the embedded Gemma 3 270M")
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    softcap = getattr(config, "final_logit_softcapping", None)
    ids = tok([prompt] * batch, return_tensors="pt").input_ids.to(device)
    parts: dict[str, list[float]] = {"step": [], "body": [], "head": [], "pick": []}
    warm = 2
    with torch.inference_mode():
        out = body(input_ids=ids, use_cache=True)
        cache = out.past_key_values
        nxt = head(out.last_hidden_state[:, -1:]).argmax(-1)
        for i in range(warm + steps):
            if stop():
                break
            _sync(device)
            t0 = time.perf_counter()
            out = body(input_ids=nxt, past_key_values=cache, use_cache=True)
            hidden = out.last_hidden_state[:, -1:]
            _sync(device)
            t1 = time.perf_counter()
            logits = head(hidden)
            if softcap:
                logits = torch.tanh(logits / softcap) * softcap
            _sync(device)
            t2 = time.perf_counter()
            nxt = logits.argmax(-1)
            _sync(device)
            t3 = time.perf_counter()
            cache = out.past_key_values
            if i >= warm:
                parts["step"].append(t3 - t0)
                parts["body"].append(t1 - t0)
                parts["head"].append(t2 - t1)
                parts["pick"].append(t3 - t2)
        weight = head.weight
        small = weight[: min(small_vocab, weight.shape[0])]
        full_t: list[float] = []
        small_t: list[float] = []
        for _ in range(steps if not stop() else 0):
            for w, into in ((weight, full_t), (small, small_t)):
                _sync(device)
                t0 = time.perf_counter()
                torch.nn.functional.linear(hidden, w)
                _sync(device)
                into.append(time.perf_counter() - t0)
    params = sum(p.numel() for p in model.parameters())
    elem = weight.element_size()
    tied = weight is model.get_input_embeddings().weight
    read = params - (0 if tied else weight.numel())
    return {
        "device": str(device), "dtype": str(weight.dtype).replace("torch.", ""), "vocab": int(weight.shape[0]),
        "hidden": int(weight.shape[1]), "params": int(params), "head_bytes": float(weight.numel() * elem),
        "bytes_per_step": float(read * elem), "step_ms": _median_ms(parts["step"]),
        "body_ms": _median_ms(parts["body"]), "head_ms": _median_ms(parts["head"]),
        "pick_ms": _median_ms(parts["pick"]), "full_matmul_ms": _median_ms(full_t),
        "small_matmul_ms": _median_ms(small_t), "measured_steps": len(parts["step"]),
    }


class LmHeadShare(Experiment):
    """How much of a small model's decode step is its LM head (Gemma 3: a 262,144-entry vocabulary)."""

    name = "lm_head_share"
    title = "The LM head's share of a step"
    description = "Times a decode step's layers and its LM head apart; computes the head's share of the bytes."
    kind = "inspect"
    result_type = LmHeadResult
    params = (
        PROMPT,
        BATCH_SIZE,
        Param("steps", "int", 16, "decode steps timed (after 2 discarded)", 2, 1000),
        Param("small_vocab", "int", 32000, "a smaller vocabulary to time the LM head's product at", 256, 1_000_000),
    )

    def planned_work(self, params: Params, engine: str = "transformers") -> list[PlannedRun]:
        """On transformers the prompt, 2 discarded and ``steps`` timed decode steps, then the head's products
        alone (about half a step each time on Gemma, whose head is most of the bytes); elsewhere computed only."""
        if engine != "transformers":
            return []
        steps = params["steps"]
        return [PlannedRun(params["batch_size"], 3 + steps + steps // 2, prompt_tokens([params["prompt"]]))]

    def run(self, params: Params, ctx: RunContext) -> LmHeadResult:
        """Compute every architecture's share; on the transformers engine, time the loaded model's steps."""
        from tui_lab.models.arch import ARCH_MODELS

        rows = [head_share(a.display_name, a.config) for a in ARCH_MODELS.values()]
        gemma = ARCH_MODELS["gemma-3-270m"]
        rows.append(head_share(f"{gemma.display_name} shapes, {params['small_vocab']:,}-entry vocabulary",
                               gemma.config, params["small_vocab"]))
        computed = {"rows": "computed from each architecture's config"}
        engine = ctx.loaded
        base = dict(model=engine.info.model, engine=ctx.engine_name, device=ctx.device(), dtype=engine.info.dtype,
                    batch_size=params["batch_size"], steps=params["steps"], rows=rows,
                    small_vocab=params["small_vocab"])
        if getattr(engine, "model", None) is None or getattr(engine, "tokenizer", None) is None:
            where = "vLLM runs the model in its own process" if ctx.engine_name == "vllm" else "this engine has none"
            return LmHeadResult(**base, note=f"timing the head needs the model's layers in this process (engine "
                                             f"transformers); {where}. The table is computed.", modelled=computed)
        ctx.report(f"timing {params['steps']} decode steps · batch {params['batch_size']}", None)
        got = time_head(engine, params["prompt"], params["batch_size"], params["steps"], params["small_vocab"],
                        ctx.stopped)
        step, head = got["step_ms"], got["head_ms"]
        base.update(device=got["device"], dtype=got["dtype"])
        note = ""
        if got["measured_steps"] < params["steps"]:
            note = f"stopped after {got['measured_steps']} of {params['steps']} steps"
        bytes_pct = 100.0 * got["head_bytes"] / got["bytes_per_step"]
        time_pct = 100.0 * head / step if step and head is not None else None
        if time_pct is not None and abs(time_pct - bytes_pct) >= 10:
            why = ("the layers' many small products, attention and norms cost more than their bytes"
                   if time_pct < bytes_pct else "the head read its matrix more slowly than the layers read theirs")
            note = " ".join(filter(None, (note, f"The head holds {bytes_pct:.0f} % of the bytes but took "
                                                f"{time_pct:.0f} % of the time: {why}.")))
        return LmHeadResult(
            **base, vocab=got["vocab"], hidden=got["hidden"], params=got["params"], head_bytes=got["head_bytes"],
            bytes_per_step=got["bytes_per_step"], head_share_bytes_pct=bytes_pct,
            step_ms=step, body_ms=got["body_ms"], head_ms=head, pick_ms=got["pick_ms"], head_time_pct=time_pct,
            head_gb_s=got["head_bytes"] / (head / 1000.0) / 1e9 if head else None,
            full_matmul_ms=got["full_matmul_ms"], small_matmul_ms=got["small_matmul_ms"], note=note,
            modelled={**computed, "head_share_bytes_pct": "computed from the loaded weights' sizes"},
        )


# ----------------------------------------------------------------------------------- structured output

CITY_SCHEMA = json.dumps({
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 24},
        "country": {"type": "string", "maxLength": 24},
        "population": {"type": "integer"},
        "rivers": {"type": "array", "items": {"type": "string", "maxLength": 24}, "maxItems": 2},
    },
    "required": ["city", "country", "population", "rivers"],
    "additionalProperties": False,
})
"""A small JSON schema whose every string and list is bounded, so a reply ends within a few dozen tokens."""
WORD_LIST = r"[A-Z][a-z]+(, [A-Z][a-z]+){3,7}\."
CITIES = ("Lyon", "Kyoto", "Quito", "Perth", "Porto", "Cairo", "Oslo", "Lima")


@dataclass
class GuidedRow:
    """One batch of the same prompts, free or constrained."""

    label: str
    constrained: bool
    requests: int
    ttft_ms: float | None
    tpot_ms: float | None
    """Median over the requests of this row's runs."""
    output_tokens: float
    """Mean tokens per reply."""
    valid: int
    """Replies that parse as JSON with every required key (or match the regular expression)."""
    sample: str


@dataclass
class GuidedResult:
    """Guided decoding's cost per token: the same prompts free and under a JSON schema or a regex."""

    constraint: str
    spec: str
    engine: str
    rows: list[GuidedRow]
    tpot_free_ms: float | None = None
    tpot_guided_ms: float | None = None
    tpot_overhead_pct: float | None = None
    """Guided over free TPOT, in percent more (negative: the guided runs were faster)."""
    first_request_extra_ms: float | None = None
    """TTFT of the first guided batch minus that of the later ones: compiling the grammar, once per schema."""
    note: str = ""

    def to_dict(self) -> dict[str, object]:
        """Plain-JSON form."""
        return asdict(self)


def reply_is_valid(text: str, constraint: str, spec: str) -> bool:
    """Whether ``text`` meets the constraint: JSON with every required key, or a full regex match."""
    if constraint == "regex":
        return re.fullmatch(spec, text.strip()) is not None
    try:
        value = json.loads(text)
    except ValueError:
        return False
    required = json.loads(spec).get("required", [])
    return isinstance(value, dict) and all(key in value for key in required)


class StructuredOutput(Experiment):
    """Guided decoding (a JSON schema or a regular expression) against free text, per token, on vLLM."""

    name = "structured_output"
    title = "Structured output and what it costs"
    description = "TPOT with and without a JSON schema (or a regex) on the same prompts; validity of the replies."
    kind = "compare"
    result_type = GuidedResult
    params = (
        BATCH_SIZE.but(default=4),
        MAX_NEW_TOKENS_PARAM.but(default=64, min=8),
        Param("constraint", "choice", "json", "a JSON schema or a regular expression", choices=("json", "regex")),
        Param("schema", "text", CITY_SCHEMA, "the JSON schema (constraint json)"),
        Param("pattern", "text", WORD_LIST, "the regular expression (constraint regex)"),
        Param("runs", "int", 2, "measured runs of each, taken in turn after one guided run that compiles", 1, 10),
    )

    def check_together(self, values: Params) -> None:
        """The schema must be JSON and the pattern a regular expression Python can read."""
        try:
            if not isinstance(json.loads(values["schema"]), dict):
                raise ValueError("not an object")
        except ValueError as exc:
            raise InvalidInput(f"schema must be a JSON object ({exc})") from None
        try:
            re.compile(values["pattern"])
        except re.error as exc:
            raise InvalidInput(f"pattern is not a regular expression ({exc})") from None

    def planned_work(self, params: Params, engine: str = "transformers") -> list[PlannedRun]:
        """A free warm-up, then free runs (and on vLLM guided runs, after one that compiles) in turn."""
        b, n = params["batch_size"], params["max_new_tokens"]
        tokens = prompt_tokens([f"A record of the city of {city}, in JSON:\n" for city in CITIES])
        guided = engine == "vllm"
        return [PlannedRun(b, n, tokens, 1 + params["runs"] * (2 if guided else 1) + (1 if guided else 0))]

    def run(self, params: Params, ctx: RunContext) -> GuidedResult:
        """Free runs and guided runs in turn on the loaded engine (guided only where it takes a constraint)."""
        from tui_lab.engines.base import Request, SamplingParams
        from tui_lab.lab.measure import measure
        from tui_lab.metrics import percentile, tpot, ttft

        kind = params["constraint"]
        spec = params["schema"] if kind == "json" else params["pattern"]
        if kind == "json":
            prompts = [f"A record of the city of {CITIES[i % len(CITIES)]}, in JSON:\n"
                       for i in range(params["batch_size"])]
            structured: dict[str, Any] = {"json": json.loads(spec), "disable_any_whitespace": True}
        else:
            prompts = [f"Some cities near {CITIES[i % len(CITIES)]}:" for i in range(params["batch_size"])]
            structured = {"regex": spec}
        engine: Any = ctx.loaded  # vLLM's engine takes per-request options through ``request_options``
        sampling = SamplingParams(max_new_tokens=params["max_new_tokens"], temperature=0.0, ignore_eos=False)
        requests = [Request(f"r{i}", p) for i, p in enumerate(prompts)]
        takes = ctx.engine_name == "vllm" and hasattr(engine, "request_options")
        runs: dict[str, list[Any]] = {"free": [], "first": [], "guided": []}

        def once(label: str, guided: bool) -> None:
            ctx.report(label, None, new_run=True)
            if takes:
                engine.request_options = (lambda r: {"structured_outputs": structured}) if guided else None
            try:
                m = measure(engine, requests, sampling, stop=ctx.stop, sink=ctx.sink)
            finally:
                if takes:
                    engine.request_options = None
            if m.raised and m.exception is not None:
                raise m.exception
            runs[label.split(" ")[0]].extend(res for _, res in m.complete)

        once("free warm-up (not measured)", False)
        runs["free"].clear()
        if takes:
            once("first guided run (compiles the grammar)", True)
        for i in range(params["runs"]):
            if ctx.stopped():
                break
            once(f"free text · run {i + 1}/{params['runs']}", False)
            if takes:
                once(f"guided · run {i + 1}/{params['runs']}", True)

        def row(label: str, key: str, guided: bool) -> GuidedRow | None:
            results = runs[key]
            if not results:
                return None
            reqs = [r for res in results for r in res.requests]
            return GuidedRow(
                label, guided, len(reqs),
                ms(percentile([t for t in (ttft(r.trace) for r in reqs) if t is not None], 50)),
                ms(percentile([t for t in (tpot(r.trace) for r in reqs) if t is not None], 50)),
                sum(r.trace.output_tokens for r in reqs) / len(reqs),
                sum(reply_is_valid(r.text, kind, spec) for r in reqs), reqs[0].text[:100])

        what = "JSON schema" if kind == "json" else "regex"
        rows = [r for r in (row("free text", "free", False), row(f"{what}, first batch", "first", True),
                            row(what, "guided", True)) if r is not None]
        free = next((r for r in rows if r.label == "free text"), None)
        guided = next((r for r in rows if r.label == what), None)
        first = next((r for r in rows if r.constrained and r is not guided), None)
        overhead = None
        if free and guided and free.tpot_ms and guided.tpot_ms:
            overhead = 100.0 * (guided.tpot_ms / free.tpot_ms - 1)
        extra = (first.ttft_ms - guided.ttft_ms if first and guided and first.ttft_ms is not None
                 and guided.ttft_ms is not None else None)
        note = ""
        if not takes:
            note = ("guided decoding runs on the vLLM engine here (its grammar backend masks the logits at every "
                    "step); this engine ran the free text only")
        return GuidedResult(kind, spec, ctx.engine_name, rows, free.tpot_ms if free else None,
                            guided.tpot_ms if guided else None, overhead, extra, note)


# ------------------------------------------------------------------------- disaggregation and KV offload

NETWORK_GBS = 50.0
"""A 400 Gb/s RDMA network card moves 50 GB/s: the link between a prefill and a decode worker (assumed)."""
PCIE_GBS = 25.0
"""PCIe 4.0 x16 carries about 25 GB/s each way in practice: GPU memory to host memory (assumed)."""


@dataclass
class DisaggResult:
    """Prefill and decode measured on the loaded engine; what moving or reloading the KV cache would cost."""

    engine: str
    device: str
    kv_shapes: str
    """The model whose shapes the KV bytes are computed for."""
    prompt_tokens: int
    prefill_ms: float | None
    """TTFT of the long prompt alone: its prefill, measured."""
    prefill_tokens_per_s: float | None
    batch_size: int
    decode_step_ms: float | None
    """TPOT p50 of ``batch_size`` streams decoding together, measured."""
    prefill_in_decode_steps: float | None
    """How many of those decode steps one prefill of the prompt lasts (two measurements divided)."""
    kv_bytes: float
    """The prompt's KV cache in bf16, computed from the shapes (sliding windows counted)."""
    link_gbs: float
    host_gbs: float
    transfer_ms: float
    """KV bytes over the link between workers (computed; the link is an assumption)."""
    reload_ms: float
    """KV bytes back from host memory (computed; the link is an assumption)."""
    break_even_gbs: float | None
    """KV bytes / prefill time: a link faster than this moves the cache sooner than it can be recomputed."""
    reply_tokens: int
    prefill_per_decode_worker: float | None
    """Prefill worker time per request over decode worker time per request (decode shared by the batch):
    how many prefill workers one decode worker keeps busy for this prompt and reply length."""
    note: str = ""
    modelled: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """Plain-JSON form."""
        return asdict(self)


def long_prompt(words: int, tag: str = "") -> str:
    """About ``words`` words of plain English from the lab's prompt list (``tag`` makes it unique)."""
    from tui_lab.lab.prompts import all_prompts

    pool = " ".join(all_prompts()).split()
    text = [pool[i % len(pool)] for i in range(words)]
    return " ".join(([tag] if tag else []) + text) + "\nSummarize the text above in one sentence:"


def loaded_shape(ctx: RunContext, fallback: str) -> tuple[Any, str]:
    """The loaded model's shapes (its config, bf16 KV) if this process holds it, else ``fallback``'s."""
    from dataclasses import replace

    from tui_lab.models.arch import ARCH_MODELS
    from tui_lab.models.shape import model_shape

    model = getattr(ctx.engine, "model", None)
    config = getattr(model, "config", None)
    if config is not None:
        return replace(model_shape(config), kv_bytes_per_elem=2.0), f"the loaded {ctx.loaded.info.model}"
    arch = ARCH_MODELS[fallback]
    return replace(model_shape(arch.config), kv_bytes_per_elem=2.0), f"{arch.display_name} shapes"


class Disaggregation(Experiment):
    """Prefill–decode disaggregation and KV offload, predicted from this machine's own prefill and decode."""

    name = "disaggregation"
    title = "Disaggregated prefill and KV offload"
    description = ("Times a long prefill and a decode step here; computes the KV bytes to move and the links "
                   "that would beat recomputing them.")
    kind = "inspect"
    result_type = DisaggResult
    params = (
        Param("prompt_words", "int", 600, "words in the long prompt", 16, 100000),
        BATCH_SIZE.but(default=8, help="streams decoding together (the decode worker's batch)"),
        MAX_NEW_TOKENS_PARAM.but(default=16, min=3, help="new tokens per stream in the decode run"),
        Param("reply_tokens", "int", 256, "reply length the worker balance assumes", 1, 1_000_000),
        Param("link_gbs", "number", NETWORK_GBS, "prefill-to-decode link, GB/s (assumed: 400 Gb/s RDMA)", 0.001,
              100000),
        Param("host_gbs", "number", PCIE_GBS, "device-to-host link for offload, GB/s (assumed: PCIe 4.0 x16)",
              0.001, 100000),
        Param("kv_model", "choice", "gemma-3-270m", "shapes for the KV bytes when the engine runs elsewhere",
              choices=("gemma-3-270m", "llama-3-8b", "nemotron-nano-9b-v2")),
    )

    def planned_work(self, params: Params, engine: str = "transformers") -> list[PlannedRun]:
        """A short warm-up, the long prompt's prefill, then a batch decoding."""
        from tui_lab.lab.prompts import varied_prompts

        b = params["batch_size"]
        return [PlannedRun(1, 2, prompt_tokens(["Warm up: say one word."])),
                PlannedRun(1, 2, prompt_tokens([long_prompt(params["prompt_words"])])),
                PlannedRun(b, params["max_new_tokens"], prompt_tokens(varied_prompts(b)))]

    def run(self, params: Params, ctx: RunContext) -> DisaggResult:
        """The long prompt's prefill alone, then a batch decoding, then the arithmetic."""
        from tui_lab.lab.prompts import varied_prompts
        from tui_lab.metrics import percentile, tpot, ttft
        from tui_lab.metrics.roofline import kv_bytes_per_sequence

        engine = ctx.loaded
        run_batch(ctx, engine, ["Warm up: say one word."], 2, "warm-up (not measured)")
        prompt = long_prompt(params["prompt_words"], f"[{time.time_ns() % 10**9}]")
        pre = run_batch(ctx, engine, [prompt], 2, f"prefill · {params['prompt_words']} words")
        trace = pre.traces[0]
        prefill = ttft(trace)
        n_prompt = int(trace.prompt_tokens)
        dec = run_batch(ctx, engine, varied_prompts(params["batch_size"]), params["max_new_tokens"],
                        f"decode · batch {params['batch_size']}")
        step = percentile([t for t in (tpot(tr) for tr in dec.traces) if t is not None], 50)
        shape, shapes = loaded_shape(ctx, params["kv_model"])
        kv = kv_bytes_per_sequence(shape, n_prompt)
        link, host = params["link_gbs"] * 1e9, params["host_gbs"] * 1e9
        decode_per_request = params["reply_tokens"] * step / params["batch_size"] if step else None
        note = ""
        if n_prompt <= 0:
            note = "this engine did not report the prompt's length; the KV bytes assume none"
        return DisaggResult(
            engine=ctx.engine_name, device=ctx.device(), kv_shapes=shapes, prompt_tokens=n_prompt,
            prefill_ms=ms(prefill), prefill_tokens_per_s=n_prompt / prefill if prefill else None,
            batch_size=params["batch_size"], decode_step_ms=ms(step),
            prefill_in_decode_steps=prefill / step if prefill and step else None,
            kv_bytes=kv, link_gbs=params["link_gbs"], host_gbs=params["host_gbs"],
            transfer_ms=1000.0 * kv / link, reload_ms=1000.0 * kv / host,
            break_even_gbs=kv / prefill / 1e9 if prefill else None, reply_tokens=params["reply_tokens"],
            prefill_per_decode_worker=prefill / decode_per_request if prefill and decode_per_request else None,
            note=note,
            modelled={"kv_bytes": f"computed for {shapes} in bf16",
                      "transfer_ms": f"computed: KV bytes over an assumed {params['link_gbs']:g} GB/s link",
                      "reload_ms": f"computed: KV bytes over an assumed {params['host_gbs']:g} GB/s link",
                      "break_even_gbs": "computed from the measured prefill and the computed KV bytes",
                      "prefill_per_decode_worker": "computed from the measured prefill and decode step"},
        )


# ----------------------------------------------------------------------------------------- LoRA adapters

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""Every linear layer of a dense decoder layer: the usual choice of modules a LoRA adapter trains."""


def lora_shapes(config: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """(in, out) features of each LoRA target module of one decoder layer of a dense transformer."""
    h = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    hd = int(config.get("head_dim") or h // heads)
    kv = int(config.get("num_key_value_heads") or heads)
    inter = int(config["intermediate_size"])
    return {"q_proj": (h, heads * hd), "k_proj": (h, kv * hd), "v_proj": (h, kv * hd), "o_proj": (heads * hd, h),
            "gate_proj": (h, inter), "up_proj": (h, inter), "down_proj": (inter, h)}


@dataclass
class LoraCost:
    """What one rank-r adapter adds to every decode step (computed from the shapes)."""

    rank: int
    layers: int
    params: int
    """Adapter parameters: r · (in + out) for every target module of every layer."""
    bytes: float
    """In bf16: what a step reads once for every distinct adapter in its batch."""
    base_bytes: float
    bytes_pct: float
    flops_per_token: float
    """2 FLOPs per multiply-add through A (in → r) and B (r → out), every module and layer."""
    base_flops_per_token: float
    flops_pct: float


def lora_cost(config: dict[str, Any], rank: int) -> LoraCost:
    """The extra bytes and FLOPs per step of one adapter of ``rank`` on a dense transformer ``config``."""
    from tui_lab.models.shape import count_params

    layers = int(config["num_hidden_layers"])
    params = layers * rank * sum(i + o for i, o in lora_shapes(config).values())
    base = count_params(config)
    v_h = int(config["vocab_size"]) * int(config["hidden_size"])
    read = base - (0 if config.get("tie_word_embeddings") else v_h)
    return LoraCost(rank, layers, params, 2.0 * params, 2.0 * read, 100.0 * params / read, 2.0 * params,
                    2.0 * read, 100.0 * params / read)


def write_adapter(directory: str, config: dict[str, Any], rank: int, seed: int, base_model: str) -> None:
    """An untrained rank-``rank`` adapter for ``config`` in the PEFT layout vLLM loads (random A, small random B)."""
    import os

    import torch
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(int(config["num_hidden_layers"])):
        for module, (n_in, n_out) in lora_shapes(config).items():
            part = "self_attn" if module in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
            key = f"base_model.model.model.layers.{layer}.{part}.{module}"
            tensors[f"{key}.lora_A.weight"] = (torch.randn(rank, n_in, generator=gen) / n_in**0.5).to(torch.bfloat16)
            tensors[f"{key}.lora_B.weight"] = (torch.randn(n_out, rank, generator=gen) * 0.02).to(torch.bfloat16)
    os.makedirs(directory, exist_ok=True)
    save_file(tensors, os.path.join(directory, "adapter_model.safetensors"))
    with open(os.path.join(directory, "adapter_config.json"), "w", encoding="utf-8") as f:
        json.dump({"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": 2 * rank,
                   "lora_dropout": 0.0, "bias": "none", "target_modules": list(LORA_TARGETS),
                   "base_model_name_or_path": base_model}, f)


@dataclass
class LoraRow:
    """One batch on the LoRA-enabled engine: which adapters its requests used, and its speed."""

    label: str
    adapters: int
    """Distinct adapters in the batch."""
    tpot_ms: float | None
    tokens_per_s: float | None
    sample: str


@dataclass
class LoraResult:
    """LoRA adapters beside the base model: computed cost per adapter, measured steps on vLLM."""

    model: str
    engine: str
    rank: int
    cost: LoraCost | None
    rows: list[LoraRow] = field(default_factory=list)
    overhead_pct: float | None = None
    """TPOT of the mixed batch over the base-only batch, in percent more (measured)."""
    note: str = ""
    modelled: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """Plain-JSON form."""
        return asdict(self)


def _rank(name: str, value: object) -> int:
    from tui_lab.engines.vllm_engine import LORA_RANKS

    if value not in LORA_RANKS:
        raise InvalidInput(f"{name} must be one of {', '.join(map(str, LORA_RANKS))} (got {value!r})")
    return int(value)


def _model_config(ctx: RunContext) -> tuple[dict[str, Any], str, str]:
    """(config dict, checkpoint dir or "", display name) of the model the loaded engine was made with.

    The embedded model and the architecture models have their configs in ``ARCH_MODELS`` (the embedded
    Gemma 3 270M has the shapes of ``arch:gemma-3-270m``); any other model's is read from its checkpoint.
    """
    from tui_lab.models import materialize, resolve
    from tui_lab.models.arch import ARCH_MODELS

    spec = resolve(str(ctx.engine_options.get("model") or "embedded"))
    if spec.kind in ("embedded", "arch"):
        arch = ARCH_MODELS[spec.arch_name or "gemma-3-270m"]
        return dict(arch.config), "", spec.display_name
    path = materialize(spec, cache_dir=ctx.engine_options.get("cache_dir"))  # type: ignore[arg-type]
    with open(f"{path}/config.json", encoding="utf-8") as f:
        config = json.load(f)
    return config.get("text_config", config), str(path), spec.display_name or spec.name


class LoraAdapters(Experiment):
    """Several LoRA adapters served beside the base model in one batch, and what each adds per step."""

    name = "lora_adapters"
    title = "LoRA adapters side by side"
    description = "Computes an adapter's bytes and FLOPs per step; on vLLM serves base and adapters in one batch."
    kind = "compare"
    result_type = LoraResult
    params = (
        BATCH_SIZE.but(default=4),
        MAX_NEW_TOKENS_PARAM.but(default=16, min=3),
        Param("rank", "int", 16, "adapter rank r (8, 16, 32 or 64)", 8, 64, extra=_rank),
        Param("adapters", "int", 2, "adapters served side by side (vLLM's max_loras)", 1, 4),
        Param("runs", "int", 2, "measured runs of each batch, taken in turn", 1, 10),
    )

    def planned_work(self, params: Params, engine: str = "transformers") -> list[PlannedRun] | None:
        """Computed only, except on vLLM (a LoRA-enabled variant and its batches: not known)."""
        return None if engine == "vllm" else []

    def run(self, params: Params, ctx: RunContext) -> LoraResult:
        """Compute the cost for the loaded model's shapes; on vLLM, start a LoRA-enabled engine and time batches."""
        import tempfile

        from tui_lab.lab.prompts import varied_prompts
        from tui_lab.metrics import percentile, tpot

        rank, n_adapters = params["rank"], params["adapters"]
        try:
            config, path, display = _model_config(ctx)
        except (LabError, OSError, KeyError) as exc:
            return LoraResult("unknown", ctx.engine_name, rank, None, note=f"no model config to compute from: {exc}")
        if config.get("hybrid_override_pattern"):
            return LoraResult(display, ctx.engine_name, rank, None,
                              note="this experiment adapts dense transformer layers; a hybrid Mamba model is not one")
        cost = lora_cost(config, rank)
        computed = {"cost": "computed from the model's config"}
        if ctx.engine_name != "vllm":
            return LoraResult(display, ctx.engine_name, rank, cost, note="serving adapters side by side needs the "
                              "vLLM engine; the cost per adapter is computed", modelled=computed)
        prompts = varied_prompts(params["batch_size"])
        rows: list[LoraRow] = []
        note = ""
        with tempfile.TemporaryDirectory(prefix="lab-lora-") as tmp:
            ctx.report(f"writing {n_adapters} untrained rank-{rank} adapters", None)
            adapters = []
            for i in range(n_adapters):
                directory = f"{tmp}/adapter-{i + 1}"
                write_adapter(directory, config, rank, seed=i + 1, base_model=path or display)
                adapters.append((f"adapter-{i + 1}", i + 1, directory))
            plans: dict[str, list[Any]] = {"base model only": [None] * len(prompts),
                     "one adapter, every request": [adapters[0]] * len(prompts),
                     f"{n_adapters} adapters and the base, mixed":
                         [([None, *adapters])[i % (n_adapters + 1)] for i in range(len(prompts))]}
            times: dict[str, list[Any]] = {label: [] for label in plans}
            try:
                with variant(ctx, f"vLLM with LoRA (rank ≤ {rank}, {n_adapters} at once)",
                             max_lora_rank=rank, max_loras=n_adapters) as loaded:
                    eng: Any = loaded
                    takes = hasattr(eng, "request_options")

                    def batch(label: str, plan: list[Any]) -> Any:
                        if takes:
                            ids = {f"r{i}": a for i, a in enumerate(plan)}
                            eng.request_options = lambda r: {"lora": ids.get(r.request_id)}
                        try:
                            return run_batch(ctx, eng, prompts, params["max_new_tokens"], label)
                        finally:
                            if takes:
                                eng.request_options = None

                    batch("warm-up: loads every adapter (not measured)", list(plans.values())[-1])
                    for i in range(params["runs"]):
                        for label, plan in plans.items():
                            if ctx.stopped():
                                break
                            times[label].append(batch(f"{label} · run {i + 1}/{params['runs']}", plan))
                    if not takes:
                        note = "this engine takes no adapter per request: every row ran the base model"
            except LabError as exc:
                note = f"vLLM could not serve LoRA adapters here: {exc.message}"
            for label, plan in plans.items():
                done = times[label]
                if not done:
                    continue
                tp = [t for res in done for t in (tpot(tr) for tr in res.traces) if t is not None]
                rates = [res.summary().output_tokens_per_s for res in done]
                rows.append(LoraRow(label, len({a for a in plan if a is not None}), ms(percentile(tp, 50)),
                                    statistics.median([x for x in rates if x is not None]) if any(rates) else None,
                                    done[-1].requests[min(1, len(done[-1].requests) - 1)].text[:60]))
        base = next((r for r in rows if r.adapters == 0), None)
        mixed = rows[-1] if len(rows) == 3 else None
        overhead = (100.0 * (mixed.tpot_ms / base.tpot_ms - 1) if base and mixed and base.tpot_ms and mixed.tpot_ms
                    else None)
        return LoraResult(display, ctx.engine_name, rank, cost, rows, overhead, note, computed)
