"""Parameters: the one vocabulary every layer uses to say what a value may be (pure: no torch, no Textual).

A ``Param`` is a name, a type, limits, a default and one help line. Its type decides how a value is
checked and how text is read into it, the same way everywhere: "8" is the whole number 8 for every
``int`` parameter of every experiment, engine option, CLI flag and Controls box, and NaN or an infinity
is refused for every number. Experiments declare their parameters as ``Param``s, engines declare their
options as ``Param``s, and the CLI flags and the Controls fields are built from those declarations.

The parameters that mean the same thing everywhere (prompt, batch size, sampling, runs, ...) are
defined once at the bottom; an experiment that wants another default takes ``BATCH_SIZE.but(default=8)``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal
from urllib.parse import urlsplit

from tui_lab.errors import InvalidInput

ParamType = Literal[
    "int", "number", "bool", "text", "choice", "int list", "number list", "choice list", "text list", "other",
]
"""How a parameter's values are checked and read from text. ``other`` leaves both to ``check``."""

Value = object
"""A parameter value before it is checked (text typed by a learner, a number from a lesson file, ...)."""

Checked = Any
"""A checked value: its type is what its ``Param``'s type says (int, float, bool, str, a list of them, ...)."""

Extra = Callable[[str, Value], Value]
"""A further check after the type's: ``(name, value) -> normalised value``, raising ``InvalidInput``."""

MAX_NEW_TOKENS = 32768
"""A sanity cap on new tokens per request; the model's own context is checked when a run starts."""
MAX_REQUESTS = 1024
"""Most requests at once (batch size, request count, max_num_seqs): the engines' largest batch."""
MAX_RUNS = 100
MAX_WARMUP = 20
MAX_SEED = 2**63 - 1

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


@dataclass(frozen=True)
class Param:
    """One parameter: name, type, default, help, limits; ``check`` normalises a value or refuses it in one line.

    ``optional``: None is a value of its own (off, auto, "the loaded one") and is not checked.
    ``above_min``: the value must be strictly greater than ``min`` (a rate, a penalty, top-p).
    ``flag``: the command-line flag when it is not ``--name-with-dashes``.
    ``extra``: a check after the type's (a preset name, a URL, a whole dict of limits).
    ``secret_name``: the value NAMES an environment variable holding a secret: the name may be shown,
    the secret is never read here.
    """

    name: str
    type: ParamType
    default: Value = None
    help: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    optional: bool = False
    above_min: bool = False
    max_items: int = 64
    flag: str | None = None
    extra: Extra | None = None
    secret_name: bool = False

    def but(self, **changes: object) -> Param:
        """A copy with ``changes`` (another default, help or limit)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def cli_flag(self) -> str:
        """The command-line flag (``max_num_seqs`` → ``--max-num-seqs`` unless ``flag`` says otherwise)."""
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def is_list(self) -> bool:
        """Whether the value is a list."""
        return self.type.endswith(" list")

    # ------------------------------------------------------------------------------------------- checking

    def check(self, value: Value) -> Checked:
        """The checked, normalised value; ``InvalidInput`` with a one-line message otherwise."""
        if value is None and self.optional:
            return None
        name = self.name
        kind = self.type
        if kind == "other":
            out = value
        elif kind.endswith(" list"):
            out = self._list(value)
        else:
            out = self._one(kind, value)
        return self.extra(name, out) if self.extra is not None else out

    def _list(self, value: Value) -> list[Value]:
        item = self.type.removesuffix(" list")
        if isinstance(value, str):
            value = [value] if item == "text" else [v for v in value.replace(" ", "").split(",") if v]
        if not isinstance(value, (list, tuple)) or not value:
            raise InvalidInput(f"{self.name} must be a non-empty list (got {value!r})")
        if len(value) > self.max_items:
            raise InvalidInput(f"{self.name} may hold at most {self.max_items} values (got {len(value)})")
        return [self._one(item, v) for v in value]

    def _one(self, kind: str, value: Value) -> Value:
        if kind == "int":
            return self._limits(whole(self.name, value))
        if kind == "number":
            return self._limits(number(self.name, value))
        if kind == "bool":
            return boolean(self.name, value)
        if kind == "choice":
            if value not in (self.choices or ()):
                raise InvalidInput(f"{self.name} must be one of: {', '.join(self.choices or ())} (got {value!r})")
            return value
        if not isinstance(value, str) or not value.strip():
            raise InvalidInput(f"{self.name} must be some text (got {value!r})")
        return value

    def _limits(self, x: float) -> float:
        lo, hi, name = self.min, self.max, self.name
        shown = _num(x)
        if lo is not None and (x <= lo if self.above_min else x < lo):
            if hi is not None:
                raise InvalidInput(f"{name} must be in {self.limits} (got {shown})")
            raise InvalidInput(f"{name} must be {'>' if self.above_min else '>='} {_num(lo)} (got {shown})")
        if hi is not None and x > hi:
            if lo is not None:
                raise InvalidInput(f"{name} must be in {self.limits} (got {shown})")
            raise InvalidInput(f"{name} must be at most {_num(hi)} (got {shown})")
        return x

    # ------------------------------------------------------------------------------------------ describing

    @property
    def limits(self) -> str:
        """What it allows, in a few characters: ``1..1024``, ``>= 0``, ``(0, 1]``, ``bf16|fp8`` (or nothing)."""
        lo, hi = self.min, self.max
        if self.choices:
            return "|".join(self.choices)
        if lo is not None and hi is not None:
            return f"({_num(lo)}, {_num(hi)}]" if self.above_min else f"{_num(lo)}..{_num(hi)}"
        if lo is not None:
            return f"{'>' if self.above_min else '>='} {_num(lo)}"
        if hi is not None:
            return f"<= {_num(hi)}"
        return ""

    def describe(self) -> str:
        """One line: ``name  type limits  default: value  help``."""
        default = "none" if self.default is None else shown(self.default)
        kind = f"{self.type} {self.limits}".strip()
        text = f"{self.name:22} {kind:20} default: {default}"
        return f"{text}  {self.help}" if self.help else text

    def from_text(self, text: str) -> Value:
        """A value typed as text (a CLI flag, ``--param key=value``, a Controls box), before ``check``.

        "none" (or nothing) is None where the parameter may be None; numbers, true/false and comma-separated
        lists are read by ``check`` itself, so text and values meet the same rules.
        """
        value = text.strip()
        if value.lower() in ("none", "") and (self.optional or self.default is None):
            return None
        if self.type in ("text", "text list"):
            return text
        return value


# --------------------------------------------------------------------------------------------- value checks


def whole(name: str, value: Value) -> int:
    """A whole number (``8``, ``8.0`` and ``"8"`` alike; True/False are not numbers)."""
    x = number(name, value, what="a whole number")
    if x != int(x):
        raise InvalidInput(f"{name} must be a whole number (got {value!r})")
    return int(x)


def number(name: str, value: Value, what: str = "a number") -> float:
    """A finite number; text is read as one. NaN and the infinities are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidInput(f"{name} must be {what} (got {value!r})")
    try:
        x = float(value)
    except ValueError:
        raise InvalidInput(f"{name} must be {what} (got {value!r})") from None
    if not math.isfinite(x):
        raise InvalidInput(f"{name} must be a finite number (got {value!r})")
    return x


def boolean(name: str, value: Value) -> bool:
    """True or false (also "yes"/"no", "on"/"off", "1"/"0")."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise InvalidInput(f"{name} must be true or false (got {value!r})")


def check_params(owner: str, schema: Sequence[Param], given: Mapping[str, Value] | None) -> dict[str, Checked]:
    """Every parameter of ``schema``: its default overlaid with ``given``, checked.

    ``InvalidInput`` (one line) for a name the schema lacks, or on the first bad value.
    """
    by_name = {p.name: p for p in schema}
    given = dict(given or {})
    unknown = sorted(set(given) - set(by_name))
    if unknown:
        raise InvalidInput(f"{owner} has no parameter {unknown[0]!r}; it takes: {', '.join(by_name)}")
    return {p.name: p.check(given.get(p.name, p.default)) for p in schema}


def describe(schema: Sequence[Param]) -> list[str]:
    """One line per parameter (``Param.describe``), in the schema's order."""
    return [p.describe() for p in schema]


def shown(value: Value) -> str:
    """A value as people type it: lists comma-separated, numbers short, true/false, long text cut."""
    if isinstance(value, (list, tuple)):
        return ",".join(shown(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        short = value if len(value) <= 40 else value[:37] + "..."
        return repr(short) if not short or " " in short else short
    return str(value)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


# ------------------------------------------------------------------------------------- special-purpose checks


def url(name: str, value: Value) -> str:
    """An http(s) URL with a host, e.g. ``http://127.0.0.1:8000/v1``."""
    text = value.strip() if isinstance(value, str) else ""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput(f"{name} must look like http://host:port/v1 (got {value!r})")
    return text


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def env_name(name: str, value: Value) -> str:
    """The NAME of an environment variable. A value that looks like a key itself is refused (never echoed)."""
    text = value.strip() if isinstance(value, str) else ""
    if not _ENV_NAME.fullmatch(text):
        raise InvalidInput(f"{name} takes the name of an environment variable (like MY_API_KEY), not the key itself")
    return text


# ----------------------------------------------------------------------------- the parameters shared by all

DEFAULT_PROMPT = "The future of AI is"
"""The prompt every experiment starts from unless told otherwise."""

DEFAULT_BATCH_SIZES = (1, 8, 32, 64, 128, 256)
"""The batch sizes a batch sweep visits unless told otherwise (the seed notebook's)."""

PROMPT = Param("prompt", "text", DEFAULT_PROMPT, "the prompt")
BATCH_SIZE = Param("batch_size", "int", 1, "requests in one batch", 1, MAX_REQUESTS)
MAX_NEW_TOKENS_PARAM = Param("max_new_tokens", "int", 32, "new tokens per request", 1, MAX_NEW_TOKENS,
                             flag="--max-tokens")
TEMPERATURE = Param("temperature", "number", 0.0, "0 means greedy", 0)
TOP_P = Param("top_p", "number", 1.0, "nucleus sampling; 1 switches it off", 0, 1, above_min=True)
TOP_K = Param("top_k", "int", 0, "0 switches it off", 0)
REPETITION_PENALTY = Param("repetition_penalty", "number", 1.0, "1 switches it off", 0, above_min=True)
SEED = Param("seed", "int", 0, "the same seed gives the same tokens and prompts", 0, MAX_SEED)
IGNORE_EOS = Param("ignore_eos", "bool", False, "generate every token even past end-of-sequence")
RUNS = Param("runs", "int", 3, "measured runs", 1, MAX_RUNS)
WARMUP = Param("warmup", "int", 1, "discarded warm-up runs", 0, MAX_WARMUP)

SAMPLING: tuple[Param, ...] = (TEMPERATURE, TOP_P, TOP_K, REPETITION_PENALTY, SEED)
"""How tokens are chosen (besides how many): what every generating experiment takes."""
