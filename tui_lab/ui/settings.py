"""The learner's current choices (batch, sampling, model, engine, device), validated in one place."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from tui_lab.engines.base import MAX_BATCH_SIZE, SamplingParams
from tui_lab.errors import InvalidInput

DEFAULT_PROMPT = "The future of AI is"
DEVICES = ("auto", "cpu", "cuda")
ENGINE_CHOICES = ("transformers", "vllm", "openai")
"""Engines offered in the controls; tests inject others through ``AppOptions.engine_factory``."""


@dataclass(frozen=True)
class LabSettings:
    """Everything the Run key needs; widgets edit a copy and the app keeps the current one."""

    prompt: str = DEFAULT_PROMPT
    batch_size: int = 1
    max_new_tokens: int = 32
    greedy: bool = True
    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    seed: int = 0
    model: str = "embedded"
    engine: str = "transformers"
    device: str = "auto"
    base_url: str = ""
    """The openai engine's server, e.g. http://127.0.0.1:8000/v1 (unused by the other engines)."""
    api_key_env: str = ""
    """NAME of the environment variable holding the openai engine's API key; the key is never stored."""

    def sampling(self) -> SamplingParams:
        """The engine's sampling parameters (greedy means temperature 0), validated."""
        return SamplingParams(
            max_new_tokens=self.max_new_tokens,
            temperature=0.0 if self.greedy else self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            repetition_penalty=self.repetition_penalty,
            seed=self.seed,
        ).validate()

    def validate(self) -> LabSettings:
        """Raise ``InvalidInput`` for anything out of range."""
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise InvalidInput(f"batch size must be 1..{MAX_BATCH_SIZE} (got {self.batch_size})")
        if not self.prompt.strip():
            raise InvalidInput("the prompt is empty: type a few words to continue")
        self.sampling()
        return self

    def with_(self, **changes: object) -> LabSettings:
        """A copy with some fields changed."""
        return replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain-JSON form (export)."""
        return asdict(self)
