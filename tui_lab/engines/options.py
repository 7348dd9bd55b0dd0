"""Engine option declarations: each engine class lists what it accepts, and the CLI and Controls build from that.

Pure (no engine, lab or UI imports), so any layer can read it. ``Option`` carries what a form field or
a command-line flag needs: name, type, default, one help line and a check that returns the normalised
value or raises ``InvalidInput``. ``secret_name`` marks an option whose value is the NAME of an
environment variable holding a secret (an API key): the name may be shown, the secret never is.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import import_module
from typing import Any
from urllib.parse import urlsplit

from tui_lab.errors import InvalidInput

Check = Callable[[str, Any], Any]


def _pass(name: str, value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Option:
    """One engine constructor option: ``name`` (keyword), ``type``, ``default``, ``help``, ``check``."""

    name: str
    type: type
    default: Any
    help: str
    check: Check = _pass
    secret_name: bool = False
    """The value names an environment variable that holds a secret; the secret itself is never read here."""

    @property
    def flag(self) -> str:
        """The command-line flag (``base_url`` → ``--base-url``)."""
        return "--" + self.name.replace("_", "-")

    def validate(self, value: Any) -> Any:
        """The normalised value, or ``InvalidInput`` with a one-line reason."""
        return self.check(self.name.replace("_", " "), value)


def check_choice(options: tuple[str, ...]) -> Check:
    """A check accepting one of ``options``."""

    def check(name: str, value: Any) -> str:
        if value not in options:
            raise InvalidInput(f"{name} must be one of: {', '.join(options)} (got {value!r})")
        return value

    return check


def check_text(name: str, value: Any) -> str:
    """Some non-empty text."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{name} must be some text (got {value!r})")
    return value.strip()


def check_base_url(name: str, value: Any) -> str:
    """An http(s) URL with a host, e.g. ``http://127.0.0.1:8000/v1``."""
    text = value.strip() if isinstance(value, str) else ""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput(f"{name} must look like http://host:port/v1 (got {value!r})")
    return text


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_env_name(name: str, value: Any) -> str:
    """The NAME of an environment variable (empty: none). A value that looks like a key itself is refused."""
    text = value.strip() if isinstance(value, str) else ""
    if text and not _ENV_NAME.fullmatch(text):
        raise InvalidInput(f"{name} takes the name of an environment variable (like MY_API_KEY), not the key itself")
    return text


DEVICE_OPTION = Option("device", str, "auto", "where to run: auto, cpu or cuda", check_choice(("auto", "cpu", "cuda")))
MODEL_OPTION = Option("model", str, "embedded", "'embedded', a hub id, a local dir, or arch:NAME", check_text)

LOCAL_OPTIONS: tuple[Option, ...] = (MODEL_OPTION, DEVICE_OPTION)
"""What the in-process engines (transformers, vLLM) take from the learner's settings."""

OPENAI_OPTIONS: tuple[Option, ...] = (
    Option("base_url", str, "", "the server's URL, e.g. http://127.0.0.1:8000/v1", check_base_url),
    Option("model", str, "", "model name on the server (empty: the server's first model)"),
    Option("api_key_env", str, "", "NAME of the environment variable holding the API key (empty: none)",
           check_env_name, secret_name=True),
    Option("api", str, "completions", "endpoint: completions or chat", check_choice(("completions", "chat"))),
)
"""The OpenAI-compatible client: where the server is and how to authenticate; no device."""


def declared_options(engine_name: str) -> tuple[Option, ...]:
    """The ``OPTIONS`` the engine class declares (none for an unknown name or a class that declares none)."""
    from tui_lab.engines import ENGINES  # engine modules import torch and friends only inside functions

    target = ENGINES.get(engine_name)
    if target is None:
        return ()
    module_name, class_name = target.split(":")
    cls = getattr(import_module(module_name), class_name)
    return tuple(getattr(cls, "OPTIONS", ()))


def engine_kwargs(engine_name: str, settings: Any) -> dict[str, Any]:
    """Constructor keywords for ``engine_name`` from ``settings`` (a mapping or an object with attributes).

    Only the options that engine declares are passed, each checked; empty text means "not given" (the
    engine's default). Passing ``device=`` to the OpenAI engine was a crash; this is the one place that
    decides what each engine receives.
    """
    out: dict[str, Any] = {}
    for option in declared_options(engine_name):
        if isinstance(settings, Mapping):
            value = settings.get(option.name)
        else:
            value = getattr(settings, option.name, None)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        out[option.name] = option.validate(value)
    return out


def secret_present(option: Option, value: str) -> bool:
    """Whether the environment variable named by a ``secret_name`` option is set (its value is not returned)."""
    return bool(option.secret_name and value and os.environ.get(value))
