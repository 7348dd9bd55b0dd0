"""The ``inference-lab`` command: the TUI by default, and headless ``run``, ``sweep``, ``experiment`` and ``models``.

Every command is a front end over the lab's experiments (``tui_lab.lab.inventory``) and their one runner
(``tui_lab.lab.runner``): ``run`` is ``generate`` (or ``load_run`` with ``--concurrency``/``--request-rate``),
``sweep`` is ``batch_sweep``, ``length_sweep``, ``sampling_grid`` or ``load_sweep``, and ``experiment NAME``
runs any of them. Their flags are built from the experiments' parameters and the engine flags from the
engines' option declarations, so the CLI, the Controls and lesson presets accept and refuse the same values.

Nothing heavy is imported here: engines (torch, transformers, vLLM) are created only when a command runs, and
the TUI (Textual) only when it opens, so ``inference-lab --help`` is instant. Exit statuses: 0 when everything
was measured; 1 when some of it could not be (a request failed, a variant could not run); 2 for a mistake in
the command or a problem the lab can name (one line, ``inference-lab: error: ...``); 130 after Ctrl-C, with
what was measured so far.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import NoReturn, TextIO

from tui_lab.engines.base import Engine, EngineInfo
from tui_lab.engines.events import RequestFinished, StreamEvent, TokenEvent, TokenStep
from tui_lab.engines.options import ENGINE_NAMES, TEST_ENGINES, all_options, check_options, engine_options
from tui_lab.errors import EngineUnavailable, InvalidInput, LabError, error_text
from tui_lab.lab.experiment import Experiment, Params, PartialItem, Progress, Result, RunContext
from tui_lab.params import Param, Value

PROG = "inference-lab"
EXIT_OK = 0
EXIT_INCOMPLETE = 1
"""Something the command asked for could not be measured (a request failed, a variant could not run)."""
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
OTHER_REQUESTS_SHOWN = 8
"""After a batch run, how many requests besides r0 have their text printed (``--json`` has them all)."""
SWEEP_EXPERIMENTS = ("batch_sweep", "length_sweep", "sampling_grid", "load_sweep")
RUN_EXPERIMENTS = ("generate", "load_run")


class UsageError(Exception):
    """A command-line mistake caught by argparse (unknown flag, bad number)."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting, so every error is one line."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


# ---------------------------------------------------------------------------------------- flags from Params


def _metavar(p: Param) -> str:
    if p.choices:
        return "{" + ",".join(p.choices) + "}"
    return {"int": "N", "number": "X", "int list": "LIST", "number list": "LIST", "choice list": "LIST"}.get(
        p.type, p.name.upper())


def add_param_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup, params: Iterable[Param],
                    seen: set[str] | None = None, hidden: Iterable[str] = ()) -> None:
    """One flag per parameter (``--max-tokens`` for ``max_new_tokens``): unset flags leave the parameter alone."""
    seen = set() if seen is None else seen
    hide = set(hidden)
    for p in params:
        if p.name in seen:
            continue
        seen.add(p.name)
        kind = f"{p.type} {p.limits}".strip()
        shown = f"{p.help} ({kind})".replace("%", "%%")
        help_text = argparse.SUPPRESS if p.name in hide else shown
        if p.type == "bool":
            parser.add_argument(p.cli_flag, dest=p.name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=help_text)
        elif p.type == "text list":
            parser.add_argument(p.cli_flag, dest=p.name, action="append", default=argparse.SUPPRESS, metavar="TEXT",
                                help=help_text)
        else:
            parser.add_argument(p.cli_flag, dest=p.name, default=argparse.SUPPRESS, metavar=_metavar(p),
                                help=help_text)


def given_params(args: argparse.Namespace, params: Iterable[Param]) -> dict[str, Value]:
    """The parameters whose flags were given, each read from its text by its ``Param``."""
    out: dict[str, Value] = {}
    for p in params:
        if hasattr(args, p.name):
            value = getattr(args, p.name)
            out[p.name] = p.from_text(value) if isinstance(value, str) else value
    return out


def _params_of(names: Sequence[str]) -> list[Param]:
    """Every parameter of the experiments ``names`` (the first one's where two share a name)."""
    from tui_lab.lab.inventory import get

    seen: dict[str, Param] = {}
    for name in names:
        for p in get(name).params:
            seen.setdefault(p.name, p)
    return list(seen.values())


# ------------------------------------------------------------------------------------------- engine flags

_TEST_OPTIONS = ("fail_at_batch", "real_time")


def add_engine_flags(parser: argparse.ArgumentParser) -> None:
    """``--engine`` and every engine's options (from their declarations), ``-q``."""
    g = parser.add_argument_group("engine and model (options apply to the engine that declares them)")
    g.add_argument("--engine", default=argparse.SUPPRESS, metavar="{" + ",".join(ENGINE_NAMES) + "}",
                   help="inference engine (default: transformers)")
    add_param_flags(g, all_options().values(), hidden=_TEST_OPTIONS)
    g.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="no model-loading progress on stderr")


def engine_name(args: argparse.Namespace) -> str:
    """The engine the flags name (transformers unless ``--engine`` says otherwise)."""
    name: str = getattr(args, "engine", "transformers")
    if name not in ENGINE_NAMES + TEST_ENGINES:
        raise InvalidInput(f"unknown engine {name!r}; choose one of: {', '.join(ENGINE_NAMES)}")
    return name


def engine_flags(args: argparse.Namespace) -> tuple[str, dict[str, object]]:
    """(engine, its options) from the flags; an option of another engine is refused in one line."""
    name = engine_name(args)
    own = {p.name for p in engine_options(name)}
    given = given_params(args, all_options().values())
    for option in given:
        if option not in own:
            owners = [e for e in ENGINE_NAMES if any(p.name == option for p in engine_options(e))]
            flag = all_options()[option].cli_flag
            raise InvalidInput(f"{flag} applies only to --engine {' or '.join(owners)} (this run uses {name})")
    return name, check_options(name, given)


def _quiet(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "quiet", False))


def create_and_load(args: argparse.Namespace) -> tuple[Engine, EngineInfo]:
    """Create the engine the flags name and load it, reporting progress on stderr."""
    from tui_lab.lab.runner import load_engine

    name, options = engine_flags(args)
    if name in ("transformers", "vllm"):
        from tui_lab.models import resolve

        resolve(str(options.get("model") or "embedded"))  # an unknown model is refused before anything loads
    progress = None if _quiet(args) else _Progress(sys.stderr)
    engine, info = load_engine(name, options, progress)
    if progress is not None:
        progress.done(info)
    return engine, info


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
        print(f"loading: {stage}{suffix} [{self._clock() - self._started:.1f} s]", file=self.stream, flush=True)

    def done(self, info: EngineInfo) -> None:
        """One line naming what was loaded, and how long loading took."""
        elapsed = self._clock() - self._started
        print(f"loaded {info.model} on {info.device} ({info.dtype}) with {info.engine} in {elapsed:.1f} s",
              file=self.stream, flush=True)
        for note in info.notes:
            print(f"note: {note}", file=self.stream, flush=True)


# ------------------------------------------------------------------------------------------------ the parser


def _output_flags(parser: argparse.ArgumentParser, out: bool) -> None:
    parser.add_argument("--json", action="store_true", help="print exactly one JSON document on stdout")
    parser.add_argument("--record", default=None, metavar="FILE",
                        help="also write a trace of every run (FILE.trace.json.gz: replay it with --engine replay "
                        "--trace FILE; tui_lab.lab.trace_export turns it into a Perfetto timeline)")
    if out:
        parser.add_argument("--out", default=None, metavar="FILE",
                            help="also write the result to FILE.json or FILE.csv")


def build_parser() -> argparse.ArgumentParser:
    """The full ``inference-lab`` parser: the lab's own flags, then ``run``, ``sweep``, ``experiment``, ..."""
    parser = _Parser(
        prog=PROG,
        description="A terminal lab that teaches how LLM inference behaves on real hardware. "
        "Without a command it opens the lab (TUI) with the engine and model the flags name.",
    )
    parser.add_argument("--lesson", default=None, metavar="NN", help="open this lesson (e.g. 02)")
    parser.add_argument("--serve", action="store_true", help="serve the lab in a browser tab (textual-serve)")
    add_engine_flags(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser(
        "run", help="generate and print per-token timing (or one load with --concurrency / --request-rate)",
        description="Generate one batch, streaming r0's text, then print TTFT/E2E/TPOT/ITL and throughput "
        "(the generate experiment). With --concurrency C (closed loop) or --request-rate R (open loop) it runs "
        "one load on a serving engine instead (the load_run experiment).",
    )
    add_engine_flags(run)
    g = run.add_argument_group("what to run (the generate and load_run experiments' parameters)")
    add_param_flags(g, [p for p in _params_of(RUN_EXPERIMENTS) if p.name != "mode"])
    _output_flags(run, out=False)
    run.add_argument("--vllm-bench-json", default=None, metavar="FILE",
                     help="also write the run as a vllm-bench-serve result JSON (its field names)")
    run.add_argument("--goodput", type=_goodput, default=None, metavar="SLOS",
                     help="SLOs for request_goodput in vLLM's syntax, e.g. ttft:500,tpot:50,e2el:2000 (ms)")
    run.set_defaults(func=cmd_run)

    sweep = sub.add_parser(
        "sweep", help="batch-size / length / sampling / load sweep",
        description="Repeat a workload over batch sizes (default), output lengths (--lengths), a temperature × "
        "top-p grid (--temperatures/--top-ps), concurrencies or request rates (--concurrencies/--request-rates), "
        "with warm-up runs discarded and a seeded prompt schedule; name the knee and the budget pick.",
    )
    add_engine_flags(sweep)
    g = sweep.add_argument_group("what to sweep (the batch_sweep, length_sweep, sampling_grid and load_sweep "
                                 "experiments' parameters)")
    add_param_flags(g, [p for p in _params_of(("generate", *SWEEP_EXPERIMENTS)) if p.name not in ("axis", "prompt")])
    g.add_argument("--budget-preset", default=None, metavar="NAME",
                   help="a rule-of-thumb budget: chat, rag, summarization, agent (the same as --latency-budget NAME)")
    g.add_argument("--budget-metric", default=None, metavar="KEY",
                   help="what a --latency-budget in seconds limits: ttft|e2e|tpot|itl + _p50|_p90 (default: e2e_p50)")
    _output_flags(sweep, out=True)
    sweep.set_defaults(func=cmd_sweep)

    exp = sub.add_parser(
        "experiment", add_help=False,
        help="run any lab experiment headless (--list names them and their parameters)",
        description="Run one experiment headless: progress on stderr, its view (or --json) on stdout. "
        "'inference-lab experiment NAME --help' lists its parameters with their types, limits and defaults.",
    )
    add_engine_flags(exp)
    exp.add_argument("name", nargs="?", default=None, help="experiment name (see --list)")
    exp.add_argument("-h", "--help", action="store_true", help="show this help; with NAME, NAME's parameters too")
    exp.add_argument("--list", action="store_true", help="list the experiments (or only NAME) with their parameters")
    exp.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                     help="set one of the experiment's parameters (repeatable; lists as comma-separated values; "
                     "'none' where a parameter may be unset)")
    _output_flags(exp, out=True)
    exp.set_defaults(func=cmd_experiment, experiment_parser=exp)

    models = sub.add_parser("models", help="list known models, where they come from, whether and where cached")
    models.add_argument("--cache-dir", default=None, metavar="DIR", help="model cache to inspect")
    models.add_argument("--json", action="store_true", help="print JSON")
    models.set_defaults(func=cmd_models)

    sub.add_parser("bench", help="engine vs model.generate() benchmark (options: inference-lab bench --help)",
                   add_help=False)
    sub.add_parser("serve", help="serve the lab in a browser via textual-serve on 127.0.0.1", add_help=False)
    return parser


# ------------------------------------------------------------------------------------------------- running


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[TextIO]:
    """Send everything written to stdout (also by libraries and child processes) to stderr.

    ``--json`` promises exactly one JSON document on stdout, but engines log (vLLM logs to stdout, and its
    engine core is a child process that inherits fd 1), so fd 1 itself points at stderr until the document
    is ready. Yields the real stdout.
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


class Execution:
    """One experiment run from the command line: the engine, the result, and whether Ctrl-C cut it."""

    def __init__(self, info: EngineInfo | None, result: Result, interrupted: bool) -> None:
        self.info = info
        self.result = result
        self.interrupted = interrupted


def execute(args: argparse.Namespace, experiment: Experiment, given: dict[str, Value],
            sink: Callable[[list[StreamEvent]], None] | None = None,
            partial: Callable[[PartialItem], None] | None = None,
            progress: Callable[[Progress], None] | None = None,
            before: Callable[[EngineInfo | None], None] | None = None, flags: bool = True) -> Execution:
    """Check ``given``, load the engine the flags name (if the experiment needs one), run, unload.

    Runs in a worker thread so Ctrl-C stops the experiment within one step and keeps what was measured.
    ``before(info)`` is called once the engine is loaded, before the first run (a table's header). ``flags``:
    the parameters came from flags, so a refusal names the flag (``--max-tokens``), not the parameter.
    """
    from tui_lab.lab.runner import replayed_params, run_experiment, safe_unload

    params = _in_flag_words(experiment, given) if flags else experiment.validate(given)
    check_before_load(args, experiment, params)
    engine, info = (create_and_load(args) if experiment.needs_engine else (None, None))
    name, options = engine_flags(args)
    try:
        recorded = replayed_params(experiment.name, engine)
        if recorded:  # a replay plays what was recorded unless a flag asks for something else
            params = experiment.validate({**recorded, **given})
        if info is not None:
            _refuse_beyond_context(info.max_context, _longest(params))
        if before is not None:
            before(info)
        def reload() -> Engine:
            return create_and_load(args)[0]

        ctx = RunContext(engine=engine, engine_name=str(info.engine) if info else name, engine_options=options,
                         sink=sink, progress=progress, partial=partial, reload=reload,
                         release=None if engine is None else lambda: safe_unload(ctx.engine),
                         record=bool(getattr(args, "record", None)))
        box: dict[str, object] = {}
        done = threading.Event()

        def work() -> None:
            try:
                box["outcome"] = run_experiment(experiment.name, params, ctx)
            except BaseException as exc:  # noqa: BLE001  (re-raised in the main thread)
                box["error"] = exc
            finally:
                done.set()

        # The main thread waits on an event, not on Thread.join: a join that Ctrl-C interrupts can return
        # at once the next time, while the worker still runs.
        interrupted = False
        threading.Thread(target=work, name=f"experiment-{experiment.name}", daemon=True).start()
        try:
            while not done.wait(0.2):
                pass
        except KeyboardInterrupt:
            interrupted = True
            print(f"\n{PROG}: stopping (partial results follow)", file=sys.stderr)
            ctx.stop.set()
            if ctx.engine is not None:
                with contextlib.suppress(Exception):
                    ctx.engine.cancel()
            done.wait()
    finally:
        safe_unload(ctx.engine if "ctx" in locals() else engine)
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    from tui_lab.lab.runner import Outcome

    outcome = box["outcome"]
    assert isinstance(outcome, Outcome)
    if outcome.result is None:
        raise LabError(outcome.message, outcome.hint or None)
    _write_record(args, outcome)
    return Execution(info, outcome.result, interrupted or _cut_by_ctrl_c(outcome.result))


def _write_record(args: argparse.Namespace, outcome: object) -> None:
    """Write the trace ``--record`` asked for (the runs the experiment made, with what they ran on)."""
    path = getattr(args, "record", None)
    trace = getattr(outcome, "trace", None)
    if not path or trace is None:
        return
    from tui_lab.lab.trace import write_trace

    written = write_trace(path, trace)
    print(f"wrote {written} (trace of {len(trace.runs)} run{'s' if len(trace.runs) != 1 else ''})", file=sys.stderr)


def _cut_by_ctrl_c(result: Result) -> bool:
    """Whether Ctrl-C reached the engine inside a run (it ends that run as "interrupted")."""
    doc = result.to_dict()
    run = doc.get("run")
    return bool(doc.get("interrupted") or doc.get("error") == "interrupted"
                or (isinstance(run, dict) and run.get("error") == "interrupted"))


def _in_flag_words(experiment: Experiment, given: dict[str, Value]) -> Params:
    """``experiment.validate(given)``, its refusal naming the flag (``--max-tokens``) rather than the parameter."""
    try:
        return experiment.validate(given)
    except InvalidInput as exc:
        for p in experiment.params:
            if exc.message.startswith(f"{p.name} ") and p.name in given:
                raise InvalidInput(p.cli_flag + exc.message[len(p.name):], exc.hint) from None
        raise


def check_before_load(args: argparse.Namespace, experiment: Experiment, params: dict[str, Value]) -> None:
    """Refuse what the file system or the model's config can already tell, before a load that takes seconds.

    The output file must be writable (else a sweep's results are lost at the end) and the tokens asked for
    must fit the model's context (read from its config; checked again once loaded).
    """
    out = getattr(args, "out", None)
    if out:
        from tui_lab.lab.export import check_writable, export_format

        export_format(out)
        check_writable(out)
    record = getattr(args, "record", None)
    if record:
        from tui_lab.lab.export import check_writable

        check_writable(record)
    name, options = engine_flags(args)
    if name not in ("transformers", "vllm") or not experiment.needs_engine:
        return
    from tui_lab.models.context import config_max_context

    model = options.get("model")
    _refuse_beyond_context(config_max_context(None if model is None else str(model), _cache_dir(options)),
                           _longest(params))


def _cache_dir(options: dict[str, object]) -> str | None:
    value = options.get("cache_dir")
    return None if value is None else str(value)


def _longest(params: dict[str, Value]) -> int:
    """The most new tokens one request of ``params`` asks for."""
    lengths = params.get("lengths")
    if isinstance(lengths, list) and lengths and all(isinstance(n, int) for n in lengths):
        return max(lengths)
    tokens = params.get("max_new_tokens")
    out = tokens if isinstance(tokens, int) else 0
    from tui_lab.lab.load import parse_lens

    spec = params.get("output_lens")
    if isinstance(spec, str) and spec:
        out = max(parse_lens(spec)[1] or (out,))
    prompt = params.get("input_lens")  # a prompt of that many tokens and its reply share the context
    return out + (max(parse_lens(prompt, "input lengths")[1] or (0,)) if isinstance(prompt, str) and prompt else 0)


def _refuse_beyond_context(max_context: int | None, max_tokens: int) -> None:
    if max_context is not None and max_tokens >= max_context:
        raise InvalidInput(f"max tokens {max_tokens} is beyond the model's context of {max_context} tokens",
                           f"use --max-tokens {max_context // 2} or less")


def _width() -> int:
    return max(60, shutil.get_terminal_size((120, 40)).columns)


def _print_view(result: Result, out: TextIO) -> None:
    from tui_lab.views import render, to_text

    colour = out.isatty() and not os.environ.get("NO_COLOR")
    out.write(to_text(render(result, _width()), _width(), colour=colour))
    out.flush()


def _json(doc: object) -> None:
    from tui_lab.lab.export import to_jsonable

    sys.stdout.write(json.dumps(to_jsonable(doc), indent=2, allow_nan=False) + "\n")
    sys.stdout.flush()


def _finish(execution: Execution, failures: Sequence[str]) -> int:
    """The exit status, after saying on stderr what could not be measured."""
    if execution.interrupted:
        print(f"{PROG}: interrupted — the results are partial", file=sys.stderr)
        return EXIT_INTERRUPTED
    for line in failures:
        print(f"{PROG}: not measured: {line}", file=sys.stderr)
    return EXIT_INCOMPLETE if failures else EXIT_OK


# -------------------------------------------------------------------------------------------------- run


class TokenPrinter:
    """Streams request r0's text as its tokens arrive; notes the other requests' progress.

    Used as the ``sink`` of a run: it receives time-batched event lists.
    """

    def __init__(self, out: TextIO, batch_size: int, first_prompt: str) -> None:
        self.out = out
        self.batch_size = batch_size
        self.finished = 0
        self.tokens = 0
        self._first_done = False
        self._announced = False
        self._started = False
        self._prefix = (f"[r0 of {batch_size}] " if batch_size > 1 else "") + first_prompt

    def __call__(self, events: list[StreamEvent]) -> None:
        if not self._started:
            self._started = True
            self.out.write(self._prefix)
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
        if self._started:
            self.out.write("\n")
            self.out.flush()


def _one_line(text: str, width: int = 100) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _split(args: argparse.Namespace, names: Sequence[str], chosen: str, why: str) -> dict[str, Value]:
    """The parameters of experiment ``chosen`` from the flags; a flag of another of ``names`` is refused."""
    from tui_lab.lab.inventory import get

    own = {p.name for p in get(chosen).params}
    given = given_params(args, _params_of(names))
    for key in given:
        if key not in own:
            flag = next(p.cli_flag for p in _params_of(names) if p.name == key)
            raise InvalidInput(f"{flag} {why}")
    return given


def cmd_run(args: argparse.Namespace) -> int:
    """``inference-lab run``: one batch, streamed, then its figures (or one load with a load flag)."""
    from tui_lab.lab.inventory import get

    if hasattr(args, "concurrency") or hasattr(args, "request_rate"):
        return cmd_load_run(args)
    given = _split(args, RUN_EXPERIMENTS, "generate",
                   "belongs to a load mode: add --concurrency/--request-rate (run) or --concurrencies/"
                   "--request-rates (sweep)")
    prompts = given.get("prompt")
    if isinstance(prompts, list) and "batch_size" not in given:
        given["batch_size"] = len(prompts)
    generate = get("generate")
    params = _in_flag_words(generate, given)
    batch: int = params["batch_size"]
    with stdout_to_stderr() if args.json else contextlib.nullcontext(sys.stdout) as out:
        printer = None if args.json else TokenPrinter(out, batch, params["prompt"][0])
        execution = execute(args, generate, given, sink=printer)
        if printer is not None:
            printer.close()
    from tui_lab.lab.run import RunResult

    result = execution.result
    assert isinstance(result, RunResult) and execution.info is not None
    _write_bench_json(args, result.traces, execution.info)
    if args.json:
        _json(run_document(execution.info, result, batch))
    else:
        _print_run_text(result, execution.info, batch)
    return _finish(execution, _failed_requests(result))


def _failed_requests(result: object) -> list[str]:
    """Why requests of a run failed, each cause once ("3 requests: the server closed the stream")."""
    from tui_lab.lab.run import RunResult

    if not isinstance(result, RunResult) or result.error == "interrupted":
        return []
    causes: dict[str, int] = {}
    for r in result.requests:
        if r.finish_reason == "error" or r.error:
            cause = r.error or "failed"
            causes[cause] = causes.get(cause, 0) + 1
    if result.error and not causes:
        causes[result.error] = len(result.requests)
    return [f"{n} request{'s' if n != 1 else ''}: {cause}" for cause, n in causes.items()]


def run_document(info: EngineInfo, result: object, batch_size: int) -> dict[str, object]:
    """The ``run --json`` document: engine facts, sampling, every request's tokens and the summary."""
    from tui_lab.lab.run import RunResult
    from tui_lab.metrics import METHOD

    assert isinstance(result, RunResult)
    body = result.to_dict()
    return {
        "model": info.model, "engine": info.engine, "device": info.device, "dtype": info.dtype,
        "versions": dict(info.versions), "text_is_meaningful": info.text_is_meaningful,
        "max_context": info.max_context, "notes": list(info.notes), "sampling": result.sampling.to_dict(),
        "batch_size": batch_size, "partial": result.partial, "error": result.error, "wall_s": result.wall_s,
        "requests": body["requests"], "summary": body["summary"], "percentile_method": METHOD,
    }


def _print_run_text(result: object, info: EngineInfo, batch_size: int) -> None:
    from tui_lab.lab.run import RunResult

    assert isinstance(result, RunResult)
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
    _print_view(result, out)
    out.write(f"{info.engine} · {info.model} · {info.device} · {info.dtype}\n")
    out.flush()


def _goodput(text: str) -> dict[str, float]:
    """``--goodput``: vLLM's ``KEY:MS`` pairs (spaces or commas between them)."""
    from tui_lab.metrics.toolmetrics import parse_goodput

    try:
        return parse_goodput(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _write_bench_json(args: argparse.Namespace, traces: Sequence[object], info: EngineInfo) -> None:
    """Write the file ``--vllm-bench-json`` names, with ``--goodput``'s SLOs (nothing when not asked)."""
    path = getattr(args, "vllm_bench_json", None)
    if not path:
        return
    from tui_lab.lab.bench_export import bench_document
    from tui_lab.lab.export import write_json

    written = write_json(os.fspath(path), bench_document(traces, info.to_dict(), args.goodput))  # type: ignore[arg-type]
    print(f"wrote {written}", file=sys.stderr)


def cmd_load_run(args: argparse.Namespace) -> int:
    """``inference-lab run --concurrency C`` / ``--request-rate R``: one load, then its figures."""
    from tui_lab.lab.inventory import get
    from tui_lab.lab.load import LoadRun

    if hasattr(args, "concurrency") and hasattr(args, "request_rate"):
        raise InvalidInput("give either --concurrency (closed loop) or --request-rate (open loop), not both")
    if hasattr(args, "prompt"):
        raise InvalidInput("load modes send the lab's seeded prompt schedule; leave out --prompt")
    given = _split(args, RUN_EXPERIMENTS, "load_run",
                   "is a static batch's: a load mode sets --concurrency or --request-rate instead")
    given["mode"] = "concurrency" if hasattr(args, "concurrency") else "rate"
    _require_serving_engine(args)
    table_out = sys.stderr if args.json else sys.stdout

    def header(info: EngineInfo | None) -> None:
        if info is not None:
            print(f"load · {given['mode']} · {info.engine} · {info.model} · {info.device}", file=table_out,
                  flush=True)

    with stdout_to_stderr() if args.json else contextlib.nullcontext(sys.stdout):
        execution = execute(args, get("load_run"), given, before=header)
    load = execution.result
    assert isinstance(load, LoadRun) and execution.info is not None
    _write_bench_json(args, load.traces, execution.info)
    if args.json:
        _json({"engine": execution.info.to_dict(), **load.to_dict()})
    else:
        _print_view(load, table_out)
    return _finish(execution, _failed_requests(load.run))


def _require_serving_engine(args: argparse.Namespace) -> None:
    name = engine_name(args)
    if name not in ("vllm", "openai", "scripted"):
        raise InvalidInput(
            f"the {name} engine runs static batches: it cannot add a request while others generate",
            "use --engine vllm or --engine openai for load modes (or --batch-size for a static batch)",
        )


# ------------------------------------------------------------------------------------------------ sweep


def _sweep_experiment(args: argparse.Namespace) -> str:
    """Which sweep the flags ask for (one thing at a time)."""
    kinds = [(flag, name) for flag, name, given in (
        ("--lengths", "length_sweep", hasattr(args, "lengths")),
        ("--temperatures/--top-ps", "sampling_grid", hasattr(args, "temperatures") or hasattr(args, "top_ps")),
        ("--concurrencies", "load_sweep", hasattr(args, "concurrencies")),
        ("--request-rates", "load_sweep", hasattr(args, "request_rates")),
        ("--batch-sizes", "batch_sweep", hasattr(args, "batch_sizes")),
    ) if given]
    if len(kinds) > 1:
        raise InvalidInput(f"sweep one thing at a time: {' and '.join(flag for flag, _ in kinds)} were both given")
    return kinds[0][1] if kinds else "batch_sweep"


def _sweep_budget(args: argparse.Namespace, given: dict[str, Value]) -> None:
    """``--budget-preset`` and ``--budget-metric`` are ways of writing ``latency_budget``."""
    if args.budget_preset is not None:
        if "latency_budget" in given:
            raise InvalidInput("give either --latency-budget or --budget-preset, not both")
        given["latency_budget"] = args.budget_preset
    if args.budget_metric is not None:
        seconds = given.get("latency_budget")
        if seconds is None:
            raise InvalidInput("--budget-metric says what a --latency-budget in seconds limits: give both")
        given["latency_budget"] = {args.budget_metric: seconds}


def cmd_sweep(args: argparse.Namespace) -> int:
    """``inference-lab sweep``: points printed as they finish, then the knee and the budget pick."""
    from tui_lab.lab.inventory import get

    name = _sweep_experiment(args)
    names = ("generate", *SWEEP_EXPERIMENTS)
    if name == "sampling_grid":
        # A grid over one axis keeps the other at its single flag value.
        if not hasattr(args, "temperatures"):
            args.temperatures = [getattr(args, "temperature", "0")]
        if not hasattr(args, "top_ps"):
            args.top_ps = [getattr(args, "top_p", "1")]
        for flag in ("temperature", "top_p"):
            if hasattr(args, flag):
                delattr(args, flag)
    if name == "load_sweep":
        _require_serving_engine(args)
    given = _split(args, names, name, f"does not apply to {get(name).title.lower()}")
    if name == "load_sweep":
        given["axis"] = "concurrency" if hasattr(args, "concurrencies") else "rate"
    _sweep_budget(args, given)
    experiment = get(name)
    table_out = sys.stderr if args.json else sys.stdout
    status = _RunStatus(sys.stderr) if sys.stderr.isatty() and not _quiet(args) else None
    columns, cells = _sweep_columns(name)

    def header(info: EngineInfo | None) -> None:
        assert info is not None
        print(f"{experiment.title} · {info.engine} · {info.model} · {info.device}", file=table_out)
        print(_row(columns), file=table_out, flush=True)

    def show(item: PartialItem) -> None:
        if status is not None:
            status.clear()
        print(_row(cells(item)), file=table_out, flush=True)

    with stdout_to_stderr() if args.json else contextlib.nullcontext(sys.stdout):
        execution = execute(args, experiment, given, partial=show, before=header,
                            progress=status)
    if status is not None:
        status.clear()
    result = execution.result
    for line in _sweep_notes(result):
        print(line, file=table_out)
    if args.out:
        _write_out(args.out, result, table_out)
    table_out.flush()
    if args.json:
        _json(result)
    return _finish(execution, [])


def _sweep_columns(name: str) -> tuple[Sequence[str], Callable[[PartialItem], list[str]]]:
    if name == "load_sweep":
        from tui_lab.views.load import LOAD_COLUMNS, load_cells

        return LOAD_COLUMNS, load_cells  # type: ignore[return-value]
    from tui_lab.views.runs import SWEEP_COLUMNS, sweep_cells

    return SWEEP_COLUMNS, sweep_cells  # type: ignore[return-value]


def _sweep_notes(result: Result) -> list[str]:
    from tui_lab.lab.load import THROUGHPUT_NOTE, LoadSweepResult
    from tui_lab.views.runs import SWEEP_THROUGHPUT_NOTE

    if isinstance(result, LoadSweepResult):
        notes = [THROUGHPUT_NOTE, result.cold_note(), result.knee_note(), result.budget_note()]
    else:
        notes = [SWEEP_THROUGHPUT_NOTE, result.knee_note(), result.budget_note()]  # type: ignore[attr-defined]
    return notes + [f"note: {m}" for m in getattr(result, "messages", [])]


_WIDTHS = (24, 11, 11, 11, 11, 11, 11, 14, 14, 0)


def _row(cells: Sequence[str]) -> str:
    parts = [cells[0].ljust(_WIDTHS[0])] + [c.rjust(w) for c, w in zip(cells[1:-1], _WIDTHS[1:-1], strict=False)]
    if cells[-1]:
        parts.append(cells[-1])
    return "  ".join(parts).rstrip()


class _RunStatus:
    """On a terminal, one self-overwriting stderr line saying which run of which point is going."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, progress: Progress) -> None:
        self.stream.write(f"\r\033[K{progress.text} …")
        self.stream.flush()

    def clear(self) -> None:
        """Erase the status line (before a table row is printed)."""
        self.stream.write("\r\033[K")
        self.stream.flush()


def _write_out(out: str, result: Result, table_out: TextIO) -> None:
    from tui_lab.lab.export import export_format, write_csv, write_json, write_with_fallback

    fmt = export_format(out)

    def write(target: Path) -> Path:
        rows = getattr(result, "rows", None)
        if fmt == "csv" and callable(rows):
            return write_csv(target, rows())
        if fmt == "csv":
            return write_csv(target, [result.to_dict()])
        return write_json(target, result)

    path, note = write_with_fallback(out, write)
    if note:
        print(f"{PROG}: {note}", file=sys.stderr)
    print(f"wrote {path}", file=table_out)


# ------------------------------------------------------------------------------------------- experiment


def _experiment_params(pairs: Sequence[str], schema: Sequence[Param]) -> dict[str, Value]:
    """``KEY=VALUE`` pairs as parameters, each value read as its ``Param``'s type (unknown keys kept as text)."""
    by_name = {p.name: p for p in schema}
    params: dict[str, Value] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidInput(f"--param needs KEY=VALUE (got {pair!r})")
        param = by_name.get(key)
        params[key] = param.from_text(value) if param is not None else value
    return params


def _schema_text(exp: Experiment) -> str:
    """An experiment's name, kind and description, then one line per parameter."""
    from tui_lab.params import describe

    lines = [f"{exp.name} ({exp.kind}): {exp.description}", "parameters (--param KEY=VALUE; lists as 1,8,32):"]
    lines += [f"  {line}" for line in describe(exp.params)]
    return "\n".join(lines)


def cmd_experiment(args: argparse.Namespace) -> int:
    """Run one experiment headless: progress on stderr, its view (or JSON) on stdout."""
    from tui_lab.lab import inventory
    from tui_lab.lab.runner import problems

    if args.help:
        print(args.experiment_parser.format_help().rstrip())
        if args.name:
            print("\n" + _schema_text(inventory.get(args.name)))
        return EXIT_OK
    if args.list:
        chosen = [args.name] if args.name else inventory.names()
        print("\n\n".join(_schema_text(inventory.get(name)) for name in chosen))
        return EXIT_OK
    if not args.name:
        raise UsageError("experiment needs a NAME (inference-lab experiment --list shows them)")
    exp = inventory.get(args.name)
    given = _experiment_params(args.param, exp.params)

    def progress(p: Progress) -> None:
        print(f"  {p.text}", file=sys.stderr, flush=True)

    with stdout_to_stderr() if args.json else contextlib.nullcontext(sys.stdout):
        execution = execute(args, exp, given, progress=None if _quiet(args) else progress, flags=False)
    result = execution.result
    if args.json:
        from tui_lab.lab.caveats import caveats

        doc = result.to_dict()
        notes = caveats(result)
        _json({**doc, "caveats": notes} if notes else doc)
    else:
        _print_view(result, sys.stdout)
    if args.out:
        _write_out(args.out, result, sys.stderr)
    return _finish(execution, problems(result))


# ------------------------------------------------------------------------------------------------ models


def cmd_models(args: argparse.Namespace) -> int:
    """``inference-lab models``: known models, their source, whether cached, and where."""
    from tui_lab import models

    rows = models_listing(models, args.cache_dir)
    if args.json:
        _json(rows)
        return EXIT_OK
    headers = ("name", "source", "cached", "notes")
    table = [headers] + [(str(r["name"]), str(r["source"]), str(r["cached"]), str(r["notes"])) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row[:3], widths, strict=True)) + "  " + row[3])
    where = models.default_cache_dir(args.cache_dir)
    print(f"\ncache: {where} (--cache-dir or $INFERENCE_LAB_CACHE to change); any hub id or local checkpoint "
          "directory works too")
    cached = [r for r in rows if r["path"]]
    if cached:
        print("checkpoints (point vLLM or any tool at these directories):")
        for r in cached:
            print(f"  {r['name']}: {r['path']}")
    return EXIT_OK


def models_listing(models: object, cache_dir: str | None) -> list[dict[str, object]]:
    """One row per known model: name, where it comes from, whether it is cached (and where), notes."""
    rows: list[dict[str, object]] = []
    for status in models.cache_status(cache_dir=cache_dir):  # type: ignore[attr-defined]
        spec = status.spec
        size = f", {status.size_bytes / 1e6:.0f} MB" if status.cached and status.size_bytes else ""
        notes = status.note
        if spec.description:
            notes = f"{spec.description} — {notes}" if notes else spec.description
        rows.append({
            "name": spec.name, "source": spec.source or spec.kind, "cached": f"yes{size}" if status.cached else "no",
            "path": str(status.path) if status.cached and status.path else None, "notes": notes,
            "text_is_meaningful": spec.text_is_meaningful, "gated": spec.gated,
        })
    return rows


# -------------------------------------------------------------------------------------------- the TUI


def _open_tui(args: argparse.Namespace) -> int:
    try:
        from tui_lab.ui.app import AppOptions, run_app
    except ImportError as exc:
        raise EngineUnavailable(f"the terminal UI cannot be opened: {exc}", "reinstall inference-lab") from None
    if args.lesson:
        _check_lesson(args.lesson)
    engine, options = engine_flags(args)
    return int(run_app(AppOptions(engine=engine, engine_options=options, lesson=args.lesson)) or 0)


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
        # argparse's --help exits through here; keep main() a function returning a status.
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_USAGE)
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): not an error worth a traceback.
        with contextlib.suppress(Exception):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return 1
