"""The learner's current choices: the general fields (prompt, batch, sampling) and the engine with its options.

The general fields are the shared ``Param``s (``tui_lab.params``); the engine's options are what that
engine declares (``tui_lab.engines.options.ENGINE_OPTIONS``), kept generically by name. Every value is
checked by its ``Param``, so the Controls, a lesson preset and the CLI refuse the same values the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from tui_lab.engines.base import SamplingParams
from tui_lab.engines.options import ENGINE_NAMES, ENGINE_OPTIONS
from tui_lab.host.protocol import Load
from tui_lab.params import (
    BATCH_SIZE,
    DEFAULT_PROMPT,
    MAX_NEW_TOKENS_PARAM,
    PROMPT,
    REPETITION_PENALTY,
    SEED,
    TEMPERATURE,
    TOP_K,
    TOP_P,
    Param,
    Value,
)

GENERAL_FIELDS: tuple[Param, ...] = (PROMPT, BATCH_SIZE, MAX_NEW_TOKENS_PARAM, TEMPERATURE, TOP_P, TOP_K,
                                     REPETITION_PENALTY, SEED)
"""The Controls' general fields, in the order they are shown (``CONTROL_FIELDS`` of the experiments)."""

ENGINE_FIELD = Param("engine", "choice", ENGINE_NAMES[0], "the engine that runs the model (changing it reloads)",
                     choices=ENGINE_NAMES)


@dataclass(frozen=True)
class LabSettings:
    """Everything a run and an engine load need; widgets edit a copy and the app keeps the current one."""

    prompt: str = DEFAULT_PROMPT
    batch_size: int = 1
    max_new_tokens: int = 32
    greedy: bool = True
    temperature: float = 0.7
    """The sampling temperature while greedy is off."""
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    seed: int = 0
    engine: str = ENGINE_NAMES[0]
    engine_options: Mapping[str, Value] = field(default_factory=dict)
    """The engine's options as given (command line, Controls); one not given takes its declared default.
    Options no engine declares (a test engine's clock) pass through to the engine as they are."""

    # ------------------------------------------------------------------------------------- general fields

    def field_value(self, name: str) -> Value:
        """The value general field ``name`` gives an experiment parameter (greedy makes the temperature 0)."""
        if name == "temperature" and self.greedy:
            return 0.0
        return getattr(self, name)

    def sampling(self) -> SamplingParams:
        """The engine's sampling parameters, validated."""
        return SamplingParams(
            max_new_tokens=self.max_new_tokens, temperature=0.0 if self.greedy else self.temperature,
            top_p=self.top_p, top_k=self.top_k, repetition_penalty=self.repetition_penalty, seed=self.seed,
        ).validate()

    def validate(self) -> LabSettings:
        """Every general field checked by its ``Param`` (``InvalidInput`` in one line)."""
        for param in GENERAL_FIELDS:
            param.check(getattr(self, param.name))
        self.sampling()
        return self

    def with_(self, **changes: Value) -> LabSettings:
        """A copy with some fields changed."""
        return replace(self, **changes)  # type: ignore[arg-type]

    # -------------------------------------------------------------------------------------------- engine

    @property
    def engine_params(self) -> tuple[Param, ...]:
        """The options the selected engine declares, in the order the Controls show them."""
        return ENGINE_OPTIONS.get(self.engine, ())

    def option(self, name: str) -> Value:
        """Option ``name`` of the engine: as given, else its declared default."""
        if name in self.engine_options:
            return self.engine_options[name]
        return next((p.default for p in self.engine_params if p.name == name), None)

    def with_option(self, name: str, value: Value) -> LabSettings:
        """A copy with engine option ``name`` set (None: back to its default)."""
        options = {k: v for k, v in self.engine_options.items() if k != name}
        if value is not None:
            options[name] = value
        return replace(self, engine_options=options)

    def with_engine(self, engine: str) -> LabSettings:
        """Another engine, keeping the options it declares too (model, device) and those no engine a learner
        picks declares (a test engine's own)."""
        declared = {p.name for p in ENGINE_OPTIONS.get(engine, ())}
        known = {p.name for name in ENGINE_NAMES for p in ENGINE_OPTIONS[name]}
        options = {k: v for k, v in self.engine_options.items() if k in declared or k not in known}
        return replace(self, engine=engine, engine_options=options)

    def load_command(self) -> Load:
        """The host command that loads this engine with these options (None and empty text: not given)."""
        options = {k: v for k, v in self.engine_options.items() if v is not None and v != ""}
        model, device = options.pop("model", ""), options.pop("device", "")
        return Load(self.engine, str(model), str(device), options)

    def label(self) -> str:
        """What is loaded, in a few words: "embedded · transformers/cpu" (a server's URL for openai)."""
        names = {p.name for p in self.engine_params}
        model = self.option("model") or ("the server's model" if "base_url" in names else "")
        where = f"/{self.option('device')}" if "device" in names else ""
        server = f" @ {self.option('base_url')}" if "base_url" in names and self.option("base_url") else ""
        return f"{model} · {self.engine}{where}{server}"

    def to_dict(self) -> dict[str, Value]:
        """Plain-JSON form (export): the general fields, the engine and its declared options (a secret's
        variable NAME, never the secret)."""
        general = {p.name: getattr(self, p.name) for p in GENERAL_FIELDS}
        options = {p.name: self.option(p.name) for p in self.engine_params}
        return {**general, "greedy": self.greedy, "engine": self.engine, "engine_options": options}
