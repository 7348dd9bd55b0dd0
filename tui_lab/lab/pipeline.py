"""Lesson 01/03 inspections: look inside one stage of inference on the loaded model.

Each inspection takes a loaded ``TransformersEngine`` (``.tokenizer``, ``.model``,
``.torch_device``) and a dict of parameters, and returns a plain dataclass
(JSON-serialisable through ``dataclasses.asdict``) that ``tui_lab.ui.views``
renders. torch is imported inside the functions so importing this module stays
cheap.

- ``tokenize``: text → ids and pieces (special tokens marked), and back to text.
- ``padding``: prompts of different lengths → one rectangular id grid + attention mask.
- ``logits``: one forward pass: the logits' shape and the top-k next tokens.
- ``roofline``: measured decode step time vs the memory-bandwidth floor, and KV-cache arithmetic.
- ``modalities``: image/audio/video token calculators (no model needed).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING

from tui_lab.engines.base import is_cuda
from tui_lab.errors import InvalidInput, LabError
from tui_lab.lab.experiment import Experiment, Params, RunContext
from tui_lab.lab.planned import PlannedRun, prompt_tokens
from tui_lab.params import DEFAULT_PROMPT, MAX_REQUESTS, PROMPT, Param

DEFAULT_TEXT = DEFAULT_PROMPT
DEFAULT_PADDING_PROMPTS = (DEFAULT_PROMPT, "Inference turns a trained model into answers, one token at a time.")
if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase as Tokenizer

    from tui_lab.engines.base import Engine

MAX_INSPECT_TOKENS = 512
MAX_TOP_K = 100
"""Longest text an inspection accepts: the views are for reading, not for benchmarks."""


def _tokenizer(engine: object) -> Tokenizer:
    tok = getattr(engine, "tokenizer", None)
    if tok is None:
        raise InvalidInput(
            "this inspection needs the transformers engine with a loaded model.",
            "Start the lab with --engine transformers.",
        )
    return tok


def _model(engine: object) -> torch.nn.Module:
    model = getattr(engine, "model", None)
    if model is None:
        _tokenizer(engine)  # says what the inspection needs
        raise InvalidInput("this inspection needs a loaded model.")
    return model


def _piece_text(tokenizer: Tokenizer, token_id: int) -> str:
    return str(tokenizer.decode([token_id], skip_special_tokens=False, clean_up_tokenization_spaces=False))


def _special_ids(tokenizer: Tokenizer) -> set[int]:
    return {int(i) for i in (getattr(tokenizer, "all_special_ids", None) or [])}


# -- tokenize ------------------------------------------------------------------------------


@dataclass
class TokenizeView:
    """A text's token ids and pieces, and the round trip back to text."""

    text: str
    ids: list[int]
    pieces: list[str]
    """The tokenizer's own spelling of each token (``▁`` marks a leading space in SentencePiece vocabularies)."""
    texts: list[str]
    """Each token decoded on its own."""
    special: list[bool]
    n_tokens: int
    n_chars: int
    vocab_size: int
    decoded: str
    """ids → text with special tokens kept."""
    decoded_clean: str
    """ids → text with special tokens skipped: what a user is shown."""
    special_tokens: dict[str, int] = field(default_factory=dict)
    """The tokenizer's named special tokens (bos, eos, pad, ...) and their ids."""


    def to_dict(self) -> dict[str, object]:
        """Plain-JSON form (export, ``--json``, the views)."""
        return asdict(self)

def tokenize_view(engine: object, text: str = DEFAULT_TEXT) -> TokenizeView:
    """Tokenize ``text`` as the engine does (special tokens added) and decode it back."""
    tok = _tokenizer(engine)
    if not isinstance(text, str) or not text:
        raise InvalidInput("type some text to tokenize.")
    ids = [int(i) for i in tok(text, add_special_tokens=True)["input_ids"]]
    if len(ids) > MAX_INSPECT_TOKENS:
        raise InvalidInput(f"that text is {len(ids)} tokens; the tokenizer view shows at most {MAX_INSPECT_TOKENS}.")
    specials = _special_ids(tok)
    named = {}
    for name in ("bos_token", "eos_token", "pad_token", "unk_token"):
        value = getattr(tok, name, None)
        token_id = getattr(tok, f"{name}_id", None)
        if value is not None and token_id is not None:
            named[str(value)] = int(token_id)
    return TokenizeView(
        text=text,
        ids=ids,
        pieces=[str(p) for p in tok.convert_ids_to_tokens(ids)],
        texts=[_piece_text(tok, i) for i in ids],
        special=[i in specials for i in ids],
        n_tokens=len(ids),
        n_chars=len(text),
        vocab_size=len(tok),
        decoded=tok.decode(ids, skip_special_tokens=False),
        decoded_clean=tok.decode(ids, skip_special_tokens=True),
        special_tokens=named,
    )


# -- padding -------------------------------------------------------------------------------


@dataclass
class PaddingView:
    """Several prompts made into one rectangular batch."""

    prompts: list[str]
    side: str
    pad_token: str
    pad_token_id: int
    ids: list[list[int]]
    """(batch, seq_len) token ids, padding included."""
    pieces: list[list[str]]
    mask: list[list[int]]
    """(batch, seq_len) attention mask: 1 = real token, 0 = padding."""
    lengths: list[int]
    """Real tokens per prompt."""
    shape: tuple[int, int]
    padding_fraction: float
    """Share of the tensor that is padding: compute spent on nothing."""


    def to_dict(self) -> dict[str, object]:
        """Plain-JSON form (export, ``--json``, the views)."""
        return asdict(self)

def padding_view(
    engine: object, prompts: list[str] | tuple[str, ...] = DEFAULT_PADDING_PROMPTS, side: str = "left"
) -> PaddingView:
    """Tokenize ``prompts`` together, padded on ``side`` (generation pads on the left)."""
    side = str(PADDING_SIDE.check(side))
    tok = _tokenizer(engine)
    prompts = [p for p in (prompts or []) if isinstance(p, str) and p]
    if len(prompts) < 2:
        raise InvalidInput("give at least two prompts to see padding.")
    enc = tok(list(prompts), padding=True, padding_side=side, add_special_tokens=True)
    ids = [[int(i) for i in row] for row in enc["input_ids"]]
    mask = [[int(m) for m in row] for row in enc["attention_mask"]]
    width = len(ids[0])
    if width > MAX_INSPECT_TOKENS:
        raise InvalidInput(f"the longest prompt is {width} tokens; the view shows at most {MAX_INSPECT_TOKENS}.")
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else -1
    total = sum(len(row) for row in mask)
    return PaddingView(
        prompts=list(prompts),
        side=side,
        pad_token=str(tok.pad_token),
        pad_token_id=int(pad_id),
        ids=ids,
        pieces=[[str(p) for p in tok.convert_ids_to_tokens(row)] for row in ids],
        mask=mask,
        lengths=[sum(row) for row in mask],
        shape=(len(ids), width),
        padding_fraction=1.0 - sum(sum(row) for row in mask) / total if total else 0.0,
    )


# -- logits --------------------------------------------------------------------------------


@dataclass
class TopToken:
    """One candidate next token."""

    id: int
    piece: str
    text: str
    prob: float
    logit: float


@dataclass
class LogitsView:
    """One forward pass over the prompt(s): what comes out and what the next token would be."""

    prompts: list[str]
    input_shape: tuple[int, int]
    logits_shape: tuple[int, int, int]
    """(batch, seq_len, vocab): one score per vocabulary entry at every position."""
    logits_bytes: int
    dtype: str
    forward_ms: float
    """The faster of two identical forward passes (the first one also pays one-time set-up)."""
    first_forward_ms: float
    top: list[list[TopToken]]
    """Per prompt: the k most likely next tokens at the last position (softmax of the logits)."""
    greedy: list[TopToken]
    """Per prompt: the argmax, i.e. what greedy decoding appends."""
    k: int
    device: str


    def to_dict(self) -> dict[str, object]:
        """Plain-JSON form (export, ``--json``, the views)."""
        return asdict(self)

def logits_view(engine: object, prompt: str | list[str] = DEFAULT_TEXT, k: int = 10) -> LogitsView:
    """Run one forward pass (no KV cache kept) and read the next-token distribution at the last position."""
    import torch

    k = int(TOP_TOKENS.check(k))
    tok = _tokenizer(engine)
    prompts = [prompt] if isinstance(prompt, str) else list(prompt or [])
    if not prompts or not all(isinstance(p, str) and p for p in prompts):
        raise InvalidInput("type a prompt to run the forward pass on.")
    model = _model(engine)
    device = getattr(engine, "torch_device", None) or next(model.parameters()).device
    enc = tok(prompts, padding=True, padding_side="left", add_special_tokens=True, return_tensors="pt")
    if enc["input_ids"].shape[1] > MAX_INSPECT_TOKENS:
        raise InvalidInput(f"the prompt is longer than {MAX_INSPECT_TOKENS} tokens; use a shorter one here.")
    input_ids = enc["input_ids"].to(device)
    mask = enc["attention_mask"].to(device)
    times = []
    with torch.inference_mode():
        for _ in range(2):
            _sync(device)
            t0 = time.perf_counter()
            out = model(input_ids=input_ids, attention_mask=mask, use_cache=False)
            _sync(device)
            times.append(1000.0 * (time.perf_counter() - t0))
        logits = out.logits
        # Left padding puts every prompt's last real token at position -1.
        last = logits[:, -1, :].float()
        probs = torch.softmax(last, dim=-1)
        top_p, top_i = torch.topk(probs, k, dim=-1)
        top_l = torch.gather(last, -1, top_i)
    top: list[list[TopToken]] = []
    for row_p, row_i, row_l in zip(top_p.tolist(), top_i.tolist(), top_l.tolist(), strict=True):
        top.append(
            [
                TopToken(int(i), str(tok.convert_ids_to_tokens(int(i))), _piece_text(tok, int(i)), float(p), float(lg))
                for p, i, lg in zip(row_p, row_i, row_l, strict=True)
            ]
        )
    shape = tuple(int(s) for s in logits.shape)
    return LogitsView(
        prompts=prompts,
        input_shape=(int(input_ids.shape[0]), int(input_ids.shape[1])),
        logits_shape=shape,  # type: ignore[arg-type]
        logits_bytes=int(logits.numel() * logits.element_size()),
        dtype=str(logits.dtype).replace("torch.", ""),
        forward_ms=min(times),
        first_forward_ms=times[0],
        top=top,
        greedy=[row[0] for row in top],
        k=k,
        device=str(device),
    )


def _sync(device: torch.device) -> None:
    """Wait for queued GPU work so a wall-clock timing covers it (a no-op on CPU)."""
    import torch

    if is_cuda(device):
        torch.cuda.synchronize(device)


# -- roofline ------------------------------------------------------------------------------

DATASHEET_BANDWIDTH_GB_S: dict[str, float] = {
    "H200": 4800.0,
    "H100 NVL": 3900.0,
    "H100 PCIe": 2000.0,
    "H100": 3350.0,
    "A100-SXM4-80GB": 2039.0,
    "A100 80GB PCIe": 1935.0,
    "A100": 1555.0,
    "L40S": 864.0,
    "A10G": 600.0,
    "L4": 300.0,
    "T4": 320.0,
}
"""Peak memory bandwidth from NVIDIA datasheets (GB/s), matched as substrings of the device name,
most specific first. Measured copy bandwidth usually reaches 80–90% of these."""


DATASHEET_BF16_TFLOPS: dict[str, float] = {
    "H200": 989.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "A10G": 70.0,
    "L4": 121.0,
    "T4": 65.0,
}
"""Dense bf16/fp16 tensor-core peak from NVIDIA datasheets (TFLOP/s, without sparsity)."""

DECODE_TOKENS_CPU = 12
DECODE_TOKENS_GPU = 64
"""New tokens per measured run: enough gaps for a stable median, short enough for a CPU."""


@dataclass
class DecodeMeasurement:
    """Measured prefill and decode step time at one batch size, against their floors."""

    batch_size: int
    step_ms: float | None
    """Median gap between consecutive tokens of a request (pooled ITL p50): one decode step."""
    floor_ms: float
    """Bandwidth floor of one step at the context measured (prompt + half the new tokens)."""
    floor_at_seq_len_ms: float
    """The same floor if every sequence held ``seq_len`` tokens: the KV term grows with batch × length."""
    context_tokens: int
    """Average tokens per sequence in the KV cache while measuring."""
    bytes_per_step: float
    achieved_gb_s: float | None
    """``bytes_per_step / step time``: how much bandwidth the step really used."""
    floor_fraction: float | None
    """floor / measured (1.0 = at the roofline)."""
    tokens_per_s: float | None
    """Decode rate of the whole batch: batch size / step time."""
    prompt_tokens: int
    """Prompt tokens of the whole batch (what prefill processes)."""
    ttft_ms: float | None
    prefill_floor_ms: float | None
    """``2 · params · prompt tokens / peak FLOP/s``: the compute floor of the prefill."""


@dataclass
class KVFit:
    """How many sequences of one length fit into the free memory."""

    seq_len: int
    kv_bytes_per_sequence: float
    sequences: int


@dataclass
class RooflineView:
    """Decode against the memory-bandwidth floor, and KV-cache arithmetic, for the loaded model."""

    model: str
    device: str
    dtype: str
    params: int
    weight_bytes: float
    layers: int
    kv_heads: int
    head_dim: int
    sliding_window: int | None
    sliding_layers: int
    kv_bytes_per_token: float
    """KV bytes one token adds in the layers that keep every position."""
    bandwidth_gb_s: float
    bandwidth_method: str
    """Where the bandwidth figure came from ("measured: ...", "given")."""
    datasheet_gb_s: float | None
    peak_tflops: float | None
    peak_tflops_method: str
    seq_len: int
    kv_bytes_at_seq_len: float
    """KV-cache bytes of one sequence of ``seq_len`` tokens."""
    sequences_at_seq_len: int
    """How many sequences of ``seq_len`` tokens fit in the free memory."""
    measurements: list[DecodeMeasurement]
    free_bytes: float
    free_bytes_method: str
    kv_fits: list[KVFit]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """Plain-JSON form (export, ``--json``, the views)."""
        return asdict(self)


def measure_bandwidth_gb_s(device: torch.device, mib: int = 256, repeats: int = 5) -> float:
    """Copy bandwidth of ``device`` memory: best of ``repeats`` copies of a ``mib`` MiB buffer.

    A copy reads and writes every byte, so 2 × size bytes move per copy. The
    buffer is far larger than any cache, so this is main-memory (or HBM) speed.
    """
    import torch

    n = mib * 1024 * 1024 // 4
    src = torch.ones(n, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    best = float("inf")
    dst.copy_(src)  # warm-up: first touch of the pages
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        dst.copy_(src)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    del src, dst
    return 2 * n * 4 / best / 1e9


def measure_matmul_tflops(device: torch.device, dtype: torch.dtype, n: int, repeats: int = 3) -> float:
    """Achieved FLOP/s of an ``n``×``n`` matrix product in ``dtype`` (best of ``repeats``), in TFLOP/s."""
    import torch

    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    a @ b  # warm-up: kernel selection, thread pool start
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e12


def free_memory_bytes(device: torch.device) -> tuple[float, str]:
    """Free memory for a KV cache on ``device`` and how it was found."""
    if is_cuda(device):
        import torch

        free, _total = torch.cuda.mem_get_info(device)
        return float(free), "torch.cuda.mem_get_info: free now, weights already loaded"
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024, "MemAvailable in /proc/meminfo"
    except OSError:
        pass
    import os

    pages = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return float(pages), "free physical pages (sysconf)"


def _datasheet(table: dict[str, float], device_name: str) -> float | None:
    for key, value in table.items():
        if key.lower() in device_name.lower():
            return value
    return None


def datasheet_bandwidth(device_name: str) -> float | None:
    """The datasheet memory bandwidth (GB/s) for a GPU name, or None if it is not in the table."""
    return _datasheet(DATASHEET_BANDWIDTH_GB_S, device_name)


KV_FIT_LENGTHS = (2048, 8192, 32768, 131072)
"""Lengths shown in the KV-fit table besides the experiment's ``seq_len`` (those past the context are dropped)."""


def roofline_view(
    engine: Engine,
    batch_sizes: list[int] | tuple[int, ...] = (1, 8),
    seq_len: int = 512,
    bandwidth_gb_s: float | None = None,
    peak_tflops: float | None = None,
    new_tokens: int | None = None,
) -> RooflineView:
    """Measure prefill and decode through the engine at each batch size and put them against their floors.

    Decode: ``t_step ≥ (weight_bytes + Σ kv_bytes) / bandwidth``; prefill:
    ``t ≥ 2 · params · prompt_tokens / peak_flops``. Weight bytes come from the
    loaded tensors (their real dtype). Bandwidth and peak FLOP/s are measured on
    the device (a large copy; a large matrix product) unless given. ``seq_len``
    is the context length for the KV-cache arithmetic; ``new_tokens`` per measured
    run defaults to a device-dependent length.
    """
    import torch

    from tui_lab.engines.base import SamplingParams
    from tui_lab.lab.prompts import prompt_schedule
    from tui_lab.lab.run import execute_run, make_requests
    from tui_lab.metrics import decode_step_floor_s, kv_bytes_per_sequence, max_sequences, prefill_floor_s
    from tui_lab.models import model_shape

    tok = _tokenizer(engine)
    model = _model(engine)
    device = getattr(engine, "torch_device", None) or next(model.parameters()).device
    on_gpu = is_cuda(device)
    params = sum(p.numel() for p in model.parameters())
    weight_bytes = float(sum(p.numel() * p.element_size() for p in model.parameters()))
    dtype = next(model.parameters()).dtype
    kv_elem = torch.empty((), dtype=dtype).element_size()
    shape = replace(
        model_shape(model.config),
        params=int(params),
        bytes_per_param=weight_bytes / params,
        kv_bytes_per_elem=float(kv_elem),
    )
    notes: list[str] = []
    name = torch.cuda.get_device_name(device) if on_gpu else "cpu"
    if bandwidth_gb_s is not None:
        bw, method = float(bandwidth_gb_s), "given"
    else:
        mib = 1024 if on_gpu else 256
        bw = measure_bandwidth_gb_s(device, mib=mib)
        method = f"measured: best of 5 copies of a {mib} MiB buffer (read + write counted)"
    if peak_tflops is not None:
        peak, peak_method = float(peak_tflops), "given"
    else:
        n = 8192 if on_gpu else 1024
        peak = measure_matmul_tflops(device, dtype, n)
        peak_method = f"measured: best of 3 {n}×{n} matrix products in {str(dtype).replace('torch.', '')}"
        sheet_flops = _datasheet(DATASHEET_BF16_TFLOPS, name) if on_gpu else None
        if sheet_flops:
            peak_method += f" (datasheet dense bf16: {sheet_flops:g} TFLOP/s)"
    if not on_gpu:
        notes.append(
            "On a CPU a decode step also waits for arithmetic on a few cores, so it sits well above the "
            "bandwidth floor; on a GPU the floor is the thing to beat."
        )

    if new_tokens is None:
        new_tokens = DECODE_TOKENS_GPU if on_gpu else DECODE_TOKENS_CPU
    elif not isinstance(new_tokens, int) or new_tokens < 3:
        raise InvalidInput("new_tokens must be a whole number of at least 3 (two gaps to take a median of).")
    measurements: list[DecodeMeasurement] = []
    sampling = SamplingParams(max_new_tokens=new_tokens, temperature=0.0, ignore_eos=True)
    # On a CPU there is nothing to capture or compile, so a short warm-up is enough.
    warmup_sampling = sampling.with_(max_new_tokens=2)
    for b in batch_sizes:
        prompts = prompt_schedule(b, seed=0)
        # Warm-up at this batch size first: the first run of a new shape pays one-time costs
        # (CUDA graph capture, compilation, allocation) that are not part of a step.
        warm = execute_run(engine, make_requests(prompts, b, new_tokens), sampling if on_gpu else warmup_sampling)
        if warm.error:
            notes.append(f"batch {b}: {warm.error}")
            break
        result = execute_run(engine, make_requests(prompts, b, new_tokens), sampling)
        summary = result.summary()
        step = summary.itl_s.p50
        ttft = summary.ttft_s.p50
        prompt_lens = [len(tok(p, add_special_tokens=True)["input_ids"]) for p in prompts]
        # Midway through decoding each sequence holds its prompt plus half the new tokens.
        ctx = [n + new_tokens // 2 for n in prompt_lens]
        floor = decode_step_floor_s(shape, ctx, bw * 1e9)
        moved = shape.weight_bytes + sum(kv_bytes_per_sequence(shape, n) for n in ctx)
        prefill_floor = prefill_floor_s(shape, sum(prompt_lens), peak * 1e12)
        measurements.append(
            DecodeMeasurement(
                batch_size=b,
                step_ms=1000.0 * step if step else None,
                floor_ms=1000.0 * floor,
                floor_at_seq_len_ms=1000.0 * decode_step_floor_s(shape, [seq_len] * b, bw * 1e9),
                context_tokens=round(sum(ctx) / len(ctx)),
                bytes_per_step=moved,
                achieved_gb_s=moved / step / 1e9 if step else None,
                floor_fraction=floor / step if step else None,
                tokens_per_s=b / step if step else None,
                prompt_tokens=sum(prompt_lens),
                ttft_ms=1000.0 * ttft if ttft else None,
                prefill_floor_ms=1000.0 * prefill_floor,
            )
        )
        if result.error:
            notes.append(f"batch {b}: {result.error}")
            break
    free, free_method = free_memory_bytes(device)
    text_config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    max_pos = getattr(text_config, "max_position_embeddings", None)
    fits = []
    for n in sorted({seq_len, *KV_FIT_LENGTHS}):
        if max_pos and n > max_pos:
            continue
        fits.append(KVFit(n, kv_bytes_per_sequence(shape, n), max_sequences(shape, n, free)))
    if max_pos and seq_len > max_pos:
        notes.append(f"seq_len {seq_len} is past this model's context of {max_pos} tokens.")
    try:
        model_name = engine.info.model
    except (AttributeError, LabError):
        model_name = None
    return RooflineView(
        model=str(model_name or getattr(model.config, "_name_or_path", "") or "model"),
        device=name,
        dtype=str(dtype).replace("torch.", ""),
        params=int(params),
        weight_bytes=weight_bytes,
        layers=shape.layers,
        kv_heads=shape.kv_heads,
        head_dim=shape.head_dim,
        sliding_window=shape.sliding_window,
        sliding_layers=shape.sliding_layers,
        kv_bytes_per_token=2 * shape.kv_heads * shape.head_dim * shape.kv_bytes_per_elem
        * (shape.layers - shape.sliding_layers),
        bandwidth_gb_s=bw,
        bandwidth_method=method,
        datasheet_gb_s=datasheet_bandwidth(name) if on_gpu else None,
        peak_tflops=peak,
        peak_tflops_method=peak_method,
        seq_len=seq_len,
        kv_bytes_at_seq_len=kv_bytes_per_sequence(shape, seq_len),
        sequences_at_seq_len=max_sequences(shape, seq_len, free),
        measurements=measurements,
        free_bytes=free,
        free_bytes_method=free_method,
        kv_fits=fits,
        notes=notes,
    )


# -- the experiments ---------------------------------------------------------------------------

TEXT = Param("text", "text", DEFAULT_TEXT, "the text to tokenize")
PADDING_PROMPTS = Param("prompts", "text list", list(DEFAULT_PADDING_PROMPTS), "prompts of different lengths",
                        max_items=16)
PADDING_SIDE = Param("side", "choice", "left", "where the padding goes", choices=("left", "right"))
TOP_TOKENS = Param("k", "int", 10, "how many top tokens", 1, MAX_TOP_K)
ROOFLINE_BATCH_SIZES = Param("batch_sizes", "int list", [1, 8, 32, 64, 128, 256], "batch sizes to time", 1,
                             MAX_REQUESTS)
SEQ_LEN = Param("seq_len", "int", 512, "tokens in the sequence (KV-cache arithmetic)", 1, 1_048_576)
BANDWIDTH = Param("bandwidth_gb_s", "number", None, "memory bandwidth, GB/s (none: measured on the device)", 0,
                  optional=True, above_min=True)
PEAK_TFLOPS = Param("peak_tflops", "number", None, "peak compute, TFLOP/s (none: measured on the device)", 0,
                    optional=True, above_min=True)


class Tokenize(Experiment):
    """Text to token ids and back."""

    name = "tokenize"
    title = "Tokenization"
    description = "Text to token ids and back: the pieces the model actually sees."
    kind = "inspect"
    result_type = TokenizeView
    params = (TEXT,)
    controls = {"text": "prompt"}

    def planned_work(self, params: Params, engine: str = "transformers") -> list[PlannedRun]:
        """Only the tokenizer works: no generation."""
        return []

    def run(self, params: Params, ctx: RunContext) -> TokenizeView:
        """Tokenize ``text`` with the loaded model's tokenizer."""
        return tokenize_view(ctx.engine, params["text"])


class Padding(Experiment):
    """Prompts of different lengths made one rectangle."""

    name = "padding"
    title = "Batching and padding"
    description = "Prompts of different lengths made one rectangle: the padding and the attention mask."
    kind = "inspect"
    result_type = PaddingView
    params = (PADDING_PROMPTS, PADDING_SIDE)

    def planned_work(self, params: Params, engine: str = "transformers") -> list[PlannedRun]:
        """Only the tokenizer works: no generation."""
        return []

    def run(self, params: Params, ctx: RunContext) -> PaddingView:
        """Pad the prompts into one batch."""
        return padding_view(ctx.engine, params["prompts"], params["side"])


class Logits(Experiment):
    """One forward pass and the most likely next tokens."""

    name = "logits"
    title = "Logits"
    description = "The forward pass output and the most likely next tokens at the last position."
    kind = "inspect"
    result_type = LogitsView
    params = (PROMPT, TOP_TOKENS)

    def planned_work(self, params: Params, engine: str = "transformers") -> list[PlannedRun]:
        """One forward pass of the prompt."""
        return [PlannedRun(1, 1, prompt_tokens([params["prompt"]]))]

    def run(self, params: Params, ctx: RunContext) -> LogitsView:
        """One forward pass of ``prompt``."""
        return logits_view(ctx.engine, params["prompt"], params["k"])


class Roofline(Experiment):
    """Measured decode steps against the bandwidth floor."""

    name = "roofline"
    title = "Decode roofline"
    description = "Measured decode step time against the memory-bandwidth floor and KV-cache arithmetic."
    kind = "inspect"
    result_type = RooflineView
    params = (ROOFLINE_BATCH_SIZES, SEQ_LEN, BANDWIDTH, PEAK_TFLOPS)

    def planned_work(self, params: Params, engine: str = "transformers") -> list[PlannedRun]:
        """A short warm-up and a timed run at each batch size, at a CPU's lengths (a GPU's longer runs take
        well under a second each); the bandwidth and FLOP/s probes are left out."""
        from tui_lab.lab.prompts import prompt_schedule

        return [run for b in params["batch_sizes"] for run in (
            PlannedRun(b, 2, prompt_tokens(prompt_schedule(b, seed=0))),
            PlannedRun(b, DECODE_TOKENS_CPU, prompt_tokens(prompt_schedule(b, seed=0))))]

    def run(self, params: Params, ctx: RunContext) -> RooflineView:
        """Time prefill and decode at each batch size; put them against their floors."""
        ctx.report(self.title)
        return roofline_view(ctx.loaded, tuple(params["batch_sizes"]), params["seq_len"], params["bandwidth_gb_s"],
                             params["peak_tflops"])
