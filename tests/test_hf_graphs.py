"""The fast decode path's step, checked on CPU against transformers' own eager decoding.

On CPU the backend runs the same step function eagerly (no graph, no compile), so these tests check
the arithmetic the CUDA graph captures: the static cache layout, left padding (masks and positions),
the sliding window, grouped-query attention, and the buckets/OOM arithmetic.
"""

from __future__ import annotations

import dataclasses

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tui_lab.engines import hf_graphs  # noqa: E402
from tui_lab.engines.hf_graphs import (  # noqa: E402
    GraphOptions,
    StaticGraphBackend,
    batch_bucket,
    largest_batch_that_fits,
    length_bucket,
)
from tui_lab.errors import OutOfMemory  # noqa: E402


def _gemma(sliding_window: int = 6):
    from transformers import Gemma3TextConfig

    cfg = Gemma3TextConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                           num_attention_heads=4, num_key_value_heads=1, head_dim=16, sliding_window=sliding_window,
                           layer_types=["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
                           max_position_embeddings=256)
    return cfg


def _llama():
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)


def _qwen3():
    from transformers import Qwen3Config

    return Qwen3Config(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=256)


def _model(cfg):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    cfg._attn_implementation = "sdpa"
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
    # Random init gives near-uniform logits; scale weights up so greedy choices have clear margins.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(4.0)
    return model


def _batch(vocab: int, lens: list[int]):
    g = torch.Generator().manual_seed(1)
    plen = max(lens)
    ids = torch.zeros((len(lens), plen), dtype=torch.long)
    mask = torch.zeros((len(lens), plen), dtype=torch.long)
    for i, n in enumerate(lens):
        ids[i, plen - n:] = torch.randint(3, vocab, (n,), generator=g)
        mask[i, plen - n:] = 1
    return ids, mask


def _eager_reference(model, ids, mask, steps):
    """transformers' own loop: DynamicCache, growing 2-D mask, positions from the mask."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache, use_cache=True)
        logits = [out.logits[:, -1].float()]
        nxt = logits[-1].argmax(-1, keepdim=True)
        toks = [nxt]
        cur_pos = mask.sum(-1, keepdim=True)
        for _ in range(steps):
            mask = torch.cat([mask, torch.ones_like(nxt)], dim=1)
            out = model(input_ids=nxt, attention_mask=mask, position_ids=cur_pos, past_key_values=cache,
                        use_cache=True)
            cur_pos = cur_pos + 1
            logits.append(out.logits[:, -1].float())
            nxt = logits[-1].argmax(-1, keepdim=True)
            toks.append(nxt)
    return torch.cat(toks, 1), logits


def _fast(model, ids, mask, steps, attention=GraphOptions.attention, prefill=None, options=""):
    """Greedy tokens and logits of the fast path; ``prefill(backend)`` replaces its own prefill; ``options``
    changes the build (``GraphOptions.with_``)."""
    opts = GraphOptions(attention=attention).with_(options)
    be = StaticGraphBackend(model, ids.shape[0], ids.shape[1] + steps + 1, opts)
    try:
        logits = [(prefill(be) if prefill else be.prefill(ids, mask)).float()]
        nxt = logits[-1].argmax(-1, keepdim=True)
        toks = [nxt]
        for _ in range(steps):
            logits.append(be.step(nxt).float().clone())
            nxt = logits[-1].argmax(-1, keepdim=True)
            toks.append(nxt)
    finally:
        be.release()
    return torch.cat(toks, 1), logits


@pytest.mark.parametrize("make", [_gemma, _llama, _qwen3], ids=["gemma3", "llama", "qwen3"])
@pytest.mark.parametrize("attention", ["reduce", "sdpa", "matmul"])
def test_fast_step_matches_eager_with_left_padding(make, attention):
    model = _model(make())
    ids, mask = _batch(model.config.vocab_size, [5, 9, 2])  # ragged: left padding in rows 0 and 2
    steps = 12  # past the sliding window of 6: the window mask is exercised
    ref_toks, ref_logits = _eager_reference(model, ids, mask, steps)
    toks, logits = _fast(model, ids, mask, steps, attention)
    for a, b in zip(ref_logits, logits, strict=True):
        torch.testing.assert_close(b, a, atol=2e-4, rtol=2e-4)
    assert torch.equal(toks, ref_toks)


@pytest.mark.parametrize("make", [_gemma, _llama, _qwen3], ids=["gemma3", "llama", "qwen3"])
@pytest.mark.parametrize("options", ["boundary=0", "linear=reduce", "v5+linear=reduce"])
def test_build_options_keep_eager_tokens(make, options):
    # Layer boundaries kept or moved (the residual add and norm finishing a layer fused with the next
    # layer's input norm), projections as cuBLAS products or as reductions for small batches: the same
    # arithmetic, so the same tokens and logits as transformers' eager decoding in float32.
    model = _model(make())
    ids, mask = _batch(model.config.vocab_size, [5, 9, 2])  # decode steps have 3 rows: "reduce" applies
    steps = 10
    ref_toks, ref_logits = _eager_reference(model, ids, mask, steps)
    toks, logits = _fast(model, ids, mask, steps, options=options)
    for a, b in zip(ref_logits, logits, strict=True):
        torch.testing.assert_close(b, a, atol=2e-4, rtol=2e-4)
    assert torch.equal(toks, ref_toks)


def check_whole_graph_tracing(model, lengths: list[int], options: str = "") -> None:
    """On CUDA each step function is compiled with fullgraph=True. Traced here with dynamo's eager backend
    (which fails on any graph break: a data-dependent branch, say), they must give the eager model's tokens
    and logits (dynamic batch and prompt length, as marked by the forward)."""
    rt = hf_graphs._runtime(model, GraphOptions().with_(options))
    plain = rt.fns
    traced = {f.name: torch.compile(getattr(plain, f.name), fullgraph=True, backend="eager")
              for f in dataclasses.fields(plain) if f.name != "cfg" and getattr(plain, f.name) is not None}
    rt.fns = dataclasses.replace(plain, **traced)
    try:
        ids, mask = _batch(model.config.vocab_size, lengths)
        ref_toks, ref_logits = _eager_reference(model, ids, mask, 4)
        toks, logits = _fast(model, ids, mask, 4, options=options)
        for a, b in zip(ref_logits, logits, strict=True):
            torch.testing.assert_close(b, a, atol=2e-4, rtol=2e-4)
        assert torch.equal(toks, ref_toks)
    finally:
        rt.fns = plain
        torch._dynamo.reset()


@pytest.mark.parametrize("options", ["", "linear=reduce", "v5"])
def test_layer_traces_as_one_graph_for_torch_compile(options):
    check_whole_graph_tracing(_model(_gemma()), [5, 9, 2], options)


def test_options_parse_presets_fields_and_refuse_unknowns():
    base = GraphOptions()
    assert base.boundary is True and base.scan_chunk == "fit" and base.linear == "mm"
    v5 = base.with_("v5")
    assert v5.boundary is False and v5.scan_chunk == "model" and v5.compile == base.compile
    o = base.with_("tuning=pdl/coordinate+linear=reduce+boundary=0")
    assert (o.tuning_knobs(), o.linear, o.boundary) == (["pdl", "coordinate"], "reduce", False)
    for bad in ("warp", "tuning=turbo", "linear=fast", "boundary=maybe", "colour=red"):
        with pytest.raises(ValueError):
            base.with_(bad)


def test_compile_options_map_knobs_and_skip_what_torch_lacks(monkeypatch):
    pytest.importorskip("torch._inductor.config")
    opts, skipped = hf_graphs.compile_options(GraphOptions(tuning="coordinate"))
    assert opts["coordinate_descent_tuning"] is True and skipped == []
    monkeypatch.setitem(hf_graphs.TUNING_KNOBS, "future", {"triton.no_such_knob": True})
    monkeypatch.setattr(GraphOptions, "validate", lambda self: None)
    opts, skipped = hf_graphs.compile_options(GraphOptions(tuning="future/coordinate"))
    assert skipped == ["future"] and "triton.no_such_knob" not in opts
    opts, _ = hf_graphs.compile_options(GraphOptions(compile="max-autotune-no-cudagraphs"))
    assert opts["max_autotune"] is True


def test_options_from_the_environment(monkeypatch):
    monkeypatch.setenv("INFERENCE_LAB_GRAPH_OPTIONS", "v5+tuning=pdl")
    o = GraphOptions.from_env()
    assert o.boundary is False and o.tuning == "pdl"


def test_cached_entry_reused_and_state_reset_between_runs():
    model = _model(_gemma())
    ids, mask = _batch(model.config.vocab_size, [4, 7])
    first, _ = _fast(model, ids, mask, 8)
    second, _ = _fast(model, ids, mask, 8)  # same (bucket, length): the cached entry is reused
    assert torch.equal(first, second)
    rt = model.__dict__[hf_graphs._RUNTIMES_ATTR][GraphOptions()]
    assert all(not e.in_use for e in rt.entries.values())
    hf_graphs.release_all(model)
    assert hf_graphs._RUNTIMES_ATTR not in model.__dict__


def test_fused_weights_are_shared_with_the_model():
    model = _model(_llama())
    ids, mask = _batch(model.config.vocab_size, [5, 3])
    before, _ = _eager_reference(model, ids, mask, 4)
    arch = hf_graphs._Arch(model)
    attn = model.model.layers[0].self_attn
    w_qkv = arch.weights[0][1]
    assert attn.q_proj.weight.data_ptr() == w_qkv.data_ptr()  # a view, not a copy
    assert attn.k_proj.weight.data_ptr() == w_qkv[attn.q_proj.weight.shape[0]:].data_ptr()
    after, _ = _eager_reference(model, ids, mask, 4)  # eager decoding is unchanged
    assert torch.equal(before, after)


def test_batch_padding_rows_do_not_change_results():
    model = _model(_llama())
    ids, mask = _batch(model.config.vocab_size, [6, 3, 5])  # 3 sequences run in a bucket of 4
    toks3, _ = _fast(model, ids, mask, 6)
    toks1, _ = _fast(model, ids[1:2, -3:], mask[1:2, -3:], 6)  # the middle one alone, unpadded
    assert torch.equal(toks3[1], toks1[0])


def test_full_cache_raises():
    model = _model(_llama())
    ids, mask = _batch(model.config.vocab_size, [3])
    be = StaticGraphBackend(model, 1, 4)  # rounded up to one length bucket
    be.prefill(ids, mask)
    nxt = torch.zeros((1, 1), dtype=torch.long)
    with pytest.raises(ValueError, match="full"):
        for _ in range(be.length + 1):
            be.step(nxt)
    be.release()


def test_unsupported_architecture_raises_not_implemented():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64))
    with pytest.raises(NotImplementedError, match="supports"):
        StaticGraphBackend(model, 1, 16)


def test_buckets():
    assert [batch_bucket(b) for b in (1, 2, 3, 5, 100, 129, 256, 300, 1024)] == [2, 2, 4, 8, 128, 256, 256, 512, 1024]
    assert length_bucket(1) == 32 and length_bucket(144) == 160 and length_bucket(160) == 160


def test_largest_batch_from_kv_arithmetic():
    model = _model(_gemma())
    arch = hf_graphs._Arch(model)
    per_seq = 2 * 4 * 1 * 16 * 4 * 160 + 512 * 14  # K+V, 4 layers, 1 KV head, dim 16, fp32, 160 positions
    assert largest_batch_that_fits(arch, 160, per_seq * 10 / 0.9) == 8  # 10 fit → the bucket of 8
    assert largest_batch_that_fits(arch, 160, per_seq * 0.5) == 0


def test_out_of_memory_message_names_largest_batch():
    model = _model(_gemma())
    rt = hf_graphs._runtime(model, GraphOptions())
    err = hf_graphs._oom(rt, 256, 160, free=10_000_000)
    assert isinstance(err, OutOfMemory)
    assert err.largest_batch == largest_batch_that_fits(rt.arch, 160, 10_000_000)
    assert f"largest batch that fits now: {err.largest_batch}" in str(err)


def check_padded_prefill(model, steps: int) -> None:
    """What a captured prefill runs (the prompts left-padded to a multiple of 16, every row of the batch
    bucket: here 3 sequences in a bucket of 4, the 4th row empty) gives the tokens and logits of the plain
    prefill. On CPU it runs uncaptured, the same code."""
    ids, mask = _batch(model.config.vocab_size, [5, 9, 2])
    ref_toks, ref_logits = _fast(model, ids, mask, steps)
    padded = hf_graphs.prefill_bucket(ids.shape[1])
    assert padded == 16

    def padded_prefill(be):
        assert be.length >= padded + steps + 1
        big_ids = torch.zeros((be.bucket, padded), dtype=torch.long)
        big_mask = torch.zeros((be.bucket, padded), dtype=torch.bool)
        big_ids[:3, padded - ids.shape[1]:] = ids
        big_mask[:3, padded - ids.shape[1]:] = mask.bool()
        with torch.inference_mode():
            return hf_graphs._run_prefill(be.rt, be.entry, big_ids, big_mask)[:3]

    toks, logits = _fast(model, ids, mask, steps, prefill=padded_prefill)
    for a, b in zip(ref_logits, logits, strict=True):
        torch.testing.assert_close(b, a, atol=2e-4, rtol=2e-4)
    assert torch.equal(toks, ref_toks)


def test_prefill_padded_for_capture_gives_the_same_results():
    check_padded_prefill(_model(_gemma()), steps=10)  # past the sliding window of 6


def test_prefill_capture_needs_room_and_graphs():
    model = _model(_llama())
    be = StaticGraphBackend(model, 1, 40)  # cache of 64 positions
    try:
        assert be.capture_prefill is False and be._captured_prefill(7) is None  # no graphs on CPU
        be.capture_prefill = True
        be.max_total_len = 60  # 7 prompt + 53 new tokens; padded to 16, the prompt would need 69 > 64 positions
        assert be._captured_prefill(7) is None
    finally:
        be.release()
    assert [hf_graphs.prefill_bucket(n) for n in (1, 16, 17)] == [16, 16, 32]
