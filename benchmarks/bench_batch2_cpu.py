"""Why batch 2 can decode slower than batch 1 and 4 on CPU: time the pieces of one decode step per batch size.

Prints, for batch 1, 2, 3 and 4 on the embedded Gemma 3 270M: a full decode step (model forward with a KV
cache, greedy pick) and the step's largest matmul alone, the lm_head projection (B×640 @ 640×262144),
in bf16 and in float32; then the lab's own transformers engine at batch 1, 2 and 4, with one prompt
repeated and with two prompts of different lengths (the padded path). Short on purpose (about a
minute on 2 cores):

    python benchmarks/bench_batch2_cpu.py [--steps 12]
"""

from __future__ import annotations

import argparse
import statistics
import time


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up: first call picks kernels
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    """Run the measurements and print one line per batch size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12, help="timed decode steps per batch size")
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM

    from tui_lab.models import materialize

    path = materialize("embedded")
    print(f"torch {torch.__version__} · threads {torch.get_num_threads()} · "
          f"mkldnn {torch.backends.mkldnn.is_available()} · bf16 fast path "
          f"{getattr(torch.backends.mkldnn, 'is_bf16_supported', lambda: 'n/a')()}")
    for dtype in (torch.bfloat16, torch.float32):
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval()
        head = model.get_output_embeddings().weight
        print(f"\n{str(dtype).removeprefix('torch.')}: lm_head {tuple(head.shape)}")
        print(f"{'batch':>5} {'decode step ms':>15} {'per row ms':>11} {'lm_head ms':>11}")
        for batch in (1, 2, 3, 4):
            ids = torch.full((batch, 8), 100, dtype=torch.long)
            with torch.inference_mode():
                out = model(input_ids=ids, use_cache=True)
                cache = out.past_key_values
                nxt = out.logits[:, -1].argmax(-1, keepdim=True)

                def step(state={"cache": cache, "nxt": nxt}, model=model):  # noqa: B006 - carries the KV cache
                    o = model(input_ids=state["nxt"], past_key_values=state["cache"], use_cache=True)
                    state["cache"] = o.past_key_values
                    state["nxt"] = o.logits[:, -1].argmax(-1, keepdim=True)

                step_ms = _median_ms(step, args.steps)
                hidden = torch.randn(batch, head.shape[1], dtype=dtype)
                head_ms = _median_ms(lambda h=hidden, w=head: h @ w.T, args.steps)
            print(f"{batch:>5} {step_ms:>15.1f} {step_ms / batch:>11.1f} {head_ms:>11.1f}")

    from tui_lab.engines import SamplingParams, create_engine
    from tui_lab.lab.run import execute_run, make_requests

    engine = create_engine("transformers", model="embedded", device="cpu")
    engine.load(None)
    sampling = SamplingParams(max_new_tokens=16)
    mixed = ["The future of AI is",
             "Explain in detail how the attention mechanism of a transformer language model works, step by step:"]
    print("\nthe lab's engine, 16 new tokens: TPOT p50 ms")
    print(f"{'batch':>5} {'same prompt':>12} {'mixed (padded)':>15}")
    try:
        for batch in (1, 2, 4):
            same = execute_run(engine, make_requests(mixed[:1], batch), sampling).to_dict()["summary"]["tpot_s"]["p50"]
            pad = execute_run(engine, make_requests(mixed, batch), sampling).to_dict()["summary"]["tpot_s"]["p50"]
            print(f"{batch:>5} {same * 1000:>12.1f} {pad * 1000:>15.1f}")
    finally:
        engine.unload()


if __name__ == "__main__":
    main()
