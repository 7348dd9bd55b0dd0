"""The controls form: batch size, sampling, model, engine, device — refused in place when invalid."""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.containers import Grid, VerticalScroll
from textual.message import Message
from textual.suggester import SuggestFromList
from textual.validation import Function, Integer, Number, ValidationResult, Validator
from textual.widgets import Checkbox, Input, Label, Static

from tui_lab.engines.base import MAX_BATCH_SIZE
from tui_lab.errors import LabError
from tui_lab.ui.settings import DEVICES, ENGINE_CHOICES, LabSettings
from tui_lab.ui.theme import BATCH_PRESETS


@dataclass(frozen=True)
class Field:
    """One numeric or text control: settings attribute, label, parser, validators."""

    name: str
    label: str
    kind: type
    validators: tuple[Validator, ...]
    reload: bool = False
    """Changing it needs a new engine (model, engine, device)."""


FIELDS: tuple[Field, ...] = (
    Field("prompt", "prompt", str, (Function(lambda s: bool(s.strip()), "the prompt is empty"),)),
    Field("batch_size", "batch size", int,
          (Integer(1, MAX_BATCH_SIZE, failure_description=f"batch size must be 1..{MAX_BATCH_SIZE}"),)),
    Field("max_new_tokens", "max new tokens", int,
          (Integer(1, 4096, failure_description="max new tokens must be 1..4096"),)),
    Field("temperature", "temperature", float,
          (Number(0.0, 5.0, failure_description="temperature must be 0..5 (0 = greedy)"),)),
    Field("top_p", "top-p", float, (Number(0.0, 1.0, failure_description="top-p must be in (0, 1]"),
                                    Function(lambda s: _num(s) > 0, "top-p must be in (0, 1]"))),
    Field("top_k", "top-k (0=off)", int, (Integer(0, 100_000, failure_description="top-k must be >= 0 (0 = off)"),)),
    Field("repetition_penalty", "repetition pen.", float,
          (Number(0.01, 10.0, failure_description="repetition penalty must be > 0 (1 = off)"),)),
    Field("seed", "seed", int, (Integer(0, 2**31 - 1, failure_description="seed must be a whole number >= 0"),)),
    Field("model", "model", str, (Function(lambda s: bool(s.strip()), "type a model: embedded, a hub id, a dir"),),
          reload=True),
    Field("engine", "engine", str, (Function(lambda s: s in ENGINE_CHOICES, f"engine: {' or '.join(ENGINE_CHOICES)}"),),
          reload=True),
    Field("device", "device", str, (Function(lambda s: s in DEVICES, f"device: {', '.join(DEVICES)}"),), reload=True),
)


def _num(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return -1.0


class ControlsForm(VerticalScroll):
    """Compact one-line inputs; a value is applied only when valid, otherwise the reason shows below."""

    class SettingsChanged(Message):
        """All fields are valid; ``reload`` is True when model, engine or device changed."""

        def __init__(self, settings: LabSettings, reload: bool) -> None:
            super().__init__()
            self.settings = settings
            self.reload = reload

    def __init__(self, settings: LabSettings, engine_choices: tuple[str, ...] = ENGINE_CHOICES, **kwargs) -> None:
        super().__init__(**kwargs)
        self._settings = settings
        self._engine_choices = engine_choices

    def compose(self) -> ComposeResult:
        """Label + input per field, the greedy checkbox, and the message line."""
        yield Static(
            "Tab / shift+Tab move between boxes, Enter applies, Escape leaves (then r runs). "
            f"Invalid values are refused here. Outside a box: b / B cycle batch "
            f"{'·'.join(map(str, BATCH_PRESETS))}, g toggles greedy.",
            id="controls-help",
        )
        yield Label("", id="controls-error")
        with Grid(id="controls-grid"):
            for f in FIELDS:
                yield Label(f.label, classes="control-label")
                suggester = None
                if f.name == "engine":
                    suggester = SuggestFromList(self._engine_choices)
                elif f.name == "device":
                    suggester = SuggestFromList(DEVICES)
                validators = list(f.validators)
                if f.name == "engine":
                    validators = [self._engine_validator()]
                yield Input(str(getattr(self._settings, f.name)), id=f"ctl-{f.name}", validators=validators,
                            suggester=suggester, compact=True, valid_empty=False)
            yield Label("greedy", classes="control-label")
            yield Checkbox("temperature 0", self._settings.greedy, id="ctl-greedy", compact=True)

    def _engine_validator(self) -> Validator:
        choices = self._engine_choices
        return Function(lambda s: s in choices, f"engine: {' or '.join(choices)}")

    @property
    def settings(self) -> LabSettings:
        """The last valid settings."""
        return self._settings

    def set_values(self, settings: LabSettings) -> None:
        """Show ``settings`` in the inputs (used by quick-pick keys and lesson presets)."""
        self._settings = settings
        for f in FIELDS:
            widget = self.query_one(f"#ctl-{f.name}", Input)
            value = str(getattr(settings, f.name))
            if widget.value != value:
                with widget.prevent(Input.Changed):
                    widget.value = value
        checkbox = self.query_one("#ctl-greedy", Checkbox)
        if checkbox.value != settings.greedy:
            with checkbox.prevent(Checkbox.Changed):
                checkbox.value = settings.greedy
        self._show_error("")

    def _show_error(self, message: str) -> None:
        label = self.query_one("#controls-error", Label)
        label.update(message)
        label.set_class(bool(message), "-error")

    def _collect(self, final: bool) -> None:
        changes: dict[str, object] = {}
        for f in FIELDS:
            widget = self.query_one(f"#ctl-{f.name}", Input)
            result: ValidationResult | None = widget.validate(widget.value)
            if result is not None and not result.is_valid:
                self._show_error(f"✗ {f.label}: {result.failure_descriptions[0]} — value not applied")
                return
            changes[f.name] = f.kind(widget.value.strip() if f.kind is not str or f.name != "prompt" else widget.value)
        changes["greedy"] = self.query_one("#ctl-greedy", Checkbox).value
        try:
            new = self._settings.with_(**changes).validate()
        except LabError as exc:
            self._show_error(f"✗ {exc.message}")
            return
        self._show_error("")
        reload_needed = any(getattr(new, f.name) != getattr(self._settings, f.name) for f in FIELDS if f.reload)
        if reload_needed and not final:
            # Reloading a model takes time: only on Enter, not on every keystroke.
            new = new.with_(model=self._settings.model, engine=self._settings.engine, device=self._settings.device)
            reload_needed = False
        if new != self._settings or reload_needed:
            self._settings = new
            self.post_message(self.SettingsChanged(new, reload_needed))

    def on_input_changed(self, event: Input.Changed) -> None:
        """Apply valid edits as they are typed (reload-type fields wait for Enter)."""
        event.stop()
        self._collect(final=False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter applies everything, including model/engine/device (which reloads)."""
        event.stop()
        self._collect(final=True)

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        """Greedy on/off."""
        event.stop()
        self._collect(final=False)
