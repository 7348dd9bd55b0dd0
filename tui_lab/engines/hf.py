"""The transformers engine: our own prefill + decode loop over a Hugging Face model, CPU or CUDA.

The loop is the pipeline the lessons explain, made visible: tokenize with left
padding and an attention mask, one prefill, then one decode step per token
through a decode backend (``hf_backends``), sampling in torch (``sampling``),
one device→host copy of the chosen ids per step — the moment each token is
known, so that is where its timestamp is taken.

Kept lean on purpose: per step the Python work is one ``tolist()``, text for each
new token (from a table of token pieces where possible, else one batched decode)
and one event per active sequence.

With CUDA graphs the loop overlaps host and device: step n + 1 is queued before
the host waits for step n's ids, so while the host detokenizes and emits events
the GPU is already computing (the ids come back through a pinned buffer and an
event). Eager steps are not overlapped: launching one costs the host about as
long as the GPU takes to run it, so step n's ids, and their timestamps, would
arrive a whole step late.
"""

from __future__ import annotations

import platform
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from tui_lab.engines.base import (
    EngineBase,
    EngineInfo,
    ProgressCallback,
    Request,
    SamplingParams,
    is_cuda,
    settle_heap,
    validate_batch,
)
from tui_lab.engines.events import FinishReason, RequestFinished, RequestSubmitted, StreamEvent, TokenStep
from tui_lab.errors import DeviceUnavailable, EngineFailure, InvalidInput, LabError, OutOfMemory
from tui_lab.gpu_share import turn

if TYPE_CHECKING:
    import torch

    from tui_lab.engines.hf_backends import BackendFactory, DecodeBackend

_DTYPES = {
    "float32": "float32", "fp32": "float32", "float": "float32",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16", "half": "float16",
}

# Prompt tokens kept in front of the output when detokenizing, so the first output
# token's leading space survives tokenizers whose decoder strips it at the start.
_DETOK_CONTEXT = 4

_WARMUP_PROMPT = "Hello"


def _noop(stage: str, fraction: float | None) -> None:
    pass


class _Detokenizer:
    """Incremental text for many sequences at once, correct across multi-byte pieces.

    Each sequence keeps ``ids`` (a few prompt tokens, then its output) and two
    offsets; the text between them was emitted already. New text is the decode of
    ``ids[prefix:]`` minus the decode of ``ids[prefix:read]``; while it ends in an
    incomplete UTF-8 character (U+FFFD) nothing is emitted and the bytes wait.

    Fast path: ``pieces`` (a ``PieceTable``) knows the text most tokens add after any complete
    text. A token whose sequence has nothing waiting and whose piece is known is emitted from
    the table, with no decode call; the offsets move exactly as a decode would move them.
    """

    def __init__(self, backend_tokenizer: Any, prompt_tails: list[list[int]],
                 pieces: PieceTable | None = None) -> None:
        self._tok = backend_tokenizer
        self._pieces = pieces
        self.ids = [list(tail) for tail in prompt_tails]
        self.prefix = [0] * len(prompt_tails)
        self.read = [len(tail) for tail in prompt_tails]

    def push(self, rows: list[int], tokens: list[int]) -> list[str]:
        """Append ``tokens[i]`` to sequence ``rows[i]``; return each one's new text (maybe "")."""
        out = [""] * len(rows)
        table = self._pieces.lookup(tokens) if self._pieces is not None else None
        slow: list[int] = []
        windows = []
        for j, (row, token) in enumerate(zip(rows, tokens, strict=True)):
            ids = self.ids[row]
            ids.append(token)
            read = self.read[row]
            if table is not None and read == len(ids) - 1:
                piece = table.get(token)
                if piece is not None:
                    out[j] = piece
                    self.prefix[row] = read
                    self.read[row] = read + 1
                    continue
            slow.append(j)
            windows.append(ids[self.prefix[row]:read])
            windows.append(ids[self.prefix[row]:])
        if not slow:
            return out
        texts = self._tok.decode_batch(windows, skip_special_tokens=True)
        for k, j in enumerate(slow):
            row = rows[j]
            before, full = texts[2 * k], texts[2 * k + 1]
            if len(full) > len(before) and not full.endswith("\ufffd"):
                out[j] = full[len(before):]
                self.prefix[row] = self.read[row]
                self.read[row] = len(self.ids[row])
        return out


class PieceTable:
    """The text each token adds after complete text, learned on first sight and kept per tokenizer.

    A token's piece is ``decode([anchor, token])`` minus ``decode([anchor])`` for a plain-word
    anchor. Tokens that add nothing (special tokens) or an incomplete character (byte pieces)
    get no piece and always take the decode path. ``check()`` runs a sample text through both
    paths; a tokenizer whose decoder is not a plain concatenation fails it and is not given a
    table (``for_tokenizer`` returns None).
    """

    SAMPLE = " Grüße aus Köln 🤖 世界, naïve café. The quick brown fox: 12,345 tokens!\n\tdone — «ok» 😀😀"

    def __init__(self, backend_tokenizer: Any) -> None:
        self._tok = backend_tokenizer
        anchor = backend_tokenizer.encode("a", add_special_tokens=False).ids
        if not anchor:
            raise ValueError("the tokenizer encodes 'a' to nothing")
        self._anchor = anchor[-1]
        self._anchor_text = backend_tokenizer.decode([self._anchor], skip_special_tokens=True)
        self._known: dict[int, str | None] = {}

    def lookup(self, tokens: list[int]) -> dict[int, str | None]:
        """The table, having learned any of ``tokens`` it had not seen (one batched decode)."""
        known = self._known
        new = [t for t in tokens if t not in known]
        if new:
            new = list(dict.fromkeys(new))  # each unseen token decoded once
            texts = self._tok.decode_batch([[self._anchor, t] for t in new], skip_special_tokens=True)
            base = self._anchor_text
            for t, text in zip(new, texts, strict=True):
                ok = text.startswith(base) and len(text) > len(base) and "\ufffd" not in text
                known[t] = text[len(base):] if ok else None
        return known

    def check(self) -> bool:
        """True when the sample text streams the same through the table as through decoding alone."""
        ids = self._tok.encode(self.SAMPLE, add_special_tokens=False).ids
        fast, slow = _Detokenizer(self._tok, [[]], self), _Detokenizer(self._tok, [[]])
        for token in ids:
            if fast.push([0], [token]) != slow.push([0], [token]):
                return False
        return True

    @classmethod
    def for_tokenizer(cls, backend_tokenizer: Any) -> PieceTable | None:
        """A checked table, or None when this tokenizer must always be decoded."""
        try:
            table = cls(backend_tokenizer)
            return table if table.check() else None
        except Exception:  # an unusual tokenizer: the decode path always works
            return None


class _Pending:
    """Chosen ids on their way to the host; ``result()`` waits for them and returns a list."""

    __slots__ = ("_event", "_values")

    def __init__(self, values: torch.Tensor, event: Any = None) -> None:
        self._values = values
        self._event = event

    def result(self) -> list[int]:
        if self._event is not None:
            self._event.synchronize()  # waits for this step only, not for the one queued behind it
        return self._values.tolist()


class HostCopy:
    """Each step's chosen ids on their way to the host (the engine's way; the benchmark times it too).

    Without overlap a plain ``tolist()`` (it waits for everything queued). With overlap on CUDA
    the ids go through a pinned buffer and an event, two buffers used in turn, so waiting for
    step n does not also wait for step n + 1 queued behind it.
    """

    def __init__(self, batch: int, device: torch.device, overlap: bool) -> None:
        import torch

        self._buffers: list[torch.Tensor] = []
        self._turn = 0
        if overlap and device.type == "cuda":
            self._buffers = [torch.empty(batch, dtype=torch.long, pin_memory=True) for _ in range(2)]

    def start(self, ids: torch.Tensor) -> _Pending:
        """Start the copy of ``ids`` (B,) to the host."""
        import torch

        if not self._buffers:
            return _Pending(ids)
        buf = self._buffers[self._turn]
        self._turn ^= 1
        buf.copy_(ids, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        return _Pending(buf, event)


class TransformersEngine(EngineBase):
    """Generation with transformers models through our own decode loop (see module docstring).

    ``model``: any spec ``tui_lab.models.resolve`` accepts. ``device``: auto | cpu |
    cuda[:N]. ``dtype``: auto (bf16 on CUDA, fp32 on CPU) | float32 | bfloat16 |
    float16. ``kv_cache=False`` recomputes the whole sequence every step.
    ``cuda_graphs`` uses the static-cache CUDA-graph backend on CUDA. ``overlap_steps`` queues
    step n + 1 on the device before waiting for step n's ids, so the GPU never waits for the host's
    per-token work; ``None`` (default) turns it on where a step is cheap to launch (a CUDA graph
    replay). Off, the loop is strictly one step at a time.
    """

    name = "transformers"

    def __init__(
        self,
        model: str = "embedded",
        device: str = "auto",
        dtype: str = "auto",
        kv_cache: bool = True,
        cuda_graphs: bool = True,
        cache_dir: str | None = None,
        attn_implementation: str | None = "sdpa",
        warmup: bool = True,
        overlap_steps: bool | None = None,
    ) -> None:
        self.model_spec = model or "embedded"
        self.device = device or "auto"
        self.dtype = dtype or "auto"
        self.kv_cache = kv_cache
        self.cuda_graphs = cuda_graphs
        self.cache_dir = cache_dir
        self.attn_implementation = attn_implementation
        self.warmup = warmup
        self.overlap_steps = overlap_steps
        self.model: Any = None
        self.tokenizer: Any = None
        self.torch_device: torch.device | None = None
        self.model_shape: Any = None
        super().__init__()
        self._factory: BackendFactory | None = None
        self._eos_ids: frozenset[int] = frozenset()
        self._pieces: PieceTable | None = None
        self._max_context: int | None = None
        self._notes: list[str] = []
        self._prepares = False
        """True when batches run on the captured fast path, whose shapes are built once before they run."""

    # -- loading ---------------------------------------------------------------------------

    def _pick_device(self) -> torch.device:
        import torch

        want = self.device.strip().lower()
        if want == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if want == "cpu":
            return torch.device("cpu")
        if is_cuda(want):
            if not torch.cuda.is_available():
                why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
                raise DeviceUnavailable(f"--device {self.device} asked for a GPU but {why};",
                                        hint="use --device cpu (or auto).")
            dev = torch.device(want)
            if dev.index is not None and dev.index >= torch.cuda.device_count():
                raise DeviceUnavailable(f"there is no GPU {dev.index} (found {torch.cuda.device_count()});",
                                        hint="use --device cuda or cuda:0.")
            return dev
        raise InvalidInput(f"unknown device {self.device!r}; choose auto, cpu or cuda")

    def _pick_dtype(self, device: torch.device) -> torch.dtype:
        import torch

        want = self.dtype.strip().lower()
        if want == "auto":
            # fp32 on CPU: measured faster than bf16 on the 2-core dev machine (see benchmarks/), and exact
            # enough that a prompt decodes identically alone and in a padded batch.
            return torch.bfloat16 if device.type == "cuda" else torch.float32
        if want not in _DTYPES:
            raise InvalidInput(f"unknown dtype {self.dtype!r}; choose auto, float32, bfloat16 or float16")
        return getattr(torch, _DTYPES[want])

    def load(self, progress: ProgressCallback | None = None) -> EngineInfo:
        """Load the model (taking the load turn when processes share the GPU: ``tui_lab.gpu_share``)."""
        with turn("load"):
            return self._load(progress)

    def _load(self, progress: ProgressCallback | None = None) -> EngineInfo:
        """Resolve and materialize the model, load it on the device, warm up once."""
        report = progress or _noop
        from tui_lab.models import materialize, model_shape, resolve

        spec = resolve(self.model_spec)
        report("importing torch and transformers", 0.02)
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = self._pick_device()
        dtype = self._pick_dtype(device)

        def sub(start: float, end: float) -> ProgressCallback:
            return lambda stage, f: report(stage, None if f is None else start + (end - start) * f)

        path = materialize(spec, sub(0.05, 0.6), self.cache_dir)
        report("loading the tokenizer", 0.62)
        from tui_lab.models.embedded import quiet_transformers

        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(path)
            tokenizer.padding_side = "left"
            if tokenizer.pad_token_id is None:
                tokenizer.pad_token = tokenizer.eos_token
            report(f"loading the weights on {device} ({_dtype_name(dtype)})", 0.7)
            try:
                if spec.kind == "arch":
                    from tui_lab.models.arch import random_model

                    model = random_model(path, device, dtype, spec.name)
                else:
                    model = AutoModelForCausalLM.from_pretrained(
                        path, dtype=dtype, device_map=str(device) if device.type == "cuda" else None,
                        attn_implementation=self.attn_implementation,
                    )
                    model.to(device)
                if self.attn_implementation and model.config._attn_implementation != self.attn_implementation:
                    model.set_attn_implementation(self.attn_implementation)
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                raise OutOfMemory(f"{spec.display_name} does not fit in GPU memory;",
                                  hint="pick a smaller model or a larger GPU.", largest_batch=0) from None
        model.eval()
        model.requires_grad_(False)

        self.model, self.tokenizer, self.torch_device = model, tokenizer, device
        try:
            # The config gives the layout; the loaded tensors give the exact parameter count.
            shape = model_shape(model.config, dtype_bytes=torch.empty((), dtype=dtype).element_size())
            self.model_shape = replace(shape, params=sum(p.numel() for p in model.parameters()))
        except (TypeError, ValueError, KeyError):
            self.model_shape = None  # an unusual config: no KV arithmetic (OOM hints get vaguer)
        self._eos_ids = _eos_ids(model, tokenizer)
        self._pieces = PieceTable.for_tokenizer(tokenizer.backend_tokenizer)
        self._max_context = _max_context(model.config)
        self._notes = []
        if not spec.text_is_meaningful:
            self._notes.append("random weights: the text is meaningless, the timing is real")
        self._factory = self._choose_backend(device)

        versions = {"torch": torch.__version__, "transformers": transformers.__version__,
                    "python": platform.python_version()}
        dev_name = str(device)
        if device.type == "cuda":
            dev_name = f"{device} ({torch.cuda.get_device_name(device)})"
        self._info = EngineInfo(
            engine=self.name, model=spec.display_name, device=dev_name, dtype=_dtype_name(dtype),
            versions=versions, text_is_meaningful=spec.text_is_meaningful, max_context=self._max_context,
            notes=tuple(self._notes),
        )
        if self.warmup:
            report("warming up", 0.95)
            for _ in self.stream([Request("warmup", _WARMUP_PROMPT)],
                                 SamplingParams(max_new_tokens=2, ignore_eos=True)):
                pass
        settle_heap()  # the model's objects are long-lived: keep full collections from walking them mid-run
        report("ready", 1.0)
        return self._info

    def _choose_backend(self, device: torch.device) -> BackendFactory:
        from tui_lab.engines.hf_backends import DynamicCacheBackend, NoCacheBackend

        if not self.kv_cache:
            self._notes.append("KV cache off: every step recomputes the whole sequence")
            return NoCacheBackend
        if device.type == "cuda" and self.cuda_graphs:
            try:
                from tui_lab.engines.hf_graphs import StaticGraphBackend
            except Exception as error:  # an optional fast path: never block generation
                self._notes.append(f"CUDA graphs unavailable ({type(error).__name__}: {error}); eager decoding")
                return DynamicCacheBackend
            self._prepares = True
            return self._graph_factory(StaticGraphBackend)
        return DynamicCacheBackend

    def _graph_factory(self, graph_cls: Any) -> BackendFactory:
        from tui_lab.engines.hf_backends import DynamicCacheBackend

        def factory(model: Any, batch_size: int, max_total_len: int) -> DecodeBackend:
            try:
                return graph_cls(model, batch_size, max_total_len)
            except LabError:
                raise
            except Exception as error:
                note = f"CUDA graph backend failed ({type(error).__name__}: {error}); eager decoding"
                if note not in self._notes:
                    self._notes.append(note)
                    if self._info is not None:
                        self._info = replace(self._info, notes=tuple(self._notes))
                return DynamicCacheBackend(model, batch_size, max_total_len)

        return factory

    def unload(self) -> None:
        """Give the model's memory back (after any other process's load has sized its cache)."""
        with turn("unload"):
            self._unload()

    def _unload(self) -> None:
        """Drop the model and tokenizer and give device memory back."""
        device = self.torch_device
        self.model = self.tokenizer = None
        self._info = None
        self._factory = None
        settle_heap()  # collects the model (its compiled-graph runtimes refer back to it: a cycle)
        if device is not None and device.type == "cuda":
            import torch

            torch.cuda.empty_cache()

    # -- generation ------------------------------------------------------------------------

    def _require_loaded(self) -> None:
        if self.model is None or self._factory is None:
            raise EngineFailure("the transformers engine is not loaded yet", hint="call load() first.")

    def _encode(self, requests: Sequence[Request], sampling: SamplingParams) -> tuple[Any, Any, list[int], list[int]]:
        """The prompts tokenized and left-padded into one batch: (ids, mask, prompt lengths, token budgets)."""
        enc = self.tokenizer([r.prompt for r in requests], return_tensors="pt", padding=True)
        input_ids, mask = enc["input_ids"], enc["attention_mask"]
        prompt_lens = mask.sum(dim=1).tolist()
        budgets = [r.budget(sampling) for r in requests]
        self._check_lengths(prompt_lens, budgets)
        return input_ids, mask, prompt_lens, budgets

    def prepare(self, requests: Sequence[Request], sampling: SamplingParams) -> float:
        """Build what a batch of this shape needs on the captured fast path (its static cache, the decode
        step's and the prefill's CUDA graphs: once per batch bucket and length) before it is timed, so its
        figures are the warm ones. Returns the seconds that took (0.0 when the shape was ready already, or
        the engine has no captured path)."""
        validate_batch(requests, sampling)
        self._require_loaded()
        if not self._prepares:
            return 0.0
        import torch

        input_ids, _mask, _lens, budgets = self._encode(requests, sampling)
        batch, width = input_ids.shape
        assert self._factory is not None
        backend: DecodeBackend | None = None
        try:
            with torch.inference_mode():
                backend = self._factory(self.model, batch, width + max(budgets))
                warm = getattr(backend, "warm", None)
                return float(getattr(backend, "setup_s", 0.0)) + (warm(width) if warm is not None else 0.0)
        except torch.cuda.OutOfMemoryError:
            raise self._out_of_memory(batch, width, width + max(budgets), backend) from None
        finally:
            if backend is not None:
                backend.release()

    def _stream(self, requests: list[Request], sampling: SamplingParams,
                stop: threading.Event | None) -> Iterator[StreamEvent]:
        """Generate for ``requests`` together; yields submitted / token / finished events as they happen."""
        import torch

        from tui_lab.engines.sampling import make_generator, sample_next

        t_send = time.perf_counter()
        device = self.torch_device
        input_ids, mask, prompt_lens, budgets = self._encode(requests, sampling)
        batch, width = input_ids.shape
        max_new = max(budgets)
        for r, n in zip(requests, prompt_lens, strict=True):
            yield RequestSubmitted(r.request_id, t_send, int(n))

        ids_list = input_ids.tolist()
        tails = [row[width - n:][-_DETOK_CONTEXT:] for row, n in zip(ids_list, prompt_lens, strict=True)]
        detok = _Detokenizer(self.tokenizer.backend_tokenizer, tails, self._pieces)
        eos = self._eos_ids if not sampling.ignore_eos else frozenset()
        ids_of = [r.request_id for r in requests]
        active = list(range(batch))
        active_ids = ids_of
        """The running requests' ids, one list shared by every step's ``TokenStep`` until a request ends."""
        t_first: float | None = None
        """Every request starts together, so all get their first token at the same step."""
        next_end = min(budgets)
        backend: DecodeBackend | None = None
        generator = make_generator(sampling, device)
        history = None
        try:
            # inference_mode is entered around the compute only, never across a yield: it is a
            # per-thread switch, and the consumer's code runs between our yields.
            with torch.inference_mode():
                input_ids, mask = input_ids.to(device), mask.to(device)
                if sampling.repetition_penalty != 1.0:
                    history = torch.empty((batch, width + max_new), dtype=torch.long, device=device)
                    history[:, :width] = input_ids
                assert self._factory is not None  # checked at the start of stream()
                backend = self._factory(self.model, batch, width + max_new)
                overlap = self.overlap_steps
                if overlap is None:
                    overlap = bool(getattr(backend, "cheap_launch", False))
                to_host = HostCopy(batch, device, overlap)
                t_prefill = time.perf_counter()
                logits = backend.prefill(input_ids, mask)
                next_ids = sample_next(logits, sampling, generator, history[:, :width] if history is not None else None)
                pending = to_host.start(next_ids)
            step = 0

            def launch() -> None:
                """Queue decode step ``step + 1`` on the device, fed with step ``step``'s tokens."""
                nonlocal next_ids, pending
                with torch.inference_mode():
                    if history is not None:
                        history[:, width + step] = next_ids
                    logits = backend.step(next_ids.unsqueeze(1))
                    prev = history[:, : width + step + 1] if history is not None else None
                    next_ids = sample_next(logits, sampling, generator, prev)
                    pending = to_host.start(next_ids)

            # Rows that ended stay in the batch (its shape never changes) and keep being computed; their
            # tokens are dropped. A row only ever attends to its own cache, so the others are unaffected.
            # Per step the host does column work only (one list of ids, one of texts, one event): every
            # running request has produced ``step + 1`` tokens, so ends are found without a loop per token.
            while True:
                waiting = pending
                if overlap and step + 1 < max_new:
                    # Overlap: the next step goes onto the device queue before we wait for this one's ids,
                    # so the GPU computes while the host copies, detokenizes and emits events.
                    launch()
                chosen = waiting.result()  # the one device→host sync of the step
                t = time.perf_counter()
                rows = active
                tokens = chosen if len(rows) == batch else [chosen[i] for i in rows]
                yield TokenStep(active_ids, tokens, detok.push(rows, tokens), t)
                n = step + 1
                if t_first is None:
                    t_first = t
                ended: dict[int, FinishReason] = {}
                if eos and not eos.isdisjoint(tokens):
                    ended = {i: "eos" for i, token in zip(rows, tokens, strict=True) if token in eos}
                if n >= next_end:
                    ended.update((i, "length") for i in rows if budgets[i] <= n and i not in ended)
                if ended:
                    for i in rows:
                        if i in ended:
                            yield RequestFinished(ids_of[i], t, ended[i],
                                                  engine_times=_times(t_send, t_prefill, t_first, t))
                    active = [i for i in rows if i not in ended]
                    active_ids = [ids_of[i] for i in active]
                    next_end = min((budgets[i] for i in active), default=0)
                if not active:
                    break
                if self._cancel.is_set() or (stop is not None and stop.is_set()):
                    t = time.perf_counter()
                    for i in active:
                        yield RequestFinished(ids_of[i], t, "cancelled",
                                              engine_times=_times(t_send, t_prefill, t_first, t))
                    active = []
                    break
                if not overlap:
                    launch()
                step += 1
        except torch.cuda.OutOfMemoryError:
            raise self._out_of_memory(batch, width, width + max_new, backend) from None
        finally:
            if backend is not None:
                backend.release()

    def _check_lengths(self, prompt_lens: list[int], budgets: list[int]) -> None:
        limit = self._max_context
        for n, budget in zip(prompt_lens, budgets, strict=True):
            if n == 0:
                raise InvalidInput("a prompt is empty; give at least one token of text")
            if limit is not None and n + budget > limit:
                room = limit - n
                hint = f"ask for at most {room} new tokens." if room > 0 else "shorten the prompt."
                raise InvalidInput(
                    f"prompt ({n} tokens) + max new tokens ({budget}) exceeds the model's context of {limit} tokens;",
                    hint=hint,
                )

    def _out_of_memory(self, batch: int, prompt_len: int, total_len: int,
                       backend: DecodeBackend | None) -> OutOfMemory:
        import gc

        import torch

        if backend is not None:
            backend.release()
        gc.collect()
        torch.cuda.empty_cache()
        free, _total = torch.cuda.mem_get_info(self.torch_device)
        per_seq = self._bytes_per_sequence(prompt_len, total_len)
        # Leave a tenth for the allocator's fragmentation.
        fits = int(0.9 * free // per_seq) if per_seq else 0
        fits = max(0, min(batch - 1, fits))
        return OutOfMemory(
            f"out of GPU memory at batch {batch} with {total_len} tokens per sequence;",
            hint=f"about {fits} sequences of that length fit — lower the batch size or max tokens.",
            largest_batch=fits,
        )

    def _bytes_per_sequence(self, prompt_len: int, total_len: int) -> float:
        """GPU bytes one sequence needs at its peak: its KV cache plus the prefill's largest activations.

        During prefill the MLP holds about three (tokens × intermediate) tensors and the
        layer a few (tokens × hidden) ones; for long prompts that outweighs the KV cache.
        """
        from tui_lab.metrics import kv_bytes_per_sequence

        if self.model_shape is None:
            return 0.0
        text = self.model.config.get_text_config() if hasattr(self.model.config, "get_text_config") \
            else self.model.config
        hidden = getattr(text, "hidden_size", 0) or 0
        inter = getattr(text, "intermediate_size", 0) or 4 * hidden
        elem = self.model_shape.kv_bytes_per_elem
        activations = prompt_len * (3 * inter + 4 * hidden) * elem
        return kv_bytes_per_sequence(self.model_shape, total_len) + activations


def _times(t_send: float, t_prefill: float, t_first: float | None, t_end: float) -> dict[str, float]:
    times = {"tokenize_s": t_prefill - t_send}
    if t_first is not None:
        times["prefill_s"] = t_first - t_prefill
        times["decode_s"] = t_end - t_first
    return times


def _dtype_name(dtype: Any) -> str:
    return str(dtype).replace("torch.", "")


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config):
        value = getattr(source, "eos_token_id", None) if source is not None else None
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(int(v) for v in value)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return frozenset(ids)


def _max_context(config: Any) -> int | None:
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    value = getattr(text, "max_position_embeddings", None)
    return int(value) if value else None
