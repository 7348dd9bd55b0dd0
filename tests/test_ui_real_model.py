"""A short real generation inside the app: the embedded Gemma 3 270M on CPU, through the transformers engine."""

from __future__ import annotations

import asyncio

import pytest

from tui_lab.ui.app import AppOptions, LabApp
from tui_lab.ui.testing import FIXTURE_LESSONS

pytestmark = [pytest.mark.real_model, pytest.mark.timeout(300)]


class SharedEngine:
    """The session's loaded engine, lent to the app: loading is instant and quitting does not unload it."""

    def __init__(self, engine: object) -> None:
        self._engine = engine
        self.name = engine.name

    def load(self, progress=None):
        """Already loaded: report it and return its info."""
        if progress:
            progress("ready", 1.0)
        return self._engine.info

    @property
    def info(self):
        """The lent engine's info."""
        return self._engine.info

    def stream(self, requests, sampling, stop=None):
        """Generate with the lent engine."""
        return self._engine.stream(requests, sampling, stop)

    def cancel(self) -> None:
        """Stop the lent engine's stream."""
        self._engine.cancel()

    def unload(self) -> None:
        """The session fixture owns the engine: keep it loaded for other tests."""


async def test_real_generation_in_the_app(hf_engine):
    options = AppOptions(engine="transformers", engine_options={"model": "embedded", "device": "cpu"},
                         engine_factory=lambda name, **kw: SharedEngine(hf_engine),
                         lessons=FIXTURE_LESSONS, cursor_blink=False, save_progress=False)
    app = LabApp(options)
    async with app.run_test(size=(120, 40)) as pilot:
        while app.engine_state != "ready":
            assert app.engine_state != "failed"
            await pilot.pause(0.05)
        app.settings = app.settings.with_(max_new_tokens=8)
        await pilot.press("r")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 120
        while not app.results:
            assert loop.time() < deadline, "the real run did not finish"
            await pilot.pause(0.1)
        row = app.results[0]
        assert row["state"] == "done" and row["output_tokens"] == 8
        text = app.store.last_document()["requests"][0]["text"]
        assert text.startswith(" in the hands of the people"), text
        assert row["ttft_p50"] > 0 and row["output_tokens_per_s"] > 0
