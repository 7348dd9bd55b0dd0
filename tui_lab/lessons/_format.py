"""Lesson files: the data model, the parser and the loader.

A lesson is ``lessons/NN-name.md``::

    ---
    id: 01
    title: Foundations of inference
    minutes: 35
    ---
    Optional intro paragraphs.

    ## First step title
    Markdown body the learner reads.

    ```experiment
    name: batch_sweep
    batch_sizes: [1, 8, 32]
    ```

    ```predict
    question: How many tokens/s at batch 32?
    unit: tokens/s
    metric: summary.output_tokens_per_s
    ```

Level-2 headings (outside code fences) start steps. In a step, fenced blocks
whose info string is ``experiment`` or ``predict`` are directives and are taken
out of the body; every other fence stays in the body as Markdown. Errors name
the file and the line.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tui_lab.errors import InvalidInput, LabError
from tui_lab.lessons._values import ValueSyntaxError, is_key, parse_scalar, parse_value

LESSONS_ENV = "INFERENCE_LAB_LESSONS"
"""Environment variable naming a lesson directory to use instead of the built-in one."""

_FILE_NAME = re.compile(r"^(\d{2})-[a-z0-9][a-z0-9-]*\.md$")
_FENCE = re.compile(r"^(```+|~~~+)\s*([^`\s]*)")
_DIRECTIVES = ("experiment", "predict")
_FRONT_KEYS = {"id", "title", "minutes", "summary", "needs"}
_PREDICT_KEYS = {"question", "unit", "metric"}


class LessonError(LabError):
    """A lesson file that does not follow the format; the message names the file and line."""

    def __init__(self, path: Path | str | None, line: int | None, problem: str) -> None:
        where = str(path) if path is not None else "<lesson>"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {problem}", "Fix the lesson file (format: lessons/README.md).")
        self.path = Path(path) if path is not None else None
        self.line = line
        self.problem = problem


class LessonNotFound(InvalidInput):
    """``--lesson`` named no lesson."""


@dataclass(frozen=True)
class Prediction:
    """A "predict, then measure" prompt: the learner's guess is compared with ``metric`` of the result."""

    question: str
    unit: str
    metric: str
    """Dotted path into the experiment result's JSON form, e.g. ``summary.output_tokens_per_s``
    or ``points[-1].output_tokens_per_s``."""


@dataclass(frozen=True)
class Step:
    """One screen of a lesson: text, and optionally an experiment preset and a prediction."""

    title: str
    body: str
    experiment: str | None = None
    params: dict[str, object] = field(default_factory=dict)
    engine: str | None = None
    """The engine the step is about (``engine: vllm`` in its experiment block): a run on another is refused."""
    cpu: dict[str, object] = field(default_factory=dict)
    """Preset values used instead when the engine runs on a CPU (``cpu: {batch_sizes: [1, 2, 4]}``), so the
    step finishes in about a minute and a half there."""
    replay: str | None = None
    """A trace recorded on a GPU (a shipped trace's name, ``replay: h100-gemma-3-270m-batch-sweep``): on a CPU
    the step plays it back with its own values instead of running the loaded engine (``cpu`` values unused)."""
    predict: Prediction | None = None
    line: int = 0
    """Line of the step's heading in its file (1-based)."""
    experiment_line: int = 0
    """Line of the step's ``experiment`` block (1-based; 0 when there is none)."""

    @property
    def key(self) -> str:
        """A stable id for progress records: the title as a slug."""
        return slugify(self.title)

    def preset(self, on_cpu: bool) -> dict[str, object]:
        """The experiment's preset for the device the engine runs on (the CPU values over the others)."""
        return {**self.params, **self.cpu} if on_cpu and not self.replay else dict(self.params)


@dataclass(frozen=True)
class Lesson:
    """A lesson: front matter and its steps in order."""

    id: str
    title: str
    minutes: int
    steps: tuple[Step, ...]
    summary: str = ""
    intro: str = ""
    needs: str = ""
    """What the lesson needs beyond the README's first command, said at its start (front matter ``needs``)."""
    path: Path | None = None

    @property
    def slug(self) -> str:
        """The file name without ``.md`` (e.g. ``01-foundations``)."""
        return self.path.stem if self.path is not None else f"{self.id}-{slugify(self.title)}"


def slugify(text: str) -> str:
    """Lower-case words joined by dashes."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def default_lessons_dir() -> Path:
    """``$INFERENCE_LAB_LESSONS`` if set, else the repository's ``lessons/`` next to the package
    (an editable install or a checkout), else the copy a wheel installs under ``<prefix>/share``."""
    env = os.environ.get(LESSONS_ENV)
    if env:
        return Path(env)
    beside_package = Path(__file__).resolve().parents[2] / "lessons"
    if beside_package.is_dir():
        return beside_package
    return Path(sys.prefix) / "share" / "inference-lab" / "lessons"


def load_lessons(dir: Path | str | None = None, *, check_experiments: bool = True) -> list[Lesson]:
    """Parse every ``NN-name.md`` in ``dir`` (default: :func:`default_lessons_dir`), sorted by id.

    With ``check_experiments`` each named experiment must exist in the lab's
    registry and its parameters must validate there.
    """
    root = Path(dir) if dir is not None else default_lessons_dir()
    if not root.is_dir():
        raise LessonError(root, None, "lesson directory not found")
    lessons: list[Lesson] = []
    seen: dict[str, Path] = {}
    for path in sorted(root.glob("*.md")):
        if path.name.lower() == "readme.md":
            continue
        if not _FILE_NAME.match(path.name):
            raise LessonError(path, None, "lesson file names look like 'NN-name.md' (lower case, dashes)")
        lesson = parse_lesson(path.read_text(encoding="utf-8"), path)
        if lesson.id in seen:
            raise LessonError(path, 1, f"id {lesson.id!r} is also used by {seen[lesson.id].name}")
        seen[lesson.id] = path
        if check_experiments:
            check_lesson_experiments(lesson)
        lessons.append(lesson)
    if not lessons:
        raise LessonError(root, None, "no lesson files (NN-name.md) found")
    return sorted(lessons, key=lambda lesson: lesson.id)


def parse_lesson(text: str, path: Path | str | None = None) -> Lesson:
    """Parse one lesson's text; ``path`` is used in error messages and to check the id."""
    lines = text.splitlines()
    front, body_start = _parse_front_matter(lines, path)
    lesson_id = front["id"]
    if path is not None:
        m = _FILE_NAME.match(Path(path).name)
        if m and m.group(1) != lesson_id:
            raise LessonError(path, front["_lines"]["id"], f"id {lesson_id!r} does not match the file name")
    intro, steps = _parse_steps(lines, body_start, path)
    if not steps:
        raise LessonError(path, body_start + 1, "a lesson needs at least one '## Step title' heading")
    keys: dict[str, int] = {}
    for step in steps:
        if step.key in keys:
            raise LessonError(path, step.line, f"step title {step.title!r} repeats the one on line {keys[step.key]}")
        keys[step.key] = step.line
    return Lesson(
        id=lesson_id,
        title=front["title"],
        minutes=front["minutes"],
        steps=tuple(steps),
        summary=front.get("summary", ""),
        intro=intro,
        needs=front.get("needs", ""),
        path=Path(path) if path is not None else None,
    )


def _parse_front_matter(lines: list[str], path: Path | str | None) -> tuple[dict, int]:
    if not lines or lines[0].strip() != "---":
        raise LessonError(path, 1, "a lesson starts with front matter: a '---' line, id/title/minutes, '---'")
    front: dict = {"_lines": {}}
    for i in range(1, len(lines)):
        raw = lines[i]
        lineno = i + 1
        if raw.strip() == "---":
            break
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        key, sep, value = raw.partition(":")
        key = key.strip()
        if not sep or not is_key(key):
            raise LessonError(path, lineno, f"expected 'key: value' in front matter, got {raw.strip()!r}")
        if key not in _FRONT_KEYS:
            known = ", ".join(sorted(_FRONT_KEYS))
            raise LessonError(path, lineno, f"unknown front-matter key {key!r} (known: {known})")
        front[key] = parse_scalar(value, keep_digits=True)
        front["_lines"][key] = lineno
    else:
        raise LessonError(path, 1, "front matter is not closed with '---'")
    end = i
    for key in ("id", "title", "minutes"):
        if front.get(key) in (None, ""):
            raise LessonError(path, end + 1, f"front matter needs '{key}'")
    raw_id = front["id"]
    if isinstance(raw_id, int):
        raw_id = f"{raw_id:02d}"
    if not isinstance(raw_id, str) or not re.fullmatch(r"\d{2}", raw_id):
        raise LessonError(path, front["_lines"]["id"], f"id must be two digits like 01, got {front['id']!r}")
    front["id"] = raw_id
    if not isinstance(front["minutes"], int) or isinstance(front["minutes"], bool) or front["minutes"] <= 0:
        raise LessonError(path, front["_lines"]["minutes"], "minutes must be a positive whole number")
    front["title"] = str(front["title"])
    if "summary" in front:
        front["summary"] = str(front["summary"] or "")
    if "needs" in front:
        front["needs"] = str(front["needs"] or "")
    return front, end + 1


def _parse_steps(lines: list[str], start: int, path: Path | str | None) -> tuple[str, list[Step]]:
    """Split at level-2 headings outside fences; pull directive fences out of each step."""
    intro: list[str] = []
    steps: list[Step] = []
    current: dict | None = None
    fence: tuple[str, str, int, list[str]] | None = None  # (marker, info, start line, lines)

    def finish_step() -> None:
        if current is None:
            return
        steps.append(
            Step(
                title=current["title"],
                body="\n".join(current["body"]).strip("\n"),
                experiment=current["experiment"],
                params=current["params"],
                engine=current.get("engine"),
                cpu=current.get("cpu") or {},
                replay=current.get("replay"),
                predict=current["predict"],
                line=current["line"],
                experiment_line=current.get("experiment_line", 0),
            )
        )

    for i in range(start, len(lines)):
        raw = lines[i]
        lineno = i + 1
        if fence is not None:
            marker, info, fence_line, buf = fence
            if raw.strip().startswith(marker[0] * len(marker)) and raw.strip().strip(marker[0]) == "":
                if info in _DIRECTIVES:
                    if current is None:
                        problem = f"'{info}' block outside a step (add a '## ' heading first)"
                        raise LessonError(path, fence_line, problem)
                    _apply_directive(current, info, buf, fence_line, path)
                else:
                    target = current["body"] if current is not None else intro
                    target.extend([*buf, raw])
                fence = None
            else:
                buf.append(raw)
            continue
        m = _FENCE.match(raw.strip()) if raw.startswith(("```", "~~~")) else None
        if m:
            info = m.group(2).lower()
            fence = (m.group(1), info, lineno, [] if info in _DIRECTIVES else [raw])
            continue
        if raw.startswith("## "):
            finish_step()
            title = raw[3:].strip()
            if not title:
                raise LessonError(path, lineno, "step heading without a title")
            current = {"title": title, "body": [], "experiment": None, "params": {}, "predict": None, "line": lineno}
            continue
        if raw.startswith("# ") and current is None:
            # A level-1 title line before the first step repeats the front matter: keep it out of the intro.
            continue
        (current["body"] if current is not None else intro).append(raw)
    if fence is not None:
        raise LessonError(path, fence[2], f"code fence {fence[0]}{fence[1]} is never closed")
    finish_step()
    return "\n".join(intro).strip("\n"), steps


def _parse_block(buf: list[str], first_line: int, path: Path | str | None) -> tuple[dict, dict]:
    """``key: value`` lines of a directive → (values, line of each key)."""
    values: dict = {}
    where: dict = {}
    for offset, raw in enumerate(buf, start=1):
        lineno = first_line + offset
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        key, sep, value = text.partition(":")
        key = key.strip()
        if not sep or not is_key(key):
            raise LessonError(path, lineno, f"expected 'key: value', got {text!r}")
        if key in values:
            raise LessonError(path, lineno, f"key {key!r} given twice")
        try:
            values[key] = parse_value(value)
        except ValueSyntaxError as exc:
            raise LessonError(path, lineno, f"bad value for {key!r}: {exc}") from None
        where[key] = lineno
    return values, where


def _apply_directive(current: dict, kind: str, buf: list[str], fence_line: int, path: Path | str | None) -> None:
    values, where = _parse_block(buf, fence_line, path)
    if kind == "experiment":
        if current["experiment"] is not None:
            raise LessonError(path, fence_line, "a step has at most one 'experiment' block")
        name = values.pop("name", None)
        if not isinstance(name, str) or not name:
            raise LessonError(path, fence_line, "an 'experiment' block needs 'name: <experiment>'")
        engine = values.pop("engine", None)
        cpu = values.pop("cpu", {})
        replay = values.pop("replay", None)
        if replay is not None:
            from tui_lab.traces import find, names

            if not isinstance(replay, str) or find(replay) is None:
                raise LessonError(path, where["replay"], f"no shipped trace {replay!r} (shipped: {', '.join(names())})")
        if not isinstance(cpu, dict):
            raise LessonError(path, where["cpu"], "'cpu' takes a map of preset values, e.g. {batch_sizes: [1, 2, 4]}")
        if engine is not None:
            from tui_lab.engines.options import ENGINE_NAMES

            if engine not in ENGINE_NAMES:
                known = ", ".join(ENGINE_NAMES)
                raise LessonError(path, where["engine"], f"unknown engine {engine!r} (known: {known})")
        current["experiment"] = name
        current["params"] = values
        current["engine"] = engine
        current["cpu"] = cpu
        current["replay"] = replay
        current["experiment_line"] = fence_line
        return
    if current["predict"] is not None:
        raise LessonError(path, fence_line, "a step has at most one 'predict' block")
    unknown = set(values) - _PREDICT_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise LessonError(path, where[key], f"unknown predict key {key!r} (known: question, unit, metric)")
    for key in ("question", "metric"):
        if not values.get(key):
            raise LessonError(path, fence_line, f"a 'predict' block needs '{key}'")
    metric = str(values["metric"])
    try:
        parse_metric_path(metric)
    except ValueError as exc:
        raise LessonError(path, where["metric"], str(exc)) from None
    current["predict"] = Prediction(str(values["question"]), str(values.get("unit") or ""), metric)


def check_lesson_experiments(lesson: Lesson) -> None:
    """Every named experiment is in the lab's inventory and its preset passes its checks; predictions need one."""
    from tui_lab.lab.inventory import get

    for step in lesson.steps:
        if step.predict is not None and step.experiment is None:
            raise LessonError(lesson.path, step.line, f"step {step.title!r} predicts a metric but runs no experiment")
        if step.experiment is None:
            continue
        try:
            get(step.experiment).validate(step.params)
            get(step.experiment).validate(step.preset(on_cpu=True))
        except LabError as exc:
            problem = exc.message if exc.message.startswith("unknown experiment") else (
                f"experiment {step.experiment!r}: {exc.message}")
            raise LessonError(lesson.path, step.experiment_line, problem) from None


def find_lesson(lessons: Sequence[Lesson], query: str) -> Lesson:
    """The lesson ``query`` names: its id (``02`` or ``2``), file name, slug or title (case-insensitive)."""
    q = query.strip().lower()
    if q.endswith(".md"):
        q = q[:-3]
    for lesson in lessons:
        if q in (lesson.id, lesson.slug.lower(), lesson.title.lower(), slugify(lesson.title)):
            return lesson
        if q.isdigit() and int(q) == int(lesson.id):
            return lesson
    matches = [lesson for lesson in lessons if q and (q in lesson.slug.lower() or q in lesson.title.lower())]
    if len(matches) == 1:
        return matches[0]
    listing = ", ".join(f"{lesson.id} ({lesson.title})" for lesson in lessons)
    raise LessonNotFound(f"no lesson matches {query!r}.", f"Use one of: {listing}.")


def parse_metric_path(path: str) -> list[str | int]:
    """``points[-1].output_tokens_per_s`` → ``["points", -1, "output_tokens_per_s"]``; ValueError if malformed."""
    parts: list[str | int] = []
    pos = 0
    text = path.strip()
    while pos < len(text):
        if text[pos] == "." and parts:
            pos += 1
        m = re.match(r"[A-Za-z_][A-Za-z0-9_]*|\[-?\d+\]|-?\d+", text[pos:])
        if not m:
            raise ValueError(f"metric {path!r} is not a dotted path like 'summary.ttft_s.p50'")
        token = m.group(0)
        if token.startswith("["):
            parts.append(int(token[1:-1]))
        elif token.lstrip("-").isdigit():
            parts.append(int(token))
        else:
            parts.append(token)
        pos += len(token)
        if pos < len(text) and text[pos] not in ".[":
            raise ValueError(f"metric {path!r} is not a dotted path like 'summary.ttft_s.p50'")
    if not parts or not isinstance(parts[0], str):
        raise ValueError(f"metric {path!r} is not a dotted path like 'summary.ttft_s.p50'")
    return parts


def resolve_metric(result: object, metric: str) -> float | None:
    """The number at ``metric`` in an experiment result (its ``to_dict()`` form, a dict or a dataclass).

    Returns None when the path leads nowhere or to a non-number (e.g. p90 not
    reported because n is too small), so a UI can say "not measured".
    """
    node: object = _as_data(result)
    for part in parse_metric_path(metric):
        node = _as_data(node)
        try:
            if isinstance(part, int):
                node = node[part] if isinstance(node, (list, tuple)) else None
            elif isinstance(node, dict):
                node = node.get(part)
            else:
                node = getattr(node, part, None)
        except IndexError:
            return None
        if node is None:
            return None
    if isinstance(node, bool) or not isinstance(node, (int, float)):
        return None
    return float(node)


@dataclass(frozen=True)
class Measured:
    """The value a prediction's metric names in a result, or why there is none.

    ``reason`` says why ``value`` is None ("no batch met the budget", "the run was stopped before
    128 tokens"), or, beside a value, what to keep in mind (it comes from a run that was stopped, or it
    was computed and not measured: a result's ``modelled`` map names such figures, each with a few words
    on how it was computed, starting "modelled" or "computed").
    """

    value: float | None
    reason: str = ""


def measure_metric(result: object, metric: str) -> Measured:
    """The number at ``metric`` in ``result``, with the reason when it is missing.

    In a sweep, ``points[i]`` names the plan's i-th configuration (``points[-1]``: the last one
    planned), not whatever point came last: a sweep stopped at 64 tokens does not answer a question
    about 128 tokens. Raises ``ValueError`` for a malformed path.
    """
    parts = parse_metric_path(metric)
    data = _as_data(result)
    partial = isinstance(data, dict) and bool(data.get("partial"))
    node: object = data
    trail: list[str | int] = []
    if (isinstance(data, dict) and isinstance(data.get("plan"), dict) and len(parts) > 1
            and parts[0] == "points" and isinstance(parts[1], int)):
        found = _planned_point(data, parts[1])
        if isinstance(found, str):
            return Measured(None, found)
        node, trail, parts = found, parts[:2], parts[2:]
        partial = False  # the named configuration finished: its figures stand on their own
    for part in parts:
        parent = _as_data(node)
        if isinstance(part, int):
            if not isinstance(parent, (list, tuple)):
                return Measured(None, f"{_dotted(trail) or 'the result'} is not a list")
            if not -len(parent) <= part < len(parent):
                where = _dotted(trail) or "the result"
                return Measured(None, f"{where} has {len(parent)} entries, none at [{part}]" if parent
                                else result_problem(data) or f"{where} is empty{_stopped(partial)}")
            node = parent[part]
        elif isinstance(parent, dict):
            if part not in parent:
                return Measured(None, f"the result has no field {_dotted([*trail, part])!r}")
            node = parent[part]
        else:
            node = getattr(parent, part, None)
        trail.append(part)
        if node is None:
            return Measured(None, _why_missing(data, parent, trail, partial))
    if isinstance(node, bool) or not isinstance(node, (int, float)):
        return Measured(None, f"{_dotted(trail)} is not a number")
    reason = "partial: the run was stopped before it finished" if partial else ""
    modelled = data.get("modelled") if isinstance(data, dict) else None
    if isinstance(modelled, dict):
        # A result lists the figures it computed instead of measuring: the learner reads which they are.
        basis = next((modelled[key] for key in (_dotted(trail), str(trail[0])) if key in modelled), None)
        if basis is not None:
            reason = "; ".join(filter(None, (f"{basis}, not measured", reason)))
    return Measured(float(node), reason)


def _dotted(trail: Sequence[str | int]) -> str:
    out = ""
    for part in trail:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _stopped(partial: bool) -> str:
    return " (the run was stopped)" if partial else ""


def _point_label(kind: object, value: object) -> str:
    if kind == "length":
        return f"{value} tokens"
    if kind == "sampling" and isinstance(value, (list, tuple)) and len(value) == 2:
        return f"T={float(value[0]):g} top-p={float(value[1]):g}"
    return f"batch {value}"


def _planned_point(data: dict, index: int) -> dict | str:
    """The point of the plan's ``index``-th configuration, or why it has no figures."""
    plan = data["plan"]
    values = list(plan.get("values") or [])
    if not -len(values) <= index < len(values):
        return f"the sweep plans {len(values)} configurations, none at [{index}]"
    wanted = values[index]
    label = _point_label(plan.get("kind"), wanted)
    points = [p for p in data.get("points") or [] if isinstance(p, dict)]
    point = next((p for p in points if p.get("value") == wanted), None)
    if point is not None and point.get("status") == "ok":
        return point
    if point is None:
        return f"the run was stopped before {label}" if data.get("partial") else f"{label} was not measured"
    if point.get("status") == "partial":
        return f"the run was stopped during {label}"
    return f"{label}: {point.get('error') or point.get('status')}"


_PERCENTILES = {"p50", "p90", "p99", "mean"}


def _why_missing(data: object, parent: object, trail: list[str | int], partial: bool) -> str:
    """Why the figure at ``trail`` is None, in the learner's words."""
    last = trail[-1]
    doc = data if isinstance(data, dict) else {}
    if last == "budget_pick":
        limits = doc.get("budget") or {}
        said = ", ".join(f"{k} ≤ {v:g} s" for k, v in limits.items() if isinstance(v, (int, float)))
        return f"no batch met the budget ({said})" if said else "no latency budget was given"
    if last == "knee":
        return str(doc.get("knee_note") or "no knee: it needs at least two complete points") + _stopped(partial)
    if last in _PERCENTILES and isinstance(parent, dict) and "n" in parent:
        n = parent.get("n") or 0
        if not n:
            return "no request finished" + _stopped(partial)
        from tui_lab.metrics.percentiles import MIN_SAMPLES_P90, MIN_SAMPLES_P99

        need = {"p90": MIN_SAMPLES_P90, "p99": MIN_SAMPLES_P99}.get(str(last))
        return f"too few samples for {last} (n={n}" + (f", it needs {need})" if need else ")")
    problem = result_problem(doc)
    if problem:
        return problem
    note = doc.get("note")
    if isinstance(note, str) and note.strip() and not partial:
        # The result says what this machine or engine cannot measure: that is the reason, in its words.
        return " ".join(note.split())
    return f"{_dotted(trail)} was not measured{_stopped(partial)}"


def result_problem(doc: object) -> str:
    """What a result says went wrong ("the run failed: ...", "vllm not run: ..."), or ""."""
    from tui_lab.lab.runner import problems_in

    found = problems_in(doc)
    return found[0] if found else ""


def _as_data(obj: object) -> object:
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    from dataclasses import asdict, is_dataclass

    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    return obj


def experiments_named(lessons: Iterable[Lesson]) -> list[tuple[Lesson, Step]]:
    """Every (lesson, step) pair whose step names an experiment, in lesson order."""
    return [(lesson, step) for lesson in lessons for step in lesson.steps if step.experiment]
