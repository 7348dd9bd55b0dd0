"""Each engine declares its options; the app passes an engine only what it declares."""

from __future__ import annotations

import pytest

from tui_lab.engines import create_engine
from tui_lab.engines.options import declared_options, engine_kwargs
from tui_lab.errors import InvalidInput
from tui_lab.ui.settings import LabSettings


def test_openai_gets_no_device_and_builds() -> None:
    """``--engine openai`` in the TUI crashed: the app passed device= to every engine."""
    settings = LabSettings(engine="openai", model="", base_url="http://127.0.0.1:9/v1", api_key_env="MY_KEY")
    kwargs = engine_kwargs("openai", settings)
    assert "device" not in kwargs
    assert kwargs == {"base_url": "http://127.0.0.1:9/v1", "api_key_env": "MY_KEY"}
    engine = create_engine("openai", **kwargs)  # constructing does not connect
    assert engine.name == "openai"


def test_local_engines_get_model_and_device_only() -> None:
    settings = LabSettings(model="embedded", device="cpu", base_url="http://x:1/v1")
    for name in ("transformers", "vllm"):
        assert engine_kwargs(name, settings) == {"model": "embedded", "device": "cpu"}


def test_api_key_is_a_variable_name_never_the_key() -> None:
    with pytest.raises(InvalidInput, match="name of an environment variable"):
        engine_kwargs("openai", {"base_url": "http://h:1/v1", "api_key_env": "sk-abc123/xyz"})


def test_bad_base_url_refused_with_one_line() -> None:
    with pytest.raises(InvalidInput, match="http://host:port/v1"):
        engine_kwargs("openai", {"base_url": "localhost"})


def test_declarations_match_constructor_keywords() -> None:
    import inspect
    from importlib import import_module

    from tui_lab.engines import ENGINES

    for name in ("transformers", "vllm", "openai"):
        module, cls = ENGINES[name].split(":")
        params = inspect.signature(getattr(import_module(module), cls).__init__).parameters
        for option in declared_options(name):
            assert option.name in params, (name, option.name)
