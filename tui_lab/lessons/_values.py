"""A small parser for the values in lesson front matter and step directives.

Lesson files are data written by hand, so the accepted syntax is deliberately
small: ``key: value`` lines whose values are numbers, booleans, ``null``,
quoted or bare strings, and flow lists/maps (``[1, 8, 32]``, ``{ttft_p90: 0.5}``),
nested as deep as needed. We parse it ourselves rather than depend on PyYAML,
which is only installed transitively.
"""

from __future__ import annotations

import re

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_INT = re.compile(r"^[+-]?\d+$")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


class ValueSyntaxError(ValueError):
    """A value that does not parse; ``column`` is 0-based within the value text."""

    def __init__(self, message: str, column: int = 0) -> None:
        super().__init__(message)
        self.column = column


def parse_scalar(text: str, *, keep_digits: bool = False) -> object:
    """A bare or quoted scalar: int, float, bool, None or str.

    ``keep_digits`` keeps numbers with a leading zero (``01``) as strings, which is
    what lesson ids need.
    """
    s = text.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'":
        return _unquote(s)
    low = s.lower()
    if low in ("true", "yes"):
        return True
    if low in ("false", "no"):
        return False
    if low in ("null", "none", "~", ""):
        return None
    if _NUMBER.match(s):
        if keep_digits and len(s) > 1 and s[0] == "0" and s[1].isdigit():
            return s
        return int(s) if _INT.match(s) else float(s)
    return s


def _unquote(s: str) -> str:
    body = s[1:-1]
    if s[0] == '"':
        return body.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
    return body.replace("''", "'")


def parse_value(text: str) -> object:
    """Parse one value, including flow lists and maps; raises ``ValueSyntaxError``."""
    parser = _FlowParser(text)
    value = parser.value(top=True)
    parser.skip_ws()
    if parser.pos != len(text):
        raise ValueSyntaxError(f"unexpected {text[parser.pos]!r}", parser.pos)
    return value


class _FlowParser:
    """Recursive descent over ``[a, b]`` / ``{k: v}`` with scalars inside."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def value(self, top: bool = False) -> object:
        self.skip_ws()
        if self.pos >= len(self.text):
            if top:
                return None
            raise ValueSyntaxError("value missing", self.pos)
        ch = self.text[self.pos]
        if ch == "[":
            return self._list()
        if ch == "{":
            return self._map()
        if ch in "\"'":
            return self._quoted()
        return self._bare(top)

    def _quoted(self) -> str:
        quote = self.text[self.pos]
        start = self.pos
        self.pos += 1
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == "\\" and quote == '"':
                self.pos += 2
                continue
            if ch == quote:
                if quote == "'" and self.text[self.pos + 1 : self.pos + 2] == "'":
                    self.pos += 2
                    continue
                self.pos += 1
                return _unquote(self.text[start : self.pos])
            self.pos += 1
        raise ValueSyntaxError("unclosed quote", start)

    def _bare(self, top: bool) -> object:
        start = self.pos
        # At the top level a bare string runs to the end of the line (commas allowed);
        # inside a list or map it stops at the next delimiter.
        stops = "" if top else ",]}"
        while self.pos < len(self.text) and self.text[self.pos] not in stops:
            self.pos += 1
        return parse_scalar(self.text[start : self.pos])

    def _list(self) -> list:
        start = self.pos
        self.pos += 1
        items: list = []
        self.skip_ws()
        if self._peek() == "]":
            self.pos += 1
            return items
        while True:
            items.append(self.value())
            self.skip_ws()
            ch = self._peek()
            if ch == ",":
                self.pos += 1
            elif ch == "]":
                self.pos += 1
                return items
            else:
                raise ValueSyntaxError("list not closed with ']'", start if ch == "" else self.pos)

    def _map(self) -> dict:
        start = self.pos
        self.pos += 1
        out: dict = {}
        self.skip_ws()
        if self._peek() == "}":
            self.pos += 1
            return out
        while True:
            self.skip_ws()
            key_start = self.pos
            colon = self.text.find(":", self.pos)
            if colon < 0:
                raise ValueSyntaxError("expected 'key: value' in map", key_start)
            key = self.text[key_start:colon].strip()
            if not _KEY.match(key):
                raise ValueSyntaxError(f"bad key {key!r}", key_start)
            self.pos = colon + 1
            out[key] = self.value()
            self.skip_ws()
            ch = self._peek()
            if ch == ",":
                self.pos += 1
            elif ch == "}":
                self.pos += 1
                return out
            else:
                raise ValueSyntaxError("map not closed with '}'", start if ch == "" else self.pos)

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""


def is_key(text: str) -> bool:
    """Whether ``text`` is a valid key (letters, digits, ``_ . -``; not starting with a digit)."""
    return bool(_KEY.match(text))
