"""The Controls form: a value applies on Enter or on leaving its box, only that box's; keys stay the app's."""

from __future__ import annotations

import pytest
from textual.widgets import Input, Label

from tests.test_ui_app import opened, run_and_wait, text_of, wait_until, with_factory
from tui_lab.engines.options import ENGINE_OPTIONS
from tui_lab.engines.scripted import ScriptedEngine
from tui_lab.ui.settings import ENGINE_FIELD, GENERAL_FIELDS
from tui_lab.ui.testing import make_test_app
from tui_lab.ui.widgets.controls import box_text, read_box


async def focused_box(pilot, name: str) -> Input:
    """The Controls tab's box for ``name``, shown and focused."""
    await pilot.press("2")
    box = pilot.app.query_one(f"#ctl-{name}", Input)
    box.focus()
    return box

async def test_tab_2_leaves_single_letter_keys_to_the_app():
    """Pressing 2 put the cursor in batch size, and then 1-5, r, n, p typed into it."""
    app = make_test_app()
    async with opened(app, size=(120, 36)) as pilot:
        await pilot.press("2")
        assert not isinstance(app.focused, Input)
        await pilot.press("b")  # the app's key, not a character in a box
        assert app.settings.batch_size == 8
        assert app.query_one("#ctl-batch_size", Input).value == "8"


async def test_typed_value_applies_only_on_enter_and_results_record_it():
    """Typing 131 applied 1, 13 and 131 on the way (and a run in between recorded a prefix)."""
    app = make_test_app()
    async with opened(app, size=(120, 36)) as pilot:
        box = await focused_box(pilot, "batch_size")
        box.value = ""
        await pilot.press("1", "3")
        await pilot.pause()
        assert app.settings.batch_size == 1  # nothing applied while typing
        await pilot.press("enter")
        assert app.settings.batch_size == 13
        await pilot.press("escape")
        assert not isinstance(app.focused, Input)
        await run_and_wait(pilot, app)
        assert app.results[-1]["batch_size"] == 13


async def test_escape_restores_the_applied_value():
    app = make_test_app()
    async with opened(app, size=(120, 36)) as pilot:
        box = app.query_one("#ctl-batch_size", Input)
        await pilot.press("2")
        box.focus()
        await pilot.press("end", "7")
        assert box.value == "17"
        await pilot.press("escape")
        assert box.value == "1" and app.settings.batch_size == 1
        assert app.focused is box  # still in the box: the next digits are typed, not taken as tab keys
        await pilot.press("escape")  # a box showing its applied value: Escape leaves it
        assert app.focused is None
        await run_and_wait(pilot, app)
        assert app.results[-1]["batch_size"] == 1


async def test_tab_on_the_controls_tab_starts_at_the_first_box_and_goes_round_its_boxes():
    """Tab went to the lesson's prediction box and the tab bar before the first field."""
    app = make_test_app()
    async with opened(app, size=(120, 36)) as pilot:
        await pilot.press("2", "tab")
        assert app.focused is app.query_one("#ctl-prompt", Input)
        await pilot.press("tab")
        assert app.focused is app.query_one("#ctl-batch_size", Input)
        boxes = app.query_one("ControlsForm").boxes()
        assert boxes[0].id == "ctl-prompt" and all(b.id and b.id.startswith(("ctl-", "exp-")) for b in boxes)
        seen = set()
        for _ in range(len(boxes)):
            await pilot.press("tab")
            seen.add(app.focused.id)
        assert seen == {b.id for b in boxes}  # round the boxes only: never the tab bar or the guess box
        await pilot.press("escape")
        app.screen.set_focus(None)
        await pilot.press("shift+tab")
        assert app.focused is boxes[-1]


async def test_the_box_with_the_cursor_and_its_label_stand_out():
    app = make_test_app()
    async with opened(app, size=(120, 36)) as pilot:
        await pilot.press("2", "tab", "tab")
        box = app.query_one("#ctl-batch_size", Input)
        label = box.parent.children[box.parent.children.index(box) - 1]
        assert label.has_class("-focused") and str(label.render()) == "batch size"
        assert box.styles.background != app.query_one("#ctl-prompt", Input).styles.background
        await pilot.press("tab")
        assert not label.has_class("-focused")


async def test_a_stray_key_in_the_prompt_box_never_replaces_the_prompt():
    app = make_test_app()
    async with opened(app, size=(120, 36)) as pilot:
        prompt = app.settings.prompt
        await pilot.press("2", "tab", "x")
        assert app.query_one("#ctl-prompt", Input).value == prompt + "x"
        await pilot.press("backspace", "enter")
        assert app.settings.prompt == prompt
        await pilot.press("tab", "4")  # a number's box selects its value on entry: typing replaces it
        assert app.query_one("#ctl-batch_size", Input).value == "4"


async def test_enter_applies_only_that_box():
    app = make_test_app()
    async with opened(app, size=(120, 36)) as pilot:
        await pilot.press("2")
        top_p = app.query_one("#ctl-top_p", Input)
        with top_p.prevent(Input.Changed):
            top_p.value = "0.5"  # shown but never submitted nor left
        box = app.query_one("#ctl-batch_size", Input)
        box.focus()
        box.value = "4"
        await pilot.press("enter")
        assert app.settings.batch_size == 4
        assert app.settings.top_p == 1.0


async def test_leaving_a_box_applies_it_and_refuses_bad_values():
    app = make_test_app()
    async with opened(app, size=(120, 36)) as pilot:
        box = await focused_box(pilot, "max_new_tokens")
        await pilot.pause()
        box.value = "24"
        await pilot.press("tab")  # leave the box
        await wait_until(pilot, lambda: app.settings.max_new_tokens == 24)
        box.focus()
        await pilot.pause()
        box.value = "abc"
        await pilot.press("tab")
        await wait_until(pilot, lambda: "max_new_tokens must be a whole number" in str(
            app.query_one("#controls-error", Label).render()))
        assert box.value == "24" and app.settings.max_new_tokens == 24


PARAMS = {p.name: p for p in (*GENERAL_FIELDS, ENGINE_FIELD, *ENGINE_OPTIONS["openai"], *ENGINE_OPTIONS["vllm"])}


@pytest.mark.parametrize(("name", "text", "ok"), [
    ("batch_size", "1024", True), ("batch_size", "1025", False), ("batch_size", "8.0", True), ("top_p", "0", False),
    ("temperature", "nan", False), ("engine", "openai", True), ("engine", "tgi", False),
    ("base_url", "http://127.0.0.1:8000/v1", True), ("base_url", "127.0.0.1", False), ("base_url", "", True),
    ("api_key_env", "MY_KEY", True), ("api_key_env", "sk-live-123", False), ("max_num_seqs", "0", False),
    ("enable_prefix_caching", "off", True), ("enforce_eager", "none", True),
])
def test_each_box_is_checked_by_its_param(name: str, text: str, ok: bool) -> None:
    from tui_lab.errors import LabError

    try:
        value = read_box(PARAMS[name], text)
    except LabError as exc:
        assert not ok
        assert "sk-live" not in exc.message  # a key typed by mistake is never echoed
    else:
        assert ok
        assert read_box(PARAMS[name], box_text(PARAMS[name], value)) == value  # shown as it is typed back


async def test_the_engine_fields_are_what_the_selected_engine_declares(monkeypatch):
    """vLLM shows its scheduler options; the openai engine its server and the NAME of its key's variable."""
    calls: list[tuple[str, dict]] = []

    def factory(name, **options):
        calls.append((name, options))
        return ScriptedEngine()

    monkeypatch.setenv("LAB_TEST_KEY", "sk-very-secret")
    app = with_factory(make_test_app(), factory)
    async with opened(app, size=(120, 48)) as pilot:
        await pilot.press("2")
        for option in ENGINE_OPTIONS["transformers"]:
            assert app.query_one(f"#ctl-{option.name}", Input)
        engine = app.query_one("#ctl-engine", Input)
        engine.value = "vllm"
        engine.focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: len(calls) == 2 and app.engine_state == "ready")
        assert calls[-1] == ("vllm", {"model": "embedded", "device": "cpu"})
        seqs = app.query_one("#ctl-max_num_seqs", Input)
        assert seqs.value == "256" and not app.query("#ctl-kv_cache")
        seqs.focus()
        seqs.value = "0"
        await pilot.press("enter")
        assert "max_num_seqs must be in 1..1024 (got 0)" in str(app.query_one("#controls-error", Label).render())
        seqs.value = "4"
        await pilot.press("enter")
        await wait_until(pilot, lambda: len(calls) == 3 and app.engine_state == "ready")
        assert calls[-1] == ("vllm", {"model": "embedded", "device": "cpu", "max_num_seqs": 4})
        engine.focus()
        engine.value = "openai"
        await pilot.press("enter")
        await wait_until(pilot, lambda: len(calls) == 4 and app.engine_state == "ready")
        assert not app.query("#ctl-device") and not app.query("#ctl-max_num_seqs")
        url, key = app.query_one("#ctl-base_url", Input), app.query_one("#ctl-api_key_env", Input)
        url.focus()
        url.value = "http://127.0.0.1:8000/v1"
        await pilot.press("enter")
        await wait_until(pilot, lambda: len(calls) == 5 and app.engine_state == "ready")
        key.focus()
        key.value = "sk-very-secret"  # the key itself: refused, never kept
        await pilot.press("enter")
        assert "name of an environment variable" in str(app.query_one("#controls-error", Label).render())
        assert len(calls) == 5
        key.value = "LAB_TEST_KEY"
        await pilot.press("enter")
        await wait_until(pilot, lambda: len(calls) == 6 and app.engine_state == "ready")
        assert calls[-1] == ("openai", {"model": "embedded", "base_url": "http://127.0.0.1:8000/v1",
                                        "api_key_env": "LAB_TEST_KEY"})
        assert text_of(app, "#lbl-api_key_env") == "api key env (set)"
        doc = app.settings.to_dict()
        assert doc["engine_options"]["api_key_env"] == "LAB_TEST_KEY" and "sk-very-secret" not in str(doc)
        assert "127.0.0.1:8000" in text_of(app, "#status")


async def test_help_scrolls_with_the_keyboard():
    """Help could only be scrolled with a mouse."""
    from textual.containers import VerticalScroll

    app = make_test_app()
    async with opened(app, size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: bool(app.screen.query("#help-body")))
        body = app.screen.query_one("#help-body", VerticalScroll)
        await wait_until(pilot, lambda: body.max_scroll_y > 0)
        await pilot.press("pagedown")
        await wait_until(pilot, lambda: body.scroll_y > 0)  # scrolling animates: wait for where it goes
        await pilot.press("end")
        await wait_until(pilot, lambda: body.scroll_y == body.max_scroll_y)
        await pilot.press("home")
        await wait_until(pilot, lambda: body.scroll_y == 0)


def test_settings_keep_each_engine_s_own_options() -> None:
    from tui_lab.ui.settings import LabSettings

    local = LabSettings(engine="vllm", engine_options={"model": "arch:gemma-3-270m", "device": "cpu",
                                                        "max_num_seqs": 4, "real_time": True})
    assert local.option("enable_prefix_caching") is True and local.option("max_num_seqs") == 4
    load = local.load_command()
    assert (load.engine, load.model, load.device) == ("vllm", "arch:gemma-3-270m", "cpu")
    assert load.options == {"max_num_seqs": 4, "real_time": True}
    server = local.with_engine("openai").with_option("base_url", "http://127.0.0.1:8000/v1")
    assert server.engine_options == {"model": "arch:gemma-3-270m", "real_time": True,
                                     "base_url": "http://127.0.0.1:8000/v1"}
    assert server.load_command().device == "" and server.option("api") == "completions"
    assert server.with_option("base_url", None).option("base_url") is None
    doc = server.to_dict()
    assert doc["engine"] == "openai" and set(doc["engine_options"]) == {p.name for p in ENGINE_OPTIONS["openai"]}
    assert server.label() == "arch:gemma-3-270m · openai @ http://127.0.0.1:8000/v1"


def test_the_fields_an_experiment_takes_are_laid_over_its_values() -> None:
    from tui_lab.lessons import Step
    from tui_lab.ui.loaded import LoadedExperiment
    from tui_lab.ui.settings import LabSettings

    sweep = LoadedExperiment.of("batch_sweep", {"batch_sizes": [1, 4], "max_new_tokens": 8, "temperature": 0.7})
    assert sweep.field_changes() == {"max_new_tokens": 8, "greedy": False, "temperature": 0.7, "top_p": 1.0,
                                     "top_k": 0, "repetition_penalty": 1.0, "seed": 0}
    assert "batch_sizes" in {p.name for p in sweep.own_params()} and "max_new_tokens" not in {
        p.name for p in sweep.own_params()}
    params = sweep.run_params(LabSettings(batch_size=64, max_new_tokens=12, greedy=True))
    assert params["max_new_tokens"] == 12 and params["temperature"] == 0.0 and params["batch_sizes"] == [1, 4]
    assert "batch_size" not in params  # a batch sweep takes no batch size field
    tokenize = LoadedExperiment.of("tokenize")
    assert tokenize.run_params(LabSettings(prompt="Hello there"))["text"] == "Hello there"
    assert sweep.chart_axis(params) == "batch" and tokenize.chart_axis({}) is None
    step = Step("On vLLM", "", "generate", {}, engine="vllm")
    on_vllm = LoadedExperiment.of("generate", step=step)
    assert on_vllm.refusal("vllm") is None and on_vllm.refusal("scripted") is None
    assert on_vllm.refusal("transformers") == ("this step runs on the vllm engine, but transformers is loaded",
                                               "set engine to vllm in Controls (2) and press m, then r")
    assert LoadedExperiment.of("batch_sweep", {"latency_budget": "summarization"}).budget_line_s(2.0) == 5.0
    assert LoadedExperiment.of("batch_sweep", {"latency_budget": None}).budget_line_s(2.0) == 2.0
