"""The Controls tab, built from the declarations: every box is a ``Param`` and is checked by it.

Three groups: the general fields (the shared ``Param``s: prompt, batch size, sampling), the engine and
the options it declares (``ENGINE_OPTIONS``: vLLM's max_num_seqs, the openai server's URL, ...), and the
loaded experiment's own values (its parameters no general field sets). A value applies when the learner
presses Enter in its box or leaves the box, and only that box's value: typing ``131`` never applies ``1``
and ``13`` on the way. Escape puts the applied value back and stays in the box; Escape in a box that shows
its applied value leaves it. Tab moves through the boxes in order (the app starts it at the first box); the
box with the cursor and its label are highlighted. A box of text (a prompt) keeps its text when entered: the
cursor goes to its end, so one stray key never replaces it. An API key is never typed here: its box takes
the NAME of the environment variable that holds it, and says whether it is set.
"""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, VerticalScroll
from textual.message import Message
from textual.suggester import SuggestFromList
from textual.widget import Widget
from textual.widgets import Checkbox, Input, Label, Static

from tui_lab.engines.options import secret_present
from tui_lab.errors import LabError
from tui_lab.lab.experiment import Params
from tui_lab.params import Param, Value
from tui_lab.ui.settings import ENGINE_FIELD, GENERAL_FIELDS, LabSettings
from tui_lab.ui.theme import BATCH_PRESETS

TEXT_LIST_SEPARATOR = " | "
"""How a list of texts (prompts) is written in one box."""
SELECTED_ON_ENTRY = ("int", "number", "bool", "choice")
"""Types whose box selects its short value when entered, so typing replaces it; any other box keeps its text."""


def box_text(param: Param, value: Value) -> str:
    """A value as its box shows it, typed back the same way (lists comma-separated, None empty)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        separator = TEXT_LIST_SEPARATOR if param.type == "text list" else ", "
        return separator.join(box_text(param, v) for v in value)
    if isinstance(value, dict):
        return ",".join(f"{k}={box_text(param, v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def read_box(param: Param, text: str) -> Value:
    """The value typed into ``param``'s box, checked by ``param`` (``InvalidInput`` in one line)."""
    value = param.from_text(text)
    if param.type == "text list" and isinstance(value, str):
        value = [part.strip() for part in value.split(TEXT_LIST_SEPARATOR.strip())]
    return param.check(value)


def label_of(param: Param, value: Value = None) -> str:
    """A box's label: the parameter's name in words (a secret's variable also says whether it is set)."""
    label = param.name.replace("_", " ")
    if param.secret_name and value:
        label += " (set)" if secret_present(param, value) else " (not set)"
    return label


class ControlsForm(VerticalScroll):
    """Compact one-line boxes; a box's value applies on Enter or on leaving it, when its ``Param`` accepts it."""

    BINDINGS = [Binding("escape", "restore", "restore the applied value (again: leave the box)", show=False)]

    class SettingsChanged(Message):
        """A valid value was applied; ``reload`` is True when the engine or one of its options changed."""

        def __init__(self, settings: LabSettings, reload: bool) -> None:
            super().__init__()
            self.settings = settings
            self.reload = reload

    class ExperimentValue(Message):
        """A value typed into one of the experiment's own boxes, checked by its ``Param`` (the app checks it
        with the experiment's other values and applies it)."""

        def __init__(self, key: str, value: Value, box: Input) -> None:
            super().__init__()
            self.key = key
            self.value = value
            self.box = box

    def __init__(self, settings: LabSettings, cursor_blink: bool = True, id: str | None = None) -> None:
        super().__init__(id=id)
        self._settings = settings
        self._cursor_blink = cursor_blink
        self._options_of = settings.engine
        self._experiment = ""
        self._own: dict[str, Param] = {}
        self._own_values: Params = {}

    # ------------------------------------------------------------------------------------------ building

    def compose(self) -> ComposeResult:
        """Help, the message line, the general fields and greedy, the engine and its options, the experiment's."""
        yield Static(
            "Tab / shift+Tab move between boxes; Enter or leaving a box applies its value; Escape puts the "
            "applied one back, a second Escape leaves the box (ctrl+u clears to the cursor). Outside a box: r "
            f"runs, b / B cycle batch {'·'.join(map(str, BATCH_PRESETS))}, g toggles greedy; changing the engine "
            "or its options reloads it.",
            id="controls-help",
        )
        yield Label("", id="controls-error")
        with Grid(id="controls-grid"):
            for param in GENERAL_FIELDS:
                yield Label(label_of(param), classes="control-label")
                yield self._box(param, getattr(self._settings, param.name), f"ctl-{param.name}")
            yield Label("greedy", classes="control-label")
            yield Checkbox("temperature 0", self._settings.greedy, id="ctl-greedy", compact=True)
            yield Label(label_of(ENGINE_FIELD), classes="control-label")
            yield self._box(ENGINE_FIELD, self._settings.engine, "ctl-engine")
        with Grid(id="engine-grid"):
            yield from self._option_widgets(self._settings)
        yield Static("", id="experiment-title")
        yield Grid(id="experiment-grid")

    def _box(self, param: Param, value: Value, box_id: str) -> Input:
        choices = param.choices or (("true", "false") if param.type == "bool" else None)
        box = Input(box_text(param, value), id=box_id, tooltip=param.help or None, compact=True,
                    suggester=SuggestFromList(choices) if choices else None,
                    select_on_focus=param.type in SELECTED_ON_ENTRY)
        box.cursor_blink = self._cursor_blink
        return box

    def _option_widgets(self, settings: LabSettings) -> list[Widget]:
        widgets: list[Widget] = []
        for param in settings.engine_params:
            value = settings.option(param.name)
            widgets += [Label(label_of(param, value), id=f"lbl-{param.name}", classes="control-label"),
                        self._box(param, value, f"ctl-{param.name}")]
        return widgets

    async def _rebuild_options(self, settings: LabSettings) -> None:
        """Another engine's options (the old boxes go first: model and device repeat their ids)."""
        grid = self.query_one("#engine-grid", Grid)
        await grid.remove_children()
        await grid.mount(*self._option_widgets(settings))

    def show_experiment(self, name: str, params: tuple[Param, ...], values: Params) -> None:
        """The loaded experiment's own values (image size, ``seq_len``, the budget preset, ...), one box each."""
        own = {p.name: p for p in params}
        shown = {k: values.get(k) for k in own}
        if name == self._experiment and shown == self._own_values:
            return
        same_boxes = name == self._experiment and list(own) == list(self._own)
        self._experiment, self._own, self._own_values = name, own, shown
        title = self.query_one("#experiment-title", Static)
        title.update(f"{name}: its own values (Enter applies; lists as 1, 4, 16)" if own else "")
        title.display = bool(own)
        if same_boxes:
            for key, param in own.items():
                self._show(self.query_one(f"#exp-{key}", Input), box_text(param, shown[key]))
            return
        self.call_next(self._rebuild_experiment)

    async def _rebuild_experiment(self) -> None:
        """New boxes for another experiment's values (the old ones are gone first: the ids repeat)."""
        grid = self.query_one("#experiment-grid", Grid)
        await grid.remove_children()
        widgets: list[Widget] = []
        for key, param in self._own.items():
            widgets += [Label(label_of(param), classes="control-label"),
                        self._box(param, self._own_values[key], f"exp-{key}")]
        if widgets:
            await grid.mount(*widgets)

    def boxes(self) -> list[Widget]:
        """Every box a learner can enter, in the order shown (general fields, greedy, engine, its options, the
        experiment's own values)."""
        return [w for w in self.query("Input, Checkbox") if w.display and w.focusable]

    def cycle_focus(self, direction: int) -> bool:
        """Put the cursor in the next (1) or previous (-1) box, from the first (or last) when none has it;
        False when there is no box."""
        boxes = self.boxes()
        if not boxes:
            return False
        focused = self.app.focused
        if focused in boxes:
            target = boxes[(boxes.index(focused) + direction) % len(boxes)]
        else:
            target = boxes[0] if direction > 0 else boxes[-1]
        target.focus()
        return True

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        """The box with the cursor: its label lights up too."""
        self._mark(event.widget, True)

    def on_descendant_blur(self, event: events.DescendantBlur) -> None:
        """The cursor left a box: its label goes back."""
        self._mark(event.widget, False)

    @staticmethod
    def _mark(box: Widget, on: bool) -> None:
        parent = box.parent
        if parent is None:
            return
        siblings = list(parent.children)
        index = siblings.index(box)
        if index > 0 and isinstance(siblings[index - 1], Label):
            siblings[index - 1].set_class(on, "-focused")

    # ------------------------------------------------------------------------------------------- values

    @property
    def settings(self) -> LabSettings:
        """The applied settings."""
        return self._settings

    def _param_of(self, box: Input) -> Param | None:
        """The ``Param`` a box edits (None for a box that is not the form's)."""
        box_id = box.id or ""
        if box_id.startswith("exp-"):
            return self._own.get(box_id.removeprefix("exp-"))
        name = box_id.removeprefix("ctl-")
        if name == ENGINE_FIELD.name:
            return ENGINE_FIELD
        return next((p for p in (*GENERAL_FIELDS, *self._settings.engine_params) if p.name == name), None)

    def _applied(self, box: Input, param: Param) -> str:
        """The text of the value ``box`` has applied."""
        if (box.id or "").startswith("exp-"):
            return box_text(param, self._own_values.get(param.name))
        if param is ENGINE_FIELD:
            return self._settings.engine
        if param in GENERAL_FIELDS:
            return box_text(param, getattr(self._settings, param.name))
        return box_text(param, self._settings.option(param.name))

    @staticmethod
    def _show(box: Input, text: str) -> None:
        if box.value != text:
            with box.prevent(Input.Changed):
                box.value = text

    def set_values(self, settings: LabSettings) -> None:
        """Show ``settings`` in the boxes (quick-pick keys, lesson presets, a reload)."""
        engine_changed = settings.engine != self._options_of
        self._settings = settings
        for param in GENERAL_FIELDS:
            self._show(self.query_one(f"#ctl-{param.name}", Input), box_text(param, getattr(settings, param.name)))
        self._show(self.query_one("#ctl-engine", Input), settings.engine)
        checkbox = self.query_one("#ctl-greedy", Checkbox)
        if checkbox.value != settings.greedy:
            with checkbox.prevent(Checkbox.Changed):
                checkbox.value = settings.greedy
        if engine_changed:
            self._options_of = settings.engine
            self.call_next(self._rebuild_options, settings)
        else:
            for param in settings.engine_params:
                value = settings.option(param.name)
                self._show(self.query_one(f"#ctl-{param.name}", Input), box_text(param, value))
                self.query_one(f"#lbl-{param.name}", Label).update(label_of(param, value))
        self.show_error("")

    def show_error(self, message: str, error: bool = True) -> None:
        """The message line under the help (red when it refuses a value, plain when ``error`` is False; empty
        clears it)."""
        label = self.query_one("#controls-error", Label)
        label.update(message)
        label.set_class(bool(message) and error, "-error")

    def _apply(self, box: Input, restore_if_invalid: bool) -> None:
        """Apply this one box's value (the others keep theirs)."""
        param = self._param_of(box)
        if param is None:
            return
        applied = self._applied(box, param)
        if box.value == applied:
            self.show_error("")
            return
        try:
            value = read_box(param, box.value)
            if (box.id or "").startswith("exp-"):
                self.post_message(self.ExperimentValue(param.name, value, box))
                return
            new, reload = self._with(param, value)
        except LabError as exc:
            self.show_error(f"✗ {exc.message} — value not applied")
            if restore_if_invalid:
                self._show(box, applied)
            return
        self.show_error("")
        self.set_values(new)
        self.post_message(self.SettingsChanged(new, reload))

    def _with(self, param: Param, value: Value) -> tuple[LabSettings, bool]:
        """The settings with ``param`` set, and whether the engine must be loaded again."""
        if param is ENGINE_FIELD:
            return self._settings.with_engine(str(value)), True
        if param in GENERAL_FIELDS:
            return self._settings.with_(**{param.name: value}).validate(), False
        return self._settings.with_option(param.name, value), True

    def experiment_refused(self, key: str, message: str, box: Input) -> None:
        """The app refused ``key``'s value: say why, put the applied value back unless the box is being edited."""
        self.show_error(f"✗ {message} — value not applied")
        param = self._own.get(key)
        if self.app.focused is not box and param is not None:
            self._show(box, box_text(param, self._own_values.get(key)))

    # ------------------------------------------------------------------------------------------- events

    def on_input_changed(self, event: Input.Changed) -> None:
        """Typing applies nothing: a half-typed number is not a value."""
        event.stop()
        param = self._param_of(event.input)
        if param is not None and event.value == self._applied(event.input, param):
            self.show_error("")  # back to the applied value: the refusal no longer applies

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter applies this box's value (the engine or an engine option reloads the engine)."""
        event.stop()
        self._apply(event.input, restore_if_invalid=False)

    def on_input_blurred(self, event: Input.Blurred) -> None:
        """Leaving a box applies its value; an invalid one is refused and the applied value shown again."""
        event.stop()
        self._apply(event.input, restore_if_invalid=True)

    def action_restore(self) -> None:
        """Escape: put the applied value back in the focused box and stay there; in a box that already shows its
        applied value, leave the form (keys act again)."""
        focused = self.app.focused
        self.show_error("")
        if isinstance(focused, Input) and (param := self._param_of(focused)) is not None:
            applied = self._applied(focused, param)
            if focused.value != applied:
                self._show(focused, applied)
                focused.cursor_position = len(applied)
                self.show_error("applied value put back — Escape again leaves the box", error=False)
                return
        self.screen.set_focus(None)

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        """Greedy on/off applies at once (a toggle has no half-typed state)."""
        event.stop()
        new = self._settings.with_(greedy=event.value)
        if new != self._settings:
            self._settings = new
            self.post_message(self.SettingsChanged(new, False))
