"""The transformers engine on the real embedded Gemma 3 270M, CPU, short generations."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import pytest

from tui_lab.engines.base import Request, SamplingParams
from tui_lab.engines.events import RequestFinished, RequestSubmitted, TokenEvent, per_token
from tui_lab.engines.hf import PieceTable, TransformersEngine, _Detokenizer
from tui_lab.errors import DeviceUnavailable, InvalidInput

PROMPT = "The future of AI is"
OTHERS = ["Hi", "Once upon a time, in a small village by the sea, there lived"]


@dataclass
class Run:
    """Everything one ``stream`` call produced, per request id."""

    tokens: dict[str, list[int]] = field(default_factory=dict)
    text: dict[str, str] = field(default_factory=dict)
    reason: dict[str, str] = field(default_factory=dict)
    events: list[object] = field(default_factory=list)


def run(engine: TransformersEngine, prompts: list[str], sampling: SamplingParams,
        budgets: list[int | None] | None = None, stop_after: int | None = None,
        stop: threading.Event | None = None) -> Run:
    reqs = [Request(f"r{i}", p, (budgets or [None] * len(prompts))[i]) for i, p in enumerate(prompts)]
    out = Run({r.request_id: [] for r in reqs}, {r.request_id: "" for r in reqs})
    seen = 0
    for ev in per_token(engine.stream(reqs, sampling, stop)):
        out.events.append(ev)
        if isinstance(ev, TokenEvent):
            out.tokens[ev.request_id].append(ev.token_id)
            out.text[ev.request_id] += ev.text
            seen += 1
            if stop_after is not None and seen == stop_after:
                if stop is not None:
                    stop.set()
                else:
                    engine.cancel()
        elif isinstance(ev, RequestFinished):
            out.reason[ev.request_id] = ev.reason
    return out


GREEDY = SamplingParams(max_new_tokens=8, temperature=0.0)

pytestmark = pytest.mark.real_model


def test_greedy_continuation(hf_engine: TransformersEngine) -> None:
    r = run(hf_engine, [PROMPT], GREEDY)
    assert r.text["r0"].startswith(" in the hands of the people.")
    assert r.reason == {"r0": "length"} and len(r.tokens["r0"]) == 8
    info = hf_engine.info
    assert (info.engine, info.device, info.dtype, info.max_context) == ("transformers", "cpu", "float32", 32768)
    assert info.text_is_meaningful


def test_events_are_well_formed(hf_engine: TransformersEngine) -> None:
    r = run(hf_engine, [PROMPT, "Hi"], SamplingParams(max_new_tokens=4))
    submitted = [e for e in r.events if isinstance(e, RequestSubmitted)]
    assert [(e.request_id, e.prompt_tokens) for e in submitted] == [("r0", 6), ("r1", 2)]  # <bos> counted
    assert r.events[:2] == submitted
    times = [e.t for e in r.events]
    assert times == sorted(times)
    finished = [e for e in r.events if isinstance(e, RequestFinished)]
    assert sorted(e.request_id for e in finished) == ["r0", "r1"]
    for e in finished:
        assert set(e.engine_times) == {"tokenize_s", "prefill_s", "decode_s"}
        assert all(v >= 0 for v in e.engine_times.values())


def test_greedy_is_the_same_alone_and_in_a_padded_batch(hf_engine: TransformersEngine) -> None:
    sp = GREEDY.with_(max_new_tokens=8)
    alone = run(hf_engine, [PROMPT], sp).tokens["r0"]
    batch = run(hf_engine, [OTHERS[0], PROMPT, OTHERS[1]], sp)
    assert batch.tokens["r1"] == alone
    for i, prompt in ((0, OTHERS[0]), (2, OTHERS[1])):
        assert batch.tokens[f"r{i}"] == run(hf_engine, [prompt], sp).tokens["r0"]


def test_seeded_sampling_is_reproducible(hf_engine: TransformersEngine) -> None:
    sp = SamplingParams(max_new_tokens=6, temperature=1.0, top_p=0.95, top_k=50, seed=7)
    prompts = [PROMPT, OTHERS[0]]
    first = run(hf_engine, prompts, sp).tokens
    assert run(hf_engine, prompts, sp).tokens == first
    assert run(hf_engine, prompts, sp.with_(seed=8)).tokens != first


def test_repetition_penalty_changes_the_output(hf_engine: TransformersEngine) -> None:
    plain = run(hf_engine, [PROMPT], GREEDY.with_(max_new_tokens=16)).tokens["r0"]
    penalised = run(hf_engine, [PROMPT], GREEDY.with_(max_new_tokens=16, repetition_penalty=1.5)).tokens["r0"]
    assert penalised != plain
    # " the" (506) and " people" (1331) repeat in the plain text; the penalty makes a repeat rarer
    assert penalised.count(506) < plain.count(506)


def test_eos_stops_each_sequence_unless_ignored(hf_engine: TransformersEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    # Make " the" (id 506, the 2nd greedy token of PROMPT) an end token so EOS comes early.
    monkeypatch.setattr(hf_engine, "_eos_ids", frozenset({506}))
    sp = GREEDY.with_(max_new_tokens=6)
    r = run(hf_engine, [PROMPT, OTHERS[0]], sp)
    assert r.tokens["r0"] == [528, 506] and r.reason["r0"] == "eos"
    assert r.reason["r1"] == "length" and len(r.tokens["r1"]) == 6
    done_at = next(i for i, e in enumerate(r.events) if isinstance(e, RequestFinished) and e.request_id == "r0")
    assert not any(isinstance(e, TokenEvent) and e.request_id == "r0" for e in r.events[done_at:])
    ignored = run(hf_engine, [PROMPT, OTHERS[0]], sp.with_(ignore_eos=True))
    assert ignored.reason == {"r0": "length", "r1": "length"} and len(ignored.tokens["r0"]) == 6


def test_per_request_max_new_tokens(hf_engine: TransformersEngine) -> None:
    r = run(hf_engine, [PROMPT, PROMPT, OTHERS[0]], GREEDY, budgets=[2, 5, None])
    assert [len(r.tokens[f"r{i}"]) for i in range(3)] == [2, 5, 8]
    assert r.tokens["r0"] == r.tokens["r1"][:2]
    assert set(r.reason.values()) == {"length"}


@pytest.mark.parametrize("how", ["cancel", "stop_event"])
def test_cancel_mid_run(hf_engine: TransformersEngine, how: str) -> None:
    stop = threading.Event() if how == "stop_event" else None
    r = run(hf_engine, [PROMPT, OTHERS[0]], GREEDY.with_(max_new_tokens=50), stop_after=4, stop=stop)
    assert r.reason == {"r0": "cancelled", "r1": "cancelled"}
    assert all(len(t) == 2 for t in r.tokens.values())  # stopped right after the step that was running
    # the next run is not affected by the cancel
    assert run(hf_engine, [PROMPT], GREEDY.with_(max_new_tokens=3)).reason == {"r0": "length"}


def _trace(r: Run) -> list[tuple]:
    """A run's events without their times: what must not change when only scheduling changes."""
    return [(type(e).__name__, e.request_id, getattr(e, "token_id", None), getattr(e, "text", None),
             getattr(e, "reason", None)) for e in r.events]


def test_overlapped_steps_give_the_same_events(hf_engine: TransformersEngine,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # Overlap (step n + 1 queued before step n's ids are read) is on by default only with CUDA graphs;
    # forced on here, the CPU runs the same loop. EOS after " the" (506) ends r0 mid-batch; budgets
    # differ; sampling draws from a seeded generator; the penalty reads the history the loop writes.
    monkeypatch.setattr(hf_engine, "_eos_ids", frozenset({506}))
    prompts = [PROMPT, OTHERS[0], OTHERS[1]]
    cases = [(GREEDY.with_(max_new_tokens=6), [None, 3, 5]),
             (SamplingParams(max_new_tokens=5, temperature=1.0, top_k=50, top_p=0.9, seed=3,
                             repetition_penalty=1.3), [4, None, 2])]
    runs = []
    for sampling, budgets in cases:
        monkeypatch.setattr(hf_engine, "overlap_steps", False)
        serial = run(hf_engine, prompts, sampling, budgets)
        monkeypatch.setattr(hf_engine, "overlap_steps", True)
        overlapped = run(hf_engine, prompts, sampling, budgets)
        assert _trace(overlapped) == _trace(serial)
        runs.append(serial)
    assert runs[0].reason == {"r0": "eos", "r1": "length", "r2": "length"} and runs[0].tokens["r0"] == [528, 506]
    assert [len(runs[0].tokens[f"r{i}"]) for i in (1, 2)] == [3, 5]
    assert runs[1].reason["r2"] == "length" and len(runs[1].tokens["r2"]) == 2
    monkeypatch.setattr(hf_engine, "_eos_ids", frozenset())
    stopped = run(hf_engine, [PROMPT, OTHERS[0]], GREEDY.with_(max_new_tokens=50), stop_after=4)
    assert stopped.reason == {"r0": "cancelled", "r1": "cancelled"}
    assert all(len(t) == 2 for t in stopped.tokens.values())  # the step queued behind is dropped, not emitted


def test_no_kv_cache_gives_the_same_greedy_tokens(hf_engine: TransformersEngine,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from tui_lab.engines.hf_backends import NoCacheBackend

    sp = GREEDY.with_(max_new_tokens=6)
    with_cache = run(hf_engine, [PROMPT, OTHERS[1]], sp).tokens
    monkeypatch.setattr(hf_engine, "_factory", NoCacheBackend)
    assert run(hf_engine, [PROMPT, OTHERS[1]], sp).tokens == with_cache


def test_kv_cache_option_picks_the_backend() -> None:
    import torch

    from tui_lab.engines.hf_backends import DynamicCacheBackend, NoCacheBackend

    cpu = torch.device("cpu")
    assert TransformersEngine(kv_cache=False)._choose_backend(cpu) is NoCacheBackend
    assert TransformersEngine(kv_cache=True)._choose_backend(cpu) is DynamicCacheBackend


def test_context_length_is_checked(hf_engine: TransformersEngine) -> None:
    with pytest.raises(InvalidInput, match="context of 32768 tokens") as info:
        run(hf_engine, [PROMPT], GREEDY.with_(max_new_tokens=32768))
    assert "at most 32762 new tokens" in str(info.value)


def test_detokenizer_handles_multibyte_pieces(hf_engine: TransformersEngine) -> None:
    tok = hf_engine.tokenizer
    text = " Grüße aus Köln 🤖 世界, naïve café"
    ids = tok(text, add_special_tokens=False).input_ids
    for table in (None, PieceTable.for_tokenizer(tok.backend_tokenizer)):
        detok = _Detokenizer(tok.backend_tokenizer, [[2]], table)
        pieces = [detok.push([0], [i])[0] for i in ids]
        assert "".join(pieces) == text
        assert "\ufffd" not in "".join(pieces)


def test_piece_table_gives_what_decoding_gives(hf_engine: TransformersEngine) -> None:
    import random

    backend = hf_engine.tokenizer.backend_tokenizer
    table = PieceTable.for_tokenizer(backend)
    assert table is not None and hf_engine._pieces is not None  # Gemma's decoder concatenates pieces
    # Random streams, byte-fallback and special tokens included, 16 sequences side by side.
    rng = random.Random(0)
    vocab = backend.get_vocab_size()
    byte_ids = [backend.token_to_id(f"<0x{b:02X}>") for b in (0xC3, 0xBC, 0xF0, 0x9F, 0xA4, 0x96)]
    rows = list(range(16))
    fast, slow = (_Detokenizer(backend, [[2]] * 16, t) for t in (table, None))
    for _ in range(40):
        tokens = [rng.choice(byte_ids) if rng.random() < 0.2 else rng.randrange(vocab) for _ in rows]
        assert fast.push(rows, tokens) == slow.push(rows, tokens)
    assert sum(v is not None for v in table._known.values()) > 100  # most tokens took the fast path


def test_piece_table_refuses_a_decoder_that_does_not_concatenate() -> None:
    class Encoding:
        def __init__(self, ids: list[int]) -> None:
            self.ids = ids

    class Ligatures:  # decodes ids as letters, then writes "qu" as one letter: a piece depends on the one before
        def encode(self, text: str, add_special_tokens: bool = False) -> Encoding:
            return Encoding([ord(c) for c in text])

        def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
            return "".join(map(chr, ids)).replace("qu", "ꝗ")

        def decode_batch(self, batch: list[list[int]], skip_special_tokens: bool = True) -> list[str]:
            return [self.decode(ids) for ids in batch]

    assert PieceTable.for_tokenizer(Ligatures()) is None


def test_device_errors() -> None:
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(DeviceUnavailable, match="--device cpu"):
            TransformersEngine(device="cuda")._pick_device()
    with pytest.raises(InvalidInput, match="unknown device"):
        TransformersEngine(device="tpu")._pick_device()
    with pytest.raises(InvalidInput, match="unknown dtype"):
        TransformersEngine(dtype="int3")._pick_dtype(torch.device("cpu"))


def test_architecture_model_runs_with_meaningless_text(embedded_checkpoint: object) -> None:
    engine = TransformersEngine(model="arch:gemma-3-270m", device="cpu", warmup=False)
    info = engine.load()
    try:
        assert not info.text_is_meaningful and "meaningless" in " ".join(info.notes)
        assert engine.model_shape.layers == 18
        r = run(engine, [PROMPT, "Hi"], SamplingParams(max_new_tokens=3, ignore_eos=True))
        assert all(len(t) == 3 for t in r.tokens.values())
    finally:
        engine.unload()


def test_nemotron_architecture_refuses_a_small_cpu(embedded_checkpoint: object,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from tui_lab.models import arch

    # Pretend to be a 16 GiB machine, so the test never starts allocating 9B parameters.
    monkeypatch.setattr(arch, "_available_memory_bytes", lambda: 16 * 2**30)
    engine = TransformersEngine(model="arch:nemotron-nano-9b-v2", device="cpu", warmup=False)
    with pytest.raises(InvalidInput, match="GiB") as info:
        engine.load()
    assert "\n" not in str(info.value) and "GPU" in str(info.value)


def test_load_freezes_the_heap_and_unload_frees_the_model(embedded_checkpoint: object) -> None:
    import gc
    import weakref

    engine = TransformersEngine(model="embedded", device="cpu", warmup=False)
    engine.load()
    # The model's long-lived objects no longer take part in full collections (which would stall a run).
    assert gc.get_freeze_count() > 10_000
    model = weakref.ref(engine.model)
    engine.unload()
    assert model() is None  # frozen objects are still freed: unload lifts the freeze first
