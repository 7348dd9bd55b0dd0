"""Each engine declares its options as Params; the CLI, the Controls and create_engine all read those."""

from __future__ import annotations

import pytest

from tui_lab.engines import create_engine
from tui_lab.engines.options import ENGINE_NAMES, ENGINE_OPTIONS, check_options, declared_only, engine_options
from tui_lab.errors import InvalidInput


def test_openai_gets_no_device_and_builds() -> None:
    """``--engine openai`` in the TUI crashed: the app passed device= to every engine."""
    options = declared_only("openai", {"model": "", "device": "cpu", "base_url": "http://127.0.0.1:9/v1",
                                       "api_key_env": "MY_KEY"})
    assert "device" not in options
    kwargs = check_options("openai", options)
    assert kwargs == {"base_url": "http://127.0.0.1:9/v1", "api_key_env": "MY_KEY"}
    engine = create_engine("openai", **kwargs)  # constructing does not connect
    assert engine.name == "openai"


def test_api_key_is_a_variable_name_never_the_key() -> None:
    with pytest.raises(InvalidInput, match="name of an environment variable") as info:
        check_options("openai", {"base_url": "http://h:1/v1", "api_key_env": "sk-abc123/xyz"})
    assert "sk-abc123" not in str(info.value)


def test_bad_base_url_and_missing_base_url_refused_with_one_line() -> None:
    with pytest.raises(InvalidInput, match="http://host:port/v1"):
        check_options("openai", {"base_url": "localhost"})
    with pytest.raises(InvalidInput, match="base URL"):
        check_options("openai", {})


def test_engine_options_are_checked_by_their_params_before_the_engine_is_made() -> None:
    assert check_options("vllm", {"max_num_seqs": "8", "enable_prefix_caching": "off"}) == {
        "max_num_seqs": 8, "enable_prefix_caching": False}
    with pytest.raises(InvalidInput, match="max_num_seqs"):
        create_engine("vllm", max_num_seqs=0)
    with pytest.raises(InvalidInput, match="unknown engine"):
        engine_options("nope")


def test_declarations_match_constructor_keywords() -> None:
    import inspect
    from importlib import import_module

    from tui_lab.engines import ENGINES

    assert set(ENGINE_NAMES) <= set(ENGINE_OPTIONS) and set(ENGINE_OPTIONS) == set(ENGINES)
    for name in ENGINE_OPTIONS:
        module, cls = ENGINES[name].split(":")
        params = inspect.signature(getattr(import_module(module), cls).__init__).parameters
        for option in ENGINE_OPTIONS[name]:
            assert option.name in params, (name, option.name)
            assert option.check(option.default) == option.default or option.default is None, (name, option.name)
