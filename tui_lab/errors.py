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
