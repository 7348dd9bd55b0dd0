"""The experiment registry: what each experiment is called, what it does, and its parameters.

Lessons name experiments with preset parameters; the TUI loads them into the live
panel and checks every value the learner types through ``validate_params``. One
place decides what a valid batch size, top-p or sweep list is, so a lesson file,
a control and the CLI refuse the same bad values with the same message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tui_lab.engines.base import MAX_BATCH_SIZE, SamplingParams
from tui_lab.errors import InvalidInput
from tui_lab.lab.modalities import AUDIO_RECIPES, IMAGE_RECIPES
from tui_lab.lab.modalities import DEFAULT_PARAMS as MODALITIES_DEFAULTS
from tui_lab.lab.sweep import (
    DEFAULT_BATCH_SIZES,
    DEFAULT_LENGTHS,
    DEFAULT_TEMPERATURES,
    DEFAULT_TOP_PS,
    LATENCY_KEYS,
    SweepPlan,
    sampling_grid,
)
from tui_lab.metrics import BUDGET_PRESETS, KNEE_GAIN_PCT
from tui_lab.params import (
    MAX_NEW_TOKENS,
    MAX_REQUESTS,
    MAX_RUNS,
    MAX_WARMUP,
    Check,
    Param,
    listed,
    number,
    one_of,
    positive,
    whole,
)

ExperimentKind = Literal["run", "sweep", "compare", "inspect"]

MAX_NEW_TOKENS_LIMIT = MAX_NEW_TOKENS

DEFAULT_PROMPT = "The future of AI is"

ENGINE_KEYS = ("model", "engine", "device")
"""Parameters every engine-driven experiment accepts (which model, engine and device to use)."""


# ---- value checks: the shared ones live in tui_lab.params -------------------------------------------------------

_int = whole
_float = number
_list = listed


def check_batch_size(name: str, value: Any) -> int:
    """A batch size: a whole number from 1 to ``MAX_BATCH_SIZE``."""
    return _int(name, value, 1, MAX_BATCH_SIZE)


def check_max_new_tokens(name: str, value: Any) -> int:
    """A number of new tokens: at least 1."""
    return _int(name, value, 1, MAX_NEW_TOKENS_LIMIT)


def check_temperature(name: str, value: Any) -> float:
    """A temperature: >= 0 (0 means greedy)."""
    x = _float(name, value)
    if x < 0:
        raise InvalidInput(f"{name} must be >= 0 (got {x:g}); 0 means greedy")
    return x


def check_top_p(name: str, value: Any) -> float:
    """A top-p: in (0, 1] (1 switches it off)."""
    x = _float(name, value)
    if not 0 < x <= 1:
        raise InvalidInput(f"{name} must be in (0, 1] (got {x:g}); 1 switches it off")
    return x


def _repetition_penalty(name: str, value: Any) -> float:
    x = _float(name, value)
    if x <= 0:
        raise InvalidInput(f"{name} must be > 0 (got {x:g}); 1 switches it off")
    return x


def _seed(name: str, value: Any) -> int | None:
    return None if value is None else _int(name, value, 0, 2**63 - 1)


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
        return value.lower() in ("true", "yes", "on", "1")
    raise InvalidInput(f"{name} must be true or false (got {value!r})")


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{name} must be some text (got {value!r})")
    return value


def _texts(name: str, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise InvalidInput(f"{name} must be a non-empty list of texts (got {value!r})")
    return [_text(name, v) for v in value]


_choice = one_of


def _optional_positive(name: str, value: Any) -> float | None:
    return None if value is None else positive(name, value)


def _budget(name: str, value: Any) -> str | dict[str, float] | None:
    if value is None:
        return None
    if isinstance(value, str):
        if value not in BUDGET_PRESETS:
            raise InvalidInput(f"{name} must be one of: {', '.join(BUDGET_PRESETS)}, or limits (got {value!r})")
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        # A bare number is an end-to-end p50 budget in seconds, the seed notebook's choice.
        return {"e2e_p50": _optional_positive(name, value) or 0.0}
    if isinstance(value, Mapping):
        out = {}
        for key, limit in value.items():
            if key not in LATENCY_KEYS:
                raise InvalidInput(f"{name}: unknown latency metric {key!r}; choose from {', '.join(LATENCY_KEYS)}")
            out[key] = _optional_positive(f"{name}.{key}", limit) or 0.0
        return out
    raise InvalidInput(f"{name} must be a preset name or a map of limits (got {value!r})")


def _model(name: str, value: Any) -> str:
    return _text(name, value)


def _rule(name: str, check: Check, type: str, lo: float | None = None, hi: float | None = None,
          choices: tuple[str, ...] | None = None, help: str = "", above: bool = False) -> Param:
    return Param(name, check, help=help, min=lo, max=hi, choices=choices, type=type, above_min=above)


def _whole(name: str, lo: int, hi: int | None, help: str = "") -> Param:
    return _rule(name, lambda n, v: _int(n, v, lo, hi), "int", lo, hi, help=help)


_DEVICES = ("cpu", "cuda")
_ENGINES = ("transformers", "vllm", "openai", "scripted")

PARAMS: dict[str, Param] = {
    p.name: p
    for p in (
        _rule("prompt", _text, "text", help="the prompt"),
        _rule("prompts", _texts, "text list", help="prompts of different lengths"),
        _rule("text", _text, "text", help="the text to tokenize"),
        _rule("batch_size", check_batch_size, "int", 1, MAX_BATCH_SIZE, help="requests in one batch"),
        _rule("batch_sizes", lambda n, v: _list(n, v, check_batch_size), "int list", 1, MAX_BATCH_SIZE,
              help="batch sizes, e.g. 1,8,32"),
        _rule("max_new_tokens", check_max_new_tokens, "int", 1, MAX_NEW_TOKENS, help="new tokens per request"),
        _rule("lengths", lambda n, v: _list(n, v, check_max_new_tokens), "int list", 1, MAX_NEW_TOKENS,
              help="output lengths, e.g. 32,64,128"),
        _rule("temperature", check_temperature, "number", 0, None, help="0 means greedy"),
        _rule("temperatures", lambda n, v: _list(n, v, check_temperature), "number list", 0, None),
        _rule("top_p", check_top_p, "number", 0, 1, help="1 switches it off", above=True),
        _rule("top_ps", lambda n, v: _list(n, v, check_top_p), "number list", 0, 1, above=True),
        _whole("top_k", 0, None, help="0 switches it off"),
        _rule("repetition_penalty", _repetition_penalty, "number", 0, None, help="1 switches it off", above=True),
        _rule("seed", _seed, "int", 0, 2**63 - 1, help="the same seed gives the same tokens and prompts"),
        _rule("ignore_eos", _bool, "bool", help="generate every token even past end-of-sequence"),
        _whole("runs", 1, MAX_RUNS, help="measured runs"),
        _whole("warmup", 0, MAX_WARMUP, help="discarded warm-up runs"),
        _rule("latency_budget", _budget, "budget",
              help=f"a preset ({'|'.join(BUDGET_PRESETS)}), E2E p50 seconds, or limits"),
        _rule("knee_threshold_pct", lambda n, v: _optional_positive(n, v) or KNEE_GAIN_PCT, "number", 0, None,
              help="knee: a doubling that gains less than this % of throughput", above=True),
        _whole("k", 1, 100, help="how many top tokens"),
        _rule("devices", lambda n, v: _list(n, v, _choice(_DEVICES), 2), "choice list", choices=_DEVICES,
              help="devices to time, in order"),
        _rule("device", _choice(("auto", *_DEVICES)), "choice", choices=("auto", *_DEVICES),
              help="none: the loaded engine's"),
        _rule("engine", _choice(_ENGINES), "choice", choices=_ENGINES, help="none: the loaded one"),
        _rule("model", _model, "text", help="none: the loaded one (inference-lab models lists them)"),
        _rule("kv_cache", _bool, "bool"),
        _rule("cuda_graphs", _bool, "bool"),
        _rule("enable_prefix_caching", _bool, "bool"),
        _whole("max_num_seqs", 1, MAX_REQUESTS, help="sequences the engine runs at once"),
        _whole("num_requests", 1, MAX_REQUESTS, help="requests sent at once"),
        _whole("shared_prefix_words", 0, 4096, help="words every prompt shares at its start"),
        _whole("seq_len", 1, 1_048_576, help="tokens in the sequence"),
        _rule("bandwidth_gb_s", _optional_positive, "number", 0, None, help="memory bandwidth, GB/s (none: the GPU's)",
              above=True),
        _whole("image_width", 1, None, help="image width, pixels"),
        _whole("image_height", 1, None, help="image height, pixels"),
        _rule("image_recipe", _choice(tuple(IMAGE_RECIPES)), "choice", choices=tuple(IMAGE_RECIPES),
              help="how the model cuts an image into tokens"),
        _rule("audio_seconds", positive, "number", 0, None, help="length of the sound clip", above=True),
        _rule("audio_recipe", _choice(tuple(AUDIO_RECIPES)), "choice", choices=tuple(AUDIO_RECIPES)),
        _rule("video_seconds", positive, "number", 0, None, help="length of the video", above=True),
        _rule("video_fps", positive, "number", 0, None, help="frames per second of the source", above=True),
        _rule("video_sample_fps", positive, "number", 0, None, help="frames per second the model sees",
              above=True),
        _rule("video_max_frames", lambda n, v: None if v is None else _int(n, v, 1, None), "int", 1, None,
              help="cap on sampled frames (none: no cap)"),
        _rule("peak_tflops", _optional_positive, "number", 0, None, help="peak compute, TFLOP/s (none: the GPU's)",
              above=True),
    )
}
"""Parameter name → ``Param`` (check, type, limits): one place for every experiment of this registry."""

CHECKS: dict[str, Callable[[str, Any], Any]] = {name: p.check for name, p in PARAMS.items()}
"""Parameter name → check. An experiment accepts the keys of its defaults (plus ``ENGINE_KEYS``)."""

SAMPLING_DEFAULTS: dict[str, Any] = {
    "temperature": 0.0, "top_p": 1.0, "top_k": 0, "repetition_penalty": 1.0, "seed": 0,
}


@dataclass(frozen=True)
class ExperimentSpec:
    """One experiment: its name, title, one-line description, kind and default parameters."""

    name: str
    title: str
    description: str
    kind: ExperimentKind
    defaults: Mapping[str, Any] = field(default_factory=dict)
    engine_driven: bool = True
    """Whether it needs a loaded engine (then ``model``/``engine``/``device`` are accepted too)."""
    extra_check: Callable[[dict], None] | None = None
    """A whole-dict check after each value passed its own (e.g. the modalities calculator)."""

    @property
    def allowed_keys(self) -> tuple[str, ...]:
        """The parameter names this experiment accepts."""
        return tuple(self.defaults) + (ENGINE_KEYS if self.engine_driven else ())

    def validate_params(self, params: Mapping[str, Any] | None = None) -> dict:
        """Defaults overlaid with ``params``, every value checked; ``InvalidInput`` on the first bad one."""
        params = dict(params or {})
        unknown = sorted(set(params) - set(self.allowed_keys))
        if unknown:
            raise InvalidInput(
                f"{self.name} has no parameter {unknown[0]!r}; it takes: {', '.join(self.allowed_keys)}"
            )
        merged = {**self.defaults, **params}
        for key, value in merged.items():
            check = CHECKS.get(key)
            if check is not None and not (value is None and key in ENGINE_KEYS):
                merged[key] = check(key, value)
        if self.extra_check is not None:
            self.extra_check(merged)
        return merged


def _check_modalities(params: dict) -> None:
    from tui_lab.lab.modalities import calculate

    calculate(params)


_GEN = {"max_new_tokens": 32, **SAMPLING_DEFAULTS}

EXPERIMENTS: dict[str, ExperimentSpec] = {
    spec.name: spec
    for spec in (
        ExperimentSpec(
            "generate", "Generate", "One batch streamed token by token, with TTFT, TPOT and throughput.", "run",
            {"prompt": DEFAULT_PROMPT, "batch_size": 1, **_GEN, "ignore_eos": False},
        ),
        ExperimentSpec(
            "batch_sweep", "Batch-size sweep",
            "Throughput and p50/p90 latency as the batch grows; the knee and a budget pick.", "sweep",
            {"batch_sizes": list(DEFAULT_BATCH_SIZES), **_GEN, "runs": 3, "warmup": 1, "ignore_eos": True,
             "latency_budget": "chat", "knee_threshold_pct": KNEE_GAIN_PCT},
        ),
        ExperimentSpec(
            "length_sweep", "Output-length sweep",
            "Latency against the number of generated tokens at a fixed batch: decode grows linearly.", "sweep",
            {"lengths": list(DEFAULT_LENGTHS), "batch_size": 8, **SAMPLING_DEFAULTS, "runs": 2, "warmup": 1,
             "ignore_eos": True, "latency_budget": None},
        ),
        ExperimentSpec(
            "sampling_grid", "Temperature × top-p",
            "Speed and text across a grid of sampling settings: little effect on speed, large on output.", "sweep",
            {"temperatures": list(DEFAULT_TEMPERATURES), "top_ps": list(DEFAULT_TOP_PS), "batch_size": 4,
             "max_new_tokens": 32, "top_k": 0, "repetition_penalty": 1.0, "seed": 0, "runs": 2, "warmup": 1,
             "ignore_eos": True, "latency_budget": None},
        ),
        ExperimentSpec(
            "cpu_vs_gpu", "CPU vs GPU",
            "The same prompt timed several times on each device: medians and spread side by side.", "compare",
            {"prompt": DEFAULT_PROMPT, "max_new_tokens": 32, "runs": 5, "warmup": 1, "devices": ["cpu", "cuda"]},
        ),
        ExperimentSpec(
            "kv_cache_compare", "KV cache on/off",
            "The naive loop that recomputes the whole sequence each step beside the KV-cache loop.", "compare",
            {"prompt": DEFAULT_PROMPT, "max_new_tokens": 64},
        ),
        ExperimentSpec(
            "tokenize", "Tokenization", "Text to token ids and back: the pieces the model actually sees.", "inspect",
            {"text": DEFAULT_PROMPT},
        ),
        ExperimentSpec(
            "padding", "Batching and padding",
            "Prompts of different lengths made one rectangle: the padding and the attention mask.", "inspect",
            {"prompts": [DEFAULT_PROMPT, "Hello", "Explain the water cycle to a curious teenager."]},
        ),
        ExperimentSpec(
            "logits", "Logits", "The forward pass output and the most likely next tokens at the last position.",
            "inspect", {"prompt": DEFAULT_PROMPT, "k": 10},
        ),
        ExperimentSpec(
            "modalities", "Other modalities",
            "How many tokens an image, a sound clip or a video becomes before the model sees it.", "inspect",
            dict(MODALITIES_DEFAULTS),
            engine_driven=False,
            extra_check=_check_modalities,
        ),
        ExperimentSpec(
            "roofline", "Decode roofline",
            "Measured decode step time against the memory-bandwidth floor and KV-cache arithmetic.", "inspect",
            {"batch_sizes": [1, 8, 32, 64, 128, 256], "seq_len": 512, "bandwidth_gb_s": None, "peak_tflops": None},
        ),
        ExperimentSpec(
            "graphs_compare", "CUDA graphs on/off",
            "The same decode loop eager and replayed from CUDA graphs: launch overhead made visible.", "compare",
            {"prompt": DEFAULT_PROMPT, "batch_size": 1, "max_new_tokens": 64, "runs": 3},
        ),
        ExperimentSpec(
            "prefix_cache", "Prefix caching",
            "Requests sharing a long prefix with vLLM's prefix cache off and on: TTFT drops.", "compare",
            {"num_requests": 16, "shared_prefix_words": 400, "max_new_tokens": 16, "runs": 2},
        ),
        ExperimentSpec(
            "queueing", "Queueing",
            "More requests than the engine runs at once (max_num_seqs): waiting shows up in TTFT.", "compare",
            {"num_requests": 64, "max_num_seqs": 8, "max_new_tokens": 32, **SAMPLING_DEFAULTS, "ignore_eos": True},
        ),
        ExperimentSpec(
            "static_vs_continuous", "Static vs continuous batching",
            "Replies of very different lengths in static batches (transformers, vLLM) and continuously batched (vLLM).",
            "compare",
            {"lengths": [32, 4, 28, 8, 24, 12, 20, 16], "max_num_seqs": 4, "seed": 0},
        ),
    )
}
"""Experiment name → spec, in the order lessons introduce them."""


def get_experiment(name: str) -> ExperimentSpec:
    """The spec named ``name``; ``InvalidInput`` listing the known names otherwise."""
    spec = EXPERIMENTS.get(name)
    if spec is None:
        raise InvalidInput(f"unknown experiment {name!r}; choose one of: {', '.join(EXPERIMENTS)}")
    return spec


def validate_params(name: str, params: Mapping[str, Any] | None = None) -> dict:
    """The experiment's defaults overlaid with ``params``, every value checked (``InvalidInput`` if bad)."""
    return get_experiment(name).validate_params(params)


def sampling_from(params: Mapping[str, Any]) -> SamplingParams:
    """``SamplingParams`` from validated experiment parameters (missing keys take the defaults)."""
    base = SamplingParams()
    return SamplingParams(
        max_new_tokens=int(params.get("max_new_tokens", base.max_new_tokens)),
        temperature=float(params.get("temperature", base.temperature)),
        top_p=float(params.get("top_p", base.top_p)),
        top_k=int(params.get("top_k", base.top_k)),
        repetition_penalty=float(params.get("repetition_penalty", base.repetition_penalty)),
        seed=params.get("seed", base.seed),
        ignore_eos=bool(params.get("ignore_eos", base.ignore_eos)),
    ).validate()


def sweep_plan(name: str, params: Mapping[str, Any] | None = None) -> SweepPlan:
    """The ``SweepPlan`` of a sweep experiment (``batch_sweep``, ``length_sweep``, ``sampling_grid``)."""
    spec = get_experiment(name)
    if spec.kind != "sweep":
        raise InvalidInput(f"{name} is not a sweep")
    p = spec.validate_params(params)
    sampling = sampling_from(p)
    common = {
        "runs": p["runs"],
        "warmup": p["warmup"],
        "sampling": sampling,
        "seed": p.get("seed") or 0,
        "latency_budget": p.get("latency_budget"),
        "knee_threshold_pct": p.get("knee_threshold_pct", KNEE_GAIN_PCT),
    }
    if name == "batch_sweep":
        plan = SweepPlan(kind="batch", values=tuple(p["batch_sizes"]), max_new_tokens=p["max_new_tokens"], **common)
    elif name == "length_sweep":
        plan = SweepPlan(kind="length", values=tuple(p["lengths"]), batch_size=p["batch_size"], **common)
    else:
        plan = SweepPlan(
            kind="sampling", values=sampling_grid(p["temperatures"], p["top_ps"]), batch_size=p["batch_size"],
            max_new_tokens=p["max_new_tokens"], **common,
        )
    return plan.validate()


def schema(name: str) -> list[Param]:
    """Experiment ``name``'s parameters as ``Param`` objects, with its defaults (checks and limits from ``PARAMS``)."""
    from dataclasses import replace

    spec = get_experiment(name)
    out = []
    for key in spec.allowed_keys:
        base = PARAMS.get(key) or Param(key, lambda _n, v: v)
        out.append(replace(base, default=spec.defaults.get(key), optional=key in ENGINE_KEYS))
    return out


def check(name: str, value: Any) -> Any:
    """Check one field (a Controls box, a CLI flag): the normalised value, or ``InvalidInput`` in one line."""
    checker = CHECKS.get(name)
    if checker is None:
        raise InvalidInput(f"unknown parameter {name!r}")
    return checker(name, value)
