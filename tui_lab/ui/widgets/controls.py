"""The controls form: batch size, sampling, model, engine, device, server — refused in place when invalid.

A value applies when the learner presses Enter in its box or leaves the box, and only that box's value:
typing ``131`` never applies ``1`` and ``13`` on the way. Escape puts the applied value back and leaves
the box. Every value is checked by ``check_value``, the one place that decides what is valid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, VerticalScroll
from textual.message import Message
from textual.suggester import SuggestFromList
from textual.widgets import Checkbox, Input, Label, Static

from tui_lab.errors import LabError
from tui_lab.ui.settings import DEVICES, ENGINE_CHOICES, LabSettings
from tui_lab.ui.theme import BATCH_PRESETS


@dataclass(frozen=True)
class Field:
    """One control: settings attribute, label, and the Python type its text becomes."""

    name: str
    label: str
    kind: type
    reload: bool = False
    """Changing it needs a new engine (model, engine, device, server)."""


FIELDS: tuple[Field, ...] = (
    Field("prompt", "prompt", str),
    Field("batch_size", "batch size", int),
    Field("max_new_tokens", "max new tokens", int),
    Field("temperature", "temperature", float),
    Field("top_p", "top-p", float),
    Field("top_k", "top-k (0=off)", int),
    Field("repetition_penalty", "repetition pen.", float),
    Field("seed", "seed", int),
    Field("model", "model", str, reload=True),
    Field("engine", "engine", str, reload=True),
    Field("device", "device", str, reload=True),
    Field("base_url", "base URL (openai)", str, reload=True),
    Field("api_key_env", "API key env var", str, reload=True),
)


CONTROLLED_KEYS = frozenset({
    "prompt", "text", "prompts", "batch_size", "max_new_tokens", "temperature", "top_p", "top_k",
    "repetition_penalty", "seed", "engine", "device",
})
"""Experiment parameters the fields above already set (``text``/``prompts`` from the prompt box)."""


def experiment_keys(params: dict[str, Any]) -> list[str]:
    """The experiment parameters that get a box of their own: every one the fields above do not set."""
    return [k for k in params if k not in CONTROLLED_KEYS]


def show_value(value: Any) -> str:
    """A parameter value as the box shows it (lists in brackets, ``None`` empty), typed back the same way."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(show_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {show_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def check_value(name: str, text: str, engine_choices: tuple[str, ...] = ENGINE_CHOICES) -> Any:
    """The typed ``text`` of control ``name`` as its value, or ``LabError`` with a one-line reason.

    The checks are the experiments' own (``tui_lab.lab.experiments.CHECKS``) and the engines' option
    declarations, so a lesson preset, the CLI and the controls refuse the same values the same way.
    """
    from tui_lab.engines.options import OPENAI_OPTIONS
    from tui_lab.errors import InvalidInput
    from tui_lab.lab.experiments import CHECKS

    label = next((f.label for f in FIELDS if f.name == name), name).split(" (")[0]
    if name == "engine" and text.strip() not in engine_choices:
        raise InvalidInput(f"engine must be one of: {', '.join(engine_choices)} (got {text!r})")
    server = {o.name: o for o in OPENAI_OPTIONS}
    if name in ("base_url", "api_key_env"):
        if name == "base_url" and not text.strip():
            return ""  # only the openai engine needs one; it says so when it loads
        return server[name].check(label, text)
    value = text if name == "prompt" else text.strip()
    return CHECKS[name](label, value)


class ControlsForm(VerticalScroll):
    """Compact one-line inputs; a box's value applies on Enter or on leaving it, when valid."""

    BINDINGS = [Binding("escape", "restore", "restore the applied value and leave the box", show=False)]

    class ExperimentValue(Message):
        """A value typed into one of the experiment's own boxes (the app checks and applies it)."""

        def __init__(self, key: str, value: Any, widget: Input) -> None:
            super().__init__()
            self.key = key
            self.value = value
            self.widget = widget

    class SettingsChanged(Message):
        """A valid value was applied; ``reload`` is True when model, engine, device or server changed."""

        def __init__(self, settings: LabSettings, reload: bool) -> None:
            super().__init__()
            self.settings = settings
            self.reload = reload

    def __init__(self, settings: LabSettings, engine_choices: tuple[str, ...] = ENGINE_CHOICES,
                 cursor_blink: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self._settings = settings
        self._engine_choices = engine_choices
        self._cursor_blink = cursor_blink
        self._experiment: str = ""
        self._experiment_values: dict[str, Any] = {}

    def compose(self) -> ComposeResult:
        """Label + input per field, the greedy checkbox, and the message line."""
        yield Static(
            "Tab / shift+Tab move between boxes; Enter or leaving a box applies its value, Escape puts the "
            f"applied one back. Outside a box: r runs, b / B cycle batch {'·'.join(map(str, BATCH_PRESETS))}, "
            "g toggles greedy.",
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
                yield Input(self._shown(self._settings, f), id=f"ctl-{f.name}", suggester=suggester, compact=True)
            yield Label("greedy", classes="control-label")
            yield Checkbox("temperature 0", self._settings.greedy, id="ctl-greedy", compact=True)
        yield Static("", id="experiment-title")
        yield Grid(id="experiment-grid")

    def show_experiment(self, name: str, params: dict[str, Any]) -> None:
        """The loaded experiment's own values (image size, ``seq_len``, the budget preset, ...), one box each."""
        keys = experiment_keys(params)
        shown = {k: params[k] for k in keys}
        if name == self._experiment and shown == self._experiment_values:
            return
        same_keys = name == self._experiment and list(shown) == list(self._experiment_values)
        self._experiment, self._experiment_values = name, shown
        title = self.query_one("#experiment-title", Static)
        title.update(f"{name}: its own values (Enter applies; lists as [1, 4, 16])" if keys else "")
        title.display = bool(keys)
        grid = self.query_one("#experiment-grid", Grid)
        if same_keys:
            for key, value in shown.items():
                box = self.query_one(f"#exp-{key}", Input)
                if box.value != show_value(value):
                    with box.prevent(Input.Changed):
                        box.value = show_value(value)
            return
        self.call_next(self._rebuild, grid, shown)

    async def _rebuild(self, grid: Grid, shown: dict[str, Any]) -> None:
        """New boxes for another experiment's values (the old ones are gone first: the ids repeat)."""
        await grid.remove_children()
        widgets: list[Any] = []
        for key, value in shown.items():
            box = Input(show_value(value), id=f"exp-{key}", compact=True)
            box.cursor_blink = self._cursor_blink
            widgets += [Label(key.replace("_", " "), classes="control-label"), box]
        if widgets:
            await grid.mount(*widgets)

    def _experiment_value(self, widget: Input, restore_if_invalid: bool) -> None:
        key = (widget.id or "").removeprefix("exp-")
        if key not in self._experiment_values or widget.value == show_value(self._experiment_values[key]):
            return
        from tui_lab.lessons._values import ValueSyntaxError, parse_value

        try:
            value = parse_value(widget.value)
        except ValueSyntaxError as exc:
            self.show_error(f"✗ {key}: {exc} — value not applied")
            if restore_if_invalid:
                with widget.prevent(Input.Changed):
                    widget.value = show_value(self._experiment_values[key])
            return
        self.post_message(self.ExperimentValue(key, value, widget))

    def experiment_refused(self, key: str, message: str, widget: Input) -> None:
        """The app refused ``key``'s value: say why, put the applied value back unless the box is being edited."""
        self.show_error(f"✗ {message} — value not applied")
        if self.app.focused is not widget and key in self._experiment_values:
            with widget.prevent(Input.Changed):
                widget.value = show_value(self._experiment_values[key])

    @staticmethod
    def _shown(settings: LabSettings, f: Field) -> str:
        return str(getattr(settings, f.name))

    @property
    def settings(self) -> LabSettings:
        """The applied settings."""
        return self._settings

    def set_values(self, settings: LabSettings) -> None:
        """Show ``settings`` in the inputs (used by quick-pick keys and lesson presets)."""
        self._settings = settings
        for f in FIELDS:
            widget = self.query_one(f"#ctl-{f.name}", Input)
            value = self._shown(settings, f)
            if widget.value != value:
                with widget.prevent(Input.Changed):
                    widget.value = value
        checkbox = self.query_one("#ctl-greedy", Checkbox)
        if checkbox.value != settings.greedy:
            with checkbox.prevent(Checkbox.Changed):
                checkbox.value = settings.greedy
        self.show_error("")

    def show_error(self, message: str) -> None:
        """The message line under the help (red when it refuses a value; empty clears it)."""
        label = self.query_one("#controls-error", Label)
        label.update(message)
        label.set_class(bool(message), "-error")

    def _field_of(self, widget: Input) -> Field | None:
        name = (widget.id or "").removeprefix("ctl-")
        return next((f for f in FIELDS if f.name == name), None)

    def _apply(self, widget: Input, restore_if_invalid: bool) -> None:
        """Apply this one box's value (others keep their applied values)."""
        f = self._field_of(widget)
        if f is None:
            return
        applied = self._shown(self._settings, f)
        if widget.value == applied:
            self.show_error("")
            return
        try:
            value = check_value(f.name, widget.value, self._engine_choices)
            new = self._settings.with_(**{f.name: value}).validate()
        except LabError as exc:
            self.show_error(f"✗ {exc.message} — value not applied")
            if restore_if_invalid:
                with widget.prevent(Input.Changed):
                    widget.value = applied
            return
        self.show_error("")
        self._settings = new
        self.post_message(self.SettingsChanged(new, f.reload))

    def on_input_changed(self, event: Input.Changed) -> None:
        """Typing applies nothing: a half-typed number is not a value."""
        event.stop()
        f = self._field_of(event.input)
        if f is not None and event.value == self._shown(self._settings, f):
            self.show_error("")  # back to the applied value: the refusal no longer applies

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter applies this box's value (model, engine, device or server reload the engine)."""
        event.stop()
        if (event.input.id or "").startswith("exp-"):
            self._experiment_value(event.input, restore_if_invalid=False)
        else:
            self._apply(event.input, restore_if_invalid=False)

    def on_input_blurred(self, event: Input.Blurred) -> None:
        """Leaving a box applies its value; an invalid one is refused and the applied value shown again."""
        event.stop()
        if (event.input.id or "").startswith("exp-"):
            self._experiment_value(event.input, restore_if_invalid=True)
        else:
            self._apply(event.input, restore_if_invalid=True)

    def action_restore(self) -> None:
        """Escape: put the applied value back in the focused box and leave the form."""
        focused = self.app.focused
        if isinstance(focused, Input) and (f := self._field_of(focused)) is not None:
            with focused.prevent(Input.Changed):
                focused.value = self._shown(self._settings, f)
        elif isinstance(focused, Input) and (key := (focused.id or "").removeprefix("exp-")) in self._experiment_values:
            with focused.prevent(Input.Changed):
                focused.value = show_value(self._experiment_values[key])
        self.show_error("")
        self.screen.set_focus(None)

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        """Greedy on/off applies at once (a toggle has no half-typed state)."""
        event.stop()
        new = self._settings.with_(greedy=event.value)
        if new != self._settings:
            self._settings = new
            self.post_message(self.SettingsChanged(new, False))
