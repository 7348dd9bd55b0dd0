"""The CLI refuses what it can tell before a model load, and never loses results to a bad --out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tui_lab import cli
from tui_lab.errors import LabError
from tui_lab.lab.export import default_export_dir, write_json, write_with_fallback


@pytest.fixture
def no_load(monkeypatch):
    """Fail the test if anything tries to load a model."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the check")

    monkeypatch.setattr(cli, "create_and_load", refuse)


def test_unwritable_out_is_refused_before_the_load(no_load, capsys):
    """`sweep --out /proc/forbidden.json` ran the whole sweep, then died with a traceback."""
    assert cli.main(["sweep", "--batch-sizes", "1", "--max-tokens", "4", "--out", "/proc/forbidden.json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write /proc/forbidden.json" in err[0]


@pytest.mark.parametrize("command", [["run"], ["sweep", "--batch-sizes", "1"]])
def test_max_tokens_beyond_context_refused_before_the_load(no_load, capsys, command):
    """`--max-tokens 32768` (the embedded model's whole context) was refused only after a 19 s model load."""
    assert cli.main([*command, "--max-tokens", "32768"]) == 2
    assert "beyond the model's context of 32768 tokens" in capsys.readouterr().err


def test_arch_model_context_from_its_config(no_load, capsys):
    assert cli.main(["run", "--model", "arch:llama-3-8b", "--max-tokens", "9000"]) == 2
    assert "context of 8192 tokens" in capsys.readouterr().err


def test_out_failing_at_the_end_goes_to_a_fallback(monkeypatch, tmp_path, capsys):
    """If the file still cannot be written after the sweep, the results go elsewhere and the CLI says where."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "check_before_load", lambda args, experiment, params: None)
    code = cli.main(["sweep", "--engine", "scripted", "--batch-sizes", "1,2", "--max-tokens", "4", "--runs", "1",
                     "--warmup", "0", "-q", "--out", "/proc/forbidden.json"])
    assert code == 0
    captured = capsys.readouterr()
    assert "saved to" in captured.err
    saved = list((tmp_path / "inference-lab-results").glob("forbidden-*.json"))
    assert len(saved) == 1 and str(saved[0]) in captured.err + captured.out
    assert len(json.loads(saved[0].read_text())["points"]) == 2


def test_write_with_fallback_keeps_name_and_says_why(tmp_path):
    calls: list[Path] = []

    def writer(path: Path) -> Path:
        calls.append(path)
        if len(calls) == 1:
            raise LabError("cannot write /nope/x.json: Permission denied")
        return write_json(path, {"a": 1})

    written, note = write_with_fallback("/nope/x.json", writer, tmp_path)
    assert written.parent == tmp_path and written.name.startswith("x-") and written.suffix == ".json"
    assert note is not None and "Permission denied" in note and str(written) in note


def test_default_export_dir_is_the_ignored_one_at_the_repo_root():
    root = Path(__file__).resolve().parent.parent
    assert default_export_dir(root / "lessons") == root / "inference-lab-results"
    assert "/inference-lab-results/" in (root / ".gitignore").read_text().splitlines()


def test_unknown_lesson_lists_the_lessons(capsys):
    """`--lesson 99` opened lesson 01 without a word."""
    assert cli.main(["--lesson", "99"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "01 (" in err[0] and "99" in err[0]
