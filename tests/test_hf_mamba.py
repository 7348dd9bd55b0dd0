"""The fast decode path for the hybrid Mamba-2/attention Nemotron-H, checked on CPU against transformers.

On CPU the backend runs the same block functions eagerly (no graph, no compile): these tests check the
arithmetic the CUDA graphs capture — the Mamba-2 conv window and SSM state update, the chunked-scan
prefill (several chunks), left padding in the Mamba layers, and the attention layers' static cache.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tests.test_hf_graphs import _batch, _eager_reference, _fast, check_padded_prefill, check_whole_graph_tracing  # noqa: E402
from tui_lab.engines import hf_graphs, hf_mamba  # noqa: E402
from tui_lab.engines.hf_graphs import StaticGraphBackend  # noqa: E402


def _nemotron(pattern: str = "M*-M-*M", chunk_size: int = 4):
    from transformers import NemotronHConfig

    return NemotronHConfig(vocab_size=512, hidden_size=64, intermediate_size=128, hybrid_override_pattern=pattern,
                           num_attention_heads=4, num_key_value_heads=2, head_dim=16, mamba_num_heads=8,
                           mamba_head_dim=8, n_groups=2, ssm_state_size=16, conv_kernel=4, chunk_size=chunk_size,
                           max_position_embeddings=256)


def _model(cfg):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    cfg._attn_implementation = "sdpa"
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:  # clear margins between greedy choices (random init gives near-uniform logits)
                p.mul_(4.0)
            elif name.endswith(("dt_bias", "conv1d.bias")):  # varied time steps and conv offsets
                p.copy_(torch.randn_like(p))
    return model


def _check(model, lens, steps, attention=hf_graphs.GraphOptions.attention, options=""):
    ids, mask = _batch(model.config.vocab_size, lens)
    ref_toks, ref_logits = _eager_reference(model, ids, mask, steps)
    toks, logits = _fast(model, ids, mask, steps, attention, options=options)
    for a, b in zip(ref_logits, logits, strict=True):
        torch.testing.assert_close(b, a, atol=2e-4, rtol=2e-4)
    assert torch.equal(toks, ref_toks)


@pytest.mark.parametrize("lens", [[9], [5, 11, 2]], ids=["batch1", "left-padded-batch3"])
def test_hybrid_decode_matches_eager(lens):
    _check(_model(_nemotron()), lens, steps=16)


def test_prefill_leaves_transformers_states_in_the_buffers():
    from transformers import DynamicCache

    model = _model(_nemotron())
    ids, mask = _batch(model.config.vocab_size, [5, 11, 2])
    cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        model(input_ids=ids, attention_mask=mask, past_key_values=cache, use_cache=True)
    be = StaticGraphBackend(model, 3, 20)
    try:
        be.prefill(ids, mask)
        e = be.entry
        mamba_layers = [i for i, k in enumerate(be.rt.arch.kinds) if k == "mamba"]
        for conv, ssm, i in zip(e.convs, e.ssms, mamba_layers, strict=True):
            torch.testing.assert_close(conv[:3], cache.layers[i].conv_states[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(ssm[:3], cache.layers[i].recurrent_states[0], atol=1e-4, rtol=1e-4)
        attention_layers = [i for i, k in enumerate(be.rt.arch.kinds) if k == "attention"]
        for kc, i in zip(e.ks, attention_layers, strict=True):
            keys = cache.layers[i].keys  # (3, kv_heads, 11, head_dim), padded positions included
            torch.testing.assert_close(kc[:3, :, :11] * mask[:, None, :, None], keys * mask[:, None, :, None],
                                       atol=1e-5, rtol=1e-5)
    finally:
        be.release()


@pytest.mark.parametrize("attention", ["reduce", "sdpa"])
def test_hybrid_decode_with_the_other_attention_kernels(attention):
    _check(_model(_nemotron()), [5, 11, 2], steps=16, attention=attention)


@pytest.mark.parametrize("options", ["v5", "scan_chunk=fit", "boundary=0+scan_chunk=fit"])
def test_hybrid_build_options_keep_eager_tokens(options):
    # A model chunk of 64 and prompts of at most 11 tokens: "fit" scans in chunks of 16, "model" (v5) in 64,
    # transformers in 64. Block boundaries kept (v5, boundary=0) or moved: the same arithmetic either way.
    _check(_model(_nemotron(chunk_size=64)), [5, 11, 2], steps=8, options=options)


def test_scan_chunk_fits_the_prompt_and_gives_the_same_scan():
    cfg = hf_mamba.MambaCfg(heads=4, head_dim=3, groups=2, state=5, conv_kernel=4, chunk=128, dt_min=0.0, eps=1e-5)
    fit = hf_mamba.MambaCfg(**{**cfg.__dict__, "fit_chunk": True})
    assert [hf_mamba.scan_chunk(s, cfg) for s in (1, 16, 300)] == [128, 128, 128]
    assert [hf_mamba.scan_chunk(s, fit) for s in (1, 16, 17, 33, 100, 128, 300)] == [16, 16, 32, 64, 128, 128, 128]
    small = hf_mamba.MambaCfg(**{**fit.__dict__, "chunk": 8})
    assert hf_mamba.scan_chunk(3, small) == 8 and hf_mamba.scan_chunk(100, small) == 8
    g = torch.Generator().manual_seed(3)
    b, s = 2, 21  # one chunk of 32 when fitted, one chunk of 128 (107 positions of padding) otherwise
    args = (torch.randn(b, s, 4, 3, generator=g), torch.randn(b, s, 4, generator=g), -torch.rand(4, generator=g) - 0.1,
            torch.randn(b, s, 2, 5, generator=g), torch.randn(b, s, 2, 5, generator=g), torch.randn(4, generator=g),
            torch.randn(4, generator=g))
    y0, f0 = hf_mamba.chunk_scan(*args, cfg)
    y1, f1 = hf_mamba.chunk_scan(*args, fit)
    torch.testing.assert_close(y1, y0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(f1, f0, atol=1e-5, rtol=1e-5)


def test_prompt_shorter_than_the_conv_window_and_one_chunk():
    _check(_model(_nemotron("*M-M", chunk_size=8)), [1, 3], steps=6)


def test_states_are_fixed_size_per_bucket_and_mlp_only_layers_keep_none():
    model = _model(_nemotron())
    be = StaticGraphBackend(model, 3, 20)
    try:
        e = be.entry
        assert len(e.ks) == 2 and len(e.convs) == 3 and len(e.ssms) == 3  # "M*-M-*M": 2 attention, 3 Mamba
        assert e.convs[0].shape == (4, 8 * 8 + 2 * 2 * 16, 4)  # bucket 4, conv_dim, kernel
        assert e.ssms[0].shape == (4, 8, 8, 16) and e.ssms[0].dtype == torch.float32
        assert "Mamba conv/SSM states" in be.describe()
    finally:
        be.release()
    longer = StaticGraphBackend(model, 3, 200)
    try:
        assert longer.entry.ssms[0].shape == e.ssms[0].shape  # independent of the length
        assert longer.entry.ks[0].shape[2] > e.ks[0].shape[2]
    finally:
        longer.release()
    arch = hf_graphs._Arch(model)
    per_mamba = (64 + 64) * 4 * 4 + 8 * 8 * 16 * 4  # conv window (fp32 model) + fp32 SSM state
    assert arch.state_bytes_per_sequence() == 3 * per_mamba
    assert arch.cache_bytes_per_sequence(32) == 2 * 2 * 2 * 16 * 4 * 32 + 3 * per_mamba


def test_padded_prefill_for_capture_gives_the_same_results():
    check_padded_prefill(_model(_nemotron()), steps=8)


@pytest.mark.parametrize("s", [11, 4, 3], ids=["three-chunks", "one-full-chunk", "one-padded-chunk"])
def test_chunk_scan_equals_the_recurrence(s):
    # The chunked form and the token-by-token recurrence are the same linear system (a single chunk skips
    # the recurrence between chunks).
    cfg = hf_mamba.MambaCfg(heads=4, head_dim=3, groups=2, state=5, conv_kernel=4, chunk=4, dt_min=0.0, eps=1e-5)
    g = torch.Generator().manual_seed(0)
    b = 2
    xs = torch.randn(b, s, 4, 3, generator=g)
    dt = torch.randn(b, s, 4, generator=g)
    a = -torch.rand(4, generator=g) - 0.1
    bm, cm = torch.randn(b, s, 2, 5, generator=g), torch.randn(b, s, 2, 5, generator=g)
    d, dt_bias = torch.randn(4, generator=g), torch.randn(4, generator=g)
    y, final = hf_mamba.chunk_scan(xs, dt, a, bm, cm, d, dt_bias, cfg)
    h = torch.zeros(b, 4, 3, 5)
    step_dt = torch.nn.functional.softplus(dt + dt_bias)
    for t in range(s):
        bh = bm[:, t].repeat_interleave(2, dim=1)  # (b, heads, state)
        ch = cm[:, t].repeat_interleave(2, dim=1)
        decay = torch.exp(step_dt[:, t] * a)[:, :, None, None]
        h = h * decay + step_dt[:, t][:, :, None, None] * xs[:, t][..., None] * bh[:, :, None, :]
        y_t = (h * ch[:, :, None, :]).sum(-1) + d[:, None] * xs[:, t]
        torch.testing.assert_close(y[:, t], y_t, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(final, h, atol=1e-5, rtol=1e-5)


def test_unsupported_hybrid_layers_raise_not_implemented():
    from transformers import NemotronHConfig

    cfg = NemotronHConfig(vocab_size=64, hidden_size=32, hybrid_override_pattern="ME", n_routed_experts=4,
                          num_experts_per_tok=2, moe_intermediate_size=16, moe_shared_expert_intermediate_size=16,
                          mamba_num_heads=4, mamba_head_dim=8, n_groups=1, ssm_state_size=8, num_attention_heads=2,
                          num_key_value_heads=1, head_dim=16)
    model = _model(cfg)
    with pytest.raises(NotImplementedError, match="moe"):
        StaticGraphBackend(model, 1, 16)


def test_blocks_trace_as_whole_graphs_for_torch_compile():
    # One graph per block (captured as a CUDA graph): attention, Mamba step and prefill, MLP.
    check_whole_graph_tracing(_model(_nemotron()), [5, 11, 2])
