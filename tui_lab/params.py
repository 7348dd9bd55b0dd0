"""Parameters: the ``Param`` type and the value checks every layer shares (pure: no torch, no Textual).

Experiments declare their parameters with these checks and limits, and engines may declare their
options with them, so the CLI, the Controls form and lesson presets refuse the same bad values with
the same one-line message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tui_lab.errors import InvalidInput

MAX_NEW_TOKENS = 32768
"""A sanity cap on new tokens per request; the model's own context is checked when a run starts."""
MAX_REQUESTS = 1024
"""Most requests (batch size, serving request count, max_num_seqs): the engines' ``MAX_BATCH_SIZE``."""
MAX_RUNS = 100
MAX_WARMUP = 20

Check = Callable[[str, Any], Any]


@dataclass(frozen=True)
class Param:
    """One parameter: its name, check, default, help text, type and limits (for forms, flags and presets).

    ``type`` is a short word for people and for reading a value typed on a command line: ``int``,
    ``number``, ``bool``, ``text``, ``choice``, ``int list``, ``number list``, ``choice list``,
    ``text list`` (one text when typed on a command line), ``budget`` (a preset name, seconds, or
    limits) or ``any``. ``optional`` means None is taken as it is (off, auto, unset) without going
    through ``check``.
    """

    name: str
    check: Check
    default: Any = None
    help: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    type: str = "any"
    optional: bool = False
    above_min: bool = False
    """True when the value must be strictly greater than ``min`` (a rate, a penalty, top-p)."""

    def __call__(self, value: Any) -> Any:
        """The checked, normalised value (``InvalidInput`` with a one-line message otherwise)."""
        if value is None and self.optional:
            return None
        return self.check(self.name, value)

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
        default = "none" if self.default is None else _shown(self.default)
        kind = f"{self.type} {self.limits}".strip()
        text = f"{self.name:22} {kind:20} default: {default}"
        return f"{text}  {self.help}" if self.help else text

    def from_text(self, text: str) -> Any:
        """A value typed as text (``--param key=value``) made the value ``check`` expects.

        Numbers, true/false and comma-separated lists are read by ``type``; "none" (or nothing) is None
        where the parameter may be None. Text that does not read as the type is returned as it is, so the
        check refuses it with its own message.
        """
        value = text.strip()
        if value.lower() in ("none", "") and (self.optional or self.default is None):
            return None
        if self.type in ("int", "number", "budget"):
            return _number_or_text(value)
        if self.type == "bool":
            lowered = value.lower()
            if lowered in ("true", "yes", "on", "1"):
                return True
            if lowered in ("false", "no", "off", "0"):
                return False
            return text
        if self.type in ("int list", "number list"):
            return [_number_or_text(v) for v in value.replace(" ", "").split(",") if v]
        if self.type == "choice list":
            return [v for v in value.replace(" ", "").split(",") if v]
        if self.type == "text list":
            return [text]
        return text


@dataclass(frozen=True)
class Rule:
    """A check together with what it allows (type, limits, choices): a ``Param`` still to be named."""

    check: Check
    type: str = "any"
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None

    def __call__(self, name: str, value: Any) -> Any:
        """Check ``value`` of parameter ``name``."""
        return self.check(name, value)

    def param(self, name: str, default: Any = None, help: str = "", optional: bool = False) -> Param:
        """This rule as parameter ``name``."""
        return Param(name, self.check, default, help, self.min, self.max, self.choices, self.type, optional)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _number_or_text(text: str) -> Any:
    try:
        x = float(text)
    except ValueError:
        return text
    return int(x) if x == int(x) and "." not in text and "e" not in text.lower() else x


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(_shown(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        short = value if len(value) <= 40 else value[:37] + "..."
        return repr(short) if not short or " " in short else short
    return str(value).lower() if isinstance(value, bool) else str(value)


def check_params(owner: str, schema: Sequence[Param], given: Mapping[str, Any] | None) -> dict[str, Any]:
    """Every parameter of ``schema``: its default overlaid with ``given``, checked.

    ``InvalidInput`` (one line) for a name the schema lacks, or on the first bad value.
    """
    by_name = {p.name: p for p in schema}
    given = dict(given or {})
    unknown = sorted(set(given) - set(by_name))
    if unknown:
        raise InvalidInput(f"{owner} has no parameter {unknown[0]!r}; it takes: {', '.join(by_name)}")
    return {p.name: p(given.get(p.name, p.default)) for p in schema}


def describe(schema: Sequence[Param]) -> list[str]:
    """One line per parameter (``Param.describe``), in the schema's order."""
    return [p.describe() for p in schema]


def whole(name: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    """A whole number within [lo, hi] (either bound optional); strings like "8" are accepted."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidInput(f"{name} must be a whole number (got {value!r})")
    try:
        x = float(value)
    except ValueError:
        raise InvalidInput(f"{name} must be a whole number (got {value!r})") from None
    if x != int(x):
        raise InvalidInput(f"{name} must be a whole number (got {value!r})")
    n = int(x)
    if lo is not None and hi is not None and not lo <= n <= hi:
        raise InvalidInput(f"{name} must be from {lo} to {hi} (got {n})")
    if lo is not None and n < lo:
        raise InvalidInput(f"{name} must be at least {lo} (got {n})")
    if hi is not None and n > hi:
        raise InvalidInput(f"{name} must be at most {hi} (got {n})")
    return n


def number(name: str, value: Any) -> float:
    """A finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidInput(f"{name} must be a number (got {value!r})")
    try:
        x = float(value)
    except ValueError:
        raise InvalidInput(f"{name} must be a number (got {value!r})") from None
    if x != x or x in (float("inf"), float("-inf")):
        raise InvalidInput(f"{name} must be a finite number (got {value!r})")
    return x


def positive(name: str, value: Any) -> float:
    """A finite number > 0."""
    x = number(name, value)
    if x <= 0:
        raise InvalidInput(f"{name} must be > 0 (got {x:g})")
    return x


def one_of(options: Sequence[str]) -> Check:
    """A check for one of ``options``."""

    def check(name: str, value: Any) -> str:
        if value not in options:
            raise InvalidInput(f"{name} must be one of: {', '.join(options)} (got {value!r})")
        return value

    return check


def listed(name: str, value: Any, item: Callable[[str, Any], Any], max_items: int = 64) -> list:
    """A non-empty list (or "a,b,c") of at most ``max_items`` values, each checked by ``item``."""
    if isinstance(value, str):
        value = [v for v in value.replace(" ", "").split(",") if v]
    if not isinstance(value, (list, tuple)) or not value:
        raise InvalidInput(f"{name} must be a non-empty list (got {value!r})")
    if len(value) > max_items:
        raise InvalidInput(f"{name} may hold at most {max_items} values (got {len(value)})")
    return [item(name, v) for v in value]


