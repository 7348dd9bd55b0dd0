"""The Controls form: a value applies on Enter or on leaving its box, only that box's; keys stay the app's."""

from __future__ import annotations

import pytest
from textual.widgets import Input, Label

from tests.test_ui_app import ready, run_and_wait, wait_until
from tui_lab.ui.testing import make_test_app
from tui_lab.ui.widgets.controls import check_value


async def test_tab_2_leaves_single_letter_keys_to_the_app():
    """Pressing 2 put the cursor in batch size, and then 1-5, r, n, p typed into it."""
    app = make_test_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot, app)
        await pilot.press("2")
        assert not isinstance(app.focused, Input)
        await pilot.press("b")  # the app's key, not a character in a box
        assert app.settings.batch_size == 8
        assert app.query_one("#ctl-batch_size", Input).value == "8"


async def test_typed_value_applies_only_on_enter_and_results_record_it():
    """Typing 131 applied 1, 13 and 131 on the way (and a run in between recorded a prefix)."""
    app = make_test_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot, app)
        await pilot.press("2")
        box = app.query_one("#ctl-batch_size", Input)
        box.focus()
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
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot, app)
        box = app.query_one("#ctl-batch_size", Input)
        await pilot.press("2")
        box.focus()
        await pilot.press("end", "7")
        assert box.value == "17"
        await pilot.press("escape")
        assert box.value == "1" and app.settings.batch_size == 1
        await run_and_wait(pilot, app)
        assert app.results[-1]["batch_size"] == 1


async def test_enter_applies_only_that_box():
    app = make_test_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot, app)
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
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot, app)
        await pilot.press("2")
        box = app.query_one("#ctl-max_new_tokens", Input)
        box.focus()
        await pilot.pause()
        box.value = "24"
        await pilot.press("tab")  # leave the box
        await wait_until(pilot, lambda: app.settings.max_new_tokens == 24)
        box.focus()
        await pilot.pause()
        box.value = "abc"
        await pilot.press("tab")
        await wait_until(pilot, lambda: "max new tokens" in str(app.query_one("#controls-error", Label).render()))
        assert box.value == "24" and app.settings.max_new_tokens == 24


@pytest.mark.parametrize(("name", "text", "ok"), [
    ("batch_size", "1024", True), ("batch_size", "1025", False), ("top_p", "0", False),
    ("engine", "openai", True), ("engine", "tgi", False), ("base_url", "http://127.0.0.1:8000/v1", True),
    ("base_url", "127.0.0.1", False), ("api_key_env", "MY_KEY", True), ("api_key_env", "sk-live-123", False),
])
def test_one_check_decides(name: str, text: str, ok: bool) -> None:
    from tui_lab.errors import LabError

    try:
        check_value(name, text, ("transformers", "vllm", "openai"))
    except LabError:
        assert not ok
    else:
        assert ok


async def test_help_scrolls_with_the_keyboard():
    """Help could only be scrolled with a mouse."""
    from textual.containers import VerticalScroll

    app = make_test_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot, app)
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
