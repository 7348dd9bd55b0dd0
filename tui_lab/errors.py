"""Errors a learner can act on.

Every error the engines, models or lab raise for a condition outside the code's
control (bad input, missing GPU, out of memory, gated model, offline hub) is a
``LabError``: its message is one line that says what happened and what to do.
The CLI prints it and exits with status 2; the TUI shows it in the live panel.
"""

from __future__ import annotations


class LabError(Exception):
    """An error with a one-line, user-facing message (and an optional hint)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}" if self.hint else self.message


class InvalidInput(LabError):
    """A parameter outside its allowed range (batch size, top-p, ...)."""


class ModelNotFound(LabError):
    """The model spec names nothing we can load (unknown id, missing dir)."""


class GatedModel(LabError):
    """The hub model needs an accepted licence and a token."""


class OfflineHub(LabError):
    """The hub cannot be reached and the model is not cached locally."""


class DeviceUnavailable(LabError):
    """The requested device (e.g. CUDA) is not present."""


class EngineUnavailable(LabError):
    """The engine's package is not installed (e.g. vLLM)."""


class OutOfMemory(LabError):
    """The device ran out of memory; ``largest_batch`` is the estimate of what fits."""

    def __init__(self, message: str, hint: str | None = None, largest_batch: int | None = None) -> None:
        super().__init__(message, hint)
        self.largest_batch = largest_batch


class EngineFailure(LabError):
    """The engine failed while generating (server error, malformed stream, ...)."""


BUG_HINT = "this looks like a bug; the app keeps running — try another setting"


def describe(exc: BaseException) -> tuple[str, str]:
    """(message, what to do) for any error the host, the app or the CLI reports: the one map of errors.

    A ``LabError`` says both itself (an out-of-memory error adds the largest batch that should fit); a
    missing package says to install it; anything else is a bug, named by its type.
    """
    if isinstance(exc, OutOfMemory):
        hint = exc.hint or "lower the batch size or max new tokens"
        if exc.largest_batch:
            hint = f"{hint.rstrip('. ')}. Largest batch that should fit: {exc.largest_batch}."
        return exc.message, hint
    if isinstance(exc, LabError):
        return exc.message, exc.hint or ""
    if isinstance(exc, ImportError):
        return (f"a package is missing: {exc}",
                "install it (see README: pip install -e '.[cpu]' on CPU), or choose another engine")
    return f"{type(exc).__name__}: {exc}", BUG_HINT


def one_line(message: str, hint: str = "") -> str:
    """A message and its hint as one line (``message; hint``), line breaks inside either flattened."""
    text = " ".join(str(message).split())
    if hint:
        text = f"{text.rstrip(' .;:,')}; {' '.join(hint.split())}"
    return text


def error_text(exc: BaseException) -> str:
    """Any error as one line with what to do (``describe`` then ``one_line``)."""
    return one_line(*describe(exc))
