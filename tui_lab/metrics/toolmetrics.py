"""One trace, several tools' numbers: Little's law, coordinated omission, tool definitions, energy, cost.

Pure functions of ``RequestTrace`` lists (``t_send`` and each output event's time and token count).
The lab's own definitions are METRICS.md's (``tui_lab.metrics.latency``); the others reproduce how
well-known benchmark tools define their "ITL", "TPOT" and throughput, so a learner can see why two
tools report different numbers for one run. Each definition names where it comes from.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from tui_lab.formatting import fixed
from tui_lab.metrics.latency import RequestTrace, e2e, itl_samples, output_throughput, tpot, ttft
from tui_lab.metrics.percentiles import summarize

# ------------------------------------------------------------------------------------------- queues


def poisson_arrivals(n: int, rate: float, seed: int = 0) -> list[float]:
    """Offsets (s, from 0) of ``n`` arrivals of a Poisson process of ``rate`` per second."""
    if n < 0 or rate <= 0:
        raise ValueError("n must be >= 0 and rate > 0")
    rng = random.Random(seed)
    t, out = 0.0, []
    for _ in range(n):
        out.append(t)
        t += rng.expovariate(rate)
    return out


@dataclass(frozen=True)
class LittleCheck:
    """Little's law on one run: the requests in the system, measured, against what the settings predict.

    Measured over the window from the first send to the last finish, L (time-averaged requests in the
    system) equals λ·W with λ = completions / window: that identity cannot fail, so it checks nothing.
    The check is against the settings instead. Open loop: L should come out at the *offered* rate times
    the measured W; it falls short when the engine could not keep up (the window stretches, fewer
    requests per second finish than were offered). Closed loop: L should come out at the number of
    users; it falls short when users sit idle between an answer and their next send, or when the last
    round has fewer requests than users.
    """

    arrival_rate: float
    """λ measured: completed requests / the window from the first send to the last finish."""
    mean_time_in_system_s: float
    """W: mean of (last token − send) over completed requests."""
    mean_in_system: float
    """L measured: ∫ (requests sent and not finished) dt / window (= λ·W over that window)."""
    predicted_in_system: float | None
    """L from the settings: offered rate × W (open loop) or the number of users (closed loop)."""
    offered_rate: float | None = None
    users: int | None = None

    @property
    def ratio(self) -> float:
        """L measured / L predicted from the settings: 1.0 when the run behaved as configured."""
        return self.mean_in_system / self.predicted_in_system if self.predicted_in_system else math.nan

    def to_dict(self) -> dict:
        """Plain-JSON form (with the ratio)."""
        return {**asdict(self), "ratio": self.ratio}


def _spans(traces: Sequence[RequestTrace]) -> list[tuple[float, float]]:
    spans = []
    for tr in traces:
        end = tr.last_token_time
        if end is not None and not math.isnan(tr.t_send):
            spans.append((tr.t_send, end))
    return spans


def little_check(traces: Sequence[RequestTrace], offered_rate: float | None = None,
                 users: int | None = None) -> LittleCheck | None:
    """L, λ and W from one run's traces, and L as ``offered_rate`` (open loop) or ``users`` (closed loop)
    predict it; None without a finished request or with a zero-length window."""
    spans = _spans(traces)
    if not spans:
        return None
    start = min(s for s, _ in spans)
    end = max(e for _, e in spans)
    window = end - start
    if window <= 0:
        return None
    w = sum(e - s for s, e in spans) / len(spans)
    area = sum(e - s for s, e in spans)
    if offered_rate is not None:
        predicted: float | None = offered_rate * w
    elif users is not None:
        predicted = float(users)
    else:
        predicted = None
    return LittleCheck(len(spans) / window, w, area / window, predicted, offered_rate, users)


def max_in_system(traces: Sequence[RequestTrace]) -> int:
    """The largest number of requests sent and not yet finished at one moment."""
    edges = sorted([(s, 1) for s, _ in _spans(traces)] + [(e, -1) for _, e in _spans(traces)],
                   key=lambda x: (x[0], x[1]))
    now = best = 0
    for _, d in edges:
        now += d
        best = max(best, now)
    return best


@dataclass(frozen=True)
class OmissionCheck:
    """What a closed loop hides: latency from each request's *intended* send time vs from its actual one."""

    n: int
    measured_p50_s: float | None
    measured_p99_s: float | None
    intended_p50_s: float | None
    intended_p99_s: float | None
    mean_send_delay_s: float
    measured_p90_s: float | None = None
    intended_p90_s: float | None = None
    """Tails are reported by the lab's rule (p90 from 5 samples, p99 from 100): None below it."""
    """How late, on average, the closed loop sent a request after the schedule said it arrived."""

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        return asdict(self)


def coordinated_omission(traces: Sequence[RequestTrace], intended_offsets: Sequence[float]) -> OmissionCheck:
    """Compare E2E from actual sends with E2E from an open-loop schedule of the same requests.

    ``intended_offsets[i]`` is when request ``i`` would have arrived (seconds after the first send).
    A closed loop waits for a free slot before sending, so its measured latencies leave that wait out;
    a user arriving on schedule sees it. Requests without a finish are left out of both.
    """
    if not traces:
        return OmissionCheck(0, None, None, None, None, 0.0)  # no requests: nothing to compare
    t0 = min(tr.t_send for tr in traces if not math.isnan(tr.t_send))
    measured, intended, delays = [], [], []
    for tr, off in zip(traces, intended_offsets, strict=False):
        end = tr.last_token_time
        if end is None or math.isnan(tr.t_send):
            continue
        # A request sent late by ``delay`` would have waited that long for a user arriving on schedule;
        # one sent early (the loop is faster than the schedule) hides nothing.
        delay = max(0.0, tr.t_send - (t0 + off))
        measured.append(end - tr.t_send)
        intended.append(end - tr.t_send + delay)
        delays.append(delay)
    n = len(measured)
    m, i = summarize(measured), summarize(intended)
    return OmissionCheck(n, m.p50, m.p99, i.p50, i.p99, sum(delays) / n if n else 0.0, m.p90, i.p90)


# -------------------------------------------------------------------------------- tools' definitions


def _gaps(tr: RequestTrace) -> list[tuple[float, int]]:
    """(gap to the previous event, tokens in this event) for every event after the first."""
    times, counts = tr.event_times, tr.event_tokens
    return [(times[i] - times[i - 1], counts[i]) for i in range(1, len(times))]


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


@dataclass(frozen=True)
class ToolNumbers:
    """One tool's "ITL", "TPOT" and output throughput for a run (seconds, tokens/s; None if undefined)."""

    tool: str
    itl_mean_s: float | None
    itl_p99_s: float | None
    tpot_mean_s: float | None
    throughput_tok_s: float | None
    definition: str
    source: str

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        return asdict(self)


TOOL_SOURCES = {
    "lab": "METRICS.md (this project): ITL per token event (a k-token chunk is one gap), TPOT per request, "
           "Σn / (last token − first send)",
    "vllm": "vLLM 0.32, vllm/benchmarks/serve.py calculate_metrics (itls += output.itl; tpot per request)",
    "aiperf": "AIPerf docs/metrics_reference.md (ai-dynamo/aiperf, 2025): ITL, Inter Chunk Latency",
    "guidellm": "guidellm (vllm-project/guidellm) benchmark statistics: time per output token incl. TTFT",
    "llmperf": "LLMPerf token_benchmark_ray.py: inter_token_latency = Σ time_to_next_token / output tokens",
}


def tool_numbers(traces: Sequence[RequestTrace], weighting: str = "request") -> list[ToolNumbers]:
    """Each tool's numbers for the same traces. ``weighting`` ("request" or "token") applies to the
    lab's TPOT row only: request-weighted averages per-request TPOTs, token-weighted weighs each
    request by its decode tokens (equal to total decode time / total decode tokens)."""
    if weighting not in ("request", "token"):
        raise ValueError("weighting is 'request' or 'token'")
    done = [tr for tr in traces if tr.output_tokens >= 1]
    thr = output_throughput(list(done)) if done else None
    rows: list[ToolNumbers] = []

    # Lab (METRICS.md): one gap per token event; a chunk of k tokens is one gap (the engine gave no finer timing).
    per_event = itl_samples(done)
    tpots = [(t, tr.output_tokens - 1) for tr in done if (t := tpot(tr)) is not None]
    if weighting == "request":
        lab_tpot = _mean([t for t, _ in tpots])
    else:
        w = sum(n for _, n in tpots)
        lab_tpot = sum(t * n for t, n in tpots) / w if w else None
    rows.append(ToolNumbers("lab", _mean(per_event), summarize(per_event).p99, lab_tpot, thr,
                            f"ITL per token event; TPOT {weighting}-weighted", TOOL_SOURCES["lab"]))

    # vLLM bench serve: ITL pooled over chunk gaps (one gap per streamed chunk, whatever it holds).
    chunk = [g for tr in done for g, _ in _gaps(tr)]
    rows.append(ToolNumbers("vllm bench serve", _mean(chunk), summarize(chunk).p99, _mean([t for t, _ in tpots]),
                            thr, "ITL = pooled chunk gaps; TPOT per request, excl. 1st token", TOOL_SOURCES["vllm"]))

    # AIPerf: ITL per request = (latency − TTFT)/(OSL − 1) (= the lab's TPOT); chunk gaps are "ICL".
    icl = _mean([g for tr in done for g, _ in _gaps(tr)])
    icl_text = fixed(None if icl is None else icl * 1000, "{:.1f} ms", "n/a")
    rows.append(ToolNumbers("AIPerf", _mean([t for t, _ in tpots]), summarize([t for t, _ in tpots]).p99,
                            _mean([t for t, _ in tpots]), thr, f"ITL per request; ICL mean {icl_text}",
                            TOOL_SOURCES["aiperf"]))

    # guidellm: TPOT = latency / output tokens (TTFT included), aggregated over tokens.
    n_all = sum(tr.output_tokens for tr in done)
    lat_all = sum(e2e(tr) or 0.0 for tr in done)
    g_tpot = lat_all / n_all if n_all else None
    g_itl_num = sum((e2e(tr) or 0.0) - (ttft(tr) or 0.0) for tr in done)
    g_itl_den = sum(tr.output_tokens - 1 for tr in done)
    rows.append(ToolNumbers("guidellm", g_itl_num / g_itl_den if g_itl_den else None, None, g_tpot, thr,
                            "TPOT incl. TTFT, token-weighted", TOOL_SOURCES["guidellm"]))

    # LLMPerf: per-request E2E / output tokens, averaged over requests.
    ll = [(e2e(tr) or 0.0) / tr.output_tokens for tr in done]
    rows.append(ToolNumbers("LLMPerf", _mean(ll), summarize(ll).p99, _mean(ll), thr,
                            "ITL = E2E / output tokens per request", TOOL_SOURCES["llmperf"]))
    return rows


# ------------------------------------------------------------------------------ export compatibility


def parse_goodput(text: str) -> dict[str, float]:
    """vLLM bench's ``--goodput`` syntax: ``ttft:MS tpot:MS e2el:MS`` (commas also accepted) → ms by key."""
    out: dict[str, float] = {}
    for pair in text.replace(",", " ").split():
        key, sep, value = pair.partition(":")
        if not sep or key not in ("ttft", "tpot", "e2el"):
            raise ValueError(f"goodput takes KEY:MS pairs with keys ttft, tpot, e2el (got {pair!r})")
        try:
            ms = float(value)
        except ValueError:
            raise ValueError(f"goodput value of {key} must be milliseconds, got {value!r}") from None
        if ms <= 0:
            raise ValueError(f"goodput limit of {key} must be positive (got {ms})")
        out[key] = ms
    if not out:
        raise ValueError("goodput needs at least one KEY:MS pair, e.g. ttft:500,tpot:50")
    return out


def _good(tr: RequestTrace, slo_ms: Mapping[str, float]) -> bool:
    checks = {"ttft": ttft(tr), "tpot": tpot(tr), "e2el": e2e(tr)}
    for key, limit in slo_ms.items():
        value = checks[key]
        if key == "tpot" and value is None and tr.output_tokens == 1:
            continue  # one token: no decode to judge (vLLM counts tpot 0 for it)
        if value is None or value * 1000 > limit:
            return False
    return True


def vllm_bench_json(traces: Sequence[RequestTrace], goodput_ms: Mapping[str, float] | None = None,
                    percentiles: Sequence[float] = (99,)) -> dict:
    """A result dict with the field names ``vllm bench serve --save-result`` writes (vLLM 0.32).

    ITL there is pooled over chunk gaps (``itls``), TPOT per request excluding the first token.
    """
    done = [tr for tr in traces if tr.output_tokens >= 1]
    starts = [tr.t_send for tr in traces if not math.isnan(tr.t_send)]
    ends = [tr.last_token_time for tr in done if tr.last_token_time is not None]
    duration = (max(ends) - min(starts)) if ends and starts else 0.0
    out_lens = [tr.output_tokens for tr in done]
    in_lens = [tr.prompt_tokens for tr in done]
    ttfts = [ttft(tr) or 0.0 for tr in done]
    tpots = [tpot(tr) or 0.0 for tr in done]
    itls = [[g for g, _ in _gaps(tr)] for tr in done]
    lat = [e2e(tr) or 0.0 for tr in done]
    per_s = (lambda x: x / duration) if duration > 0 else (lambda x: 0.0)
    result: dict = {
        "duration": duration, "completed": len(done), "failed": len(traces) - len(done),
        "total_input_tokens": sum(in_lens), "total_output_tokens": sum(out_lens),
        "request_throughput": per_s(len(done)),
        "request_goodput": per_s(sum(_good(tr, goodput_ms) for tr in done)) if goodput_ms else None,
        "output_throughput": per_s(sum(out_lens)),
        "total_token_throughput": per_s(sum(in_lens) + sum(out_lens)),
        "input_lens": in_lens, "output_lens": out_lens, "ttfts": ttfts, "itls": itls, "latencies": lat,
    }
    for name, values in (("ttft", ttfts), ("tpot", tpots), ("itl", [g for xs in itls for g in xs]), ("e2el", lat)):
        ms = sorted(v * 1000 for v in values)
        result[f"mean_{name}_ms"] = sum(ms) / len(ms) if ms else 0.0
        result[f"median_{name}_ms"] = _plain_pct(ms, 50)
        mean = result[f"mean_{name}_ms"]
        result[f"std_{name}_ms"] = math.sqrt(sum((v - mean) ** 2 for v in ms) / len(ms)) if ms else 0.0
        for p in percentiles:
            result[f"p{p:g}_{name}_ms"] = _plain_pct(ms, p)
    return result


def _plain_pct(sorted_ms: Sequence[float], p: float) -> float:
    """numpy's default (linear) percentile, as vLLM uses, without numpy."""
    if not sorted_ms:
        return 0.0
    k = (len(sorted_ms) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return sorted_ms[lo] + (sorted_ms[hi] - sorted_ms[lo]) * (k - lo)


# --------------------------------------------------------------------------- reasoning, energy, cost


def think_section(texts: Sequence[str], open_tag: str = "<think>",
                  close_tag: str = "</think>") -> tuple[int | None, int, int]:
    """Where a reply's think section lies among its events: ``(answer, first, end)``.

    ``answer`` is the index of the first event of the answer (None while the reply is still thinking);
    the think section is events ``first`` to ``end - 1`` (``first == end``: there is none).

    Only a tagged section counts: a reply that opens with ``open_tag`` (whitespace before it allowed), or
    one that shows ``close_tag`` with no ``open_tag`` before it (its chat template put the opening tag in
    the prompt). Whitespace before an answer is not thinking: a reply with no section starts its answer at
    its first event. After the closing tag the answer starts at the first event with visible text; an
    event that carries both the closing tag and answer text is the answer's first event.
    """
    cumulative: list[str] = []
    joined = ""
    for piece in texts:
        joined += piece
        cumulative.append(joined)
    opens = joined.lstrip().startswith(open_tag)
    closed_at = next((i for i, text in enumerate(cumulative) if close_tag in text), None)
    if closed_at is not None and not opens and open_tag in cumulative[closed_at].split(close_tag, 1)[0]:
        closed_at = None  # a section opened after answer text had begun: that text was the answer
    if not opens and closed_at is None:
        return (0 if texts else None), 0, 0
    first = next((i for i, text in enumerate(cumulative) if open_tag in text), 0) if opens else 0
    if closed_at is None:
        return None, first, len(texts)
    for i in range(closed_at, len(texts)):
        if cumulative[i].split(close_tag, 1)[1].strip():
            return i, first, i if i == closed_at else closed_at + 1
    return None, first, closed_at + 1


def answer_start(texts: Sequence[str], open_tag: str = "<think>", close_tag: str = "</think>") -> int | None:
    """Index of the first event of the answer (0 without a think section); None while still thinking."""
    return think_section(texts, open_tag, close_tag)[0]


def time_to_first_answer(tr: RequestTrace, texts: Sequence[str]) -> tuple[float | None, int]:
    """(seconds from send to the first answer event, tokens inside the think section)."""
    answer, first, end = think_section(texts)
    counts = tr.event_tokens
    think = sum(counts[first:end])
    if answer is None:
        return None, think
    return tr.event_times[answer] - tr.t_send, think


def joules_per_token(energy_start_mj: int | None, energy_end_mj: int | None, tokens: int) -> float | None:
    """From NVML's total-energy counter (millijoules since driver load) read before and after a run."""
    if energy_start_mj is None or energy_end_mj is None or tokens <= 0 or energy_end_mj < energy_start_mj:
        return None
    return (energy_end_mj - energy_start_mj) / 1000.0 / tokens


def cost_per_million_tokens(price_per_hour: float, tokens_per_s: float | None) -> float | None:
    """Dollars (or any currency) per 10⁶ output tokens at ``price_per_hour`` for the machine."""
    if tokens_per_s is None or tokens_per_s <= 0 or price_per_hour < 0:
        return None
    return price_per_hour / 3600.0 / tokens_per_s * 1e6
